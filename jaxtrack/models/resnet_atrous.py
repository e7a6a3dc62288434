"""pysot's atrous ResNet-50 (``pysot/models/backbone/resnet_atrous.py``), the SiamRPN++ backbone.

Differences from torchvision's ResNet, all reproduced here:

* ``conv1`` is 7x7 / 2 with **padding 0**; then ``bn1``, ReLU, 3x3 / 2 max-pool with padding 1.
* Bottleneck ``conv2`` (3x3, carries the stride): padding ``2 - stride`` when undilated, otherwise padding =
  dilation; in a block that owns a downsample, a dilation > 1 is halved first.
* ``_make_layer`` downsample: 1x1 conv only if stride == 1 and dilation == 1 (layer1); otherwise a 3x3 conv
  (layer2: stride 2, padding 0; layer3: dilation 1, padding 1; layer4: dilation 2, padding 2), then BN.
* layer3 (dilation 2) and layer4 (dilation 4) keep stride 1 and are built only if used.

Shapes: 127 -> 15x15, 255 -> 31x31 at layers 2/3/4 (512 / 1024 / 2048 channels), total stride 8.
Parameter paths mirror the state-dict keys, e.g. ``layer2/0/downsample/0/kernel`` for
``layer2.0.downsample.0.weight``.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from .layers import ConvBN, batch_norm, conv2d, max_pool2d

__all__ = ["Bottleneck", "ResNetAtrous", "resnet50_atrous"]


class Bottleneck(nn.Module):
    """pysot ``Bottleneck`` (expansion 4): conv1/bn1, conv2/bn2, conv3/bn3 and an optional ``downsample``."""

    planes: int
    stride: int = 1
    dilation: int = 1
    # Downsample spec (kernel, stride, padding, dilation) or None.
    downsample: tuple[int, int, int, int] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        dilation = self.dilation
        padding = 2 - self.stride
        if self.downsample is not None and dilation > 1:
            dilation = dilation // 2
            padding = dilation
        if dilation > 1:
            padding = dilation

        out = conv2d(self.planes, 1, use_bias=False, name="conv1")(x)
        out = nn.relu(batch_norm(train, name="bn1")(out))
        out = conv2d(
            self.planes, 3, stride=self.stride, padding=padding, dilation=dilation, use_bias=False, name="conv2"
        )(out)
        out = nn.relu(batch_norm(train, name="bn2")(out))
        out = conv2d(self.planes * 4, 1, use_bias=False, name="conv3")(out)
        out = batch_norm(train, name="bn3")(out)

        residual = x
        if self.downsample is not None:
            k, s, p, d = self.downsample
            residual = ConvBN(self.planes * 4, k, stride=s, padding=p, dilation=d, name="downsample")(x, train)
        return nn.relu(out + residual)


class _ResLayer(nn.Module):
    """A ``_make_layer`` Sequential: blocks named ``'0'``, ``'1'``, ..."""

    planes: int
    blocks: int
    inplanes: int
    stride: int = 1
    dilation: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        downsample = None
        if self.stride != 1 or self.inplanes != self.planes * 4:
            if self.stride == 1 and self.dilation == 1:
                downsample = (1, self.stride, 0, 1)
            elif self.dilation > 1:
                dd = self.dilation // 2
                downsample = (3, self.stride, dd, dd)
            else:
                downsample = (3, self.stride, 0, 1)
        x = Bottleneck(self.planes, self.stride, self.dilation, downsample, name="0")(x, train)
        for i in range(1, self.blocks):
            x = Bottleneck(self.planes, 1, self.dilation, None, name=str(i))(x, train)
        return x


class ResNetAtrous(nn.Module):
    """pysot ``ResNet`` with Bottleneck blocks. Returns the maps listed in ``used_layers``.

    ``used_layers`` indexes [conv1 output after ReLU, layer1, layer2, layer3, layer4]; a single used layer is
    returned bare, several as a tuple (pysot returns a list).
    """

    layers: Sequence[int] = (3, 4, 6, 3)
    used_layers: Sequence[int] = (2, 3, 4)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False):
        x = conv2d(64, 7, stride=2, padding=0, use_bias=False, name="conv1")(x)
        x_ = nn.relu(batch_norm(train, name="bn1")(x))
        x = max_pool2d(x_, 3, 2, 1)

        p1 = _ResLayer(64, self.layers[0], 64, name="layer1")(x, train)
        p2 = _ResLayer(128, self.layers[1], 256, stride=2, name="layer2")(p1, train)
        p3 = p2
        if 3 in self.used_layers:
            p3 = _ResLayer(256, self.layers[2], 512, stride=1, dilation=2, name="layer3")(p2, train)
        p4 = p3
        if 4 in self.used_layers:
            # pysot's _make_layer tracks self.inplanes: 1024 if layer3 was built, otherwise 512.
            inplanes = 1024 if 3 in self.used_layers else 512
            p4 = _ResLayer(512, self.layers[3], inplanes, stride=1, dilation=4, name="layer4")(p3, train)
        outs = [x_, p1, p2, p3, p4]
        outs = tuple(outs[i] for i in self.used_layers)
        return outs[0] if len(outs) == 1 else outs


def resnet50_atrous(used_layers: Sequence[int] = (2, 3, 4), name: str | None = None) -> ResNetAtrous:
    return ResNetAtrous(layers=(3, 4, 6, 3), used_layers=tuple(used_layers), name=name)
