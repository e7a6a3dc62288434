"""Online attacks: any tracker, attacked while it tracks a sequence.

:func:`attacked` wraps a tracker so that

* ``target="template"``: the template crop is perturbed once, at every initialisation (frame 0, and the VOT
  protocol's re-initialisations), to maximise the attack loss on the first-frame pair (the template crop and the
  search crop around the given box);
* ``target="search"``: every tracked frame's search crop is perturbed against the current template before the
  tracker sees it (optionally warm-started from the previous frame's perturbation, as RTAA and SPARK do);
* ``target="both"``: both.

The attacked tracker has the whole tracker interface (``init``/``step``, ``track_sequence`` as one ``lax.scan``,
``track_batch`` vmapped over sequences, ``track_chunks``), so the benchmark runner evaluates it like any other:
``jaxtrack eval ... --attack pgd --loss dua --eps 8 --steps 10 --target search``.

Untargeted labels: the attack losses (:mod:`jaxtrack.attacks.losses`) are computed against the *clean*
prediction of the crop being attacked (its best box is the reference, its dense predictions fix the labels), so
no ground truth is used online. The perturbation budget is in pixels of the crop the network sees (ε = 8: 8 grey
levels), as in RTAA/CSA/SPARK.

Gradients come from ``surrogate`` (default: the attacked tracker itself, white box). With a defended tracker,
``surrogate=defended.base`` is the non-adaptive attack (the attacker ignores the defense) and the default is the
adaptive one (gradients through the U-Net). The surrogate takes the same ``variables``, or, when it lacks
array-holding wrappers of the attacked stack (the undefended tracker under a defended one), the part it owns
(``variables["tracker"]``).

PRNG: the attack of frame ``t`` uses ``fold_in(key(seed), t)`` (random starts, RTAA's pseudo box), so results are
deterministic and equal whether a sequence is tracked whole, in chunks or in a batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp

from jaxtrack.attacks.core import AttackConfig, bim, fgsm, mi_fgsm, pgd, run_attack_on_outputs
from jaxtrack.attacks.crops import attack_pair
from jaxtrack.attacks.iou import IoUAttackConfig, iou_attack
from jaxtrack.tracking.branches import check_where
from jaxtrack.attacks.losses import LOSSES, best_box
from jaxtrack.tracking.base import Tracker, TrackState, check_frame_shape
from jaxtrack.tracking.crop import channel_average
from jaxtrack.tracking.wrapper import TrackerWrapper, inner_variables, variable_levels

__all__ = ["ATTACKS", "AttackedState", "AttackedTracker", "OnlineAttack", "attack_config", "attacked"]

ATTACKS = ("fgsm", "bim", "pgd", "mifgsm", "iou")


def attack_config(kind: str, eps: float, steps: int = 10, step_size: float | None = None, norm: str = "linf",
                  momentum: float = 1.0, restarts: int = 1) -> AttackConfig | IoUAttackConfig:
    """The :class:`AttackConfig` of a named attack (the command line's ``--attack``).

    ``fgsm``: one step of ε. ``bim``: ``steps`` steps of ``step_size`` (default ε/steps, RTAA's choice) from the
    clean input. ``pgd``: from a uniform random start in the ball, ``step_size`` default 2.5·ε/steps (Madry et
    al.; 2 pixels for ε = 8, 10 steps); ``restarts`` > 1 keeps the best of that many random starts (PGD only).
    ``mifgsm``: BIM on a momentum accumulator (decay ``momentum``). ``iou``: the black-box IoU attack
    (:mod:`jaxtrack.attacks.iou`: ``steps`` iterations of batched box queries, L∞ ball of ε; no step size, no norm
    choice).
    """
    if kind == "iou":
        if step_size is not None or norm != "linf" or restarts != 1:
            raise ValueError("the iou attack takes only eps and steps (no step size, L-inf only, no restarts)")
        return IoUAttackConfig(eps=eps, steps=steps)
    if restarts != 1 and kind != "pgd":
        raise ValueError(f"restarts need random starts: only pgd has them, not {kind!r}")
    if kind == "fgsm":
        return fgsm(eps, norm)
    if kind == "bim":
        return bim(eps, steps, step_size, norm)
    if kind == "pgd":
        return pgd(eps, steps, 2.5 * eps / steps if step_size is None else step_size, True, norm).replace(
            restarts=restarts)
    if kind == "mifgsm":
        return mi_fgsm(eps, steps, momentum=momentum, step_size=step_size, norm=norm)
    raise ValueError(f"unknown attack {kind!r}; known: {', '.join(ATTACKS)}")


@dataclasses.dataclass(frozen=True)
class OnlineAttack:
    """What to attack and how (hashable: part of the static tracker).

    config: the projected-gradient loop (budget in pixels of the crop), or an :class:`IoUAttackConfig` (the
      black-box IoU attack: search crops only; it queries the attacked tracker's boxes, so ``loss``, ``warm_start``
      and ``relabel`` do not apply and there is no surrogate).
    loss: a name of :data:`jaxtrack.attacks.LOSSES` (``cls``, ``reg``, ``dua``, ``csa``, ``rtaa``, ``margin``)
      or a loss function ``(scores, boxes, ref, clean) -> scalar`` to maximise.
    target: ``"template"``, ``"search"`` or ``"both"``.
    warm_start: start each frame's search attack from the clean crop plus the previous frame's perturbation.
    relabel: recompute labels from the current predictions at every step (RTAA) instead of the clean ones.
    seed: PRNG seed of the attack (random starts).
    """

    config: AttackConfig | IoUAttackConfig
    loss: str | Callable = "dua"
    target: str = "search"
    warm_start: bool = False
    relabel: bool = False
    seed: int = 0

    def __post_init__(self):
        check_where(self.target, "target")
        if isinstance(self.loss, str) and self.loss not in LOSSES:
            raise ValueError(f"unknown attack loss {self.loss!r}; known: {', '.join(LOSSES)}")
        if self.black_box and (self.target != "search" or self.warm_start or self.relabel):
            raise ValueError(f"the iou attack perturbs search crops only and always starts from the previous frame's "
                             f"perturbation (got target={self.target!r}, warm_start={self.warm_start}, "
                             f"relabel={self.relabel})")

    @property
    def black_box(self) -> bool:
        """A decision-based attack that reads only output boxes (:mod:`jaxtrack.attacks.iou`)."""
        return isinstance(self.config, IoUAttackConfig)

    @property
    def loss_fn(self) -> Callable:
        return LOSSES[self.loss] if isinstance(self.loss, str) else self.loss

    @property
    def attacks_template(self) -> bool:
        return self.target in ("template", "both")

    @property
    def attacks_search(self) -> bool:
        return self.target in ("search", "both")

    def describe(self) -> str:
        c = self.config
        if self.black_box:
            return f"{c.describe()}-{self.target}-eps{c.eps:g}"
        loss = self.loss if isinstance(self.loss, str) else getattr(self.loss, "__name__", "loss")
        kind = "fgsm" if c.steps == 1 and c.step_size == c.eps and not c.random_start else (
            "pgd" if c.random_start else ("mifgsm" if c.momentum else "bim"))
        steps = "" if kind == "fgsm" else f"{c.steps}"
        warm = "-warm" if self.warm_start else ""
        restarts = f"-r{c.restarts}" if c.restarts > 1 else ""
        return f"{kind}{steps}-{loss}-{self.target}-eps{c.eps:g}{restarts}{warm}"


@flax.struct.dataclass
class AttackedState:
    """State of an attacked tracker: the tracker's own state plus the attacker's.

    track: the wrapped tracker's state.
    surrogate_template: the surrogate's template embedding of the (attacked) template crop.
    delta: the last search perturbation [X,X,3] (pixels; for warm starts).
    frame: number of frames tracked since initialisation (int32; folds into the PRNG key).
    """

    track: Any
    surrogate_template: Any
    delta: jax.Array
    frame: jax.Array

    # the fields callers read off a TrackState
    @property
    def center(self):
        return self.track.center

    @property
    def size(self):
        return self.track.size

    @property
    def channel_avg(self):
        return self.track.channel_avg

    @property
    def template(self):
        return self.track.template


@dataclasses.dataclass(frozen=True)
class AttackedTracker(TrackerWrapper):
    """``base`` tracking under an online attack (see the module docstring). Build with :func:`attacked`."""

    attack: OnlineAttack = None  # type: ignore[assignment]
    surrogate: Tracker | None = None

    @property
    def name(self) -> str:
        # an attack computed on another tracker (e.g. the undefended one: non-adaptive) says so
        via = "" if self.surrogate is None else f"-via-{self.surrogate.name}"
        return f"{self.base.name}_{self.attack.describe()}{via}"

    def __post_init__(self):
        if self.attack is not None and self.attack.black_box and self.surrogate is not None:
            raise ValueError("the iou attack queries the attacked tracker's own boxes (black box): no surrogate")

    @property
    def attacker(self) -> Tracker:
        return self.base if self.surrogate is None else self.surrogate

    def attacker_variables(self, variables):
        """The :attr:`attacker`'s variables: ``variables`` themselves, or, for a surrogate with fewer
        array-holding wrappers than ``base`` (the undefended tracker under a defended one), the part of
        ``variables`` it takes (``variables["tracker"]`` per missing level)."""
        if self.surrogate is None:
            return variables
        levels = variable_levels(self.base) - variable_levels(self.surrogate)
        if levels < 0:
            raise ValueError(f"surrogate {self.surrogate.name} holds arrays that {self.base.name} does not have")
        return inner_variables(variables, levels)

    def _key(self, frame_index):
        return jax.random.fold_in(jax.random.key(self.attack.seed), frame_index)

    def init_pure(self, variables, frame, box) -> AttackedState:
        check_frame_shape(frame.shape)
        base, a = self.base, self.attack
        center, size = base.box_to_center_size(jnp.asarray(box, jnp.float32))
        avg = channel_average(frame)
        z = base.template_crop(frame, center, size, avg)
        x0, _ = base.search_crop(frame, center, size, avg)
        attacker_variables = self.attacker_variables(variables)
        if a.attacks_template:
            clean = self.attacker.dense(attacker_variables, self.attacker.embed_template(attacker_variables, z), x0)
            ref = best_box(*clean)
            z, _ = attack_pair(self.attacker, attacker_variables, z, x0, ref, a.loss_fn, a.config, self._key(0),
                               "template", a.relabel)
        track = base.init_with_crop(variables, frame, center, size, avg, z)
        sur = track.template if self.surrogate is None else self.surrogate.embed_template(attacker_variables, z)
        return AttackedState(track=track, surrogate_template=sur, delta=jnp.zeros_like(x0),
                             frame=jnp.zeros((), jnp.int32))

    def step_pure(self, variables, state: AttackedState, frame):
        check_frame_shape(frame.shape)
        base, a = self.base, self.attack
        tr: TrackState = state.track
        frame_index = state.frame + 1
        x, scale = base.search_crop(frame, tr.center, tr.size, tr.channel_avg)
        delta = state.delta
        if a.black_box:
            def query(crops):  # the attacked tracker's box for each crop, its state unchanged
                return jax.vmap(lambda xx: base.step_with_crop(variables, tr, frame, xx, scale)[1])(crops)

            previous_box = base.center_size_to_box(tr.center, tr.size)
            x_adv, _, _ = iou_attack(query, x, previous_box, self._key(frame_index), a.config, state.delta)
            delta = x_adv - x
            x = x_adv
        elif a.attacks_search:
            attacker, template = self.attacker, state.surrogate_template
            attacker_variables = self.attacker_variables(variables)
            loss = a.loss_fn

            def loss_of_outputs(raw, raw_clean):  # labels and reference from the clean prediction
                clean = attacker.dense_from_head(raw_clean)
                return loss(*attacker.dense_from_head(raw), best_box(*clean), None if a.relabel else clean)

            start = x + state.delta if a.warm_start else None
            key = self._key(frame_index) if a.config.random_start else None
            if a.warm_start and a.config.random_start:  # the first attacked frame starts at random
                start = jnp.where(frame_index > 1, start, jax.random.uniform(
                    key, x.shape, x.dtype, -a.config.eps, a.config.eps) + x)
            # the clean forward, the attack and (white box) the tracker's forward on the attacked crop are one loop:
            # two forward passes compiled instead of three. The step's box and score then carry no gradient.
            white_box = self.surrogate is None
            x_adv, _, raw_adv = run_attack_on_outputs(
                lambda xx: attacker.head(attacker_variables, template, xx), loss_of_outputs, x, a.config, key, start,
                final_outputs=white_box)
            delta = x_adv - x
            if white_box:  # the attacked tracker's own head outputs on x_adv: no forward pass left
                track, box, score = base.step_from_head(tr, frame, raw_adv, scale)
                return state.replace(track=track, delta=delta, frame=frame_index), box, score
            x = x_adv
        track, box, score = base.step_with_crop(variables, tr, frame, x, scale)
        return state.replace(track=track, delta=delta, frame=frame_index), box, score


def attacked(tracker: Tracker, attack: OnlineAttack | AttackConfig | IoUAttackConfig, surrogate: Tracker | None = None,
             **attack_fields) -> AttackedTracker:
    """``tracker`` under the online ``attack`` (an :class:`OnlineAttack`, or an :class:`AttackConfig` plus
    :class:`OnlineAttack` fields as keywords). Equal arguments give equal trackers (compiled code is shared).

    >>> t = attacked(tracking.create("nanotrack_v2"), attack_config("pgd", eps=8, steps=10), loss="dua")
    >>> boxes, scores = t.track_sequence(variables, frames, box0)
    """
    if isinstance(attack, (AttackConfig, IoUAttackConfig)):
        attack = OnlineAttack(config=attack, **attack_fields)
    elif attack_fields:
        attack = dataclasses.replace(attack, **attack_fields)
    return AttackedTracker.around(tracker, attack=attack, surrogate=surrogate)
