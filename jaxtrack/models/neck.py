"""pysot necks (``pysot/models/neck/neck.py``)."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from .layers import ConvBN, center_crop

__all__ = ["AdjustLayer", "AdjustAllLayer"]


class AdjustLayer(nn.Module):
    """``downsample`` = [1x1 conv (no bias), BN]; maps narrower than 20 are centre-cropped to ``center_size``."""

    out_channels: int
    center_size: int = 7

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = ConvBN(self.out_channels, kernel_size=1, use_bias=False, name="downsample")(x, train)
        if x.shape[2] < 20:  # static shape: the template branch
            x = center_crop(x, self.center_size)
        return x


class AdjustAllLayer(nn.Module):
    """One AdjustLayer per level: ``downsample`` for a single level, else ``downsample2``, ``downsample3``, ..."""

    out_channels: Sequence[int]
    center_size: int = 7

    @nn.compact
    def __call__(self, features, train: bool = False):
        if len(self.out_channels) == 1:
            return AdjustLayer(self.out_channels[0], self.center_size, name="downsample")(features, train)
        return tuple(
            AdjustLayer(c, self.center_size, name=f"downsample{i + 2}")(f, train)
            for i, (c, f) in enumerate(zip(self.out_channels, features, strict=True))
        )
