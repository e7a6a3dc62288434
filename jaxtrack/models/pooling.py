"""Max pooling with a gradient that XLA:CPU runs fast.

JAX differentiates ``lax.reduce_window(max)`` into XLA's ``select_and_scatter``, which XLA:CPU runs as a scalar
loop: on AlexNet's first pool (139 x 139 x 96, 3 x 3 / 2) forward+backward took 33 ms against PyTorch's 10 ms
(8.6 ms here), and an attack step pays it every iteration. Here the same function has a custom VJP made of k·k elementwise
passes XLA fuses into one loop: for each window tap (u, v) in row-major order, the output positions whose maximum
sits at that tap and at no earlier tap receive their cotangent, placed back at the tap's input positions by
interior padding.

The gradient is exactly ``select_and_scatter``'s (and PyTorch's): each window's cotangent goes to the FIRST
maximal element in row-major window order (``ge`` selection); overlapping windows add. Summation order of the
overlaps may differ from XLA's, so values agree to float32 rounding (bit-equal when the cotangents are integers).
A window whose maximum is NaN passes no gradient (XLA and PyTorch pick the NaN's position).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from .conv import _pad_spatial

__all__ = ["max_pool_nhwc"]

Pads = tuple[tuple[int, int], tuple[int, int]]


def _reduce_max(x: jax.Array, k: int, s: int, pads: Pads) -> jax.Array:
    # a Python scalar init: an array init value makes lax.reduce_window non-differentiable under jit
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, k, k, 1), (1, s, s, 1), ((0, 0), *pads, (0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, k: int, s: int, pads: Pads):
    return _reduce_max(x, k, s, pads)


def _max_pool_fwd(x, k, s, pads):
    y = _reduce_max(x, k, s, pads)
    return y, (x, y)


def _max_pool_bwd(k, s, pads, residuals, g):
    x, y = residuals
    xp = _pad_spatial(x, pads, value=-jnp.inf)
    (hp, wp), (oh, ow) = xp.shape[1:3], y.shape[1:3]
    taken = jnp.zeros(y.shape, bool)
    dxp = None
    for u in range(k):
        for v in range(k):
            window = xp[:, u : u + s * (oh - 1) + 1 : s, v : v + s * (ow - 1) + 1 : s, :]
            first = (window == y) & ~taken  # the first maximum in row-major tap order
            taken = taken | first
            back = ((u, hp - u - s * (oh - 1) - 1), (v, wp - v - s * (ow - 1) - 1))
            term = _pad_spatial(jnp.where(first, g, jnp.zeros((), g.dtype)), back, (s - 1, s - 1))
            dxp = term if dxp is None else dxp + term
    dx = _pad_spatial(dxp, tuple((-lo, -hi) for lo, hi in pads))
    return (dx.astype(x.dtype),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool_nhwc(x: jax.Array, kernel: int, stride: int, pads: Sequence[Sequence[int]]) -> jax.Array:
    """Max over ``kernel`` x ``kernel`` windows of NHWC ``x`` at ``stride``, the spatial axes padded by ``pads``
    ``((top, bottom), (left, right))`` with -inf (padding never wins); the fast gradient of the module docstring."""
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if x.ndim != 4 or len(pads) != 2 or min(min(p) for p in pads) < 0 or kernel < 1 or stride < 1:
        raise ValueError(f"max_pool_nhwc expects x [N, H, W, C], kernel, stride >= 1 and two non-negative (lo, hi) "
                         f"pads, got {x.shape}, {kernel}, {stride}, {pads}")
    return _max_pool(x, int(kernel), int(stride), pads)
