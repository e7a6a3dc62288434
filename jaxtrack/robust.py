"""Stack a tracker with a defense, template refinement and an online attack, in the one order that makes sense.

    tracker, variables = robust.wrap(tracking.create("nanotrack_v2"), variables,
                                     defense=robust.Defense("bundled"),
                                     refine=robust.Refinement(steps=16),
                                     attack=attacks.OnlineAttack(attacks.attack_config("pgd", 8, 10), loss="dua"))
    boxes, scores = tracker.track_sequence(variables, frames, box0)

From the inside out: the defense (part of the network), template refinement (refines through the network below
it), the online attack (perturbs what everything below sees). The attack's gradients come from the whole stack
(white box, *adaptive* to the defense) or, with ``adaptive=False``, from the undefended tracker with the same
refinement (the attacker ignores the defense: the non-adaptive setting of DuaLossDef's evaluation).

The stack is plain data; the arrays travel in the variables: the tracker's own, or ``{"tracker": ..., "defense":
...}`` with a defense (:func:`jaxtrack.defense.defended_variables`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

from jaxtrack.attacks.online import OnlineAttack, attacked
from jaxtrack.attacks.refine import MTP_ALPHA, refined
from jaxtrack.tracking.base import Tracker

__all__ = ["Defense", "Refinement", "Wrapped", "wrap"]


@dataclasses.dataclass(frozen=True)
class Defense:
    """A DuaLossDef U-Net from a defense checkpoint (see :func:`jaxtrack.defense.defended_from_checkpoint`).

    checkpoint: a defense checkpoint folder, ``bundled`` (the U-Net shipped for the tracker), ``bundled-minmax`` (its
      min-max trained U-Net), or either with ``:<tracker>`` (the one shipped for another tracker: a transfer).
    where: ``template``, ``search`` or ``both``; None = the branches the checkpoint was trained for.
    allow_transfer: accept a U-Net trained for another tracker (implied by ``bundled[-variant]:<tracker>``).
    """

    checkpoint: str = "bundled"
    where: str | None = None
    allow_transfer: bool = False

    def apply(self, tracker: Tracker, variables) -> tuple[Tracker, dict]:
        """``(defended tracker, its variables)`` (:func:`jaxtrack.defense.defended_from_checkpoint`)."""
        from jaxtrack.defense import defended_from_checkpoint
        from jaxtrack.defense.checkpoint import parse_bundled_spec

        shipped = parse_bundled_spec(self.checkpoint)
        transfer = self.allow_transfer or (shipped is not None and bool(shipped[1]))  # shipped for another tracker
        return defended_from_checkpoint(tracker, variables, self.checkpoint, self.where, allow_transfer=transfer)


@dataclasses.dataclass(frozen=True)
class Refinement:
    """MTP template refinement settings (see :mod:`jaxtrack.attacks.refine`)."""

    steps: int = 16
    alpha: float = MTP_ALPHA
    eps: float | None = None
    loss: str = "family"


class Wrapped(NamedTuple):
    tracker: Tracker
    variables: Any


def wrap(
    tracker: Tracker,
    variables,
    *,
    defense: Defense | Callable[[Tracker, Any], tuple[Tracker, Any]] | None = None,
    refine: Refinement | None = None,
    attack: OnlineAttack | None = None,
    adaptive: bool = True,
) -> Wrapped:
    """``(tracker, variables)`` of ``tracker`` with, from the inside out, ``defense`` (a :class:`Defense`, or a
    function ``(tracker, variables) -> (defended tracker, its variables)`` for a U-Net held in memory, e.g.
    ``lambda t, v: (defense.defended(t, "both"), defense.defended_variables(v, unet_variables))``), ``refine`` and
    ``attack``; each optional. ``variables`` are the tracker's own; the returned ones are what the stack takes."""
    apply_defense = defense.apply if isinstance(defense, Defense) else defense
    if apply_defense is not None:
        inner, inner_variables = apply_defense(tracker, variables)
    else:
        inner, inner_variables = tracker, variables

    def refined_stack(t: Tracker) -> Tracker:
        if refine is not None and refine.steps > 0:
            t = refined(t, refine.steps, refine.alpha, refine.eps, refine.loss)
        return t

    inner = refined_stack(inner)
    if attack is None:
        return Wrapped(inner, inner_variables)
    # a black-box attack queries the deployed stack itself: it has no surrogate to be adaptive or not about
    surrogate = None if adaptive or apply_defense is None or attack.black_box else refined_stack(tracker)
    return Wrapped(attacked(inner, attack, surrogate), inner_variables)
