"""Tracker families as pure functions behind one interface.

>>> tracker = jaxtrack.tracking.create("siamfcpp_alexnet")
>>> variables = tracker.init_variables(jax.random.key(0))
>>> state = tracker.init(variables, frame, box)            # frame HxWx3 BGR, box [x, y, w, h] 0-based
>>> state, box, score = tracker.step(variables, state, frame)
>>> boxes, scores = tracker.track_sequence(variables, frames, box0)
"""

from __future__ import annotations


from jaxtrack.tracking.base import (
    NonFiniteScoreWarning,
    Tracker,
    TrackState,
    check_frame_shape,
    check_init_box,
    warn_if_scores_not_finite,
)
from jaxtrack.tracking.configs import CONFIGS, NanoTrackConfig, SiamFCppConfig, SiamRPNConfig, get_config
from jaxtrack.tracking.families import SiamFCppTracker, SiamRPNTracker  # registers siamfcpp, siamrpn
from jaxtrack.tracking.nanotrack import NanoTrackTracker, OpenCVNanoTrackTracker  # registers nanotrack
from jaxtrack.tracking.registry import FAMILIES, TrackerFamily, family_of, register


def build_model(config):
    """The Flax module of a tracker configuration (its family's network builder)."""
    return family_of(config).build_model(config)


def create(name: str, **overrides) -> Tracker:
    """The tracker ``name`` (see ``CONFIGS``) with its published hyper-parameters, optionally overridden.

    Trackers compare by value, so equal configurations share their compiled functions.
    """
    return from_config(get_config(name, **overrides))


def from_config(config) -> Tracker:
    """The tracker of a configuration object of any registered family (e.g. one not in ``CONFIGS``)."""
    family = family_of(config)
    return family.tracker_class(config)(config=config, model=family.build_model(config))


__all__ = [
    "CONFIGS",
    "FAMILIES",
    "TrackerFamily",
    "family_of",
    "from_config",
    "register",
    "NanoTrackConfig",
    "NanoTrackTracker",
    "NonFiniteScoreWarning",
    "OpenCVNanoTrackTracker",
    "SiamFCppConfig",
    "SiamFCppTracker",
    "SiamRPNConfig",
    "SiamRPNTracker",
    "TrackState",
    "Tracker",
    "build_model",
    "check_frame_shape",
    "check_init_box",
    "create",
    "warn_if_scores_not_finite",
    "get_config",
]
