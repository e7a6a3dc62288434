"""Tracker families as pure functions behind one interface.

>>> tracker = jaxtrack.tracking.create("siamfcpp_alexnet")
>>> variables = tracker.init_variables(jax.random.key(0))
>>> state = tracker.init(variables, frame, box)            # frame HxWx3 BGR, box [x, y, w, h] 0-based
>>> state, box, score = tracker.step(variables, state, frame)
>>> boxes, scores = tracker.track_sequence(variables, frames, box0)
"""

from __future__ import annotations

import functools

from jaxtrack.tracking.base import (
    NonFiniteScoreWarning,
    Tracker,
    TrackState,
    check_frame_shape,
    check_init_box,
    warn_if_scores_not_finite,
)
from jaxtrack.tracking.configs import CONFIGS, SiamFCppConfig, SiamRPNConfig, get_config
from jaxtrack.tracking.families import SiamFCppTracker, SiamRPNTracker
from jaxtrack.tracking.nanotrack import NanoTrackConfig, NanoTrackTracker, OpenCVNanoTrackTracker


def build_model(config):
    """The Flax module of a tracker configuration."""
    from jaxtrack import models

    if isinstance(config, SiamFCppConfig):
        if config.width_mult != 1.0:  # compact variant (siamfcpp_tiny)
            return models.SiamFCppAlexNet(width_mult=config.width_mult)
        return models.SiamFCppAlexNet()
    if isinstance(config, NanoTrackConfig):
        return models.NanoTrack(version=config.version)
    if config.backbone == "resnet50":
        return models.SiamRPNPP(weighted=config.weighted_fusion)
    if config.backbone == "alexnet":
        return models.SiamRPNAlex()
    raise ValueError(f"no model for backbone {config.backbone!r} of tracker {config.name!r}")


def create(name: str, **overrides) -> Tracker:
    """The tracker ``name`` (see ``CONFIGS``) with its published hyper-parameters, optionally overridden.

    Trackers are immutable, so equal configurations share one object (and its compiled functions).
    """
    return _create(get_config(name, **overrides))


@functools.lru_cache(maxsize=32)
def _create(config) -> Tracker:
    if isinstance(config, NanoTrackConfig):
        cls = OpenCVNanoTrackTracker if config.opencv_compat else NanoTrackTracker
        return cls(config=config, model=build_model(config))
    cls = SiamFCppTracker if isinstance(config, SiamFCppConfig) else SiamRPNTracker
    return cls(config=config, model=build_model(config))


__all__ = [
    "CONFIGS",
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
