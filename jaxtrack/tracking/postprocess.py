"""Reference post-processing of the two tracker families, as pure jittable JAX functions (float32).

* pysot ``SiamRPNTracker`` (``pysot/tracker/siamrpn_tracker.py``, ``pysot/utils/anchor.py``): anchors,
  ``_convert_score`` / ``_convert_bbox`` (:func:`siamrpn_decode`), scale/ratio penalty, Hanning-window mix,
  size smoothing and ``_bbox_clip`` (:func:`select_and_update_pysot`).
* video_analyst ``SiamFCppTracker`` (``videoanalyst/pipeline/tracker_impl/siamfcpp_track.py``):
  ``_postprocess_score``, ``_postprocess_box``, ``_restrict_box`` (:func:`select_and_update_siamfcpp`).

Box conventions (frame pixels, 0-based):

* pysot: init ``cx = x + (w - 1) / 2``; output ``x = cx - w / 2`` (the two are *not* inverse to each other).
* video_analyst (``xywh2cxywh`` / ``cxywh2xywh``): ``(w - 1) / 2`` both ways; ``xyxy2cxywh`` uses
  ``w = x1 - x0 + 1``.

Maps are NHWC without the batch dimension; vmap for batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "hanning_window",
    "pysot_anchors",
    "siamrpn_decode",
    "siamfcpp_score",
    "penalty",
    "select_and_update_pysot",
    "select_and_update_siamfcpp",
    "xywh_to_cxywh_pysot",
    "cxywh_to_xywh_pysot",
    "xywh_to_cxywh_va",
    "cxywh_to_xywh_va",
]


# ----------------------------------------------------------------------------------------- static tables


def hanning_window(score_size: int, num_anchors: int = 1) -> np.ndarray:
    """``np.tile(np.outer(hanning(S), hanning(S)).flatten(), K)`` as float32 ``[K*S*S]`` (anchor-major).

    pysot's ``self.window``; with ``num_anchors=1`` also video_analyst's ``cosine`` window.
    """
    h = np.hanning(score_size)
    return np.tile(np.outer(h, h).reshape(-1), num_anchors).astype(np.float32)


def pysot_anchors(
    stride: int, ratios: Sequence[float], scales: Sequence[float], score_size: int
) -> np.ndarray:
    """pysot anchors ``[K*S*S, 4]`` float32 (cx, cy, w, h), crop pixels relative to the crop centre.

    ``Anchors.generate_anchors``: for each ratio r (outer loop) and scale s (inner loop),
    ``ws = int(sqrt(stride**2 / r))``, ``hs = int(ws * r)``, anchor ``(ws*s, hs*s)``.
    ``SiamRPNTracker.generate_anchor``: rows ordered [anchor k][y][x]; centres
    ``-(S // 2) * stride + stride * d``.
    """
    size = stride * stride
    wh = []
    for r in ratios:
        ws = int(np.sqrt(size * 1.0 / r))
        hs = int(ws * r)
        for s in scales:
            wh.append((ws * s, hs * s))
    wh = np.asarray(wh, np.float32)  # [K, 2]
    k = wh.shape[0]
    ori = -(score_size // 2) * stride
    grid = ori + stride * np.arange(score_size, dtype=np.float32)
    xx, yy = np.meshgrid(grid, grid)  # [S(y), S(x)]
    n = score_size * score_size
    out = np.empty((k, n, 4), np.float32)
    out[:, :, 0] = xx.reshape(-1)[None]
    out[:, :, 1] = yy.reshape(-1)[None]
    out[:, :, 2] = wh[:, None, 0]
    out[:, :, 3] = wh[:, None, 1]
    return out.reshape(k * n, 4)


# ----------------------------------------------------------------------------------------------- decode


def siamrpn_decode(cls, loc, anchors) -> tuple[jax.Array, jax.Array]:
    """pysot ``_convert_score`` + ``_convert_bbox`` on one NHWC head output.

    Args:
      cls: ``[S, S, 2K]``; channels ``[bg for anchors 0..K-1, fg for anchors 0..K-1]`` (pysot views the
        ``[2K, S, S]`` map as ``(2, K, S, S)``).
      loc: ``[S, S, 4K]``; channels ``[dx x K, dy x K, dw x K, dh x K]`` (viewed as ``(4, K, S, S)``).
      anchors: ``[K*S*S, 4]`` from :func:`pysot_anchors`.
    Returns:
      score ``[K*S*S]`` (softmax foreground probability) and boxes ``[K*S*S, 4]`` (cx, cy, w, h) in crop
      pixels relative to the crop centre; index = k*S*S + y*S + x.
    """
    cls = jnp.asarray(cls, jnp.float32)
    loc = jnp.asarray(loc, jnp.float32)
    anchors = jnp.asarray(anchors, jnp.float32)
    logits = jnp.transpose(cls, (2, 0, 1)).reshape(2, -1)  # [2, K*S*S]
    score = jax.nn.softmax(logits, axis=0)[1]
    delta = jnp.transpose(loc, (2, 0, 1)).reshape(4, -1)  # [4, K*S*S]
    aw, ah = anchors[:, 2], anchors[:, 3]
    boxes = jnp.stack(
        [
            delta[0] * aw + anchors[:, 0],
            delta[1] * ah + anchors[:, 1],
            jnp.exp(delta[2]) * aw,
            jnp.exp(delta[3]) * ah,
        ],
        axis=-1,
    )
    return score, boxes


def siamfcpp_score(cls_logits, ctr_logits) -> jax.Array:
    """video_analyst ``SiamTrack`` (phase ``track``): ``sigmoid(cls) * sigmoid(ctr)``, flattened row-major.

    Accepts ``[S, S]`` or ``[S, S, 1]`` maps (NHWC without batch) and returns ``[S*S]``.
    """
    cls = jnp.asarray(cls_logits, jnp.float32)
    ctr = jnp.asarray(ctr_logits, jnp.float32)
    return (jax.nn.sigmoid(cls) * jax.nn.sigmoid(ctr)).reshape(-1)


# ------------------------------------------------------------------------------------------- selection


def _change(r):
    return jnp.maximum(r, 1.0 / r)


def _sz(w, h):
    pad = (w + h) * 0.5
    return jnp.sqrt((w + pad) * (h + pad))


def penalty(pred_w, pred_h, target_w, target_h, penalty_k) -> jax.Array:
    """Scale/ratio change penalty ``exp(-(r_c * s_c - 1) * k)`` (pysot and video_analyst alike).

    ``s_c = change(sz(pred) / sz(target))``, ``r_c = change((tw / th) / (pw / ph))``, ``change(r) =
    max(r, 1/r)``, ``sz(w, h) = sqrt((w + p)(h + p))``, ``p = (w + h) / 2``. The target size must already be in
    crop pixels (``size * scale``).
    """
    s_c = _change(_sz(pred_w, pred_h) / _sz(target_w, target_h))
    r_c = _change((target_w / target_h) / (pred_w / pred_h))
    return jnp.exp(-(r_c * s_c - 1.0) * penalty_k)


def _select(score, boxes, window, target_in_crop, penalty_k, window_influence):
    pen = penalty(boxes[:, 2], boxes[:, 3], target_in_crop[0], target_in_crop[1], penalty_k)
    pscore = pen * score
    pscore = pscore * (1.0 - window_influence) + window * window_influence
    best = jnp.argmax(pscore)
    return best, pen[best] * score[best]


def _clip(center, size, frame_hw, min_size, prev_center, prev_size):
    """``max(0, min(c, W))`` for the centre and ``max(10, min(s, W))`` for the size (same with H).

    A value that is not finite (NaN from a score or box map that overflowed, e.g. random weights) keeps the
    previous state's value: pysot's ``_bbox_clip`` means to keep the box inside the frame, but NaN passes through
    ``min``/``max`` comparisons, so a tracker would otherwise write NaN boxes from then on.
    """
    center = jnp.where(jnp.isfinite(center), center, prev_center)
    size = jnp.where(jnp.isfinite(size), size, prev_size)
    bound = jnp.asarray([frame_hw[1], frame_hw[0]], jnp.float32)  # (W, H)
    center = jnp.maximum(0.0, jnp.minimum(center, bound))
    size = jnp.maximum(min_size, jnp.minimum(size, bound))
    return center, size


def select_and_update_pysot(
    score,
    boxes,
    window,
    center,
    size,
    scale_z,
    frame_hw,
    *,
    penalty_k,
    window_influence,
    lr,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """pysot ``SiamRPNTracker.track`` after the network: choose a candidate and update the state.

    Args:
      score: ``[N]``; boxes: ``[N, 4]`` (cx, cy, w, h) crop px relative to the crop centre
        (:func:`siamrpn_decode`); window: ``[N]``.
      center, size: previous state ``[2]`` (cx, cy), (w, h) in frame pixels.
      scale_z: ``exemplar_size / s_z`` (s_z unrounded).
      frame_hw: (H, W) of the frame.
    Returns:
      (new_center [2], new_size [2], best_score = score[best], best_idx). The output box is
      :func:`cxywh_to_xywh_pysot` of the new centre/size.
    """
    score = jnp.asarray(score, jnp.float32)
    boxes = jnp.asarray(boxes, jnp.float32)
    window = jnp.asarray(window, jnp.float32)
    center = jnp.asarray(center, jnp.float32)
    size = jnp.asarray(size, jnp.float32)
    scale_z = jnp.asarray(scale_z, jnp.float32)
    best, pen_score = _select(score, boxes, window, size * scale_z, penalty_k, window_influence)
    bbox = boxes[best] / scale_z
    rate = pen_score * lr
    new_center = bbox[:2] + center
    new_size = size * (1.0 - rate) + bbox[2:] * rate
    new_center, new_size = _clip(new_center, new_size, frame_hw, 10.0, center, size)
    return new_center, new_size, score[best], best


def select_and_update_siamfcpp(
    score,
    boxes_xyxy,
    window,
    center,
    size,
    scale_x,
    x_size: int,
    frame_hw,
    *,
    penalty_k,
    window_influence,
    lr,
    min_size: float = 10.0,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """video_analyst ``SiamFCppTracker.track``: ``_postprocess_score`` + ``_postprocess_box`` + ``_restrict_box``.

    Args:
      score: ``[N]`` = sigmoid(cls)·sigmoid(ctr) (:func:`siamfcpp_score`); boxes_xyxy: ``[N, 4]`` (x0, y0, x1,
        y1) in crop pixels (absolute crop coordinates, not centred); window: ``[N]``.
      center, size: previous state in frame pixels; scale_x: ``z_size / s_crop`` (unrounded s_crop).
      x_size: search crop side (static int); frame_hw: (H, W).
      lr: ``test_lr``; min_size: ``min_w`` = ``min_h`` (10).
    Returns:
      (new_center [2], new_size [2], best_score = score[best], best_idx). Output box via
      :func:`cxywh_to_xywh_va`.
    """
    score = jnp.asarray(score, jnp.float32)
    b = jnp.asarray(boxes_xyxy, jnp.float32)
    window = jnp.asarray(window, jnp.float32)
    center = jnp.asarray(center, jnp.float32)
    size = jnp.asarray(size, jnp.float32)
    scale_x = jnp.asarray(scale_x, jnp.float32)
    # xyxy2cxywh: centre (x0 + x1) / 2, width x1 - x0 + 1
    boxes = jnp.stack(
        [(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1],
        axis=-1,
    )
    best, pen_score = _select(score, boxes, window, size * scale_x, penalty_k, window_influence)
    pred = boxes[best] / scale_x
    rate = pen_score * lr
    new_center = pred[:2] + center - (x_size // 2) / scale_x
    new_size = size * (1.0 - rate) + pred[2:] * rate
    new_center, new_size = _clip(new_center, new_size, frame_hw, min_size, center, size)
    return new_center, new_size, score[best], best


# ------------------------------------------------------------------------------------- box conventions


def xywh_to_cxywh_pysot(box) -> tuple[jax.Array, jax.Array]:
    """pysot init: ``center = (x + (w - 1) / 2, y + (h - 1) / 2)``, ``size = (w, h)``; box ``[..., 4]``."""
    box = jnp.asarray(box, jnp.float32)
    return box[..., :2] + (box[..., 2:] - 1.0) / 2.0, box[..., 2:]


def cxywh_to_xywh_pysot(center, size) -> jax.Array:
    """pysot output: ``[cx - w / 2, cy - h / 2, w, h]`` (note: w/2, not (w - 1)/2)."""
    center = jnp.asarray(center, jnp.float32)
    size = jnp.asarray(size, jnp.float32)
    return jnp.concatenate([center - size / 2.0, size], axis=-1)


# video_analyst's ``xywh2cxywh`` is the same formula as pysot's init conversion.
xywh_to_cxywh_va = xywh_to_cxywh_pysot


def cxywh_to_xywh_va(center, size) -> jax.Array:
    """video_analyst ``cxywh2xywh``: ``[cx - (w - 1) / 2, cy - (h - 1) / 2, w, h]``."""
    center = jnp.asarray(center, jnp.float32)
    size = jnp.asarray(size, jnp.float32)
    return jnp.concatenate([center - (size - 1.0) / 2.0, size], axis=-1)
