"""NanoTrack v2 / v3 (HonglinChu/SiamTrackers ``NanoTrack``): MobileNetV3-small backbone + BAN head.

The parameter tree mirrors the pysot-format checkpoints ``nanotrackv2.pth`` / ``nanotrackv3.pth`` (key split on
``'.'``): ``backbone.features.<i>...`` and ``ban_head....``. The checkpoints also hold ``neck.downsample.*`` (an
``AdjustLayer``), which ``ModelBuilder.template`` / ``track`` never call: it is not built here.

Backbone (``nanotrack/models/backbone/mobile_v3.py``; ``features.0`` = 3x3 s2 conv + BN + hard-swish, then
inverted residual blocks ``features.<i>.conv.<j>``, SE blocks with ``nn.Linear`` layers ``fc.0`` / ``fc.2``):

====  ===  =====  ===  ==  ==  =  =========================================
 i     k   exp    out  SE  HS  s
====  ===  =====  ===  ==  ==  =  =========================================
 1     3    16     16   1   0  2  no expansion conv (dw, BN, ReLU, SE, pw, BN)
 2     3    72     24   0   0  2
 3     3    88     24   0   0  1  residual
 4     5    96     40   1   1  2
 5-6   5   240     40   1   1  1  residual
 7     5   120     48   1   1  1
 8     5   144     48   1   1  1  residual
 9     5   288     96   1   1  1  v3 only
====  ===  =====  ===  ==  ==  =  =========================================

Expanded blocks apply the SE layer *before* the activation that follows the depthwise conv (as the source
does). Total stride 16: template 127 -> 8x8, search 255 -> 16x16; 48 channels (v2) / 96 channels (v3).

Heads (``nanotrack/models/head/ban_v2.py`` / ``ban_v3.py``, ``DepthwiseBAN``):

* v2: ``corr_pw_{cls,reg}`` = 1x1 conv (bias) + BN on each branch, pixel-wise correlation (output channel k =
  template position k, row-major over the 8x8 template map -> 64 channels), channel attention ``CA_layer``
  (global average, 1x1 conv, ReLU, 1x1 conv, sigmoid, rescale); towers ``{cls,bbox}_pw_tower`` of 6 x
  (depthwise 3x3 conv, 1x1 conv, BN, ReLU6); ``cls_pred`` (2 channels) and ``bbox_pred`` (4, then ``exp``).
  Maps 16x16.
* v3: ``corr_pw_*`` as v2 plus ``conv`` (depthwise 2x2 valid conv, BN, ReLU6, 1x1 conv, BN) -> 15x15;
  ``corr_dw_*`` = 1x1 conv + BN per branch and depthwise correlation of the search map (zero-padded by 1) with
  the central 4x4 of the template map -> 15x15; the two are concatenated (pixel-wise first, 64 + 96) and mixed
  by ``down_{cls,reg}`` (1x1 conv to 96); towers ``{cls,bbox}_tower`` of 6 x (depthwise 3x3, BN, ReLU6, 1x1,
  BN), ``cls_logits`` and ``bbox_pred`` (``exp``).

All BatchNorms are ``torch.nn.BatchNorm2d`` defaults (eps 1e-5). Inputs are NHWC float32 BGR in [0, 255].

Usage::

    model = NanoTrack(version="v2")
    zf = model.apply(variables, z, method=model.template)        # [B, 8, 8, 48]
    out = model.apply(variables, zf, x, method=model.track)      # cls [B,16,16,2], loc [B,16,16,4]

``cls`` holds the two raw logits (channel 1 = foreground after a softmax); ``loc`` the (l, t, r, b) distances
in search-crop pixels, already through ``exp`` (the reference ``ban_head`` and its ONNX export do the same).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from .conv import conv2d_nhwc
from .layers import batch_norm, xcorr_depthwise

__all__ = [
    "NanoTrack",
    "MobileNetV3Small",
    "BANHeadV2",
    "BANHeadV3",
    "InvertedResidual",
    "DepthwiseConv2d",
    "PointwiseConv2d",
    "make_divisible",
    "nanotrack_block_settings",
    "pixelwise_xcorr",
]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor`` (at least ``divisor``), never losing more than 10%.

    The channel rounding rule of the MobileNet family (``_make_divisible`` in mobile_v3.py).
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


# (kernel, expansion ratio, output channels, squeeze-excite, hard-swish, stride) per inverted residual block.
_V2_BLOCKS = (
    (3, 1.0, 16, True, False, 2),
    (3, 4.5, 24, False, False, 2),
    (3, 3.67, 24, False, False, 1),
    (5, 4.0, 40, True, True, 2),
    (5, 6.0, 40, True, True, 1),
    (5, 6.0, 40, True, True, 1),
    (5, 3.0, 48, True, True, 1),
    (5, 3.0, 48, True, True, 1),
)
_V3_BLOCKS = _V2_BLOCKS + ((5, 6.0, 96, True, True, 1),)


def nanotrack_block_settings(version: str) -> tuple[tuple[int, int, int, int, bool, bool, int], ...]:
    """Per block ``(in, hidden, out, kernel, se, hard_swish, stride)`` with the channel rounding applied."""
    blocks = {"v2": _V2_BLOCKS, "v3": _V3_BLOCKS}.get(version)
    if blocks is None:
        raise ValueError(f"unknown NanoTrack version {version!r} (expected 'v2' or 'v3')")
    out = []
    cin = make_divisible(16)
    for k, t, c, se, hs, s in blocks:
        cout = make_divisible(c)
        hidden = make_divisible(cin * t)
        out.append((cin, hidden, cout, k, se, hs, s))
        cin = cout
    return tuple(out)


def hard_sigmoid(x: jax.Array) -> jax.Array:
    """``torch.nn.Hardsigmoid``: relu6(x + 3) / 6."""
    return jnp.clip(x + 3.0, 0.0, 6.0) / 6.0


def hard_swish(x: jax.Array) -> jax.Array:
    """``torch.nn.Hardswish``: x * relu6(x + 3) / 6."""
    return x * hard_sigmoid(x)


def relu6(x: jax.Array) -> jax.Array:
    return jnp.clip(x, 0.0, 6.0)


def pixelwise_xcorr(search: jax.Array, kernel: jax.Array) -> jax.Array:
    """NanoTrack's pixel-wise correlation: ``out[b, y, x, k] = <search[b, y, x, :], kernel[b, k // w, k % w, :]>``.

    search [B, H, W, C], kernel [B or 1, h, w, C] -> [B, H, W, h*w] (channel k = template position k in row-major
    order, as ``kernel.view(b, c, -1).transpose(1, 2) @ search.view(b, c, -1)`` in the reference).
    """
    if search.ndim != 4 or kernel.ndim != 4 or search.shape[-1] != kernel.shape[-1]:
        raise ValueError(f"pixelwise_xcorr expects NHWC maps with equal channels, got {search.shape}, {kernel.shape}")
    k = kernel.reshape(kernel.shape[0], -1, kernel.shape[-1])  # [B, h*w, C]
    if k.shape[0] == 1 and search.shape[0] != 1:
        return jnp.einsum("byxc,kc->byxk", search, k[0])
    if k.shape[0] != search.shape[0]:
        raise ValueError(f"batch mismatch: search {search.shape} vs kernel {kernel.shape}")
    return jnp.einsum("byxc,bkc->byxk", search, k)


class DepthwiseConv2d(nn.Module):
    """``torch.nn.Conv2d(C, C, k, stride, padding, groups=C)`` with a Linen ``nn.Conv``-compatible parameter
    (``kernel`` [k, k, 1, C], optional ``bias`` [C]), computed by :func:`jaxtrack.models.conv.conv2d_nhwc` as k*k
    shifted multiply-adds.

    XLA:CPU runs grouped (depthwise) convolutions through a slow generic path; the shift-add form is much faster for
    every depthwise layer of NanoTrack (``docs/conv_gradients.md``), with the same result to float32 rounding; its
    gradients are shift-adds too. Zero padding as torch.
    """

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s, p = self.kernel_size, self.stride, self.padding
        if x.shape[-1] != self.features:
            raise ValueError(f"depthwise conv expects {self.features} channels, got input {x.shape}")
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, 1, self.features), jnp.float32)
        out = conv2d_nhwc(x, kernel, s, ((p, p), (p, p)), groups=self.features)
        if self.use_bias:
            out = out + self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return out


class PointwiseConv2d(nn.Module):
    """``torch.nn.Conv2d(Cin, Cout, 1)`` as a matrix product over channels (``kernel`` [1, 1, Cin, Cout] like
    ``nn.Conv``; optional ``bias``): faster than ``nn.Conv`` on XLA:CPU, and its gradients are matrix products."""

    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (1, 1, x.shape[-1], self.features), jnp.float32)
        y = jnp.einsum("...c,cd->...d", x, kernel[0, 0])
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return y


class _StemConv(nn.Module):
    """``features.0.0``: ``Conv2d(3, C, 3, stride 2, padding 1, bias=False)`` as 27 broadcast multiply-adds
    (a dense convolution with 3 input channels is slow on XLA:CPU)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cin = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, cin, self.features), jnp.float32)
        return _stem_conv(x, kernel)


