"""Variables for a tracker: from a converted checkpoint folder, a jaxtrack (orbax) checkpoint, or random."""

from __future__ import annotations

from pathlib import Path

import jax

from jaxtrack import checkpoint
from jaxtrack.tracking.base import Tracker


PYTORCH_SUFFIXES = (".pth", ".pt", ".pkl")

# Real pretrained weights that sit in the shared data folder (never in this repository), by tracker name.
SHARED_CHECKPOINTS = {
    "nanotrack_v2": "weights/nanotrack/nanotrackv2.pth",
    "nanotrack_v3": "weights/nanotrack/nanotrackv3.pth",
    "nanotrack_v2_opencv": "weights/nanotrack/nanotrackv2.pth",
    "nanotrack_v2_opencv51": "weights/nanotrack/nanotrackv2.pth",
}


def load_pytorch_checkpoint(tracker: Tracker, path) -> dict:
    """Convert a PyTorch checkpoint for ``tracker`` in memory (torch-free reader, the key map of the checkpoint kind made for the tracker)."""
    from jaxtrack.convert.convert import CHECKPOINT_KINDS, abstract_variables, compatible_kinds, state_dict_to_variables
    from jaxtrack.convert.reader import load_torch_file

    # the checkpoint kind made for this tracker, else one whose network is the same (e.g. nanotrack_v2_opencv)
    specs = [spec for spec in CHECKPOINT_KINDS.values() if spec.tracker == tracker.name]
    specs = specs or [CHECKPOINT_KINDS[name] for name in compatible_kinds(tracker)]
    if not specs:
        raise ValueError(f"no checkpoint kind converts to tracker {tracker.name!r}; see `jaxtrack convert --help`")
    return state_dict_to_variables(
        load_torch_file(path), abstract_variables(tracker), specs[0].ignore_prefixes, key_map=specs[0].key_map,
        source=str(path),
    )


# Weights trained by this project and shipped inside the package, by tracker name (see the .json beside each:
# the command and data that made them).
BUNDLED_CHECKPOINTS = {
    "siamfcpp_tiny": "weights/siamfcpp_tiny",
}


def bundled_checkpoint(tracker_name: str) -> Path | None:
    """The weights shipped in ``jaxtrack/assets`` for ``tracker_name``, if any."""
    rel = BUNDLED_CHECKPOINTS.get(tracker_name)
    path = Path(__file__).resolve().parent.parent / "assets" / rel if rel else None
    return path if path is not None and path.is_dir() else None


def default_checkpoint(tracker_name: str) -> Path | None:
    """The weights used when none are given: shipped with the package, else real ones in the shared data folder."""
    return bundled_checkpoint(tracker_name) or shared_checkpoint(tracker_name)


def shared_checkpoint(tracker_name: str) -> Path | None:
    """The real checkpoint for ``tracker_name`` in the shared data folder, if there is one."""
    from jaxtrack.paths import shared_data_dir

    rel = SHARED_CHECKPOINTS.get(tracker_name)
    path = shared_data_dir() / rel if rel else None
    return path if path is not None and path.is_file() else None


def load_tracker_variables(tracker: Tracker, weights: str | None, seed: int = 0) -> tuple[dict, bool]:
    """(variables, is_random). With ``weights`` None the variables are randomly initialised.

    ``weights`` is a folder written by ``jaxtrack convert`` (has ``card.json``; its checkpoint kind must fit the tracker),
    a bare orbax variables directory, or a PyTorch checkpoint file converted in memory.
    """
    if weights is None:
        return tracker.init_variables(jax.random.key(seed)), True
    from jaxtrack.convert.convert import is_converted_folder, load_converted

    if is_converted_folder(weights):
        return load_converted(weights, tracker), False
    if Path(weights).is_file():
        if Path(weights).suffix in PYTORCH_SUFFIXES:
            return load_pytorch_checkpoint(tracker, weights), False
        raise ValueError(
            f"{weights} is a file but not a PyTorch checkpoint ({', '.join(PYTORCH_SUFFIXES)}); --weights expects a "
            "folder written by `jaxtrack convert`, an orbax checkpoint or a PyTorch checkpoint"
        )
    target = jax.eval_shape(tracker.init_variables, jax.random.key(seed))
    return checkpoint.load_variables(weights, target), False
