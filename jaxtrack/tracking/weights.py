"""Variables for a tracker: from a converted checkpoint folder, a jaxtrack (orbax) checkpoint, or random."""

from __future__ import annotations

from pathlib import Path

import jax

from jaxtrack import checkpoint
from jaxtrack.tracking.base import Tracker


def load_tracker_variables(tracker: Tracker, weights: str | None, seed: int = 0) -> tuple[dict, bool]:
    """(variables, is_random). With ``weights`` None the variables are randomly initialised.

    ``weights`` is a folder written by ``jaxtrack convert`` (has ``card.json``; its family must fit the tracker)
    or a bare orbax variables directory.
    """
    if weights is None:
        return tracker.init_variables(jax.random.key(seed)), True
    from jaxtrack.convert.convert import is_converted_folder, load_converted

    if is_converted_folder(weights):
        return load_converted(weights, tracker), False
    if Path(weights).is_file():
        raise ValueError(
            f"{weights} is a file; --weights expects a folder: convert a PyTorch checkpoint first with "
            "`jaxtrack convert --family NAME SRC DST`"
        )
    target = jax.eval_shape(tracker.init_variables, jax.random.key(seed))
    return checkpoint.load_variables(weights, target), False