@jax.custom_vjp
def _stem_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Forward: 27 broadcast multiply-adds (fast on XLA:CPU). Backward: the VJP of the same convolution written
    as :func:`jaxtrack.models.conv.conv2d_nhwc` (3x3, stride 2, zero padding 1): the transposed shift-adds would be
    27 strided scatters of full-size tensors, many times slower than the convolution's transpose."""
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    oh, ow = (x.shape[1] - 1) // 2 + 1, (x.shape[2] - 1) // 2 + 1
    out = None
    for u in range(3):
        for v in range(3):
            tap = xp[:, u : u + 2 * (oh - 1) + 1 : 2, v : v + 2 * (ow - 1) + 1 : 2, :]
            for c in range(x.shape[-1]):
                term = tap[..., c : c + 1] * kernel[u, v, c]
                out = term if out is None else out + term
    return out


def _stem_conv_fwd(x, kernel):
    return _stem_conv(x, kernel), (x, kernel)


def _stem_conv_bwd(residuals, g):
    x, kernel = residuals
    return jax.vjp(lambda xx, kk: conv2d_nhwc(xx, kk, 2, ((1, 1), (1, 1))), x, kernel)[1](g)


_stem_conv.defvjp(_stem_conv_fwd, _stem_conv_bwd)


class _ConvBN1x1(nn.Module):
    """``nn.Sequential(Conv2d 1x1, BatchNorm2d)``: children ``0`` and ``1``."""

    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return batch_norm(train, name="1")(PointwiseConv2d(self.features, self.use_bias, name="0")(x))


