"""Published PyTorch checkpoints as jaxtrack weights: the tracker a checkpoint kind fills, conversion to a
weights folder (``jaxtrack convert``) or in memory (a ``.pth`` given as ``--weights``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxtrack.weights.backbone import file_sha256

PYTORCH_SUFFIXES = (".pth", ".pt", ".pkl")


def tracker_of(name_or_tracker):
    """A :class:`~jaxtrack.tracking.Tracker` from a tracker or its name (``ValueError`` for an unknown name)."""
    from jaxtrack.tracking import Tracker, create

    if isinstance(name_or_tracker, Tracker):
        return name_or_tracker
    try:
        return create(name_or_tracker)
    except KeyError as err:
        raise ValueError(str(err).strip("\"'")) from None


def compatible_kinds(tracker) -> list[str]:
    """Registered checkpoint kinds whose weights fit ``tracker``'s network."""
    from jaxtrack.convert.convert import CHECKPOINT_KINDS

    tracker = tracker_of(tracker)
    out = []
    for name, spec in CHECKPOINT_KINDS.items():
        try:
            if tracker_of(spec.tracker).model == tracker.model:
                out.append(name)
        except ValueError:  # a kind whose tracker is not available in this version
            continue
    return sorted(out)


def kind_for(tracker) -> str:
    """The checkpoint kind made for ``tracker``, else one whose network is the same (e.g. the OpenCV NanoTrack
    emulation reads NanoTrack v2's file)."""
    from jaxtrack.convert.convert import CHECKPOINT_KINDS

    tracker = tracker_of(tracker)
    made = [name for name, spec in CHECKPOINT_KINDS.items() if spec.tracker == tracker.name]
    kinds = made or compatible_kinds(tracker)
    if not kinds:
        raise ValueError(f"no checkpoint kind converts to tracker {tracker.name!r}; see `jaxtrack convert --help`")
    return kinds[0]


def convert_file(tracker, path, kind: str | None = None) -> tuple[dict, dict]:
    """``(variables, provenance)`` of the PyTorch checkpoint file ``path`` for ``tracker`` (torch-free reader)."""
    from jaxtrack.convert.convert import abstract_variables, convert_state_dict
    from jaxtrack.convert.reader import load_torch_file

    tracker = tracker_of(tracker)
    kind = kind or kind_for(tracker)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    obj = load_torch_file(path)
    variables, dropped = convert_state_dict(kind, obj, abstract_variables(tracker), str(path))
    source = {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size}
    if isinstance(obj, Mapping) and isinstance(obj.get("epoch"), (int, np.integer)):
        source["epoch"] = int(obj["epoch"])
    return variables, {"kind": kind, "source": source, "dropped_keys": dropped}


def convert_checkpoint(kind: str, src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Convert the PyTorch checkpoint ``src`` of checkpoint kind ``kind`` into the weights folder ``dst``.

    Nothing is written when the checkpoint is unreadable or does not fit the model; ``dst`` is either absent or
    complete (:func:`jaxtrack.weights.store.save_weights`), replaced only with ``overwrite``.
    """
    import jax

    from jaxtrack.convert.convert import get_checkpoint_kind
    from jaxtrack.weights.store import new_card, save_weights

    spec = get_checkpoint_kind(kind)
    dst = Path(dst).absolute()
    if dst.exists() and not overwrite:  # before the (slow) conversion
        raise FileExistsError(f"{dst} already exists (pass --overwrite / overwrite=True to replace it)")
    variables, provenance = convert_file(spec.tracker, src, kind)
    leaves = jax.tree_util.tree_leaves(variables)
    card = new_card("tracker", spec.tracker, variables, description=spec.description, **provenance,
                    num_arrays=len(leaves),
                    num_batch_stats=int(sum(np.size(x) for x in jax.tree_util.tree_leaves(
                        variables.get("batch_stats", {})))))
    return save_weights(dst, variables, card, overwrite=overwrite)


def check_fits(card: dict, tracker, folder) -> None:
    """``ValueError`` when the weights described by ``card`` are for a network other than ``tracker``'s, naming
    the checkpoint kinds that would fit."""
    tracker = tracker_of(tracker)
    made_for = card.get("tracker")
    try:
        fits = made_for is not None and tracker_of(made_for).model == tracker.model
    except ValueError:
        fits = False
    if not fits:
        what = f"checkpoint kind {card['kind']!r}" if card.get("kind") else f"{card.get('what', 'weights')}"
        fitting = " or ".join(map(repr, compatible_kinds(tracker))) or "(none registered)"
        raise ValueError(f"{folder} holds weights of {what} (network of tracker {made_for!r}), which do not fit "
                         f"tracker {tracker.name!r}; it needs a checkpoint of kind {fitting}")
