"""AlexNet backbones of the two reference code bases.

* :class:`AlexNetBN` -- video_analyst ``backbone_impl/alexnet_bn.py`` (SiamFC++): ``conv1`` .. ``conv5`` are
  ``conv_bn_relu`` blocks (conv with bias + BN [+ ReLU]); 3x3/2 max-pools with ``ceil_mode=True`` after conv1
  and conv2; conv5 has no ReLU. 127 -> 6x6, 303 -> 28x28, 256 channels.
* :class:`AlexNetLegacy` -- pysot ``backbone/alexnet.py`` (SiamRPN AlexNet): one ``features`` Sequential,
  indices 0 conv11/2, 1 BN, 2 maxpool 3/2 (floor), 3 ReLU, 4 conv5, 5 BN, 6 maxpool, 7 ReLU, 8 conv3, 9 BN,
  10 ReLU, 11 conv3, 12 BN, 13 ReLU, 14 conv3, 15 BN. Convs have biases. 127 -> 6x6, 287 -> 26x26.

Inputs are NHWC float32 BGR in [0, 255] (no normalisation in either reference).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from .layers import ConvBNReLU, batch_norm, conv2d, max_pool2d

__all__ = ["AlexNetBN", "AlexNetLegacy"]


class AlexNetBN(nn.Module):
    """video_analyst SiamFC++ AlexNet (``basemodel.conv{1..5}.{conv,bn}``)."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = ConvBNReLU(96, kernel_size=11, stride=2, padding=0, name="conv1")(x, train)
        x = max_pool2d(x, 3, 2, 0, ceil_mode=True)
        x = ConvBNReLU(256, kernel_size=5, stride=1, padding=0, name="conv2")(x, train)
        x = max_pool2d(x, 3, 2, 0, ceil_mode=True)
        x = ConvBNReLU(384, kernel_size=3, stride=1, padding=0, name="conv3")(x, train)
        x = ConvBNReLU(384, kernel_size=3, stride=1, padding=0, name="conv4")(x, train)
        x = ConvBNReLU(256, kernel_size=3, stride=1, padding=0, has_relu=False, name="conv5")(x, train)
        return x


class _Features(nn.Module):
    """The ``features`` Sequential of pysot's AlexNetLegacy (parameterised layers named by their index)."""

    channels: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        c = self.channels
        x = conv2d(c[0], 11, stride=2, name="0")(x)
        x = batch_norm(train, name="1")(x)
        x = max_pool2d(x, 3, 2)  # 2
        x = nn.relu(x)  # 3
        x = conv2d(c[1], 5, name="4")(x)
        x = batch_norm(train, name="5")(x)
        x = max_pool2d(x, 3, 2)  # 6
        x = nn.relu(x)  # 7
        x = conv2d(c[2], 3, name="8")(x)
        x = batch_norm(train, name="9")(x)
        x = nn.relu(x)  # 10
        x = conv2d(c[3], 3, name="11")(x)
        x = batch_norm(train, name="12")(x)
        x = nn.relu(x)  # 13
        x = conv2d(c[4], 3, name="14")(x)
        x = batch_norm(train, name="15")(x)
        return x


class AlexNetLegacy(nn.Module):
    """pysot ``AlexNetLegacy`` (``backbone.features.{0..15}``); ``width_mult`` as in pysot (1.0 for the model zoo)."""

    width_mult: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        channels = [int(c * self.width_mult) for c in (96, 256, 384, 384, 256)]
        return _Features(channels, name="features")(x, train)
