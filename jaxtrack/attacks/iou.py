"""The IoU attack (Jia et al., "IoU Attack: Towards Temporally Coherent Black-Box Adversarial Attack for Visual
Object Tracking", CVPR 2021): a decision-based black-box attack that reads only the tracker's output boxes.

Per frame, the attacker may *query* the tracker: give it a search crop, get the box it would output for that crop
(no state update, no gradient, no score). It lowers the **IoU score**

    S(x') = (1 − w_t) · IoU(box(x'), box(x)) + w_t · IoU(box(x'), previous frame's box)

(spatial IoU against the clean crop's box, temporal IoU against the last output; ``w_t`` = 0.1 as released) by a
random search in the manner of the boundary attack: from the current point ``a`` it queries, in one batch,

* ``candidates`` *tangential* points ``a + n_k``, ``n_k`` Gaussian noise with its component along ``d = t − a``
  removed and its norm scaled to ``δ · |d|``, and
* one *normal* point ``a + μ · d``, a step towards the noise target ``t``,

and moves to the candidate with the lowest score if it is no higher than the current one (moving along the
score's contour lines is allowed, as released). ``δ`` and ``μ`` adapt as released: ``δ`` shrinks by 0.9 when more than
70 % of the tangential candidates do not raise the score and grows by 1/0.9 when fewer than 30 % (or none) do;
``μ`` shrinks by 0.9 after an accepted normal step and grows by 1/0.9 after a rejected one.

Differences from the released code, both for the budget convention of every attack here:

* **Budget**: an L∞ ball of ``eps`` grey levels around the clean crop (every point is projected into it and into
  0..255), the unit of :mod:`jaxtrack.attacks.core`, instead of the release's stopping rule on a mean L2 norm.
  The noise target ``t`` is a random vertex of that ball (``x ± eps`` per pixel, clipped), where the release uses
  ±128 noise on the whole frame.
* **Fixed cost**: ``steps`` iterations, each one batched query of ``candidates + 1`` crops (the release loops until
  the score reaches that of its heavy-noise image); the returned crop is the lower-scoring of the final point and
  the noise target. ``queries_per_frame`` says how many forward passes that is.

Temporal coherence as released: each frame's search starts from the clean crop plus ``carry`` (0.5) times the
previous frame's perturbation. Everything is a pure function of its inputs and a PRNG key: jittable, and vmapped
over sequences by ``track_batch``. The attack never differentiates anything (tested by querying a tracker behind
``jax.pure_callback``, which has no derivative).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxtrack.attacks.core import project
from jaxtrack.attacks.losses import box_iou

__all__ = ["IoUAttackConfig", "iou_attack", "iou_score"]


@dataclasses.dataclass(frozen=True)
class IoUAttackConfig:
    """The IoU attack's settings (hashable: part of a static tracker).

    eps: L∞ budget in grey levels of the search crop (the same unit as :class:`~jaxtrack.attacks.AttackConfig`).
    steps: iterations per frame; each queries ``candidates + 1`` crops in one batch.
    candidates: tangential candidates per iteration.
    temporal_weight: ``w_t``, the weight of the IoU with the previous frame's box in the score (release: 0.1).
    carry: the fraction of the previous frame's perturbation each frame starts from (release: 0.5).
    tangent_scale / normal_scale: initial ``δ`` (tangential noise norm relative to the distance to the noise target)
      and ``μ`` (fraction of that distance one normal step covers); release: 0.05 / 0.05.
    """

    eps: float = 8.0
    steps: int = 10
    candidates: int = 8
    temporal_weight: float = 0.1
    carry: float = 0.5
    tangent_scale: float = 0.05
    normal_scale: float = 0.05

    def __post_init__(self):
        if not self.eps > 0:
            raise ValueError(f"iou attack: eps must be > 0, got {self.eps}")
        if self.steps < 0 or self.candidates < 1:
            raise ValueError(f"iou attack: steps must be >= 0 and candidates >= 1, got {self.steps}, {self.candidates}")
        for name in ("temporal_weight", "carry"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"iou attack: {name} must be in [0, 1], got {getattr(self, name)}")
        if not (self.tangent_scale > 0 and 0 < self.normal_scale <= 1):
            raise ValueError(f"iou attack: tangent_scale must be > 0 and normal_scale in (0, 1], got "
                             f"{self.tangent_scale}, {self.normal_scale}")

    @property
    def queries_per_frame(self) -> int:
        """Forward passes per attacked frame: the clean crop, the start, the noise target, then
        ``steps · (candidates + 1)``."""
        return 3 + self.steps * (self.candidates + 1)

    def describe(self) -> str:
        return f"iou{self.steps}x{self.candidates}"


def _centre_size(box):
    """``(x, y, w, h)`` -> ``(cx, cy, w, h)``, the form of :func:`jaxtrack.attacks.box_iou`."""
    box = jnp.asarray(box, jnp.float32)
    return jnp.concatenate([box[..., :2] + box[..., 2:] / 2, box[..., 2:]], axis=-1)


def iou_score(boxes, clean_box, previous_box, temporal_weight: float) -> jax.Array:
    """The IoU score ``(1 − w_t) · IoU(boxes, clean_box) + w_t · IoU(boxes, previous_box)`` (per box; boxes
    ``(x, y, w, h)``)."""
    b = _centre_size(boxes)
    return ((1.0 - temporal_weight) * box_iou(b, _centre_size(clean_box))
            + temporal_weight * box_iou(b, _centre_size(previous_box)))


def _unit(v):
    return v / jnp.maximum(jnp.linalg.norm(v.ravel()), 1e-12)


def iou_attack(query: Callable[[jax.Array], jax.Array], x: jax.Array, previous_box: jax.Array, key: jax.Array,
               config: IoUAttackConfig, previous_delta: jax.Array | None = None):
    """The IoU attack on one search crop (see the module docstring).

    Args:
      query: ``crops [K, X, X, 3] -> boxes [K, 4]`` (x, y, w, h): the tracker's output for each crop. Only boxes
        are read; nothing is differentiated.
      x: the clean search crop ``[X, X, 3]`` (float, 0..255).
      previous_box: the previous frame's output box ``[4]`` (the temporal term).
      key: PRNG key of this frame.
      config: :class:`IoUAttackConfig`.
      previous_delta: the previous frame's perturbation ``[X, X, 3]`` (temporal coherence); None = zeros.
    Returns:
      ``(x_adv, score_adv, score_clean_start)``: the attacked crop (inside the budget), its IoU score, and the
      score of the starting point (the clean crop plus the carried perturbation).
    """
    c = config
    x = jnp.asarray(x, jnp.float32)
    proj = lambda v: project(v, x, c.eps, "linf")  # noqa: E731
    k_target, k_loop = jax.random.split(key)
    carried = jnp.zeros_like(x) if previous_delta is None else c.carry * previous_delta
    start = proj(x + carried)
    target = proj(x + c.eps * jax.random.rademacher(k_target, x.shape, jnp.float32))
    clean_box, start_box, target_box = query(jnp.stack([x, start, target]))  # one batched query
    score = lambda boxes: iou_score(boxes, clean_box, previous_box, c.temporal_weight)  # noqa: E731
    s_start, s_target = score(start_box), score(target_box)

    def body(i, carry):
        a, s_a, delta, mu = carry
        k = jax.random.fold_in(k_loop, i)
        d = target - a
        dist = jnp.linalg.norm(d.ravel())
        u = _unit(d)
        noise = jax.random.normal(k, (c.candidates,) + x.shape, jnp.float32)
        noise = noise - jnp.einsum("k...,...->k", noise, u)[(...,) + (None,) * x.ndim] * u
        noise = jax.vmap(_unit)(noise) * (delta * dist)
        tangential = jax.vmap(proj)(a + noise)
        normal = proj(a + mu * d)
        crops = jnp.concatenate([tangential, normal[None]])
        s = score(query(crops))
        ok = s <= s_a
        rate = jnp.mean(ok[:-1])
        best = jnp.argmin(s)
        accept = s[best] <= s_a
        a = jnp.where(accept, crops[best], a)
        s_a = jnp.where(accept, s[best], s_a)
        delta = jnp.where(rate > 0.7, delta * 0.9, jnp.where(rate < 0.3, delta / 0.9, delta))
        mu = jnp.minimum(jnp.where(ok[-1], mu * 0.9, mu / 0.9), 1.0)
        return a, s_a, delta, mu

    init = (start, s_start, jnp.float32(c.tangent_scale), jnp.float32(c.normal_scale))
    a, s_a, _, _ = jax.lax.fori_loop(0, c.steps, body, init)
    use_target = s_target < s_a
    x_adv = jnp.where(use_target, target, a)
    return jax.lax.stop_gradient(x_adv), jnp.minimum(s_a, s_target), s_start
