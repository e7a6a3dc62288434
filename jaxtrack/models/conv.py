"""The convolution of every network in ``jaxtrack.models``: NHWC inputs, HWIO kernels, gradients that stay fast
inside ``lax.fori_loop`` / ``lax.scan``.

Why. JAX differentiates a convolution with two more convolutions: w.r.t. the input, with the kernel in a swapped
(``01oi``-style) layout; w.r.t. the kernel, with the batch and feature axes of input and output cotangent exchanged.
XLA:CPU constant-folds those layouts when the kernel is a constant (a gradient jitted on its own), but inside a loop
-- every PGD / BIM step, template refinement and training step, where the parameters are loop-carried values -- it
runs them as they are, several times slower than a standard convolution (figures: ``docs/conv_gradients.md``).

What. :func:`conv2d_nhwc` computes ``lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=dilation,
dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)`` by kind of kernel:

* dense (``groups == 1``): XLA's convolution forward; a custom VJP whose input gradient (:func:`conv_input_grad`)
  and kernel gradient (:func:`conv_kernel_grad`) are standard NHWC / HWIO convolutions on operands laid out
  explicitly (the flipped, channel-swapped kernel; the transposed input and cotangent); large strided kernels
  (11x11 / 2, 7x7 / 2) take their input gradient in space-to-depth form, without the stride's inserted zeros;
* depthwise (one input channel per output channel, at most :data:`SHIFT_ADD_MAX_TAPS` taps): kh·kw shifted
  multiply-adds (:func:`depthwise_shift_add`) with a shift-add VJP. XLA:CPU runs grouped convolutions through a slow
  generic path, and autodiff of the shift-adds transposes every strided slice into a padded full-size tensor;
* any other grouping, and depthwise kernels above the tap limit (none in our networks at their crop sizes):
  ``lax.conv_general_dilated`` with JAX's own gradient. The grouped form of the explicit-layout input gradient was
  slower than JAX's rule there.

Users: ``layers.conv2d`` (every convolution of the AlexNet variants, the atrous ResNet-50, the necks and the SiamRPN
/ SiamFC++ heads), ``layers.xcorr_depthwise`` (the depthwise cross-correlation of every head), the U-Net's
convolutions (not its optional transposed one), NanoTrack's depthwise layers and the gradient of its stem (whose
forward stays 27 broadcast multiply-adds). NanoTrack's 1x1 convolutions stay matrix products (``PointwiseConv2d``):
their gradients are matrix products, with no layout to fix.

:func:`conv_general_dilated` has ``lax.conv_general_dilated``'s signature, for ``nn.Conv(...,
conv_general_dilated=conv_general_dilated)`` (parameter trees unchanged). Values and gradients are checked against
JAX's differentiation of ``lax.conv_general_dilated`` in ``tests/test_conv.py``.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "SHIFT_ADD_MAX_TAPS",
    "conv2d_nhwc",
    "conv_general_dilated",
    "conv_input_grad",
    "conv_kernel_grad",
    "conv_padding",
    "depthwise_shift_add",
]

_NHWC = ("NHWC", "HWIO", "NHWC")

#: Depthwise kernels with more taps than this go to XLA's grouped convolution (the unrolled shift-add's compile time
#: grows with the taps); the trackers' depthwise kernels have 4-25.
SHIFT_ADD_MAX_TAPS = 64


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


def _dilated_size(n: int, dilation: int) -> int:
    """Length covered by ``n`` samples ``dilation`` apart (0 for none)."""
    return 0 if n == 0 else 1 + dilation * (n - 1)


def conv_padding(in_hw: Sequence[int], kernel_hw: Sequence[int], strides: Sequence[int], padding,
                 dilation: Sequence[int] = (1, 1)) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit ``((lo, hi), (lo, hi))`` spatial pads for ``padding`` ("VALID", "SAME", "SAME_LOWER" or pairs),
    computed on the dilated kernel as ``lax.conv_general_dilated`` does."""
    if isinstance(padding, str):
        window = [_dilated_size(k, d) for k, d in zip(kernel_hw, dilation)]
        padding = lax.padtype_to_pads(tuple(in_hw), window, tuple(strides), padding)
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def _grad_pads(in_hw, kernel_hw, out_hw, strides, padding, dilation) -> list[tuple[int, int]]:
    """Pads of the stride-dilated output cotangent for the input gradient: tap ``u`` of output ``p`` read input
    ``p·s + u·d − lo``, so ``d·(k − 1) − lo`` before and, after, whatever brings the result to ``in_hw`` (negative
    pads crop input rows the forward pass never read)."""
    pads = []
    for n, k, m, s, (lo, _), d in zip(in_hw, kernel_hw, out_hw, strides, padding, dilation):
        span = _dilated_size(k, d)
        before = span - 1 - lo
        pads.append((before, n + span - 1 - _dilated_size(m, s) - before))
    return pads


