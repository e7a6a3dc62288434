"""SiamFC++ with the AlexNet backbone (video_analyst ``SiamTrack``, experiment ``siamfcpp_alexnet``).

Parameter tree = video_analyst state-dict keys: ``basemodel`` (AlexNet-BN ``conv1..conv5``), the adjust convs
``c_z_k``, ``r_z_k``, ``c_x``, ``r_x`` (3x3 conv with bias + BN, no ReLU) and ``head`` (DenseboxHead, with the
scalar parameters ``head/si`` and ``head/bi`` of shape ()).

Sizes: z 127 -> 6x6 -> kernels 4x4; x 303 -> 28x28 -> 26x26 -> xcorr 23x23 -> head towers 17x17.

Compact variant: ``SiamFCppAlexNet(width_mult=0.25)`` keeps the layer structure and the parameter names but
scales every channel count (backbone 96/256/384/384/256 and the 256-wide adjust convs and head towers) by
``width_mult`` (rounded, at least 8). The default (1.0) is the published network, bit for bit, so converted
video_analyst checkpoints keep loading. Used by the ``siamfcpp_tiny`` tracker that trains on a CPU.

NanoTrack-backbone variant: ``SiamFCppAlexNet(backbone="nanotrack_v2", total_stride=16, num_conv3x3=1,
width_mult=0.25)``: ``basemodel`` is NanoTrack v2's MobileNetV3-small (``basemodel/features/...``, the parameter
paths of NanoTrack's ``backbone``), so its real weights graft in unchanged; z 127 -> 8x8 -> kernels 6x6,
x 255 -> 16x16 -> 14x14 -> xcorr 9x9 -> one tower layer -> 7x7.

Usage::

    model = SiamFCppAlexNet()
    zf = model.apply(variables, z, method=model.template)      # (c_z_k, r_z_k), each [B, 4, 4, 256]
    out = model.apply(variables, zf, x, method=model.track)    # dict(cls, ctr, box)
"""

from __future__ import annotations

import flax.linen as nn
import jax

from .alexnet import AlexNetBN
from .heads import DenseboxHead
from .layers import ConvBNReLU, max_pool2d, xcorr_depthwise
from .nanotrack import MobileNetV3Small

__all__ = ["SiamFCppAlexNet", "AlexNetBNScaled", "scaled_channels"]

_ALEXNET_CHANNELS = (96, 256, 384, 384, 256)


def scaled_channels(channels: int, width_mult: float) -> int:
    """``channels * width_mult`` rounded to the nearest integer, at least 8."""
    return max(8, int(round(channels * width_mult)))


class AlexNetBNScaled(nn.Module):
    """:class:`AlexNetBN` (same layers, names ``conv1``..``conv5``, strides, ceil-mode pools) with every channel
    count scaled by ``width_mult``."""

    width_mult: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        c = [scaled_channels(n, self.width_mult) for n in _ALEXNET_CHANNELS]
        x = ConvBNReLU(c[0], kernel_size=11, stride=2, padding=0, name="conv1")(x, train)
        x = max_pool2d(x, 3, 2, 0, ceil_mode=True)
        x = ConvBNReLU(c[1], kernel_size=5, stride=1, padding=0, name="conv2")(x, train)
        x = max_pool2d(x, 3, 2, 0, ceil_mode=True)
        x = ConvBNReLU(c[2], kernel_size=3, stride=1, padding=0, name="conv3")(x, train)
        x = ConvBNReLU(c[3], kernel_size=3, stride=1, padding=0, name="conv4")(x, train)
        x = ConvBNReLU(c[4], kernel_size=3, stride=1, padding=0, has_relu=False, name="conv5")(x, train)
        return x


class SiamFCppAlexNet(nn.Module):
    """SiamFC++ AlexNet. Inputs NHWC float32 BGR in [0, 255].

    ``template(z) -> (c_z_k, r_z_k)``; ``track(zf, x) -> dict``:

    * ``cls``: [B, 17, 17] classification logits; ``ctr``: [B, 17, 17] centre-ness logits
      (score = sigmoid(cls) * sigmoid(ctr));
    * ``box``: [B, 17, 17, 4] boxes (x0, y0, x1, y1) in search-crop pixels for cell (row i, col j).
    """

    head_width: int = 256
    total_stride: int = 8
    num_conv3x3: int = 3
    head_conv_bn: tuple[bool, ...] = (False, False, True)
    width_mult: float = 1.0  # compact variants: every channel count scaled (1.0 = the published network)
    backbone: str = "alexnet"  # or "nanotrack_v2": NanoTrack v2's MobileNetV3-small features (stride 16)

    def setup(self):
        w = self.head_width if self.width_mult == 1.0 else scaled_channels(self.head_width, self.width_mult)
        if self.backbone == "nanotrack_v2":
            self.basemodel = MobileNetV3Small("v2")
        elif self.backbone != "alexnet":
            raise ValueError(f"SiamFC++ backbone must be 'alexnet' or 'nanotrack_v2', got {self.backbone!r}")
        elif self.width_mult == 1.0:
            self.basemodel = AlexNetBN()
        else:
            self.basemodel = AlexNetBNScaled(self.width_mult)
        self.c_z_k = ConvBNReLU(w, 3, has_relu=False)
        self.r_z_k = ConvBNReLU(w, 3, has_relu=False)
        self.c_x = ConvBNReLU(w, 3, has_relu=False)
        self.r_x = ConvBNReLU(w, 3, has_relu=False)
        self.head = DenseboxHead(
            total_stride=self.total_stride,
            num_conv3x3=self.num_conv3x3,
            head_conv_bn=tuple(self.head_conv_bn),
            head_width=w,
        )

    def template(self, z: jax.Array, train: bool = False):
        f_z = self.basemodel(z, train)
        return (self.c_z_k(f_z, train), self.r_z_k(f_z, train))

    def track(self, zf, x: jax.Array, train: bool = False) -> dict:
        c_z_k, r_z_k = zf
        f_x = self.basemodel(x, train)
        c_x = self.c_x(f_x, train)
        r_x = self.r_x(f_x, train)
        c_out = xcorr_depthwise(c_x, c_z_k)
        r_out = xcorr_depthwise(r_x, r_z_k)
        return self.head(c_out, r_out, x.shape[2], train)

    def __call__(self, z: jax.Array, x: jax.Array, train: bool = False) -> dict:
        return self.track(self.template(z, train), x, train)
