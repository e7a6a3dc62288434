"""The two tracker families: pysot's anchor-based SiamRPN(++) and video_analyst's SiamFC++.

They differ only in the crop (pad + resize vs inverse affine warp), the box/centre conventions and the
decoding of the head outputs; the rest of the tracker interface lives in :mod:`jaxtrack.tracking.base`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

import jaxtrack.tracking.postprocess as pp
from jaxtrack.tracking.base import Tracker
from jaxtrack.tracking.configs import SiamFCppConfig, SiamRPNConfig
from jaxtrack.tracking.crop import crop_affine, crop_pysot
from jaxtrack.tracking.registry import TrackerFamily, register


def _context_size(size: jax.Array, context_amount: float) -> jax.Array:
    """sqrt((w + c(w+h)) (h + c(w+h))): the side of the square template context region."""
    ctx = context_amount * (size[0] + size[1])
    return jnp.sqrt((size[0] + ctx) * (size[1] + ctx))


@dataclasses.dataclass(frozen=True)
class PysotTracker(Tracker):
    """pysot's tracker loop (``SiamRPNTracker.track``), shared by SiamRPN(++) and NanoTrack: pad + resize crops,
    penalty / Hanning window / size smoothing on the family's ``dense_predictions_single``.

    Centre convention: cx = x + (w − 1)/2 at init; output box [cx − w/2, cy − h/2, w, h] (as pysot).
    Subclasses define ``dense_predictions_single`` and ``window`` ([N] Hanning window over the positions).
    """

    def box_to_center_size(self, box):
        return pp.xywh_to_cxywh_pysot(box)

    def center_size_to_box(self, center, size):
        return pp.cxywh_to_xywh_pysot(center, size)

    def template_crop(self, frame, center, size, channel_avg):
        s_z = jnp.round(_context_size(size, self.config.context_amount))
        return crop_pysot(frame, center, s_z, self.config.exemplar_size, channel_avg)

    def search_crop(self, frame, center, size, channel_avg):
        c = self.config
        s_z = _context_size(size, c.context_amount)
        scale_z = c.exemplar_size / s_z
        s_x = s_z * (c.instance_size / c.exemplar_size)
        return crop_pysot(frame, center, jnp.round(s_x), c.instance_size, channel_avg), scale_z

    def decode(self, raw, center, size, scale, frame_hw):
        c = self.config
        score, boxes = self.dense_predictions_single(jax.tree_util.tree_map(lambda a: a[0], raw))
        new_center, new_size, best_score, _ = pp.select_and_update_pysot(
            score,
            boxes,
            self.window,
            center,
            size,
            scale,
            frame_hw,
            penalty_k=c.penalty_k,
            window_influence=c.window_influence,
            lr=c.lr,
        )
        return new_center, new_size, best_score


@dataclasses.dataclass(frozen=True)
class SiamRPNTracker(PysotTracker):
    """pysot ``SiamRPNTracker`` (SiamRPN++ ResNet-50, SiamRPN AlexNet): anchor-based decoding."""

    config: SiamRPNConfig

    @functools.cached_property
    def anchors(self) -> np.ndarray:
        c = self.config
        return pp.pysot_anchors(c.anchor_stride, c.anchor_ratios, c.anchor_scales, c.score_size)

    @functools.cached_property
    def window(self) -> np.ndarray:
        return pp.hanning_window(self.config.score_size, self.config.num_anchors)

    def dense_predictions_single(self, raw):
        return pp.siamrpn_decode(raw["cls"], raw["loc"], self.anchors)


@dataclasses.dataclass(frozen=True)
class SiamFCppTracker(Tracker):
    """video_analyst ``SiamFCppTracker``. Centre convention (w − 1)/2 both ways (``xywh2cxywh``)."""

    config: SiamFCppConfig

    @functools.cached_property
    def window(self) -> np.ndarray:
        return pp.hanning_window(self.config.score_size, 1)

    def box_to_center_size(self, box):
        return pp.xywh_to_cxywh_va(box)

    def center_size_to_box(self, center, size):
        return pp.cxywh_to_xywh_va(center, size)

    def _crop(self, frame, center, size, channel_avg, out_size):
        c = self.config
        scale = c.exemplar_size / _context_size(size, c.context_amount)
        return crop_affine(frame, center, jnp.round(out_size / scale), out_size, channel_avg), scale

    def template_crop(self, frame, center, size, channel_avg):
        return self._crop(frame, center, size, channel_avg, self.config.exemplar_size)[0]

    def search_crop(self, frame, center, size, channel_avg):
        return self._crop(frame, center, size, channel_avg, self.config.instance_size)

    def dense_predictions_single(self, raw):
        score = pp.siamfcpp_score(raw["cls"], raw["ctr"])
        x0, y0, x1, y1 = jnp.moveaxis(raw["box"].reshape(-1, 4), -1, 0)
        half = self.config.instance_size // 2  # video_analyst: res = pred_c + pos - (x_size // 2) / scale
        boxes = jnp.stack([(x0 + x1) / 2 - half, (y0 + y1) / 2 - half, x1 - x0 + 1, y1 - y0 + 1], axis=-1)
        return score, boxes

    def decode(self, raw, center, size, scale, frame_hw):
        c = self.config
        score = pp.siamfcpp_score(raw["cls"][0], raw["ctr"][0])
        boxes = raw["box"][0].reshape(-1, 4)
        new_center, new_size, best_score, _ = pp.select_and_update_siamfcpp(
            score,
            boxes,
            self.window,
            center,
            size,
            scale,
            c.instance_size,
            frame_hw,
            penalty_k=c.penalty_k,
            window_influence=c.window_influence,
            lr=c.lr,
        )
        return new_center, new_size, best_score


# ----------------------------------------------------------------------------------------------- registry
def _siamfcpp_model(config: SiamFCppConfig):
    from jaxtrack.models import SiamFCppAlexNet

    if config.backbone == "alexnet" and config.width_mult == 1.0:
        return SiamFCppAlexNet()
    return SiamFCppAlexNet(width_mult=config.width_mult, backbone=config.backbone,
                           total_stride=config.total_stride, num_conv3x3=config.num_conv3x3)


def _siamrpn_model(config: SiamRPNConfig):
    from jaxtrack.models import SiamRPNAlex, SiamRPNPP

    if config.backbone == "resnet50":
        return SiamRPNPP(weighted=config.weighted_fusion)
    if config.backbone == "alexnet":
        return SiamRPNAlex()
    raise ValueError(f"no model for backbone {config.backbone!r} of tracker {config.name!r}")


register(TrackerFamily("siamfcpp", SiamFCppConfig, lambda config: SiamFCppTracker, _siamfcpp_model,
                       "jaxtrack.losses.siamfcpp"))
register(TrackerFamily("siamrpn", SiamRPNConfig, lambda config: SiamRPNTracker, _siamrpn_model,
                       "jaxtrack.losses.siamrpn"))
