"""Tracking heads.

* pysot (``pysot/models/head/rpn.py``): :class:`DepthwiseXCorr`, :class:`DepthwiseRPN`, :class:`MultiRPN`.
* video_analyst (``task_head/taskhead_impl/track_head.py``): :class:`DenseboxHead` (SiamFC++).

All maps are NHWC; a PyTorch NCHW channel ``c`` is the last-axis index ``c`` here.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from .layers import ConvBN, ConvBNReLU, batch_norm, conv2d, xcorr_depthwise

__all__ = ["DepthwiseXCorr", "DepthwiseRPN", "MultiRPN", "DenseboxHead", "densebox_centers"]


class _XCorrOut(nn.Module):
    """``head`` Sequential of DepthwiseXCorr: 0 conv1x1 (no bias), 1 BN, 2 ReLU, 3 conv1x1 (bias)."""

    hidden: int
    out_channels: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = conv2d(self.hidden, 1, use_bias=False, name="0")(x)
        x = nn.relu(batch_norm(train, name="1")(x))
        return conv2d(self.out_channels, 1, use_bias=True, name="3")(x)


class DepthwiseXCorr(nn.Module):
    """``conv_kernel`` / ``conv_search`` (3x3 conv no bias + BN + ReLU), depthwise xcorr, then ``head``."""

    hidden: int
    out_channels: int
    kernel_size: int = 3

    @nn.compact
    def __call__(self, kernel: jax.Array, search: jax.Array, train: bool = False) -> jax.Array:
        kernel = ConvBN(self.hidden, self.kernel_size, relu=True, name="conv_kernel")(kernel, train)
        search = ConvBN(self.hidden, self.kernel_size, relu=True, name="conv_search")(search, train)
        feature = xcorr_depthwise(search, kernel)
        return _XCorrOut(self.hidden, self.out_channels, name="head")(feature, train)


class DepthwiseRPN(nn.Module):
    """``cls`` (2 * anchor_num channels) and ``loc`` (4 * anchor_num) depthwise-xcorr branches."""

    anchor_num: int = 5
    out_channels: int = 256

    @nn.compact
    def __call__(self, z_f: jax.Array, x_f: jax.Array, train: bool = False):
        cls = DepthwiseXCorr(self.out_channels, 2 * self.anchor_num, name="cls")(z_f, x_f, train)
        loc = DepthwiseXCorr(self.out_channels, 4 * self.anchor_num, name="loc")(z_f, x_f, train)
        return cls, loc


class MultiRPN(nn.Module):
    """``rpn2``, ``rpn3``, ... (one DepthwiseRPN per level), fused by softmax(``cls_weight``/``loc_weight``)
    when ``weighted`` (parameters of shape (levels,), initialised to ones) or by the plain mean otherwise."""

    anchor_num: int = 5
    in_channels: Sequence[int] = (256, 256, 256)
    weighted: bool = False

    @nn.compact
    def __call__(self, z_fs, x_fs, train: bool = False):
        n = len(self.in_channels)
        cls, loc = [], []
        for i, (c, z_f, x_f) in enumerate(zip(self.in_channels, z_fs, x_fs, strict=True)):
            c_i, l_i = DepthwiseRPN(self.anchor_num, c, name=f"rpn{i + 2}")(z_f, x_f, train)
            cls.append(c_i)
            loc.append(l_i)
        if self.weighted:
            cls_w = jax.nn.softmax(self.param("cls_weight", nn.initializers.ones, (n,), jnp.float32))
            loc_w = jax.nn.softmax(self.param("loc_weight", nn.initializers.ones, (n,), jnp.float32))
            return sum(w * t for w, t in zip(cls_w, cls)), sum(w * t for w, t in zip(loc_w, loc))
        return sum(cls) / n, sum(loc) / n


def densebox_centers(score_size: int, x_size: int, total_stride: int = 8) -> jax.Array:
    """Crop-pixel centres of the score-map cells, [score_size, score_size, 2] as (x, y) per (row, col).

    score_offset = (x_size - 1 - (score_size - 1) * total_stride) // 2 (87 for 303 / 17 / 8), and cell (i, j)
    sits at (score_offset + j * total_stride, score_offset + i * total_stride), as video_analyst's get_xy_ctr.
    """
    offset = (x_size - 1 - (score_size - 1) * total_stride) // 2
    grid = offset + jnp.arange(score_size, dtype=jnp.float32) * total_stride
    xs = jnp.broadcast_to(grid[None, :], (score_size, score_size))
    ys = jnp.broadcast_to(grid[:, None], (score_size, score_size))
    return jnp.stack([xs, ys], axis=-1)


class DenseboxHead(nn.Module):
    """SiamFC++ head: towers ``cls_p5_conv{i}`` / ``bbox_p5_conv{i}`` (3x3 conv + [BN] + ReLU, padding 0),
    outputs ``cls_score_p5`` and ``ctr_score_p5`` (both from the cls tower) and ``bbox_offsets_p5`` (1x1 conv
    with bias + BN, no ReLU), scalars ``si`` (init 1) and ``bi`` (init 0), both of shape ().

    Returns ``dict(cls=[B,H,W], ctr=[B,H,W], box=[B,H,W,4])``: cls / centre-ness logits and boxes x0, y0, x1, y1
    in crop pixels, box = (ctr - off[..., :2], ctr + off[..., 2:]), off = exp(si * x + bi) * total_stride.
    """

    total_stride: int = 8
    num_conv3x3: int = 3
    head_conv_bn: Sequence[bool] = (False, False, True)
    head_width: int = 256

    @nn.compact
    def __call__(self, c_out: jax.Array, r_out: jax.Array, x_size: int, train: bool = False):
        si = self.param("si", nn.initializers.ones, (), jnp.float32)
        bi = self.param("bi", nn.initializers.zeros, (), jnp.float32)
        cls, bbox = c_out, r_out
        for i in range(self.num_conv3x3):
            has_bn = bool(self.head_conv_bn[i])
            cls = ConvBNReLU(self.head_width, 3, has_bn=has_bn, name=f"cls_p5_conv{i + 1}")(cls, train)
            bbox = ConvBNReLU(self.head_width, 3, has_bn=has_bn, name=f"bbox_p5_conv{i + 1}")(bbox, train)
        cls_score = ConvBNReLU(1, 1, has_relu=False, name="cls_score_p5")(cls, train)[..., 0]
        ctr_score = ConvBNReLU(1, 1, has_relu=False, name="ctr_score_p5")(cls, train)[..., 0]
        offsets = ConvBNReLU(4, 1, has_relu=False, name="bbox_offsets_p5")(bbox, train)
        offsets = jnp.exp(si * offsets + bi) * self.total_stride

        score_size = offsets.shape[1]
        ctr = densebox_centers(score_size, x_size, self.total_stride)[None]
        box = jnp.concatenate([ctr - offsets[..., :2], ctr + offsets[..., 2:]], axis=-1)
        return {"cls": cls_score, "ctr": ctr_score, "box": box}
