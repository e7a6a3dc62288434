"""Stack a tracker with a defense, template refinement and an online attack, in the one order that makes sense.

    tracker = robust.wrap(tracking.create("nanotrack_v2"),
                          defense=robust.Defense("bundled"),
                          refine=robust.Refinement(steps=16),
                          attack=attacks.OnlineAttack(attacks.attack_config("pgd", 8, 10), loss="dua"))

From the inside out: the defense (part of the network), template refinement (refines through the network below
it), the online attack (perturbs what everything below sees). The attack's gradients come from the whole stack
(white box, *adaptive* to the defense) or, with ``adaptive=False``, from the undefended tracker with the same
refinement (the attacker ignores the defense: the non-adaptive setting of DuaLossDef's evaluation).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from jaxtrack.attacks.online import OnlineAttack, attacked
from jaxtrack.attacks.refine import MTP_ALPHA, refined
from jaxtrack.tracking.base import Tracker

__all__ = ["Defense", "Refinement", "wrap"]


@dataclasses.dataclass(frozen=True)
class Defense:
    """A DuaLossDef U-Net from a defense checkpoint (see :func:`jaxtrack.defense.defended_from_checkpoint`).

    checkpoint: a defense checkpoint folder, ``bundled`` (the U-Net shipped for the tracker) or
      ``bundled:<tracker>`` (the one shipped for another tracker: a transfer).
    where: ``template``, ``search`` or ``both``; None = the branches the checkpoint was trained for.
    allow_transfer: accept a U-Net trained for another tracker (implied by ``bundled:<tracker>``).
    """

    checkpoint: str = "bundled"
    where: str | None = None
    allow_transfer: bool = False

    def apply(self, tracker: Tracker) -> Tracker:
        from jaxtrack.defense import defended_from_checkpoint

        transfer = self.allow_transfer or self.checkpoint.startswith("bundled:")
        return defended_from_checkpoint(tracker, self.checkpoint, self.where, allow_transfer=transfer)


@dataclasses.dataclass(frozen=True)
class Refinement:
    """MTP template refinement settings (see :mod:`jaxtrack.attacks.refine`)."""

    steps: int = 16
    alpha: float = MTP_ALPHA
    eps: float | None = None
    loss: str = "family"


def wrap(
    tracker: Tracker,
    *,
    defense: Defense | Callable[[Tracker], Tracker] | None = None,
    refine: Refinement | None = None,
    attack: OnlineAttack | None = None,
    adaptive: bool = True,
) -> Tracker:
    """``tracker`` with, from the inside out, ``defense`` (a :class:`Defense`, or a function tracker → defended
    tracker for a U-Net held in memory, e.g. ``lambda t: defense.defended(t, unet_variables, "both")``),
    ``refine`` and ``attack``; each optional."""
    apply_defense = defense.apply if isinstance(defense, Defense) else defense

    def stack(t: Tracker, with_defense: bool) -> Tracker:
        if with_defense and apply_defense is not None:
            t = apply_defense(t)
        if refine is not None and refine.steps > 0:
            t = refined(t, refine.steps, refine.alpha, refine.eps, refine.loss)
        return t

    inner = stack(tracker, True)
    if attack is None:
        return inner
    surrogate = None if adaptive or defense is None else stack(tracker, False)
    return attacked(inner, attack, surrogate)
