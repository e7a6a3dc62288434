"""One-pass (OTB) metrics with pysot's conventions (``toolkit/utils/statistics.py``).

Boxes are ``[x, y, w, h]`` 0-based with the continuous convention (right edge = x + w) for IoU, and centres
``x + (w − 1)/2`` for the centre error. Success counts a frame when IoU is **strictly greater** than the
threshold (21 thresholds 0, 0.05, …, 1), so a perfect tracker scores 20/21 ≈ 0.952. Frames whose ground
truth has w ≤ 0 or h ≤ 0 (or NaN) count as failures and stay in the denominator.
"""

from __future__ import annotations

import numpy as np

SUCCESS_THRESHOLDS = np.arange(0, 1.05, 0.05)  # 21 values, pysot's np.arange(0, 1.05, 0.05)
PRECISION_THRESHOLDS = np.arange(0, 51, 1)  # pixels; the reported value is index 20


def _as_boxes(boxes, what: str) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{what} must be [N, 4] boxes (x, y, w, h), got shape {b.shape}")
    return b


def iou_xywh(a, b) -> np.ndarray:
    """Row-wise IoU of two [N,4] box arrays, clipped to [0, 1]."""
    a = _as_boxes(a, "boxes a")
    b = _as_boxes(b, "boxes b")
    left = np.maximum(a[:, 0], b[:, 0])
    right = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    top = np.maximum(a[:, 1], b[:, 1])
    bottom = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.maximum(0.0, right - left) * np.maximum(0.0, bottom - top)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
    return np.clip(np.nan_to_num(iou, nan=0.0), 0.0, 1.0)


def _check_pair(gt, pred) -> tuple[np.ndarray, np.ndarray]:
    gt = _as_boxes(gt, "ground truth")
    pred = _as_boxes(pred, "predictions")
    if len(pred) < len(gt):
        raise ValueError(f"{len(pred)} predicted boxes for {len(gt)} ground-truth frames")
    return gt, pred[: len(gt)]


def success_curve(gt, pred) -> np.ndarray:
    """Share of frames with IoU > t for the 21 thresholds (pysot ``success_overlap``)."""
    gt, pred = _check_pair(gt, pred)
    valid = np.all(np.nan_to_num(gt[:, 2:], nan=-1.0) > 0, axis=1)
    iou = np.full(len(gt), -1.0)
    iou[valid] = iou_xywh(gt[valid], np.nan_to_num(pred[valid], nan=0.0))
    return (iou[None, :] > SUCCESS_THRESHOLDS[:, None]).sum(axis=1) / float(len(gt))


def success_auc(gt, pred) -> float:
    """Mean of the success curve (the OTB "AUC")."""
    return float(success_curve(gt, pred).mean())


def centers(boxes) -> np.ndarray:
    b = _as_boxes(boxes, "boxes")
    return np.stack([b[:, 0] + (b[:, 2] - 1) / 2, b[:, 1] + (b[:, 3] - 1) / 2], axis=1)


def precision_curve(gt, pred) -> np.ndarray:
    """Share of frames with centre distance ≤ t px for t = 0..50 (pysot ``success_error``).

    pysot quirk kept: frames whose ground-truth centre has a non-positive coordinate get distance −1 and
    therefore count as hits.
    """
    gt, pred = _check_pair(gt, pred)
    gc, pc = centers(gt), centers(np.nan_to_num(pred, nan=-1e9))
    dist = np.full(len(gt), -1.0)
    valid = np.all(gc > 0, axis=1)
    dist[valid] = np.sqrt(((gc[valid] - pc[valid]) ** 2).sum(axis=1))
    return (dist[None, :] <= PRECISION_THRESHOLDS[:, None]).sum(axis=1) / float(len(gt))


def precision_at_20(gt, pred) -> float:
    return float(precision_curve(gt, pred)[20])