# ----------------------------------------------------------------------------------------------- dense kernels


def _conv_lax(x, w, strides, padding, dilation, groups=1):
    return lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=_NHWC,
                                    feature_group_count=groups)


def conv_input_grad(g: jax.Array, w: jax.Array, in_hw: Sequence[int], strides, padding, dilation) -> jax.Array:
    """Input gradient of a dense convolution as one standard NHWC / HWIO convolution.

    ``g`` [N, H', W', Cout] output cotangent, ``w`` [kh, kw, Cin, Cout], ``in_hw`` the input's (H, W), explicit
    ``padding`` -> [N, H, W, Cin]: ``g`` dilated by the strides, correlated at the forward dilation with ``w``
    flipped in space and with in / out channels exchanged, materialised as HWIO [kh, kw, Cout, Cin].
    """
    if _use_space_to_depth(w.shape[:2], strides, dilation):
        return _space_to_depth_input_grad(g, w, in_hw, strides, padding)
    w_t = jnp.swapaxes(jnp.flip(w, (0, 1)), 2, 3)
    pads = _grad_pads(in_hw, w.shape[:2], g.shape[1:3], strides, padding, dilation)
    return lax.conv_general_dilated(g, w_t, (1, 1), pads, lhs_dilation=tuple(strides), rhs_dilation=tuple(dilation),
                                    dimension_numbers=_NHWC)


def _use_space_to_depth(kernel_hw, strides, dilation) -> bool:
    """Large strided kernels (the AlexNet families' 11x11 / 2 first layer, ResNet-50's 7x7 / 2): their input gradient
    as a stride-dilated convolution multiplies mostly the stride's inserted zeros (3 of 4 taps at stride 2); XLA:CPU
    ran siamfcpp_tiny's in 13.6 ms against PyTorch's 7.8 ms. In space-to-depth form it is one stride-1 convolution
    on s·s times the channels: 5.3 ms (``benchmarks/first_conv_vs_torch.py``). Small kernels (3x3 / 2:
    NanoTrack's stem, the U-Net) keep the dilated form."""
    return (any(s > 1 for s in strides) and all(d == 1 for d in dilation)
            and all(k >= 2 * s + 1 for k, s in zip(kernel_hw, strides)))


