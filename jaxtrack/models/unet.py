"""The DuaLossDef pre-processing U-Net (a residual denoiser placed in front of a tracker's backbone).

DuaLossDef (Wu et al., "Enhancing Tracking Robustness with Auxiliary Adversarial Defense Networks",
arXiv:2402.17976) puts a U-Net before the template and/or search branch of a Siamese tracker and trains it
adversarially with the Dua-Loss (classification + regression); the tracker itself is not retrained. The paper
gives no layer counts, widths or normalisation: every architectural choice below is ours.

Input / output
    ``x``: ``[B, H, W, 3]`` float crops, BGR, pixel values in [0, 255] (the trackers' crop convention), any
    ``H, W`` (the trackers use 127 for templates and 255 / 287 / 303 for search crops). Output: the same shape,
    dtype and units, ``clip(x + G(x), 0, 255)``.

Architecture (``depth`` = number of down-samplings, ``width`` = channels at full resolution)
    * normalise inside: ``u = x / 255 − 0.5``;
    * pad ``u`` to a multiple of ``2**depth`` on each spatial axis (``pad_mode`` "reflect" by default, or "edge"
      / "symmetric"; the padding is split ``p // 2`` before and ``p − p // 2`` after, so the crop stays centred),
      and crop the correction back to ``H x W`` at the end (:func:`pad_amounts` / :func:`pad_to_multiple`);
    * encoder: at level ``l = 0 … depth`` a block of ``convs`` 3x3 convolutions to ``width · 2**l`` channels,
      each followed by the normalisation and the activation; between levels a down-sampling by a 3x3 stride-2
      convolution (``down="conv"``, learnable) or a 2x2 max-pool (``down="pool"``);
    * decoder: up-sampling by a 2x2 stride-2 transposed convolution (``up="transpose"``) or by bilinear
      resizing + a 1x1 convolution (``up="resize"``, the default: no checkerboard artefacts; the 1x1 convolution
      is applied at the coarse resolution *before* the resize, which is the same function — a 1x1 convolution
      and a bilinear resize commute — at a quarter of the cost), concatenation with the encoder skip, a block of
      3x3 convolutions;
    * head: a 1x1 convolution to 3 channels whose kernel and bias are **zero-initialised**, so ``G ≡ 0`` and a
      freshly initialised network is exactly the identity on [0, 255] inputs (``x + 0.0 == x`` bit for bit);
      the correction is scaled back to pixels (``· 255``) and added to the *unpadded* input (residual).
    * output clip to [0, 255] with gradient 1 on the closed interval (``where``, not ``minimum(maximum(…))``,
      whose gradient is halved at the bounds), so attack gradients through an identity network equal the
      gradients without it.

Normalisation: ``norm="group"`` (GroupNorm, ``groups`` groups or fewer when they do not divide the channels)
or ``"none"``. No BatchNorm on purpose: the defense is applied to one crop at a time while tracking and to
batches of adversarial crops while training; BatchNorm would need running statistics (``batch_stats``) and a
train/eval switch, and in train mode would couple the samples of a batch (an adversary could then perturb one
crop to change another's output). GroupNorm is per sample, stateless and identical in training and inference,
so the variables are only ``{"params": …}`` and the network is a pure function of one crop.

Size: the defaults (depth 3, width 16, 2 convs per block, strided-conv down, resize up, GroupNorm) have 499,011
parameters (1.9 MB in float32) and cost 0.6 / 2.6 / 3.8 GMAC on a 127 / 255 / 303 crop (XLA's count: 1.2 / 5.2 /
7.5 GFLOP); ``benchmarks/defense_speed.py`` measures the time.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from .conv import conv_general_dilated

__all__ = ["PAD_MODES", "DefenseUNet", "conv_general_dilated", "pad_amounts", "pad_to_multiple", "unet_hparams"]

PAD_MODES = ("reflect", "edge", "symmetric")
_ACTIVATIONS = {"relu": nn.relu, "silu": nn.silu, "gelu": nn.gelu, "leaky_relu": nn.leaky_relu}


def pad_amounts(n: int, multiple: int) -> tuple[int, int]:
    """(before, after) padding that brings a side of ``n`` pixels to the next multiple of ``multiple``."""
    total = (-int(n)) % int(multiple)
    return total // 2, total - total // 2


def pad_to_multiple(x: jax.Array, multiple: int, mode: str = "reflect") -> tuple[jax.Array, tuple[slice, slice]]:
    """Pad NHWC ``x`` spatially to multiples of ``multiple``; returns the padded array and the (row, col) slices
    that crop it back to the original ``H x W``."""
    if mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {mode!r}")
    (t, b), (l, r) = pad_amounts(x.shape[1], multiple), pad_amounts(x.shape[2], multiple)
    if t or b or l or r:
        x = jnp.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), mode=mode)
    return x, (slice(t, x.shape[1] - b), slice(l, x.shape[2] - r))


#: ``nn.Conv`` with :func:`jaxtrack.models.conv.conv_general_dilated`, the convolution of every network here (fast
#: gradients inside attack loops); every convolution of the U-Net but the transposed one (``up="transpose"``).
_Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)


def _clip_pixels(y: jax.Array) -> jax.Array:
    """Clip to [0, 255] with gradient 1 on the closed interval and 0 outside."""
    return jnp.where(y < 0.0, 0.0, jnp.where(y > 255.0, 255.0, y)).astype(y.dtype)


class DefenseUNet(nn.Module):
    """Residual U-Net pre-processor ``x ↦ clip(x + G(x), 0, 255)`` on BGR crops in [0, 255] (see module doc).

    Attributes:
      depth: number of 2x down-samplings (inputs are padded to a multiple of ``2**depth``).
      width: channels at full resolution; level ``l`` has ``width · 2**l``.
      convs: 3x3 convolutions per block.
      norm: "group" (GroupNorm) or "none".
      groups: GroupNorm groups (reduced to ``gcd(groups, channels)``).
      down: "conv" (3x3 stride-2 convolution) or "pool" (2x2 max-pool).
      up: "resize" (bilinear x2 + 1x1 convolution) or "transpose" (2x2 stride-2 transposed convolution).
      pad_mode: "reflect", "edge" or "symmetric".
      activation: "relu", "silu", "gelu" or "leaky_relu".
      zero_init_last: zero kernel and bias of the output convolution (identity at initialisation).
    """

    depth: int = 3
    width: int = 16
    convs: int = 2
    norm: str = "group"
    groups: int = 8
    down: str = "conv"
    up: str = "resize"
    pad_mode: str = "reflect"
    activation: str = "relu"
    zero_init_last: bool = True

    def _check(self) -> None:
        if self.depth < 0 or self.width < 1 or self.convs < 1:
            raise ValueError(f"DefenseUNet needs depth >= 0, width >= 1, convs >= 1; got {self.depth}/{self.width}/{self.convs}")
        for attr, allowed in (
            ("norm", ("group", "none")),
            ("down", ("conv", "pool")),
            ("up", ("resize", "transpose")),
            ("pad_mode", PAD_MODES),
            ("activation", tuple(_ACTIVATIONS)),
        ):
            if getattr(self, attr) not in allowed:
                raise ValueError(f"DefenseUNet.{attr} must be one of {allowed}, got {getattr(self, attr)!r}")

    def _block(self, h: jax.Array, features: int, name: str) -> jax.Array:
        act = _ACTIVATIONS[self.activation]
        for i in range(self.convs):
            h = _Conv(features, (3, 3), padding=((1, 1), (1, 1)), use_bias=self.norm == "none",
                      name=f"{name}_conv{i}")(h)
            if self.norm == "group":
                h = nn.GroupNorm(num_groups=math.gcd(self.groups, features), name=f"{name}_norm{i}")(h)
            h = act(h)
        return h

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self._check()
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"DefenseUNet expects NHWC crops [B, H, W, 3], got shape {tuple(x.shape)}")
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
        x = x.astype(dtype)
        u, (rows, cols) = pad_to_multiple(x / 255.0 - 0.5, 2**self.depth, self.pad_mode)

        skips = []
        h = u
        for level in range(self.depth):
            h = self._block(h, self.width * 2**level, f"enc{level}")
            skips.append(h)
            if self.down == "conv":
                h = _Conv(h.shape[-1], (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), name=f"down{level}")(h)
            else:
                h = nn.max_pool(h, (2, 2), strides=(2, 2))
        h = self._block(h, self.width * 2**self.depth, "mid")
        for level in reversed(range(self.depth)):
            features = self.width * 2**level
            if self.up == "transpose":
                h = nn.ConvTranspose(features, (2, 2), strides=(2, 2), padding="VALID", name=f"up{level}")(h)
            else:
                # a 1x1 conv commutes with the resize
                h = _Conv(features, (1, 1), name=f"up{level}")(h)
                b, hh, ww, c = h.shape
                h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), method="bilinear")
            h = self._block(jnp.concatenate([h, skips[level]], axis=-1), features, f"dec{level}")
        init = nn.initializers.zeros_init() if self.zero_init_last else nn.initializers.lecun_normal()
        delta = _Conv(3, (1, 1), kernel_init=init, bias_init=nn.initializers.zeros_init(), name="out")(h)
        delta = delta[:, rows, cols, :].astype(dtype) * 255.0
        return _clip_pixels(x + delta)

    def init_variables(self, key: jax.Array, size: int | Sequence[int] | None = None) -> dict:
        """``{"params": …}`` from a jitted ``init`` on one zero crop of side ``size`` (default ``2**depth``, the
        smallest; parameter shapes do not depend on the crop size)."""
        size = 2**self.depth if size is None else size
        hw = (size, size) if isinstance(size, int) else tuple(size)
        x = jnp.zeros((1, *hw, 3), jnp.float32)
        lowered = jax.jit(self.init).lower(key, x)
        try:  # XLA's optimisations make the random initialisers take ~10x longer to compile, for a one-off call
            compiled = lowered.compile({"xla_backend_optimization_level": 0})
        except Exception:  # noqa: BLE001  (a backend without that option)
            compiled = lowered.compile()
        return dict(compiled(key, x))


def unet_hparams(unet: DefenseUNet) -> dict:
    """The hyper-parameters of ``unet`` as a JSON-able dict (``DefenseUNet(**unet_hparams(u))`` rebuilds it)."""
    return {
        f.name: getattr(unet, f.name)
        for f in DefenseUNet.__dataclass_fields__.values()
        if f.name not in ("parent", "name") and f.init
    }
