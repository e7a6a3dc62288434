"""DuaLossDef as a plug-and-play wrapper: any tracker, with a U-Net pre-processor in front of its network.

>>> unet = DefenseUNet()                                      # jaxtrack.models.unet
>>> unet_variables = unet.init_variables(jax.random.key(0))     # identity until trained
>>> tracker = defended(jaxtrack.tracking.create("nanotrack_v2"), where="both", unet=unet)
>>> variables = defended_variables(tracker_variables, unet_variables)  # {"tracker": ..., "defense": ...}
>>> boxes, scores = tracker.track_sequence(variables, frames, box0)   # the same interface

:func:`defended` returns a :class:`DefendedTracker`, a :class:`~jaxtrack.tracking.Tracker` with the same interface
as the tracker it wraps. The U-Net is applied to the crop *at the network input*: inside ``embed_template``
(template branch) and ``head`` (search branch). So

* tracking (``init``/``step``/``track_sequence``/``track_batch``/``track_chunks``/``scan_frames``) runs defended;
* an attack that perturbs a crop and differentiates ``dense_predictions(head(...))`` or ``embed_template``
  (:mod:`jaxtrack.attacks`) differentiates through the U-Net: that is the *adaptive* attack. The non-adaptive
  attack is the same attack computed on the undefended tracker and fed to the defended one
  (``attacks.attacked(defended_tracker, attack, surrogate=undefended_tracker)``: the surrogate gets
  ``variables["tracker"]``);
* template refinement (:mod:`jaxtrack.attacks.refine`) composes: it optimises the crop fed to the defense.

The wrapper is plain data (tracker, U-Net module, branches, label), compared and hashed by value; the arrays
travel in ``variables = {"tracker": <the wrapped tracker's variables>, "defense": <the U-Net's variables>}``
(:func:`defended_variables`). To train the U-Net, differentiate with respect to ``variables["defense"]`` (or
:func:`apply_defense` with respect to its variables).

Checkpoints of trained defenses: :func:`save_defense` / :func:`load_defense` / :func:`defended_from_checkpoint`
(:mod:`jaxtrack.defense.checkpoint`).

Adversarial training of the U-Net with the Dua-Loss (``jaxtrack train-defense``), imported on demand:
:mod:`jaxtrack.defense.config` (configurations and named recipes), :mod:`jaxtrack.defense.objective` (adversarial
crops and the U-Net's loss), :mod:`jaxtrack.defense.trainer` (the jitted step, the loop, the export) and
:mod:`jaxtrack.defense.evaluate` (held-out check of a trained U-Net).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import types
from typing import Any

import jax
import jax.numpy as jnp

from jaxtrack.defense.checkpoint import (
    WHERE,
    check_where,
    defense_meta,
    load_for_tracker,
    load_defense,
    read_defense_card,
    save_defense,
)
from jaxtrack.models.unet import DefenseUNet
from jaxtrack.tracking.base import Tracker, TrackState
from jaxtrack.tracking.wrapper import TrackerWrapper

__all__ = [
    "WHERE",
    "DefendedTracker",
    "DefenseUNet",
    "apply_defense",
    "defended",
    "defended_from_checkpoint",
    "defended_variables",
    "defense_meta",
    "load_defense",
    "read_defense_card",
    "save_defense",
]


def apply_defense(unet: DefenseUNet, unet_variables, crops: jax.Array) -> jax.Array:
    """The U-Net on crops ``[H, W, 3]`` or ``[B, H, W, 3]`` (BGR, 0..255) → same shape (pure; differentiable
    with respect to ``unet_variables`` and ``crops``)."""
    crops = jnp.asarray(crops)
    if crops.ndim == 3:
        return unet.apply(unet_variables, crops[None])[0]
    return unet.apply(unet_variables, crops)


def _family_class(tracker: Tracker) -> type:
    while isinstance(tracker, DefendedTracker):
        tracker = tracker.base
    return type(tracker)


def defended_variables(tracker_variables, unet_variables) -> dict:
    """The variables of a :class:`DefendedTracker`: ``{"tracker": tracker_variables, "defense": unet_variables}``
    (the wrapped tracker's own variables and the U-Net's ``{"params": ...}``)."""
    return {"tracker": tracker_variables, "defense": unet_variables}


@dataclasses.dataclass(frozen=True)
class DefendedTracker(TrackerWrapper):
    """A tracker with a U-Net pre-processor on its template and/or search crops (build it with :func:`defended`).

    Fields: ``config`` (the wrapped config with ``name`` = :attr:`name`), ``model`` (the wrapped tracker's Flax
    module), ``base`` (the wrapped tracker), ``unet`` (a :class:`DefenseUNet`), ``where`` ("template", "search" or
    "both") and ``label``. Its variables are :func:`defended_variables` ``(tracker variables, U-Net variables)``.

    Delegation: the family pieces that do not touch the network input (crops, box conventions, ``decode``,
    ``dense_predictions``) run on ``base``; ``embed_template`` / ``head`` apply the U-Net and then run on ``base``
    with ``variables["tracker"]``; the composed functions (``init_pure``, ``step_pure``, ``scan_frames``,
    ``track_*`` …) run the *family's* code (so a family that overrides e.g. ``step_pure`` keeps its behaviour)
    with ``self`` = the wrapper, so every piece they call is the defended one. Any other attribute falls back to
    ``base``: data and (cached) properties such as ``window``, ``anchors``, ``points`` are read from ``base``;
    other methods of the family class are bound to the wrapper. Wrappers nest (the outer U-Net sees the crop
    first; the inner one's variables are ``variables["tracker"]["defense"]``).
    """

    base: Tracker = None  # type: ignore[assignment]
    unet: DefenseUNet = None  # type: ignore[assignment]
    where: str = "both"
    label: str = ""  # tells U-Nets apart in the name (results folders): e.g. "from-siamfcpp_tiny" for transfer

    variables_key = "defense"

    def __post_init__(self):
        if not isinstance(self.base, Tracker):
            raise TypeError(f"DefendedTracker.base must be a Tracker, got {type(self.base).__name__}")
        if not isinstance(self.unet, DefenseUNet):
            raise TypeError(f"DefendedTracker.unet must be a DefenseUNet, got {type(self.unet).__name__}")
        check_where(self.where)
        if not re.fullmatch(r"[A-Za-z0-9_.-]*", self.label):
            raise ValueError(f"label must be letters, digits, '_', '.', '-' (it names result folders), got {self.label!r}")
        # derived from base, so that dataclasses.replace(d, where=...) keeps the name consistent
        object.__setattr__(self, "config", _renamed_config(self.base.config, self.name))
        object.__setattr__(self, "model", self.base.model)

    # ------------------------------------------------------------------ identity and fallback
    @property
    def name(self) -> str:
        return f"{self.base.name}_unet-{self.where}" + (f"-{self.label}" if self.label else "")

    @property
    def defends_template(self) -> bool:
        return self.where in ("template", "both")

    @property
    def defends_search(self) -> bool:
        return self.where in ("search", "both")

    @functools.cached_property
    def _family_cls(self) -> type:
        return _family_class(self.base)

    def __getattr__(self, name: str):
        # Only called when normal lookup fails: family attributes that Tracker does not define.
        if name.startswith("__") or name in ("base", "_family_cls"):
            raise AttributeError(name)
        base = self.__dict__.get("base")
        if base is None:
            raise AttributeError(name)
        raw = inspect.getattr_static(self._family_cls, name, None)
        if isinstance(raw, types.FunctionType):
            return types.MethodType(raw, self)
        return getattr(base, name)

    def __repr__(self) -> str:
        return f"DefendedTracker({self.base!r}, where={self.where!r}, unet={self.unet!r})"

    def split_variables(self, variables) -> tuple[Any, Any]:
        """``(tracker variables, U-Net variables)`` of this wrapper's ``variables``; a clear error otherwise."""
        if not isinstance(variables, dict) or set(variables) != {"tracker", "defense"}:
            keys = sorted(variables) if isinstance(variables, dict) else type(variables).__name__
            raise ValueError(f"{self.name} takes variables {{'tracker': <{self.base.name} variables>, 'defense': "
                             f"<U-Net variables>}} (jaxtrack.defense.defended_variables), got {keys}")
        return variables["tracker"], variables["defense"]

    def defend(self, variables, crops: jax.Array) -> jax.Array:
        """The wrapper's U-Net on crops ``[H, W, 3]`` / ``[B, H, W, 3]`` (whichever branch they belong to)."""
        return apply_defense(self.unet, self.split_variables(variables)[1], crops)

    # ------------------------------------------------------------------ the defended network input
    def embed_template(self, variables, z: jax.Array):
        """Template embedding of crops z [Z,Z,3] or [B,Z,Z,3], the U-Net applied first if the template branch is
        defended."""
        tracker_variables, unet_variables = self.split_variables(variables)
        z = z[None] if z.ndim == 3 else z
        if self.defends_template:
            z = apply_defense(self.unet, unet_variables, z)
        return self.base.embed_template(tracker_variables, z)

    def head(self, variables, template, x: jax.Array) -> dict:
        """Raw head outputs for search crops x [X,X,3] or [B,X,X,3], the U-Net applied first if the search branch
        is defended."""
        tracker_variables, unet_variables = self.split_variables(variables)
        x = x[None] if x.ndim == 3 else x
        if self.defends_search:
            x = apply_defense(self.unet, unet_variables, x)
        return self.base.head(tracker_variables, template, x)

    def init_variables(self, key, calibration_batch: int = 2):
        """:func:`defended_variables` of the wrapped tracker's initial variables and the identity U-Net's."""
        k_tracker, k_unet = jax.random.split(key)
        return defended_variables(self.base.init_variables(k_tracker, calibration_batch),
                                  self.unet.init_variables(k_unet))

    # ------------------------------------------------------------------ composed: the family's code on the wrapper
    # Crops, box conventions and decoding are delegated to ``base`` by TrackerWrapper; everything that embeds a
    # template or runs the head is the family's code with ``self`` = the wrapper (the defended pieces).
    def init_with_crop(self, variables, frame, center, size, channel_avg, z) -> TrackState:
        return self._family_cls.init_with_crop(self, variables, frame, center, size, channel_avg, z)

    def init_pure(self, variables, frame, box) -> TrackState:
        return self._family_cls.init_pure(self, variables, frame, box)

    def step_pure(self, variables, state: TrackState, frame):
        return self._family_cls.step_pure(self, variables, state, frame)

    def init(self, variables, frame, box) -> TrackState:
        return self._family_cls.init(self, variables, frame, box)

    def step(self, variables, state: TrackState, frame):
        return self._family_cls.step(self, variables, state, frame)

    def step_with_crop(self, variables, state: TrackState, frame, x, scale):
        return self._family_cls.step_with_crop(self, variables, state, frame, x, scale)

    def _masked_step(self, variables, state, frame, valid):
        return self._family_cls._masked_step(self, variables, state, frame, valid)

    def scan_frames(self, variables, state: TrackState, frames, valid):
        return self._family_cls.scan_frames(self, variables, state, frames, valid)

    def _sequence_pure(self, variables, frames, box0, length):
        return self._family_cls._sequence_pure(self, variables, frames, box0, length)

    def track_sequence(self, variables, frames, box0):
        return self._family_cls.track_sequence(self, variables, frames, box0)

    def track_batch(self, variables, frames, boxes0, lengths):
        return self._family_cls.track_batch(self, variables, frames, boxes0, lengths)

    def compile_track_batch(self, variables, frames, boxes0, lengths):
        return self._family_cls.compile_track_batch(self, variables, frames, boxes0, lengths)

    def track_chunks(self, variables, chunks, box0, chunk_size: int, on_chunk=None):
        return self._family_cls.track_chunks(self, variables, chunks, box0, chunk_size, on_chunk)


for _name in (
    "init_pure", "init_with_crop", "step_pure", "init", "step", "step_with_crop", "scan_frames", "track_sequence", "track_batch", "compile_track_batch",
    "track_chunks",
):  # the wrapped tracker's documentation
    getattr(DefendedTracker, _name).__doc__ = getattr(Tracker, _name).__doc__
del _name


def _renamed_config(config, name: str):
    if dataclasses.is_dataclass(config) and "name" in {f.name for f in dataclasses.fields(config)}:
        return dataclasses.replace(config, name=name)
    return config


def defended(tracker: Tracker, where: str = "both", unet: DefenseUNet | None = None,
             label: str = "") -> DefendedTracker:
    """``tracker`` with the U-Net ``unet`` (default ``DefenseUNet()``) applied to its template crops
    (``where="template"``), search crops (``"search"``) or both, at the network input.

    The result has the same interface; it takes :func:`defended_variables` ``(tracker variables, U-Net
    variables)``. Its name is ``f"{tracker.name}_unet-{where}"`` plus ``-{label}`` when a label is given
    (shell-friendly: it names result folders). Equal arguments give equal trackers (compiled code is shared).
    """
    check_where(where)
    if not isinstance(tracker, Tracker):
        raise TypeError(f"defended() wraps a jaxtrack Tracker, got {type(tracker).__name__}")
    return DefendedTracker(
        config=tracker.config,  # renamed in __post_init__
        model=tracker.model,
        base=tracker,
        unet=DefenseUNet() if unet is None else unet,
        where=where,
        label=label,
    )


def defended_from_checkpoint(tracker, tracker_variables, path, where: str | None = None,
                             allow_transfer: bool = False, label: str | None = None):
    """``(defended tracker, its variables)``: :func:`defended` with the U-Net of the defense checkpoint at
    ``path`` (a folder, ``bundled`` or ``bundled:<tracker>``), checked against ``tracker``
    (:func:`jaxtrack.defense.checkpoint.load_for_tracker`: crop sizes, family, ``allow_transfer``), and
    :func:`defended_variables` of ``tracker_variables`` and the U-Net's. Names: e.g. ``nanotrack_v2_unet-both``
    (shipped), ``nanotrack_v2_unet-both-from-siamfcpp_tiny`` (transfer)."""
    unet, unet_variables, where, label = load_for_tracker(tracker, path, where, allow_transfer, label)
    unet_variables = jax.tree_util.tree_map(jnp.asarray, dict(unet_variables))
    return (defended(tracker, where=where, unet=unet, label=label),
            defended_variables(tracker_variables, unet_variables))
