"""NanoTrack tracker family (HonglinChu/SiamTrackers ``nanotrack/tracker/nano_tracker.py``).

``NanoTracker`` is pysot's ``SiamRPNTracker`` with point-based decoding instead of anchors:

* crop: pysot ``get_subwindow`` (integer window of side ``round(s)`` around the centre, padded with the first
  frame's channel average, ``cv2.resize`` to 127 / 255), context 0.5, ``s_x = s_z * 255 / 127``;
* network input: raw BGR 0..255;
* score: 2-way softmax of the ``cls`` map, channel 1 = foreground;
* points: ``-(S // 2) * stride + stride * d`` for d = 0..S-1 (stride 16; S = 16 for v2, so the grid runs from
  -128 to 112 around the crop centre and is *not* symmetric; S = 15 for v3: -112..112), row-major (y, x);
* boxes: ``loc`` = (l, t, r, b) -> x1 = px - l, y1 = py - t, x2 = px + r, y2 = py + b -> centre
  ((x1 + x2) / 2, (y1 + y2) / 2), size (x2 - x1, y2 - y1) (``corner2center``, no +1);
* selection and update exactly as pysot (scale/ratio penalty, Hanning window ``np.outer(hanning(S),
  hanning(S))``, lr = penalty * score * LR, centre and size clipped to the frame, size >= 10);
* box conventions as pysot: init centre ``x + (w - 1) / 2``, output ``[cx - w / 2, cy - h / 2, w, h]``.

Hyper-parameters (``models/config/configv2.yaml`` / ``configv3.yaml``): v2 window 0.490, penalty_k 0.150,
lr 0.385; v3 0.455 / 0.138 / 0.348; exemplar 127, instance 255, stride 16; score size ``TRACK.OUTPUT_SIZE``
(16 by default, 15 in configv3.yaml).

OpenCV's C++ ``cv2.TrackerNano`` (``modules/video/src/tracking/tracker_nano.cpp``) is a different tracker
around the same v2 ONNX network; see :data:`OPENCV_DIFFERENCES`. The default here follows the Python
reference; ``NanoTrackConfig(opencv_compat=True)`` (tracker ``nanotrack_v2_opencv``,
:class:`OpenCVNanoTrackTracker`) reproduces OpenCV's, for measuring the two against each other.

Usage (weights from the real checkpoint)::

    tracker = jaxtrack.tracking.create("nanotrack_v2")
    variables = ...  # converted nanotrackv2.pth (jaxtrack.convert), tree = tracker.model's
    boxes, scores = tracker.track_sequence(variables, frames, box0)
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

import jaxtrack.tracking.postprocess as pp
from jaxtrack.tracking.configs import OPENCV_LOOPS, NanoTrackConfig  # noqa: F401  (re-exported)
from jaxtrack.tracking.families import PysotTracker, _context_size
from jaxtrack.tracking.registry import TrackerFamily, register

__all__ = [
    "NanoTrackConfig",
    "NanoTrackTracker",
    "OpenCVNanoTrackTracker",
    "OPENCV_DIFFERENCES",
    "OPENCV_51_CHANGES",
    "crop_opencv_nano",
    "nanotrack_points",
    "nanotrack_decode",
]

OPENCV_DIFFERENCES = (
    "hyper-parameters are hard-coded: window 0.455, penalty_k 0.055, lr 0.37 (not configv2.yaml's 0.49/0.15/0.385)",
    "the crop is fed to the network as RGB (blobFromImage swapRB=true); the network was trained on BGR",
    "scale penalty divides by sizeCal(targetPos) -- the target *centre* coordinates -- instead of the size",
    "init centre is x + w/2 (not x + (w-1)/2); the init box is an integer cv::Rect",
    "template side int(sqrt(...)) (truncated, not rounded); search side int(s_z * (255 / 127)) with integer "
    "division, i.e. 2 * s_z (the scale used to decode stays 127 / s_z)",
    "w + h truncated to an integer inside the context size of every update",
    "crop window starts at int(centre) - (side + 1) / 2 (integer division) instead of floor(c - (side+1)/2 + 0.5)",
    "the crop is uint8 (cv::resize INTER_LINEAR in 11-bit fixed point) before it becomes the float network input",
    "padding colour = mean of the *current* frame (recomputed every frame), not of the first frame",
    "output box truncated to integers (int(cx - w/2), int(cy - h/2), int(w), int(h)); the state stays float",
    "window = cv::createHanningWindow, which is sqrt(outer(hanning, hanning)) -- a wider window than pysot's",
    "getTrackingScore() returns the window-mixed pscore of the chosen position, not the softmax score",
)


# What OpenCV 5.1 changed in TrackerNanoImpl::update (the network's outputs agree with 5.0's to 3e-5; the loop is
# what differs). Found by reproducing 5.1's integer boxes on the six OTB sequences here with a replica of the 5.0
# loop that has exactly these three changes (and with no subset of them).
OPENCV_51_CHANGES = (
    "search side int(s_z * 255 / 127) in float (5.0: s_z * (255 / 127) with integer division, i.e. 2 * s_z)",
    "scale penalty against sizeCal(target size * scale_z), as pysot (5.0: sizeCal(target centre), a bug)",
    "w + h kept in float inside the context size of every update (5.0: truncated to an integer)",
)


def nanotrack_points(stride: int, score_size: int) -> np.ndarray:
    """``NanoTracker.generate_points``: ``[S*S, 2]`` float32 (x, y) crop offsets from the crop centre,
    row-major over (y, x), coordinates ``-(S // 2) * stride + stride * d``."""
    ori = -(score_size // 2) * stride
    grid = ori + stride * np.arange(score_size, dtype=np.float32)
    xx, yy = np.meshgrid(grid, grid)
    return np.stack([xx.reshape(-1), yy.reshape(-1)], axis=-1).astype(np.float32)


def nanotrack_decode(cls, loc, points) -> tuple[jax.Array, jax.Array]:
    """``_convert_score`` + ``_convert_bbox`` on one NHWC head output.

    Args:
      cls: ``[S, S, 2]`` logits (channel 1 = foreground); loc: ``[S, S, 4]`` (l, t, r, b) distances (after exp).
      points: ``[S*S, 2]`` from :func:`nanotrack_points`.
    Returns:
      score ``[S*S]`` (softmax foreground probability) and boxes ``[S*S, 4]`` (cx, cy, w, h) in crop pixels
      relative to the crop centre; index = y * S + x.
    """
    cls = jnp.asarray(cls, jnp.float32)
    loc = jnp.asarray(loc, jnp.float32)
    points = jnp.asarray(points, jnp.float32)
    score = jax.nn.softmax(cls.reshape(-1, 2), axis=-1)[:, 1]
    d = loc.reshape(-1, 4)
    x1 = points[:, 0] - d[:, 0]
    y1 = points[:, 1] - d[:, 1]
    x2 = points[:, 0] + d[:, 2]
    y2 = points[:, 1] + d[:, 3]
    boxes = jnp.stack([(x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1], axis=-1)
    return score, boxes


@dataclasses.dataclass(frozen=True)
class NanoTrackTracker(PysotTracker):
    """NanoTrack v2 / v3 tracker (``nano_tracker.py``); model :class:`jaxtrack.models.NanoTrack`."""

    config: NanoTrackConfig

    @functools.cached_property
    def points(self) -> np.ndarray:
        return nanotrack_points(self.config.stride, self.config.score_size)

    @functools.cached_property
    def window(self) -> np.ndarray:
        return pp.hanning_window(self.config.score_size, 1)

    def _check_score_size(self, cls) -> None:
        s = self.config.score_size
        if tuple(cls.shape[-3:]) != (s, s, 2):
            raise ValueError(
                f"{self.name}: head output {tuple(cls.shape)} does not match score_size={s} "
                f"(instance_size={self.config.instance_size}); override score_size together with instance_size"
            )

    def dense_predictions_single(self, raw):
        self._check_score_size(raw["cls"])
        return nanotrack_decode(raw["cls"], raw["loc"], self.points)


# ------------------------------------------------------------------------------------- OpenCV's TrackerNano

_CV_COEF_BITS = 11  # OpenCV INTER_RESIZE_COEF_BITS
_CV_COEF_SCALE = 1 << _CV_COEF_BITS


def _cv_linear_taps(side, out_size: int, clamp: bool):
    """Source taps and 11-bit fixed-point weights of cv::resize INTER_LINEAR along one axis (side -> out).

    ``f = (d + 0.5) * side / out - 0.5`` (float32), ``s = floor(f)``; horizontally (``clamp``) taps left of
    the patch or at/after its last pixel get ``f = 0`` (OpenCV's ``xmin``/``xmax`` rule); vertically the
    weights are kept and the row index is clamped instead. Weights ``round((1 - f) * 2048)``, ``round(f * 2048)``.
    """
    side_i = side.astype(jnp.int32)
    d = jnp.arange(out_size, dtype=jnp.float32)
    # The exact rational (2d + 1) side / (2 out) - 1/2, rounded once to float32 like OpenCV's float cast of its
    # double. XLA rewrites "x / broadcast(c)" into "x * (1 / c)" (two roundings, and different weights on ~half
    # of the taps), so the denominator is a full vector hidden behind an optimization barrier.
    den = jax.lax.optimization_barrier(jnp.full((out_size,), 2.0 * out_size, jnp.float32))
    f = ((2.0 * d + 1.0) * side - out_size) / den
    s = jnp.floor(f)
    f = f - s
    s = s.astype(jnp.int32)
    if clamp:
        low, high = s < 0, s >= side_i - 1
        f = jnp.where(low | high, 0.0, f)
        s = jnp.where(low, 0, jnp.where(high, side_i - 1, s))
    w0 = jnp.round((1.0 - f) * _CV_COEF_SCALE).astype(jnp.int32)
    w1 = jnp.round(f * _CV_COEF_SCALE).astype(jnp.int32)
    return jnp.clip(s, 0, side_i - 1), jnp.clip(s + 1, 0, side_i - 1), w0, w1


def crop_opencv_nano(frame, center, side, out_size: int) -> jax.Array:
    """``TrackerNanoImpl::getSubwindow`` bit for bit: uint8 crop as float32 ``[out, out, 3]`` (BGR).

    Window of ``side`` pixels starting at ``int(c) - (side + 1) / 2`` (integer division) on each axis, pixels
    outside the frame = ``mean(frame)`` rounded to uint8 (``copyMakeBorder``), then ``cv::resize`` INTER_LINEAR
    on uint8, restated with OpenCV's fixed-point arithmetic (11-bit weights, horizontal pass in int32, vertical
    pass as its SIMD kernel: ``((h0 >> 4) * w0 >> 16) + ((h1 >> 4) * w1 >> 16)``, then ``(x + 2) >> 2``).
    Checked equal to ``cv2.resize`` on every pixel in tests. Not differentiable (integer arithmetic).
    """
    img = jnp.clip(jnp.round(jnp.asarray(frame, jnp.float32)), 0, 255).astype(jnp.int32)
    h, w = img.shape[0], img.shape[1]
    pad = jnp.round(jnp.mean(jnp.asarray(frame, jnp.float32), axis=(0, 1))).astype(jnp.int32)
    side = jnp.trunc(jnp.asarray(side, jnp.float32))
    half = jnp.floor((side + 1.0) / 2.0).astype(jnp.int32)
    start = jnp.trunc(jnp.asarray(center, jnp.float32)).astype(jnp.int32) - half  # [x0, y0]
    xs0, xs1, a0, a1 = _cv_linear_taps(side, out_size, clamp=True)
    ys0, ys1, b0, b1 = _cv_linear_taps(side, out_size, clamp=False)

    def rows(idx):  # [out, W, 3]
        idx = idx + start[1]
        r = jnp.take(img, jnp.clip(idx, 0, h - 1), axis=0)
        return jnp.where(((idx >= 0) & (idx < h))[:, None, None], r, pad)

    def cols(r, idx):  # [out, out, 3]
        idx = idx + start[0]
        c = jnp.take(r, jnp.clip(idx, 0, w - 1), axis=1)
        return jnp.where(((idx >= 0) & (idx < w))[None, :, None], c, pad)

    def horizontal(r):
        return cols(r, xs0) * a0[None, :, None] + cols(r, xs1) * a1[None, :, None]

    h0, h1 = horizontal(rows(ys0)), horizontal(rows(ys1))
    v = ((h0 >> 4) * b0[:, None, None] >> 16) + ((h1 >> 4) * b1[:, None, None] >> 16)
    return jnp.clip((v + 2) >> 2, 0, 255).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class OpenCVNanoTrackTracker(NanoTrackTracker):
    """OpenCV's ``cv2.TrackerNano`` (``tracker_nano.cpp``) around the same network, for measurements only.

    Every difference in :data:`OPENCV_DIFFERENCES` is reproduced, including the uint8 fixed-point crop; the
    hyper-parameters come from the config (``nanotrack_v2_opencv`` holds OpenCV's hard-coded values). The crop
    is integer arithmetic, so this tracker is not differentiable with respect to the frame.
    """

    @functools.cached_property
    def window(self) -> np.ndarray:  # cv::createHanningWindow(CV_32F): sqrt(wr[i] * wc[j])
        h = np.hanning(self.config.score_size)
        return np.sqrt(np.outer(h, h)).reshape(-1).astype(np.float32)

    @functools.cached_property
    def grid(self) -> np.ndarray:
        """OpenCV's grid2search: ``(i - S // 2) * stride + instance // 2`` (absolute search-crop pixels)."""
        return (self.points + self.config.instance_size // 2).astype(np.float32)

    def box_to_center_size(self, box):
        box = jnp.trunc(box)  # cv::Rect
        return box[:2] + box[2:] * 0.5, box[2:]

    def center_size_to_box(self, center, size):
        return jnp.trunc(jnp.concatenate([center - size / 2.0, size]))

    def template_crop(self, frame, center, size, channel_avg):
        c = self.config
        side = jnp.trunc(_context_size(size, c.context_amount))
        return crop_opencv_nano(frame, center, side, c.exemplar_size)[..., ::-1]  # swapRB

    def search_crop(self, frame, center, size, channel_avg):
        c = self.config
        if c.opencv_loop == "5.0":
            ctx = c.context_amount * jnp.trunc(size[0] + size[1])
            s_z = jnp.sqrt((size[0] + ctx) * (size[1] + ctx))
            side = jnp.trunc(s_z * (c.instance_size // c.exemplar_size))
        else:
            ctx = c.context_amount * (size[0] + size[1])
            s_z = jnp.sqrt((size[0] + ctx) * (size[1] + ctx))
            side = jnp.trunc(s_z * np.float32(c.instance_size / c.exemplar_size))
        crop = crop_opencv_nano(frame, center, side, c.instance_size)[..., ::-1]
        return crop, c.exemplar_size / s_z

    def decode(self, raw, center, size, scale, frame_hw):
        """``TrackerNanoImpl::update`` after the network (5.0: scale penalty against the target *centre*)."""
        c = self.config
        self._check_score_size(raw["cls"])
        cls = jnp.asarray(raw["cls"][0], jnp.float32).reshape(-1, 2)
        d = jnp.asarray(raw["loc"][0], jnp.float32).reshape(-1, 4)
        score = jax.nn.softmax(cls, axis=-1)[:, 1]
        grid = jnp.asarray(self.grid)
        x1, y1 = grid[:, 0] - d[:, 0], grid[:, 1] - d[:, 1]
        x2, y2 = grid[:, 0] + d[:, 2], grid[:, 1] + d[:, 3]
        change = lambda r: jnp.maximum(r, 1.0 / r)  # noqa: E731

        def size_cal(w, h):
            pad = (w + h) * 0.5
            return jnp.sqrt((w + pad) * (h + pad))

        w, h = x2 - x1, y2 - y1
        size_in_crop = size * scale
        reference = center if c.opencv_loop == "5.0" else size_in_crop
        s_c = change(size_cal(w, h) / size_cal(reference[0], reference[1]))
        r_c = change((size_in_crop[0] / size_in_crop[1]) / (w / h))
        penalty = jnp.exp((r_c * s_c - 1.0) * c.penalty_k * -1.0)
        pscore = penalty * score * (1.0 - c.window_influence) + jnp.asarray(self.window) * c.window_influence
        best = jnp.argmax(pscore)
        half = c.instance_size // 2
        pred_c = jnp.stack([(x1[best] + x2[best]) / 2, (y1[best] + y2[best]) / 2])
        pred_size = jnp.stack([w[best], h[best]]) / scale
        lr = penalty[best] * score[best] * c.lr
        new_center = center + (pred_c - half) / scale
        new_size = pred_size * lr + (1.0 - lr) * (size_in_crop / scale)
        bound = jnp.asarray([frame_hw[1], frame_hw[0]], jnp.float32)  # (W, H)
        new_center = jnp.clip(new_center, 0.0, bound)
        new_size = jnp.clip(new_size, c.min_size, bound)
        return new_center, new_size, pscore[best]


# ----------------------------------------------------------------------------------------------- registry
def _nanotrack_model(config: NanoTrackConfig):
    from jaxtrack.models import NanoTrack

    return NanoTrack(version=config.version)


register(TrackerFamily(
    "nanotrack", NanoTrackConfig, lambda config: OpenCVNanoTrackTracker if config.opencv_compat else NanoTrackTracker,
    _nanotrack_model, "jaxtrack.losses.nanotrack"))