def _space_to_depth_input_grad(g: jax.Array, w: jax.Array, in_hw: Sequence[int], strides, padding) -> jax.Array:
    """:func:`conv_input_grad` of an undilated strided convolution through its space-to-depth form.

    With tap ``u = a·s + b`` (``b < s``; the kernel zero-padded to ``K·s`` taps, ``K = ceil(k / s)``), output ``p``
    reads the padded input at ``(p + a)·s + b``: a stride-1 convolution of ``xs[q, (b, c)] = x_pad[q·s + b, c]``
    (``Q = P + K − 1`` blocks of ``s`` rows) with the kernel ``ws[a, (b, c), o] = w[a·s + b, c, o]``. Its input
    gradient is the stride-1 full correlation of ``g`` with ``ws`` flipped and channel-swapped; depth-to-space
    gives the gradient of ``x_pad``, cropped (or zero-extended: rows no output read) to the input.
    """
    (kh, kw), (sh, sw) = w.shape[:2], tuple(strides)
    cin, cout = w.shape[2], w.shape[3]
    bh, bw = -(-kh // sh), -(-kw // sw)
    ws = jnp.pad(w, ((0, bh * sh - kh), (0, bw * sw - kw), (0, 0), (0, 0)))
    ws = ws.reshape(bh, sh, bw, sw, cin, cout).transpose(0, 2, 1, 3, 4, 5).reshape(bh, bw, sh * sw * cin, cout)
    ws_t = jnp.swapaxes(jnp.flip(ws, (0, 1)), 2, 3)
    dxs = lax.conv_general_dilated(g, ws_t, (1, 1), ((bh - 1, bh - 1), (bw - 1, bw - 1)), dimension_numbers=_NHWC)
    n, qh, qw = dxs.shape[:3]
    dx_pad = dxs.reshape(n, qh, qw, sh, sw, cin).transpose(0, 1, 3, 2, 4, 5).reshape(n, qh * sh, qw * sw, cin)
    crops = []
    for size, q, (lo, _) in zip(in_hw, (qh * sh, qw * sw), padding):
        crops.append((-lo, lo + size - q))  # negative: crop the padding; positive: rows beyond every output's reach
    return lax.pad(dx_pad, jnp.zeros((), dx_pad.dtype), [(0, 0, 0), (*crops[0], 0), (*crops[1], 0), (0, 0, 0)])


def conv_kernel_grad(x: jax.Array, g: jax.Array, kernel_hw: Sequence[int], strides, padding, dilation) -> jax.Array:
    """Kernel gradient of a dense convolution as one standard NHWC / HWIO convolution.

    ``dw[u, v, i, o] = Σ_{n, p, q} x[n, p·s + u·d − lo, q·s' + v·d' − lo', i] · g[n, p, q, o]``: the input with batch
    and channels exchanged ([Cin, H, W, N], read as NHWC) correlated with the cotangent as a kernel ([H', W', N,
    Cout], HWIO, dilated by the strides), stepping by the forward dilation -> [Cin, kh, kw, Cout] -> HWIO.
    """
    pads = []
    for n, k, m, s, (lo, _), d in zip(x.shape[1:3], kernel_hw, g.shape[1:3], strides, padding, dilation):
        pads.append((lo, (k - 1) * d + _dilated_size(m, s) - n - lo))
    dw = lax.conv_general_dilated(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)), tuple(dilation),
                                  pads, rhs_dilation=tuple(strides), dimension_numbers=_NHWC)
    return jnp.transpose(dw, (1, 2, 0, 3))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _dense(x, w, strides, padding, dilation):
    return _conv_lax(x, w, strides, padding, dilation)


def _dense_fwd(x, w, strides, padding, dilation):
    return _conv_lax(x, w, strides, padding, dilation), (x, w)


def _dense_bwd(strides, padding, dilation, residuals, g):
    x, w = residuals
    dx = conv_input_grad(g, w, x.shape[1:3], strides, padding, dilation)
    dw = conv_kernel_grad(x, g, w.shape[:2], strides, padding, dilation)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_dense.defvjp(_dense_fwd, _dense_bwd)


# ------------------------------------------------------------------------------------------- depthwise kernels


def _window(x: jax.Array, u: int, v: int, out_hw, strides, dilation) -> jax.Array:
    """``x[..., u·d + s·i, v·d' + s'·j, :]`` for every output position (i, j): the input seen by tap (u, v)."""
    (oh, ow), (sh, sw), (dh, dw) = out_hw, strides, dilation
    return x[..., u * dh : u * dh + sh * (oh - 1) + 1 : sh, v * dw : v * dw + sw * (ow - 1) + 1 : sw, :]


