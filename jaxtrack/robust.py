"""Stack a tracker with a defense, template refinement and an online attack, in the one order that makes sense.

    tracker = robust.wrap(tracking.create("nanotrack_v2"),
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

__all__ = ["Refinement", "wrap"]


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
    defense: Callable[[Tracker], Tracker] | None = None,
    refine: Refinement | None = None,
    attack: OnlineAttack | None = None,
    adaptive: bool = True,
) -> Tracker:
    """``tracker`` with, from the inside out, ``defense`` (a function tracker → defended tracker, e.g.
    ``lambda t: defense.defended(t, unet_variables, "both")``), ``refine`` and ``attack``; each optional."""

    def stack(t: Tracker, with_defense: bool) -> Tracker:
        if with_defense and defense is not None:
            t = defense(t)
        if refine is not None and refine.steps > 0:
            t = refined(t, refine.steps, refine.alpha, refine.eps, refine.loss)
        return t

    inner = stack(tracker, True)
    if attack is None:
        return inner
    surrogate = None if adaptive or defense is None else stack(tracker, False)
    return attacked(inner, attack, surrogate)
