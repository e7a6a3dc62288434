"""Variables for a tracker: from a jaxtrack (orbax) checkpoint, or random when none is given."""

from __future__ import annotations

import jax

from jaxtrack import checkpoint
from jaxtrack.tracking.base import Tracker


def load_tracker_variables(tracker: Tracker, weights: str | None, seed: int = 0) -> tuple[dict, bool]:
    """(variables, is_random). With ``weights`` None the variables are randomly initialised."""
    if weights is None:
        return tracker.init_variables(jax.random.key(seed)), True
    target = jax.eval_shape(tracker.init_variables, jax.random.key(seed))
    return checkpoint.load_variables(weights, target), False
