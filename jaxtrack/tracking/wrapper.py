"""A tracker that wraps another and changes some of its pieces, keeping the whole tracker interface.

Online attacks (:mod:`jaxtrack.attacks.online`), template refinement (:mod:`jaxtrack.attacks.refine`) and the
defense (:mod:`jaxtrack.defense`) are wrappers: each overrides the pieces it changes (``init_with_crop``,
``step_with_crop``, ``init_pure``/``step_pure``, ``embed_template``/``head``) and delegates the rest to
``base``, so they compose in any order and the composed object still runs under ``track_sequence`` /
``track_batch`` / ``track_chunks`` and the benchmark runner.

A step must stay ``step_with_crop(x) = step_from_head(head(x))`` with dense predictions read through
``dense_predictions``: a white-box online attack computes ``head`` on the attacked crop inside its loop and finishes
the step with ``step_from_head``. A wrapper that changes the network's input overrides ``head`` (the defense does);
one that changes how raw outputs become a box overrides ``step_from_head`` / ``decode``.

A wrapper is plain data: a frozen dataclass of settings, compared and hashed by value (it is a static argument of
``jax.jit``, so equal wrappers share compiled code). A wrapper without arrays of its own (attack, refinement) takes
the wrapped tracker's ``variables`` unchanged; one with arrays (the defense's U-Net) takes ``{"tracker": <the
wrapped tracker's variables>, <its own key>: <its arrays>}`` and hands ``variables["tracker"]`` down
(:attr:`TrackerWrapper.variables_key`, :func:`inner_variables`).

Order matters, because a wrapper's own code calls the pieces of the tracker it wraps: the defense sits innermost
(it is part of the network: ``embed_template``/``head``), template refinement above it (it refines through
whatever network is below), an online attack outermost (it perturbs the crops the tracker below sees and, unless
given a surrogate, differentiates through everything below — the adaptive attack). ``init_pure``/``step_pure``
are the generic ones of :class:`~jaxtrack.tracking.base.Tracker` composed from the (possibly overridden) pieces.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxtrack.tracking.base import Tracker


@dataclasses.dataclass(frozen=True)
class TrackerWrapper(Tracker):
    """Delegates every piece to ``base``; subclasses override what they change.

    Attributes a family defines beyond the interface (``window``, ``anchors``, ``points``, ...) are looked up on
    ``base``. ``config`` and ``model`` are the base's.
    """

    base: Tracker = None  # type: ignore[assignment]

    #: None: the wrapper takes the wrapped tracker's variables; a name: it takes ``{"tracker": <wrapped tracker's
    #: variables>, variables_key: <its own arrays>}``.
    variables_key = None

    @classmethod
    def around(cls, base: Tracker, **fields) -> "TrackerWrapper":
        return cls(config=base.config, model=base.model, base=base, **fields)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails; guard the dataclass fields against recursion during construction.
        if name.startswith("__") or name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def innermost(self) -> Tracker:
        """The family tracker at the bottom of a stack of wrappers."""
        t = self.base
        return t.innermost if isinstance(t, TrackerWrapper) else t

    # pieces: all delegated
    def box_to_center_size(self, box):
        return self.base.box_to_center_size(box)

    def center_size_to_box(self, center, size):
        return self.base.center_size_to_box(center, size)

    def template_crop(self, frame, center, size, channel_avg):
        return self.base.template_crop(frame, center, size, channel_avg)

    def search_crop(self, frame, center, size, channel_avg):
        return self.base.search_crop(frame, center, size, channel_avg)

    def decode(self, raw, center, size, scale, frame_hw):
        return self.base.decode(raw, center, size, scale, frame_hw)

    def dense_predictions_single(self, raw):
        return self.base.dense_predictions_single(raw)

    def dense_predictions(self, raw):
        return self.base.dense_predictions(raw)

    def init_variables(self, key, calibration_batch: int = 2):
        return self.base.init_variables(key, calibration_batch)

    def embed_template(self, variables, z):
        return self.base.embed_template(variables, z)

    def head(self, variables, template, x):
        return self.base.head(variables, template, x)

    def init_with_crop(self, variables, frame, center, size, channel_avg, z):
        return self.base.init_with_crop(variables, frame, center, size, channel_avg, z)

    def step_with_crop(self, variables, state, frame, x, scale):
        return self.base.step_with_crop(variables, state, frame, x, scale)

    def step_from_head(self, state, frame, raw, scale):
        return self.base.step_from_head(state, frame, raw, scale)


def variable_levels(tracker: Tracker) -> int:
    """How many wrappers with arrays of their own (:attr:`TrackerWrapper.variables_key`) a stack has: the nesting
    depth of ``{"tracker": ...}`` in its variables."""
    levels = 0
    while isinstance(tracker, TrackerWrapper):
        levels += tracker.variables_key is not None
        tracker = tracker.base
    return levels


def inner_variables(variables, levels: int):
    """``variables["tracker"]`` taken ``levels`` times: the variables of the tracker ``levels`` array-holding
    wrappers further down."""
    for _ in range(levels):
        if not isinstance(variables, dict) or "tracker" not in variables:
            keys = sorted(variables) if isinstance(variables, dict) else type(variables).__name__
            raise ValueError(f"expected wrapper variables {{'tracker': ..., ...}}, got {keys}")
        variables = variables["tracker"]
    return variables
