"""One projected-gradient loop for every gradient attack (FGSM, BIM, PGD, MI-FGSM) and for template refinement.

The loop is composed from four small pure pieces, each usable on its own:

* **initialisation** — :func:`random_init`: the clean input, or a uniform random point of the ε-ball (explicit
  PRNG key), then projected;
* **gradient** of ``loss_fn(x) -> scalar`` (``loss_fn`` closes over parameters, template features, labels...);
* **step** — :func:`step_direction`: ``sign(g)`` for L∞, ``g / ‖g‖₂`` for L2; with momentum μ > 0 the direction is
  taken of the MI-FGSM accumulator ``m ← μ·m + g / ‖g‖₁`` instead of ``g``;
* **projection** — :func:`project`: onto the ε-ball around the clean input, then onto the pixel box
  ``[clip_min, clip_max]`` (default ``[0, 255]``).

One iteration is ``x ← project(x ± step_size · direction)``, ``+`` when maximising (attacks), ``−`` when
minimising (template refinement). Budgets are in pixel units: the trackers take BGR floats in 0..255, so
``eps = 8`` means 8 grey levels (≈ 8/255 ≈ 0.031 on a [0, 1] scale).

Inputs may be arrays or pytrees of arrays (e.g. a (template, search) pair). **Every leaf is one input with its
own budget**: the ε-ball, the L2 norm of the step and the L1 normalisation of the momentum are per leaf.

Guarantees (tested with hypothesis):

* L∞: ``|x_adv − x0| ≤ eps`` holds *exactly* in the input's float arithmetic (the bounds ``x0 ± eps`` are nudged
  by one ulp where rounding would otherwise overshoot);
* L2: ``‖x_adv − x0‖₂ ≤ eps`` up to the float32 rounding of the stored pixels (≤ √n · 2⁻¹⁷ for n values below 256);
* ``clip_min ≤ x_adv ≤ clip_max``.
  Both need the clean input inside the pixel box (crops of 0..255 frames always are).

Entry points:

* :func:`run_attack` — the attack, a ``lax.fori_loop``; its output carries no gradient (``stop_gradient``). Call it
  inside ``jax.jit`` (as :func:`jaxtrack.attacks.attack_crops` and :func:`jaxtrack.attacks.refine_template` do);
  it is pure, so it vmaps over a batch with a per-example loss (:func:`run_attack_batch`).
* :func:`run_attack_on_outputs` — the attack of an online tracker step: the forward passes at the clean input and
  at the result folded into the loop (two forward passes compiled, not three).
* :func:`run_attack_unrolled` — the same iterations as a ``lax.scan`` without ``stop_gradient``, differentiable end
  to end with respect to the clean input and to everything ``loss_fn`` closes over. ``sign`` has zero derivative
  almost everywhere, so its derivative is replaced by the identity (straight-through estimator,
  :func:`straight_through_sign`), or by that of any smooth ``sign_fn`` you pass (e.g. ``tanh(g / τ)``, whose
  gradients then match finite differences). This is what an adaptive attacker needs to see through an
  optimisation loop such as template refinement or a defense's inner adversarial training.

Configurations: :class:`AttackConfig` and the constructors :func:`fgsm`, :func:`bim`, :func:`pgd`, :func:`mi_fgsm`::

    cfg = pgd(eps=8.0, steps=10, step_size=2.0)            # L∞, random start
    x_adv = run_attack(lambda x: my_loss(params, x), x0, cfg, jax.random.key(0))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "AttackConfig",
    "fgsm",
    "bim",
    "pgd",
    "mi_fgsm",
    "project",
    "random_init",
    "step_direction",
    "straight_through_sign",
    "run_attack",
    "run_attack_batch",
    "run_attack_on_outputs",
    "run_attack_unrolled",
]

NORMS = ("linf", "l2")


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """A projected-gradient attack (hashable, so it can be a static argument of ``jax.jit``).

    eps: radius of the ball around the clean input, pixel units (0..255 scale); ``None`` = no ball, only the
      pixel box (the MTP template update as released).
    step_size: length of one step (L∞: per pixel; L2: of the whole step), pixel units.
    steps: number of gradient steps (0 = return the initial point).
    norm: ``"linf"`` (sign steps) or ``"l2"`` (normalised-gradient steps).
    random_start: start from a uniform random point of the ε-ball instead of the clean input (needs a key).
    momentum: MI-FGSM decay μ; 0 disables momentum.
    maximize: ascend the loss (attacks) or descend it (template refinement).
    clip_min, clip_max: the pixel box.
    restarts: run the loop this many times from independent random starts and keep the result with the best final
      loss (Madry et al.'s restarts; needs ``random_start`` when > 1).

    Inside a traced function ``eps`` and ``step_size`` may be traced scalars (e.g. the budget of an ε curriculum
    passed to one compiled training step): they are used as they are, without the checks below, and such a
    config cannot be a static ``jit`` argument (it does not hash). Everything else is static.
    """

    eps: float | None
    step_size: float
    steps: int
    norm: str = "linf"
    random_start: bool = False
    momentum: float = 0.0
    maximize: bool = True
    clip_min: float = 0.0
    clip_max: float = 255.0
    restarts: int = 1

    def __post_init__(self):
        # numpy scalars -> Python numbers: the loop bound must be static, and equal configs must hash equally
        if int(self.steps) == self.steps:
            object.__setattr__(self, "steps", int(self.steps))
        traced = set()
        for name in ("eps", "step_size", "momentum", "clip_min", "clip_max"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                object.__setattr__(self, name, float(value))
            except jax.errors.ConcretizationTypeError:
                if name not in ("eps", "step_size"):
                    raise
                traced.add(name)  # a traced budget: checked by whoever computed it
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if "eps" not in traced and self.eps is not None and not self.eps >= 0:
            raise ValueError(f"eps must be >= 0 or None, got {self.eps}")
        if "step_size" not in traced and not self.step_size >= 0:
            raise ValueError(f"step_size must be >= 0, got {self.step_size}")
        if int(self.steps) != self.steps or self.steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {self.steps}")
        if self.random_start and self.eps is None:
            raise ValueError("random_start needs an eps-ball (eps is None)")
        if not self.momentum >= 0:
            raise ValueError(f"momentum must be >= 0, got {self.momentum}")
        if int(self.restarts) != self.restarts or self.restarts < 1:
            raise ValueError(f"restarts must be a positive integer, got {self.restarts}")
        object.__setattr__(self, "restarts", int(self.restarts))
        if self.restarts > 1 and not self.random_start:
            raise ValueError("restarts > 1 needs random_start (every restart from the same point is the same run)")
        if not self.clip_min < self.clip_max:
            raise ValueError(f"clip_min must be < clip_max, got [{self.clip_min}, {self.clip_max}]")

    def replace(self, **changes) -> AttackConfig:
        return dataclasses.replace(self, **changes)


def fgsm(eps: float, norm: str = "linf") -> AttackConfig:
    """FGSM (Goodfellow et al.): one step of length ``eps`` from the clean input."""
    return AttackConfig(eps=eps, step_size=eps, steps=1, norm=norm)


def bim(eps: float, steps: int = 10, step_size: float | None = None, norm: str = "linf") -> AttackConfig:
    """BIM / I-FGSM (Kurakin et al.): ``steps`` projected steps from the clean input.

    ``step_size`` defaults to ``eps / steps`` (RTAA's α = ε / iterations).
    """
    return AttackConfig(eps=eps, step_size=eps / steps if step_size is None else step_size, steps=steps, norm=norm)


def pgd(eps: float, steps: int, step_size: float, random_start: bool = True, norm: str = "linf") -> AttackConfig:
    """PGD (Madry et al.): BIM from a uniform random point of the ε-ball."""
    return AttackConfig(eps=eps, step_size=step_size, steps=steps, norm=norm, random_start=random_start)


def mi_fgsm(
    eps: float, steps: int = 10, step_size: float | None = None, momentum: float = 1.0, norm: str = "linf"
) -> AttackConfig:
    """MI-FGSM (Dong et al.): BIM on the accumulator ``m ← μ·m + ∇ / ‖∇‖₁``; step ``eps / steps`` by default."""
    return AttackConfig(
        eps=eps, step_size=eps / steps if step_size is None else step_size, steps=steps, norm=norm, momentum=momentum
    )


# ------------------------------------------------------------------------------------------------ pieces


def _as_float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _linf_bounds(x0, eps, clip_min, clip_max):
    """``[max(x0 − eps, lo), min(x0 + eps, hi)]`` with ``fl(hi − x0) ≤ eps`` and ``fl(x0 − lo) ≤ eps`` exactly."""
    e = jnp.asarray(eps, x0.dtype)
    # One ulp inward where rounding of x0 ± eps overshot the budget (computed without gradient: the nudge is a
    # constant of at most one ulp).
    c = jax.lax.stop_gradient(x0)
    hi_c, lo_c = c + e, c - e
    nudge_hi = jnp.where(hi_c - c > e, jnp.nextafter(hi_c, jnp.full_like(hi_c, -jnp.inf)) - hi_c, 0)
    nudge_lo = jnp.where(c - lo_c > e, jnp.nextafter(lo_c, jnp.full_like(lo_c, jnp.inf)) - lo_c, 0)
    hi = (x0 + e) + nudge_hi
    lo = (x0 - e) + nudge_lo
    return jnp.maximum(lo, clip_min), jnp.minimum(hi, clip_max)


def _scale_to_l2_ball(delta, eps):
    """``delta · min(1, eps / ‖delta‖₂)``, with finite gradients at ``delta = 0``."""
    sq = jnp.sum(jnp.square(delta))
    e = jnp.asarray(eps, delta.dtype)
    outside = sq > e * e
    factor = jnp.where(outside, e * jax.lax.rsqrt(jnp.where(outside, sq, 1.0)), 1.0)
    return delta * factor


def project(x, x0, eps: float | None, norm: str = "linf", clip_min: float = 0.0, clip_max: float = 255.0):
    """Project ``x`` onto the ``norm`` ε-ball around ``x0`` (skipped if ``eps`` is None), then onto the box.

    For L∞ both are one clip (the ball ∩ box is a box). For L2 the ball projection is a radial rescaling of
    ``x − x0``; the following box clip only moves coordinates towards ``x0`` (which is in the box), so the result
    stays in the ball. One array (one example); use ``jax.tree.map`` / ``vmap`` for more.
    """
    x = _as_float(x)
    x0 = jnp.asarray(x0, x.dtype)
    if eps is None:
        return jnp.clip(x, clip_min, clip_max)
    if norm == "linf":
        lo, hi = _linf_bounds(x0, eps, clip_min, clip_max)
        return jnp.clip(x, lo, hi)
    if norm == "l2":
        return jnp.clip(x0 + _scale_to_l2_ball(x - x0, eps), clip_min, clip_max)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def random_init(key, x0, eps: float, norm: str = "linf", clip_min: float = 0.0, clip_max: float = 255.0):
    """A uniform random point of the ε-ball around ``x0`` (L∞: independent uniforms in ``[−eps, eps]``; L2: uniform
    in the ball, radius ``eps · u^(1/n)``), projected onto the box. One array."""
    x0 = _as_float(x0)
    if norm == "linf":
        delta = jax.random.uniform(key, x0.shape, x0.dtype, -eps, eps)
    elif norm == "l2":
        kdir, krad = jax.random.split(key)
        direction = jax.random.normal(kdir, x0.shape, x0.dtype)
        direction = direction / jnp.maximum(jnp.linalg.norm(direction.reshape(-1)), 1e-12)
        radius = eps * jax.random.uniform(krad, (), x0.dtype) ** (1.0 / max(x0.size, 1))
        delta = direction * radius
    else:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return project(x0 + delta, x0, eps, norm, clip_min, clip_max)


def straight_through_sign(g):
    """``sign(g)`` on the forward pass, identity derivative on the backward pass (straight-through estimator)."""
    return _ste_sign(g)


@jax.custom_jvp
def _ste_sign(g):
    return jnp.sign(g)


@_ste_sign.defjvp
def _ste_sign_jvp(primals, tangents):
    (g,), (t,) = primals, tangents
    return jnp.sign(g), t


def _safe_l2_normalise(g):
    sq = jnp.sum(jnp.square(g))
    nonzero = sq > 0
    return jnp.where(nonzero, g * jax.lax.rsqrt(jnp.where(nonzero, sq, 1.0)), 0.0)


def _l1_normalise(g):
    n1 = jnp.sum(jnp.abs(g))
    return jnp.where(n1 > 0, g / jnp.where(n1 > 0, n1, 1.0), 0.0)


def step_direction(g, norm: str = "linf", sign_fn: Callable = jnp.sign):
    """Steepest-ascent direction of unit ``norm`` for the gradient ``g``: ``sign_fn(g)`` (L∞) or ``g / ‖g‖₂`` (L2,
    0 where ``g = 0``). One array."""
    if norm == "linf":
        return sign_fn(g)
    if norm == "l2":
        return _safe_l2_normalise(g)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


# ------------------------------------------------------------------------------------------------ the loop


def _initial_point(x0, config: AttackConfig, key):
    if not config.random_start:
        return jax.tree.map(lambda a: project(a, a, config.eps, config.norm, config.clip_min, config.clip_max), x0)
    if key is None:
        raise ValueError("random_start needs a PRNG key")
    leaves, treedef = jax.tree.flatten(x0)
    keys = jax.random.split(key, len(leaves))
    c = config
    out = [random_init(k, a, c.eps, c.norm, c.clip_min, c.clip_max) for k, a in zip(keys, leaves, strict=True)]
    return jax.tree.unflatten(treedef, out)


def _ascend(x, m, g, x0, config: AttackConfig, sign_fn):
    """One projected step from ``x`` along the gradient ``g`` (momentum state ``m``) → (new x, new m)."""
    direction_sign = 1.0 if config.maximize else -1.0
    if config.momentum > 0:
        m = jax.tree.map(lambda mi, gi: config.momentum * mi + _l1_normalise(gi), m, g)
        g = m

    def update(xi, x0i, gi):
        d = step_direction(gi, config.norm, sign_fn)
        return project(xi + (direction_sign * config.step_size) * d, x0i, config.eps, config.norm, config.clip_min,
                       config.clip_max)

    return jax.tree.map(update, x, x0, g), m


def _start_point(x0, config: AttackConfig, key, start):
    """The loop's first iterate: ``start`` projected into the budget around ``x0``, or the clean / random start."""
    if start is None:
        return _initial_point(x0, config, key)
    c = config
    return jax.tree.map(lambda s, a: project(s, a, c.eps, c.norm, c.clip_min, c.clip_max), start, x0)


def _make_step(loss_fn, x0, config: AttackConfig, sign_fn):
    value_and_grad = jax.value_and_grad(loss_fn)

    def step(x, m):
        """One iteration from ``x`` (momentum state ``m``) → (new x, new m, loss at ``x``)."""
        value, g = value_and_grad(x)
        return *_ascend(x, m, g, x0, config, sign_fn), value

    return step


def run_attack(
    loss_fn: Callable[[Any], jax.Array],
    x,
    config: AttackConfig,
    key: jax.Array | None = None,
    return_losses: bool = False,
    start=None,
):
    """Projected-gradient attack on ``loss_fn`` starting from the clean input ``x`` (array or pytree).

    Args:
      loss_fn: ``x -> scalar``; closes over everything else (model variables, labels, ...).
      x: the clean input, pixel units (integer inputs are cast to float32).
      config: :class:`AttackConfig`. With ``restarts = R > 1`` the loop runs R times (restart ``r`` from the random
        start of ``fold_in(key, r)``) and the iterate with the best final loss is returned.
      key: PRNG key, needed only with ``random_start``.
      return_losses: also return the loss of every iterate (for convergence checks; one extra forward pass).
      start: optional starting point (same structure as ``x``), projected into the budget around ``x`` — a warm
        start such as the previous frame's adversarial perturbation added to this frame's input (RTAA, SPARK).
        Replaces the clean/random start (of the first restart).
    Returns:
      ``x_adv`` of the same structure (float), inside the budget, with ``stop_gradient`` (use
      :func:`run_attack_unrolled` to differentiate through the attack); with ``return_losses``,
      ``(x_adv, losses [steps + 1])`` where ``losses[k]`` is the loss after ``k`` steps (``losses[0]`` at the
      starting point: the clean input, or the random start) of the returned restart.
    """
    x0 = jax.tree.map(_as_float, x)
    if config.restarts == 1:
        x_adv, losses = _run_once(loss_fn, x0, config, key, start, return_losses)
    else:
        if key is None:
            raise ValueError("restarts need a PRNG key")
        sign = 1.0 if config.maximize else -1.0

        def restart(r, best):
            k = jax.random.fold_in(key, r)
            if start is None:
                x_r, losses_r = _run_once(loss_fn, x0, config, k, None, True)
            else:  # restart 0 from the warm start, the others at random
                x_r, losses_r = jax.lax.cond(
                    r == 0,
                    lambda: _run_once(loss_fn, x0, config, k, start, True),
                    lambda: _run_once(loss_fn, x0, config, k, None, True),
                )
            better = sign * losses_r[-1] > sign * best[1][-1]
            pick = lambda a, b: jnp.where(better, a, b)  # noqa: E731
            return jax.tree.map(pick, x_r, best[0]), pick(losses_r, best[1])

        first = _run_once(loss_fn, x0, config, jax.random.fold_in(key, 0), start, True)
        x_adv, losses = jax.lax.fori_loop(1, config.restarts, restart, first)
    x_adv = jax.lax.stop_gradient(x_adv)
    if not return_losses:
        return x_adv
    return x_adv, jax.lax.stop_gradient(losses)


def _run_once(loss_fn, x0, config: AttackConfig, key, start, return_losses: bool):
    """One run of the loop: ``(x_adv, losses [steps + 1] or None)``."""
    x_init = _start_point(x0, config, key, start)
    step = _make_step(loss_fn, x0, config, jnp.sign)
    m0 = jax.tree.map(jnp.zeros_like, x0)
    losses0 = jnp.zeros((config.steps + 1,), jnp.float32)

    def body(i, carry):
        x, m, losses = carry
        x, m, value = step(x, m)
        return x, m, losses.at[i].set(value) if return_losses else losses

    x_adv, _, losses = jax.lax.fori_loop(0, config.steps, body, (x_init, m0, losses0))
    if not return_losses:
        return x_adv, None
    return x_adv, losses.at[config.steps].set(loss_fn(x_adv))


def run_attack_on_outputs(
    forward: Callable[[Any], Any],
    loss_of_outputs: Callable[[Any, Any], jax.Array],
    x,
    config: AttackConfig,
    key: jax.Array | None = None,
    start=None,
    final_outputs: bool = True,
):
    """:func:`run_attack` on ``loss_fn(x) = loss_of_outputs(forward(x), forward(x_clean))``, returning the outputs
    of ``forward`` at the clean input and at the result too: ``(x_adv, clean_outputs, adv_outputs)``
    (``adv_outputs`` None with ``final_outputs=False``, which skips that forward pass).

    This is what an online attack does on every frame: a clean forward pass (the labels), the attack, and a forward
    pass on the adversarial input (the tracker's step). Here the three are iterations of one loop of ``steps + 2``
    iterations: iteration 0 runs ``forward`` at the clean input, 1..steps its forward and backward pass (the attack
    steps), ``steps + 1`` the forward pass at the result, chosen by a ``lax.cond`` on the iteration number (which
    stays a branch under ``vmap``). XLA compiles two forward passes (one per branch) and one backward instead of
    three forward passes and one backward: the attacked step of NanoTrack v2 compiled in 7.5 s instead of
    9.1 s, SiamRPN++ R50's in 7.0 s instead of 11.3 s, same run time. (One forward pass with only the backward in the
    branch compiles a little less but ran 20-25 % slower: its saved activations cross the branch boundary.)

    Same iterates as :func:`run_attack` (same start, steps and projection); the outputs carry no gradient (to
    ``x`` or to what ``forward`` closes over). ``restarts > 1`` runs :func:`run_attack` between plain forward passes.
    """
    x0 = jax.tree.map(_as_float, x)
    if config.restarts > 1:
        clean = jax.lax.stop_gradient(forward(x0))
        x_adv = run_attack(lambda xx: loss_of_outputs(forward(xx), clean), x0, config, key, start=start)
        return x_adv, clean, jax.lax.stop_gradient(forward(x_adv)) if final_outputs else None
    x_init = _start_point(x0, config, key, start)
    outputs0 = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(forward, x0))
    m0 = jax.tree.map(jnp.zeros_like, x0)

    def body(i, carry):
        """Iteration 0: the clean input; 1..steps: attack steps; steps + 1: the result."""
        x_i, m, clean, _ = carry
        first = i == 0
        point = jax.tree.map(lambda a, b: jnp.where(first, a, b), x0, x_i)

        def forward_backward(point):
            outputs, pullback = jax.vjp(forward, point)
            (g,) = pullback(jax.grad(loss_of_outputs)(outputs, clean))
            return outputs, g

        def forward_only(point):
            return forward(point), jax.tree.map(jnp.zeros_like, point)

        attack_step = (i > 0) & (i <= config.steps)
        outputs, g = jax.lax.cond(attack_step, forward_backward, forward_only, point)
        clean = jax.tree.map(lambda o, c: jnp.where(first, o, c), outputs, clean)
        x_i, m = jax.lax.cond(attack_step, lambda: _ascend(x_i, m, g, x0, config, jnp.sign), lambda: (x_i, m))
        return x_i, m, clean, outputs

    iterations = config.steps + (2 if final_outputs else 1)
    x_adv, _, clean, outputs = jax.lax.fori_loop(0, iterations, body, (x_init, m0, outputs0, outputs0))
    return jax.tree.map(jax.lax.stop_gradient, (x_adv, clean, outputs if final_outputs else None))


def run_attack_batch(loss_fn: Callable, xs, config: AttackConfig, key: jax.Array | None, *args):
    """:func:`run_attack` vmapped over a leading batch axis: example ``i`` attacks ``loss_fn(x_i, *args_i)``.

    ``args`` are batched along axis 0 like ``xs``; the key (None without ``random_start``) is split into one key
    per example.
    """
    n = jax.tree.leaves(xs)[0].shape[0]
    keys = jax.random.split(jax.random.key(0) if key is None else key, n)

    def one(x, k, *a):
        return run_attack(lambda xi: loss_fn(xi, *a), x, config, k if config.random_start else None)

    return jax.vmap(one)(xs, keys, *args)


def run_attack_unrolled(
    loss_fn: Callable[[Any], jax.Array],
    x,
    config: AttackConfig,
    key: jax.Array | None = None,
    *,
    sign_fn: Callable | None = None,
    unroll: int | bool = 1,
):
    """:func:`run_attack` as a differentiable ``lax.scan`` (same forward result with the default ``sign_fn``).

    Gradients flow to ``x`` (both the starting point and the centre of the ε-ball) and to everything ``loss_fn``
    closes over, through every step (second derivatives of ``loss_fn`` are taken). For L∞ the direction
    ``sign(g)`` is computed by ``sign_fn``: by default :func:`straight_through_sign` (forward ``sign``, backward
    identity — the BPDA/straight-through choice for adaptive attacks); a smooth ``sign_fn`` such as
    ``lambda g: jnp.tanh(g / τ)`` changes the forward pass too and makes the whole loop exactly differentiable.
    The L2 direction ``g / ‖g‖₂``, the momentum normalisation and the projections are differentiated as they are
    (clips pass gradients only where they are inactive). The random start is a constant (no gradient to the key).
    Memory of the backward pass grows linearly with ``steps``. Restarts are not supported here (a choice of the
    best restart has no useful gradient): differentiate one restart.
    """
    if config.restarts > 1:
        raise ValueError("run_attack_unrolled runs one restart; use config.replace(restarts=1)")
    x0 = jax.tree.map(_as_float, x)
    x_init = _initial_point(x0, config, key)
    step = _make_step(loss_fn, x0, config, straight_through_sign if sign_fn is None else sign_fn)
    m0 = jax.tree.map(jnp.zeros_like, x0)

    def body(carry, _):
        x, m, _ = step(*carry)
        return (x, m), None

    (x_adv, _), _ = jax.lax.scan(body, (x_init, m0), None, length=config.steps, unroll=unroll)
    return x_adv
