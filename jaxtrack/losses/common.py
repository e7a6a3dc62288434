"""Pieces shared by the per-family training losses: random label sampling, masked means, stable BCE and
pysot's balanced cross entropy.

Every function is pure, jittable and differentiable with respect to the predictions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "batch_uniforms",
    "bce_with_logits",
    "masked_mean",
    "safe_div",
    "sample_mask",
    "sample_mask_uniform",
    "select_cross_entropy",
]


def sample_mask(key: jax.Array | None, mask: jax.Array, keep_num: int) -> jax.Array:
    """A uniformly random subset of at most ``keep_num`` of the ``True`` entries of ``mask``.

    pysot / NanoTrack ``select(position, keep_num)`` (``anchor_target.py``, ``point_target.py``): keep every
    candidate when there are at most ``keep_num``, else a random ``keep_num`` of them (``np.random.shuffle``).
    ``key=None`` keeps every candidate (no sampling). See :func:`sample_mask_uniform`.
    """
    mask = jnp.asarray(mask, bool)
    if key is None:
        return mask
    # Drawn flat: XLA:CPU compiles threefry on rank-n shapes much more slowly than on a vector.
    return sample_mask_uniform(jax.random.uniform(key, (mask.size,)).reshape(mask.shape), mask, keep_num)


def sample_mask_uniform(u: jax.Array, mask: jax.Array, keep_num: int) -> jax.Array:
    """:func:`sample_mask` from given uniform random numbers ``u`` in [0, 1) (``mask``'s shape): the
    candidates with the ``keep_num`` largest ``u`` are kept (``lax.top_k``, exactly ``min(keep_num, #mask)``
    entries even with ties) -- a uniformly random subset of that size, as ``np.random.shuffle`` + slice."""
    mask = jnp.asarray(mask, bool)
    if keep_num <= 0:
        return jnp.zeros_like(mask)
    v = jnp.where(mask, u, -1.0).reshape(-1)
    values, index = jax.lax.top_k(v, min(int(keep_num), v.size))
    keep = jnp.zeros(v.shape, bool).at[index].set(values >= 0.0)
    return keep.reshape(mask.shape)


def batch_uniforms(key: jax.Array | None, shape: tuple[int, ...]) -> jax.Array | None:
    """Uniform random numbers of ``shape`` (drawn as one flat vector, see :func:`sample_mask`), or ``None``."""
    if key is None:
        return None
    return jax.random.uniform(key, (int(np.prod(shape)),)).reshape(shape)


def safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den`` where ``den > 0``, else 0 (no NaN in values or gradients)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``values`` over ``mask`` (0 when the mask is empty). Masked-out values must be finite."""
    mask = jnp.asarray(mask, values.dtype)
    return safe_div(jnp.sum(values * mask), jnp.sum(mask))


def bce_with_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Element-wise ``torch.nn.functional.binary_cross_entropy_with_logits`` (the stable form
    ``max(x, 0) - x t + log(1 + exp(-|x|))``)."""
    x = jnp.asarray(logits, jnp.float32)
    return jnp.maximum(x, 0.0) - x * targets + jnp.log1p(jnp.exp(-jnp.abs(x)))


def select_cross_entropy(bg_logits: jax.Array, fg_logits: jax.Array, labels: jax.Array) -> jax.Array:
    """pysot ``select_cross_entropy_loss`` (also NanoTrack's ``nanotrack/models/loss.py``).

    2-way log-softmax of (background, foreground) logits, then ``0.5 * NLL_pos + 0.5 * NLL_neg`` where
    ``NLL_pos`` is the mean of ``-log p_fg`` over every label-1 entry of the whole batch and ``NLL_neg`` the
    mean of ``-log p_bg`` over every label-0 entry; label -1 is ignored; a term with no entries is 0.

    (pysot also returns 0 for a term with exactly *one* entry in the whole batch -- a side effect of
    ``nonzero().squeeze()`` giving a 0-d index tensor. That quirk is not reproduced: one entry counts.)

    Args:
      bg_logits, fg_logits: logits of the same shape; labels: int, same shape, in {-1, 0, 1}.
    """
    bg = jnp.asarray(bg_logits, jnp.float32)
    fg = jnp.asarray(fg_logits, jnp.float32)
    lse = jnp.logaddexp(bg, fg)
    nll_fg = lse - fg  # -log softmax[fg]
    nll_bg = lse - bg
    return 0.5 * masked_mean(nll_fg, labels == 1) + 0.5 * masked_mean(nll_bg, labels == 0)