def _shift_add(x: jax.Array, taps: jax.Array, out_hw, strides, dilation) -> jax.Array:
    """``Σ_{u, v} _window(x, u, v) · taps[..., u, v, :]`` in row-major tap order, ``x`` already padded."""
    out = None
    for u in range(taps.shape[-3]):
        for v in range(taps.shape[-2]):
            term = _window(x, u, v, out_hw, strides, dilation) * taps[..., u : u + 1, v : v + 1, :]
            out = term if out is None else out + term
    return out


def _pad_spatial(x: jax.Array, pads, interior=(0, 0), value=0) -> jax.Array:
    """Pad (negative: crop) the spatial axes of ``[..., H, W, C]`` with ``value``, ``interior`` values between
    samples."""
    cfg = [(0, 0, 0)] * (x.ndim - 3) + [(lo, hi, i) for (lo, hi), i in zip(pads, interior)] + [(0, 0, 0)]
    return lax.pad(x, jnp.asarray(value, x.dtype), cfg)


def _sum_to_shape(t: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Sum ``t`` down to ``shape`` (a shape it was broadcast from): over its extra leading axes and over the axes
    where ``shape`` has size 1."""
    extra = t.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape) if n == 1 and t.shape[extra + i] != 1)
    return jnp.sum(t, axis=axes, keepdims=True).reshape(shape) if axes else t


def _depthwise_out_hw(in_hw, kernel_hw, strides, padding, dilation) -> tuple[int, ...]:
    return tuple((n + lo + hi - _dilated_size(k, d)) // s + 1
                 for n, k, s, (lo, hi), d in zip(in_hw, kernel_hw, strides, padding, dilation))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise(x, taps, strides, padding, dilation):
    out_hw = _depthwise_out_hw(x.shape[-3:-1], taps.shape[-3:-1], strides, padding, dilation)
    return _shift_add(_pad_spatial(x, padding), taps, out_hw, strides, dilation)


def _depthwise_fwd(x, taps, strides, padding, dilation):
    return _depthwise(x, taps, strides, padding, dilation), (x, taps)


def _depthwise_bwd(strides, padding, dilation, residuals, g):
    """dx: ``g`` dilated by the strides and padded (:func:`_grad_pads`), shift-added at stride 1 with the spatially
    flipped taps. dtaps: per tap, its input window times ``g``, summed over space and the broadcast axes."""
    x, taps = residuals
    kh, kw = taps.shape[-3:-1]
    in_hw, out_hw = x.shape[-3:-1], g.shape[-3:-1]
    g_full = _pad_spatial(g, _grad_pads(in_hw, (kh, kw), out_hw, strides, padding, dilation),
                          tuple(s - 1 for s in strides))
    dx = _shift_add(g_full, jnp.flip(taps, (-3, -2)), in_hw, (1, 1), dilation)
    xp = _pad_spatial(x, padding)
    one_tap = taps.shape[:-3] + (1, 1, taps.shape[-1])  # each tap's gradient: one reduction to [*lead, 1, 1, C]
    dtaps = jnp.concatenate([
        jnp.concatenate([_sum_to_shape(_window(xp, u, v, out_hw, strides, dilation) * g, one_tap) for v in range(kw)],
                        axis=-2)
        for u in range(kh)
    ], axis=-3)  # [*lead, kh, kw, C]
    return _sum_to_shape(dx, x.shape).astype(x.dtype), dtaps.astype(taps.dtype)


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


def depthwise_shift_add(x: jax.Array, taps: jax.Array, strides: int | Sequence[int] = 1,
                        padding=((0, 0), (0, 0)), dilation: int | Sequence[int] = 1) -> jax.Array:
    """Depthwise correlation as kh·kw shifted multiply-adds, with a shift-add VJP.

    ``out[..., i, j, c] = Σ_{u, v} xpad[..., i·s + u·d, j·s' + v·d', c] · taps[..., u, v, c]`` for ``x`` [..., H, W,
    C] and ``taps`` [..., kh, kw, C] whose leading axes broadcast against ``x``'s (``[kh, kw, C]``: one kernel for
    every sample, a depthwise convolution; ``[B, h, w, C]``: a per-sample template, the trackers' depthwise
    cross-correlation), explicit zero ``padding`` -> [..., H', W', C] with ``H' = (H + lo + hi − d·(kh − 1) − 1) //
    s + 1``.
    """
    strides, dilation = _pair(strides), _pair(dilation)
    if x.ndim < 3 or taps.ndim < 3 or taps.shape[-1] != x.shape[-1]:
        raise ValueError(f"depthwise_shift_add expects x [..., H, W, C] and taps [..., kh, kw, C], "
                         f"got {x.shape} and {taps.shape}")
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _depthwise(x, taps, strides, padding, dilation)


# ------------------------------------------------------------------------------------------------ entry points


def conv2d_nhwc(x: jax.Array, kernel: jax.Array, strides: int | Sequence[int] = 1, padding="VALID",
                dilation: int | Sequence[int] = 1, groups: int = 1) -> jax.Array:
    """``x`` [N, H, W, Cin] convolved (correlated, as in PyTorch and XLA) with ``kernel`` HWIO [kh, kw, Cin / groups,
    Cout] -> [N, H', W', Cout]; ``padding`` "VALID", "SAME" or explicit ``((lo, hi), (lo, hi))``.

    The value of ``lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=dilation,
    dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)``; dense and small depthwise kernels
    have the loop-friendly gradients described in the module docstring.
    """
    strides, dilation = _pair(strides), _pair(dilation)
    if x.ndim != 4 or kernel.ndim != 4 or groups < 1 or x.shape[-1] != kernel.shape[2] * groups \
            or kernel.shape[3] % groups:
        raise ValueError(f"conv2d_nhwc expects x [N, H, W, C] and kernel [kh, kw, C / groups, O] with O a multiple "
                         f"of groups = {groups}, got {x.shape} and {kernel.shape}")
    padding = conv_padding(x.shape[1:3], kernel.shape[:2], strides, padding, dilation)
    if groups == 1:
        return _dense(x, kernel, strides, padding, dilation)
    depthwise = kernel.shape[2] == 1 and kernel.shape[3] == groups
    if depthwise and kernel.shape[0] * kernel.shape[1] <= SHIFT_ADD_MAX_TAPS:
        return depthwise_shift_add(x, kernel[:, :, 0, :], strides, padding, dilation)
    return _conv_lax(x, kernel, strides, padding, dilation, groups)  # JAX's own gradient (module docstring)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None):
    """``lax.conv_general_dilated``'s signature over :func:`conv2d_nhwc`, for ``nn.Conv(...,
    conv_general_dilated=conv_general_dilated)``.

    2-D NHWC / HWIO convolutions without input dilation, batch groups, precision or result type go through
    :func:`conv2d_nhwc`; anything else (transposed convolutions, other layouts) to ``lax.conv_general_dilated``.
    """
    ones = (1,) * len(window_strides)
    if (
        len(window_strides) == 2
        and tuple(lhs_dilation or ones) == ones
        and batch_group_count == 1
        and precision is None
        and preferred_element_type is None
        and _is_nhwc_hwio(dimension_numbers, lhs.ndim)
    ):
        return conv2d_nhwc(lhs, rhs, window_strides, padding, tuple(rhs_dilation or ones), feature_group_count)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                                    feature_group_count, batch_group_count, precision=precision,
                                    preferred_element_type=preferred_element_type)


def _is_nhwc_hwio(dimension_numbers, ndim: int) -> bool:
    if dimension_numbers is None or ndim != 4:
        return False
    dn = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), dimension_numbers)  # strings or specs
    return (tuple(dn.lhs_spec), tuple(dn.rhs_spec), tuple(dn.out_spec)) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