class _StemConvBN(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return batch_norm(train, name="1")(_StemConv(self.features, name="0")(x))


# ----------------------------------------------------------------------------------------------------- backbone


class _SEFc(nn.Module):
    """The ``fc`` sequential of ``SELayer``: Linear ``0``, ReLU, Linear ``2``, hard-sigmoid."""

    channels: int
    squeezed: int

    @nn.compact
    def __call__(self, y: jax.Array) -> jax.Array:
        y = nn.relu(nn.Dense(self.squeezed, name="0")(y))
        return hard_sigmoid(nn.Dense(self.channels, name="2")(y))


class SELayer(nn.Module):
    """mobile_v3 ``SELayer`` (reduction 4, squeezed width rounded by :func:`make_divisible`)."""

    channels: int
    reduction: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        squeezed = make_divisible(self.channels // self.reduction)
        y = _SEFc(self.channels, squeezed, name="fc")(jnp.mean(x, axis=(1, 2)))
        return x * y[:, None, None, :]


class _InvertedResidualBody(nn.Module):
    """The ``conv`` sequential of ``InvertedResidual`` (children named by their torch indices)."""

    inp: int
    hidden: int
    oup: int
    kernel_size: int
    stride: int
    use_se: bool
    use_hs: bool

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = hard_swish if self.use_hs else nn.relu
        k, pad = self.kernel_size, (self.kernel_size - 1) // 2
        if self.inp == self.hidden:
            # 0 dw conv, 1 BN, 2 act, 3 SE (or Identity), 4 pw-linear conv, 5 BN
            x = DepthwiseConv2d(self.hidden, k, stride=self.stride, padding=pad, name="0")(x)
            x = act(batch_norm(train, name="1")(x))
            if self.use_se:
                x = SELayer(self.hidden, name="3")(x)
            x = PointwiseConv2d(self.oup, use_bias=False, name="4")(x)
            return batch_norm(train, name="5")(x)
        # 0 pw conv, 1 BN, 2 act, 3 dw conv, 4 BN, 5 SE (or Identity), 6 act, 7 pw-linear conv, 8 BN
        x = PointwiseConv2d(self.hidden, use_bias=False, name="0")(x)
        x = act(batch_norm(train, name="1")(x))
        x = DepthwiseConv2d(self.hidden, k, stride=self.stride, padding=pad, name="3")(x)
        x = batch_norm(train, name="4")(x)
        if self.use_se:
            x = SELayer(self.hidden, name="5")(x)
        x = act(x)
        x = PointwiseConv2d(self.oup, use_bias=False, name="7")(x)
        return batch_norm(train, name="8")(x)


class InvertedResidual(nn.Module):
    """mobile_v3 ``InvertedResidual`` (identity shortcut when stride 1 and in == out channels)."""

    inp: int
    hidden: int
    oup: int
    kernel_size: int
    stride: int
    use_se: bool
    use_hs: bool

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        body = _InvertedResidualBody(
            self.inp, self.hidden, self.oup, self.kernel_size, self.stride, self.use_se, self.use_hs, name="conv"
        )
        y = body(x, train)
        return x + y if self.stride == 1 and self.inp == self.oup else y


class _Features(nn.Module):
    """``backbone.features``: stem ``0`` (3x3 s2 conv ``0.0`` + BN ``0.1`` + hard-swish), then blocks ``1..``."""

    version: str

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        blocks = nanotrack_block_settings(self.version)
        x = hard_swish(_StemConvBN(blocks[0][0], name="0")(x, train))
        for i, (cin, hidden, cout, k, se, hs, s) in enumerate(blocks, start=1):
            x = InvertedResidual(cin, hidden, cout, k, s, se, hs, name=str(i))(x, train)
        return x


class MobileNetV3Small(nn.Module):
    """NanoTrack's ``mobilenetv3_small`` (v2, 48 channels) / ``mobilenetv3_small_v3`` (v3, 96 channels).

    [B, H, W, 3] -> [B, ceil-ish(H / 16), .., C]: 127 -> 8x8, 255 -> 16x16.
    """

    version: str = "v2"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return _Features(self.version, name="features")(x, train)


# -------------------------------------------------------------------------------------------------------- heads


class CAModule(nn.Module):
    """Channel attention: global average, 1x1 conv ``fc1`` (bias), ReLU, 1x1 conv ``fc2``, sigmoid, rescale."""

    channels: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.mean(x, axis=(1, 2), keepdims=True)
        y = nn.relu(PointwiseConv2d(self.channels, name="fc1")(y))
        y = jax.nn.sigmoid(PointwiseConv2d(self.channels, name="fc2")(y))
        return x * y


class PixelwiseXCorr(nn.Module):
    """BAN ``PixelwiseXCorr``: ``conv_kernel`` / ``conv_search`` (1x1 conv with bias + BN each), pixel-wise
    correlation, ``CA_layer``; v3 adds ``conv`` (depthwise 2x2 valid conv, BN, ReLU6, 1x1 conv with bias, BN)."""

    channels: int
    corr_channels: int = 64
    with_conv: bool = False

    @nn.compact
    def __call__(self, kernel: jax.Array, search: jax.Array, train: bool = False) -> jax.Array:
        kernel = _ConvBN1x1(self.channels, name="conv_kernel")(kernel, train)
        search = _ConvBN1x1(self.channels, name="conv_search")(search, train)
        corr = pixelwise_xcorr(search, kernel)
        if corr.shape[-1] != self.corr_channels:
            raise ValueError(
                f"template map {kernel.shape[1]}x{kernel.shape[2]} gives {corr.shape[-1]} correlation channels, "
                f"the head expects {self.corr_channels} (an 8x8 template map, i.e. a 127x127 template crop)"
            )
        corr = CAModule(self.corr_channels, name="CA_layer")(corr)
        if self.with_conv:
            corr = _PixelwiseConv(self.corr_channels, name="conv")(corr, train)
        return corr


class _PixelwiseConv(nn.Module):
    """v3 ``PixelwiseXCorr.conv``: 0 dw 2x2 conv (no bias), 1 BN, 2 ReLU6, 3 1x1 conv (bias), 4 BN."""

    channels: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = DepthwiseConv2d(self.channels, 2, name="0")(x)
        x = relu6(batch_norm(train, name="1")(x))
        x = PointwiseConv2d(self.channels, name="3")(x)
        return batch_norm(train, name="4")(x)


class DepthwiseXCorrV3(nn.Module):
    """ban_v3 ``DepthwiseXCorr``: 1x1 conv (bias) + BN per branch, depthwise correlation with padding 1."""

    channels: int

    @nn.compact
    def __call__(self, kernel: jax.Array, search: jax.Array, train: bool = False) -> jax.Array:
        kernel = _ConvBN1x1(self.channels, name="conv_kernel")(kernel, train)
        search = _ConvBN1x1(self.channels, name="conv_search")(search, train)
        search = jnp.pad(search, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return xcorr_depthwise(search, kernel)


class _TowerV2(nn.Module):
    """ban_v2 tower: per layer i (index base 4i): dw 3x3 conv, 1x1 conv, BN, ReLU6 (no conv biases)."""

    in_channels: int
    channels: int
    num_layers: int = 6

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        cin = self.in_channels
        for i in range(self.num_layers):
            b = 4 * i
            x = DepthwiseConv2d(cin, 3, padding=1, name=str(b))(x)
            x = PointwiseConv2d(self.channels, use_bias=False, name=str(b + 1))(x)
            x = relu6(batch_norm(train, name=str(b + 2))(x))
            cin = self.channels
        return x


class _TowerV3(nn.Module):
    """ban_v3 tower: per layer i (index base 5i): dw 3x3 conv, BN, ReLU6, 1x1 conv, BN (no ReLU after it)."""

    channels: int
    num_layers: int = 6

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        c = self.channels
        for i in range(self.num_layers):
            b = 5 * i
            x = DepthwiseConv2d(c, 3, padding=1, name=str(b))(x)
            x = relu6(batch_norm(train, name=str(b + 1))(x))
            x = PointwiseConv2d(c, use_bias=False, name=str(b + 3))(x)
            x = batch_norm(train, name=str(b + 4))(x)
        return x


class _Conv1x1(nn.Module):
    """``nn.Sequential(Conv2d 1x1 with bias)`` (``cls_pred.0``, ``bbox_pred.0``, ``down_cls.0``, ...)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return PointwiseConv2d(self.features, name="0")(x)


class BANHeadV2(nn.Module):
    """ban_v2 ``DepthwiseBAN``: (zf [B,8,8,C], xf [B,16,16,C]) -> (cls [B,16,16,2], loc = exp(.) [B,16,16,4])."""

    channels: int = 48

    @nn.compact
    def __call__(self, zf: jax.Array, xf: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        pw_reg = PixelwiseXCorr(self.channels, name="corr_pw_reg")(zf, xf, train)
        pw_cls = PixelwiseXCorr(self.channels, name="corr_pw_cls")(zf, xf, train)
        cls = _TowerV2(64, 96, name="cls_pw_tower")(pw_cls, train)
        cls = _Conv1x1(2, name="cls_pred")(cls)
        reg = _TowerV2(64, 96, name="bbox_pw_tower")(pw_reg, train)
        loc = jnp.exp(_Conv1x1(4, name="bbox_pred")(reg))
        return cls, loc


class BANHeadV3(nn.Module):
    """ban_v3 ``DepthwiseBAN``: (zf [B,8,8,96], xf [B,16,16,96]) -> (cls [B,15,15,2], loc = exp(.) [B,15,15,4])."""

    channels: int = 96

    @staticmethod
    def crop_template(zf: jax.Array) -> jax.Array:
        """``DepthwiseBAN.crop``: the 4x4 window starting at (2, 2) when the map is wider than 4."""
        return zf[:, 2:6, 2:6, :] if zf.shape[2] > 4 else zf

    @nn.compact
    def __call__(self, zf: jax.Array, xf: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        c = self.channels
        crop_zf = self.crop_template(zf)
        pw_reg = PixelwiseXCorr(c, with_conv=True, name="corr_pw_reg")(zf, xf, train)
        pw_cls = PixelwiseXCorr(c, with_conv=True, name="corr_pw_cls")(zf, xf, train)
        dw_reg = DepthwiseXCorrV3(c, name="corr_dw_reg")(crop_zf, xf, train)
        dw_cls = DepthwiseXCorrV3(c, name="corr_dw_cls")(crop_zf, xf, train)
        x_reg = _Conv1x1(c, name="down_reg")(jnp.concatenate([pw_reg, dw_reg], axis=-1))
        x_cls = _Conv1x1(c, name="down_cls")(jnp.concatenate([pw_cls, dw_cls], axis=-1))
        cls = _Conv1x1(2, name="cls_logits")(_TowerV3(c, name="cls_tower")(x_cls, train))
        loc = jnp.exp(_Conv1x1(4, name="bbox_pred")(_TowerV3(c, name="bbox_tower")(x_reg, train)))
        return cls, loc


# -------------------------------------------------------------------------------------------------------- model


class NanoTrack(nn.Module):
    """NanoTrack ``ModelBuilder`` without the unused neck. Inputs NHWC float32 BGR in [0, 255].

    ``template(z [B,127,127,3]) -> zf [B,8,8,C]`` (backbone features, C = 48 for v2 / 96 for v3);
    ``track(zf, x [B,255,255,3]) -> dict(cls=[B,S,S,2], loc=[B,S,S,4])`` with S = 16 (v2) / 15 (v3).
    A template with batch 1 is broadcast over a search batch.
    """

    version: str = "v2"

    @property
    def channels(self) -> int:
        return nanotrack_block_settings(self.version)[-1][2]

    @property
    def score_size(self) -> int:
        return {"v2": 16, "v3": 15}[self.version]

    def setup(self):
        self.backbone = MobileNetV3Small(self.version)
        if self.version == "v2":
            self.ban_head = BANHeadV2(self.channels)
        else:
            self.ban_head = BANHeadV3(self.channels)

    def template(self, z: jax.Array, train: bool = False) -> jax.Array:
        return self.backbone(z, train)

    def track(self, zf: jax.Array, x: jax.Array, train: bool = False) -> dict:
        cls, loc = self.ban_head(zf, self.backbone(x, train), train)
        return {"cls": cls, "loc": loc}

    def __call__(self, z: jax.Array, x: jax.Array, train: bool = False) -> dict:
        return self.track(self.template(z, train), x, train)
