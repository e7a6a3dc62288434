"""Tracker hyper-parameters, one frozen dataclass per published reference configuration.

The values are those of the reference code (see ``../shared/reference/trackers.md``):

* pysot ``experiments/siamrpn_r50_l234_dwxcorr/config.yaml`` (VOT), ``..._otb`` (OTB) and
  ``siamrpn_alex_dwxcorr`` (``TRACK`` section);
* video_analyst ``siamfcpp_track.py`` defaults and ``experiments/siamfcpp/test/{vot,otb}`` yaml files.

Sizes are in pixels of the crops the networks see; ``context_amount`` is the pysot/video_analyst
template context (``w + context*(w+h)``).
"""

from __future__ import annotations

import dataclasses
from typing import Union


@dataclasses.dataclass(frozen=True)
class SiamRPNConfig:
    """pysot ``SiamRPNTracker`` settings (anchor-based RPN trackers)."""

    name: str
    backbone: str  # "resnet50" (SiamRPN++ with MultiRPN) or "alexnet" (AlexNetLegacy + DepthwiseRPN)
    weighted_fusion: bool  # MultiRPN softmax-weighted level fusion (VOT model) or plain mean (OTB model)
    penalty_k: float
    window_influence: float
    lr: float
    exemplar_size: int = 127
    instance_size: int = 255
    base_size: int = 8
    anchor_stride: int = 8
    anchor_ratios: tuple[float, ...] = (0.33, 0.5, 1.0, 2.0, 3.0)
    anchor_scales: tuple[float, ...] = (8.0,)
    context_amount: float = 0.5
    min_size: float = 10.0

    family = "siamrpn"

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_ratios) * len(self.anchor_scales)

    @property
    def score_size(self) -> int:
        """pysot: ``(INSTANCE_SIZE - EXEMPLAR_SIZE) // ANCHOR.STRIDE + 1 + BASE_SIZE``."""
        return (self.instance_size - self.exemplar_size) // self.anchor_stride + 1 + self.base_size


SIAMFCPP_BACKBONES = ("alexnet", "nanotrack_v2")


@dataclasses.dataclass(frozen=True)
class SiamFCppConfig:
    """video_analyst ``SiamFCppTracker`` settings (anchor-free Densebox head)."""

    name: str
    penalty_k: float = 0.04
    window_influence: float = 0.21
    lr: float = 0.52  # video_analyst's ``test_lr``
    exemplar_size: int = 127  # z_size
    instance_size: int = 303  # x_size
    total_stride: int = 8
    num_conv3x3: int = 3
    context_amount: float = 0.5
    min_size: float = 10.0
    width_mult: float = 1.0  # channel multiplier of the network (1.0 = video_analyst's AlexNet SiamFC++)
    # "alexnet" (video_analyst's AlexNet-BN) or "nanotrack_v2" (NanoTrack v2's MobileNetV3-small features,
    # stride 16, 48 channels: the backbone of a tracker with real weights here)
    backbone: str = "alexnet"

    family = "siamfcpp"

    def __post_init__(self):
        if self.backbone not in SIAMFCPP_BACKBONES:
            raise ValueError(f"{self.name}: backbone must be one of {SIAMFCPP_BACKBONES}, got {self.backbone!r}")

    @property
    def score_size(self) -> int:
        """video_analyst: ``(x_size - z_size) // total_stride + 1 - 2 * num_conv3x3``."""
        return (self.instance_size - self.exemplar_size) // self.total_stride + 1 - 2 * self.num_conv3x3


OPENCV_LOOPS = ("5.0", "5.1")  # cv2.TrackerNano update loops emulated (jaxtrack.tracking.nanotrack)


@dataclasses.dataclass(frozen=True)
class NanoTrackConfig:
    """``NanoTracker`` settings (``TRACK`` / ``POINT`` sections of configv2.yaml / configv3.yaml)."""

    name: str
    version: str  # "v2" or "v3": the network (models.NanoTrack)
    penalty_k: float
    window_influence: float
    lr: float
    score_size: int  # TRACK.OUTPUT_SIZE
    exemplar_size: int = 127
    instance_size: int = 255
    stride: int = 16  # POINT.STRIDE
    context_amount: float = 0.5
    min_size: float = 10.0
    # Emulate cv2.TrackerNano instead of nano_tracker.py (nanotrack.OPENCV_DIFFERENCES); measurement only.
    opencv_compat: bool = False
    # Which release's update loop (nanotrack.OPENCV_51_CHANGES): "5.0" (the stored reference trajectories) or "5.1".
    opencv_loop: str = "5.0"

    def __post_init__(self):
        if self.opencv_loop not in OPENCV_LOOPS:
            raise ValueError(f"{self.name}: opencv_loop must be one of {OPENCV_LOOPS}, got {self.opencv_loop!r}")

    family = "nanotrack"


