"""One-pass (OTB, LaSOT, UAV, GOT-10k) metrics with pysot's conventions (``toolkit/utils/statistics.py``,
``toolkit/evaluation/ope_benchmark.py``).

Boxes are ``[x, y, w, h]`` 0-based with the continuous convention (right edge = x + w) for IoU, and centres
``x + (w − 1)/2`` for the centre error. Success counts a frame when IoU is **strictly greater** than the
threshold (21 thresholds 0, 0.05, …, 1), so a perfect tracker scores 20/21 ≈ 0.952. Frames whose ground
truth has w ≤ 0 or h ≤ 0 (or NaN) count as failures and stay in the denominator.

LaSOT-style visibility (``visible=`` on the curve functions; pysot's ``absent == 1`` mask, pytracking's
``target_visible``): only frames where the target is visible are scored, the denominator stays the full
sequence length, so invisible frames count as failures in every curve. Our convention for frames marked
visible whose ground truth is NaN or has w ≤ 0 or h ≤ 0: they count as failures in every curve too (pytracking
does this; pysot would count them as precision hits through its "non-positive centre" quirk, which never
happens on real LaSOT data because such frames are flagged invisible). Without ``visible`` the OTB behaviour
above is unchanged, quirk included.

Normalised precision (pysot ``eval_norm_precision``): both centres are divided per axis by the ground-truth
(w, h) + 1e-16, thresholds 0, 0.01, …, 0.50, and the reported value is index 20 (0.20). got10k's master
branch reports instead the mean over those thresholds and divides by max(1, w, h): a different number.

Dataset scores (``ope_benchmark.show_result``): success = mean over sequences of each sequence's AUC;
precision and normalised precision = value at index 20 of the mean over sequences of the curves.
Per-attribute scores (:func:`attribute_breakdown`): the same means over the sequences having the attribute.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

SUCCESS_THRESHOLDS = np.arange(0, 1.05, 0.05)  # 21 values, pysot's np.arange(0, 1.05, 0.05)
PRECISION_THRESHOLDS = np.arange(0, 51, 1)  # pixels; the reported value is index 20
NORM_PRECISION_THRESHOLDS = np.arange(0, 51, 1) / 100  # pysot: np.arange(0, 51, 1) / 100; reported at index 20


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


def _check_visible(visible, n: int) -> np.ndarray | None:
    if visible is None:
        return None
    v = np.asarray(visible)
    if v.shape != (n,):
        raise ValueError(f"visible must be [{n}] flags (one per ground-truth frame), got shape {v.shape}")
    return v.astype(bool)


def _valid_gt(gt: np.ndarray) -> np.ndarray:
    return np.all(np.nan_to_num(gt[:, 2:], nan=-1.0) > 0, axis=1) & np.all(np.isfinite(gt[:, :2]), axis=1)


def success_curve(gt, pred, visible=None) -> np.ndarray:
    """Share of frames with IoU > t for the 21 thresholds (pysot ``success_overlap``).

    ``visible`` ([N] bool, LaSOT): invisible frames are not scored but stay in the denominator.
    """
    gt, pred = _check_pair(gt, pred)
    vis = _check_visible(visible, len(gt))
    valid = np.all(np.nan_to_num(gt[:, 2:], nan=-1.0) > 0, axis=1)
    if vis is not None:
        valid &= vis & _valid_gt(gt)
    iou = np.full(len(gt), -1.0)
    iou[valid] = iou_xywh(gt[valid], np.nan_to_num(pred[valid], nan=0.0))
    return (iou[None, :] > SUCCESS_THRESHOLDS[:, None]).sum(axis=1) / float(len(gt))


def success_auc(gt, pred, visible=None) -> float:
    """Mean of the success curve (the OTB "AUC")."""
    return float(success_curve(gt, pred, visible).mean())


def centers(boxes) -> np.ndarray:
    b = _as_boxes(boxes, "boxes")
    return np.stack([b[:, 0] + (b[:, 2] - 1) / 2, b[:, 1] + (b[:, 3] - 1) / 2], axis=1)


def _distance_curve(gc: np.ndarray, pc: np.ndarray, scored: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """pysot ``success_error``: frames scored with a GT centre > 0 on both axes get their distance, the other
    scored frames −1 (a hit at every threshold, pysot's quirk); unscored frames never hit."""
    n = len(gc)
    dist = np.full(n, np.inf)
    dist[scored] = -1.0
    ok = scored & np.all(gc > 0, axis=1)
    dist[ok] = np.sqrt(((gc[ok] - pc[ok]) ** 2).sum(axis=1))
    return (dist[None, :] <= thresholds[:, None]).sum(axis=1) / float(n)


def precision_curve(gt, pred, visible=None) -> np.ndarray:
    """Share of frames with centre distance ≤ t px for t = 0..50 (pysot ``success_error``).

    pysot quirk kept: frames whose ground-truth centre has a non-positive coordinate get distance −1 and
    therefore count as hits. ``visible`` ([N] bool): invisible frames (and, then, frames with invalid ground
    truth) are misses, the denominator stays N.
    """
    gt, pred = _check_pair(gt, pred)
    vis = _check_visible(visible, len(gt))
    scored = np.ones(len(gt), bool) if vis is None else vis & _valid_gt(gt)
    gc, pc = centers(gt), centers(np.nan_to_num(pred, nan=-1e9))
    return _distance_curve(gc, pc, scored, PRECISION_THRESHOLDS)


def precision_at_20(gt, pred, visible=None) -> float:
    return float(precision_curve(gt, pred, visible)[20])


def norm_precision_curve(gt, pred, visible=None) -> np.ndarray:
    """Normalised precision curve (pysot ``eval_norm_precision``), thresholds 0, 0.01, …, 0.50.

    Both centres are divided per axis by the ground-truth (w, h) + 1e-16; then as :func:`precision_curve`.
    """
    gt, pred = _check_pair(gt, pred)
    vis = _check_visible(visible, len(gt))
    scored = np.ones(len(gt), bool) if vis is None else vis & _valid_gt(gt)
    wh = gt[:, 2:4] + 1e-16
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gc = centers(gt) / wh
        pc = centers(np.nan_to_num(pred, nan=-1e9)) / wh
    return _distance_curve(gc, pc, scored, NORM_PRECISION_THRESHOLDS)


def norm_precision_at_020(gt, pred, visible=None) -> float:
    """Normalised precision at 0.20 (index 20), the value pysot and pytracking report for LaSOT."""
    return float(norm_precision_curve(gt, pred, visible)[20])


def sequence_curves(gt, pred, visible=None) -> dict[str, np.ndarray]:
    """The three curves of one sequence: ``success``, ``precision``, ``norm_precision``."""
    return {
        "success": success_curve(gt, pred, visible),
        "precision": precision_curve(gt, pred, visible),
        "norm_precision": norm_precision_curve(gt, pred, visible),
    }


def dataset_scores(curves: Mapping[str, Mapping[str, np.ndarray]], names=None) -> dict:
    """Dataset scores from per-sequence curves (as :func:`sequence_curves` returns), as pysot reports them.

    ``success_auc`` = mean over sequences of each AUC; ``precision`` / ``norm_precision`` = index 20 of the
    mean curve; the mean curves are returned too (``*_curve``). ``names`` restricts to those sequences.
    """
    names = list(curves) if names is None else list(names)
    if not names:
        raise ValueError("no sequences to score")
    mean = {k: np.mean([curves[n][k] for n in names], axis=0) for k in ("success", "precision", "norm_precision")}
    return {
        "success_auc": float(np.mean([curves[n]["success"].mean() for n in names])),
        "precision": float(mean["precision"][20]),
        "norm_precision": float(mean["norm_precision"][20]),
        "success_curve": mean["success"],
        "precision_curve": mean["precision"],
        "norm_precision_curve": mean["norm_precision"],
        "num_sequences": len(names),
    }


def attribute_breakdown(
    curves: Mapping[str, Mapping[str, np.ndarray]], attributes: Mapping[str, Iterable[str]]
) -> dict[str, dict]:
    """Per-attribute :func:`dataset_scores`: for each attribute, the mean over the sequences having it
    (OTB's sequence-level attributes, e.g. ``{"Crossing": ("SV", "DEF", "FM", "OPR", "BC")}``).

    Sequences absent from ``curves`` are ignored; attributes are sorted by name.
    """
    by_attr: dict[str, list[str]] = {}
    for name in curves:
        for a in attributes.get(name, ()):
            by_attr.setdefault(str(a), [])
            if name not in by_attr[str(a)]:
                by_attr[str(a)].append(name)
    return {a: dataset_scores(curves, names) for a, names in sorted(by_attr.items())}