TrackerConfig = Union[SiamRPNConfig, SiamFCppConfig, NanoTrackConfig]

CONFIGS: dict[str, TrackerConfig] = {
    # pysot siamrpn_r50_l234_dwxcorr (VOT2018 model, weighted MultiRPN).
    "siamrpnpp_r50": SiamRPNConfig(
        "siamrpnpp_r50", "resnet50", True, penalty_k=0.05, window_influence=0.42, lr=0.38
    ),
    # pysot siamrpn_r50_l234_dwxcorr_otb (OTB model, mean fusion).
    "siamrpnpp_r50_otb": SiamRPNConfig(
        "siamrpnpp_r50_otb", "resnet50", False, penalty_k=0.24, window_influence=0.5, lr=0.25
    ),
    # pysot siamrpn_alex_dwxcorr (and _otb, identical TRACK section).
    "siamrpn_alex": SiamRPNConfig(
        "siamrpn_alex",
        "alexnet",
        False,
        penalty_k=0.16,
        window_influence=0.40,
        lr=0.30,
        instance_size=287,
        base_size=0,
    ),
    # video_analyst SiamFC++ AlexNet, pipeline defaults (GOT-10k test yaml uses the same).
    "siamfcpp_alexnet": SiamFCppConfig("siamfcpp_alexnet"),
    # video_analyst experiments/siamfcpp/test/vot/siamfcpp_alex.yaml
    "siamfcpp_alexnet_vot": SiamFCppConfig(
        "siamfcpp_alexnet_vot", penalty_k=0.08, window_influence=0.21, lr=0.58
    ),
    # video_analyst experiments/siamfcpp/test/otb/siamfcpp_alex-otb.yaml (uses the VOT weights)
    "siamfcpp_alexnet_otb": SiamFCppConfig(
        "siamfcpp_alexnet_otb", penalty_k=0.0541, window_influence=0.2315, lr=0.5250
    ),
    # Compact SiamFC++ (ours, not published): the same AlexNet-BN + Densebox layers at a quarter of the channels
    # (0.61 M parameters) and a 255 px search crop (score map 11x11); trains from scratch on synthetic sequences
    # in about half an hour on a 2-core CPU (jaxtrack.train config ``siamfcpp_tiny_synthetic``).
    "siamfcpp_tiny": SiamFCppConfig("siamfcpp_tiny", instance_size=255, width_mult=0.25),
    # SiamFC++ on NanoTrack v2's backbone (ours, not published): the MobileNetV3-small features of the real
    # NanoTrack v2 weights (stride 16: z 127 -> 8x8, x 255 -> 16x16), the SiamFC++ adjust convs and a Densebox
    # head with one 3x3 tower layer at 64 channels (xcorr 9x9 -> score map 7x7); only the neck and the head train
    # (jaxtrack.train config ``siamfcpp_nano_real``).
    "siamfcpp_nano": SiamFCppConfig("siamfcpp_nano", instance_size=255, total_stride=16, num_conv3x3=1,
                                    width_mult=0.25, backbone="nanotrack_v2"),
    # HonglinChu/SiamTrackers NanoTrack models/config/configv2.yaml (TRACK.OUTPUT_SIZE: default 16).
    "nanotrack_v2": NanoTrackConfig(
        "nanotrack_v2", "v2", penalty_k=0.150, window_influence=0.490, lr=0.385, score_size=16
    ),
    # ... configv3.yaml (TRACK.OUTPUT_SIZE 15).
    "nanotrack_v3": NanoTrackConfig(
        "nanotrack_v3", "v3", penalty_k=0.138, window_influence=0.455, lr=0.348, score_size=15
    ),
    # OpenCV's cv2.TrackerNano emulated around the v2 network (measurement only, see tracking/nanotrack.py).
    "nanotrack_v2_opencv": NanoTrackConfig(
        "nanotrack_v2_opencv", "v2", penalty_k=0.055, window_influence=0.455, lr=0.37, score_size=16,
        opencv_compat=True,
    ),
    # ... and the loop of OpenCV 5.1, which changed three lines of the update (tracking/nanotrack.py).
    "nanotrack_v2_opencv51": NanoTrackConfig(
        "nanotrack_v2_opencv51", "v2", penalty_k=0.055, window_influence=0.455, lr=0.37, score_size=16,
        opencv_compat=True, opencv_loop="5.1",
    ),
}


def get_config(name: str, **overrides) -> TrackerConfig:
    """The published configuration ``name``, optionally with some fields replaced."""
    if name not in CONFIGS:
        raise KeyError(f"unknown tracker {name!r}; known: {', '.join(sorted(CONFIGS))}")
    config = CONFIGS[name]
    return dataclasses.replace(config, **overrides) if overrides else config
