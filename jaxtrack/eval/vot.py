"""VOT short-term (VOT2016–2019) supervised protocol and its scores, restating pysot.

Protocol (pysot ``tools/test.py``, one run, no 15 repetitions) — :func:`run_vot_sequence`:

* frame ``idx == next_init``: initialise the tracker with ``vot_init_box(region)`` (pysot's area-preserving
  ``get_axis_aligned_bbox`` of the polygon, box ``[cx − (w−1)/2, cy − (h−1)/2, w, h]``); record ``1``;
* ``idx > next_init``: track; ``vot_overlap(box, polygon, (W, H)) > 0`` → record the box, otherwise record
  ``2`` (failure), ``lost += 1`` and ``next_init = idx + 5``;
* ``idx < next_init``: record ``0`` (skipped; the tracker is not run).

Scores (pysot ``toolkit/evaluation/ar_benchmark.py``, ``eao_benchmark.py``, ``toolkit/utils/statistics.py``):

* **Accuracy** — each record ``1`` and the 9 frames after it (burn-in 10) become ``0`` (unknown); overlaps of
  the remaining boxes with the ground-truth region, bound ``(W, H)``; codes give NaN. Accuracy = ``nanmean`` of
  all frames of all sequences pooled (frame-weighted; VOT's own toolkit averages per sequence instead).
* **Robustness** = total failures / total frames × 100 (pysot: ``mean(sum(failures) / length) * 100``), i.e.
  failures per 100 frames — the 0.234-style number of pysot's tables. **Lost number** = total failures.
  With several runs: overlaps are averaged over runs per frame, failures summed per run then averaged.
* **EAO** — overlaps with bound ``(W − 1, H − 1)``, no burn-in. Per run, fragments start at frame 0 and at
  every ``failure + 5`` that is ≤ the trajectory length; a fragment that ends in a failure spans
  ``[start, next start]`` (inclusive) and is padded with zeros to the longest trajectory, the last one is
  padded with NaN; NaN overlaps inside fragments become 0, except in a run without failure (kept as is).
  Weight of a fragment = (1 / runs) × tag fraction (tagged frames of the span / span length; for the last
  fragment / (sequence length − start)). Expected overlap ``Φ[i]`` (float32) = weighted mean over fragments
  not NaN at ``i`` of the mean of their values ``1..i`` (``Φ[0] = 1``; ``Φ[i] = 0`` if no fragment reaches
  ``i``). EAO = mean of ``Φ`` over indices ``low − 1 … high − 1`` (VOT2016: 108/371, VOT2017/2018: 100/356,
  VOT2019: 46/291), NaN entries left out.

Ground truth used for scores: the region as the annotation gives it — polygons, and for frames annotated
with a 4-value rectangle (VOT2018 ``conduction1``) the rectangle itself (pysot's ``VOTVideo.gt_traj``), whereas
the protocol (and pysot's ``tools/test.py``) overlaps and re-initialises with the pixel-inclusive polygon
``[x, y, x, y+h−1, x+w−1, y+h−1, x+w−1, y]`` built from it.

Per-tag scores: pysot's EAO takes a ``tags`` list (``all`` and the five VOT tags; its ``empty`` tag is
mis-built — one value per tag instead of per frame — ours is "frames with no tag"). pysot's AR benchmark has
no tags; :func:`accuracy_robustness` pools the tagged frames as got10k's ``ExperimentVOT.report`` does
(accuracy = ``nanmean`` of the burn-in overlaps over tagged frames, lost = failures on tagged frames) and
keeps pysot's scale (robustness = lost / tagged frames × 100).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from jaxtrack.eval.region import vot_overlap, vot_overlap_traj

__all__ = [
    "EAO_RANGES",
    "VOTGroundTruth",
    "VOTRun",
    "vot_ground_truth",
    "run_vot_sequence",
    "failures",
    "burnin_overlaps",
    "accuracy_robustness",
    "expected_overlap_curve",
    "expected_average_overlap",
    "evaluate_vot",
    "format_record",
    "parse_record",
    "records_from_boxes",
]

#: pysot ``EAOBenchmark``'s (low, high) sequence-length range per dataset (no GMM re-estimation).
EAO_RANGES = {"VOT2016": (108, 371), "VOT2017": (100, 356), "VOT2018": (100, 356), "VOT2019": (46, 291)}

SKIP = 5  # frames after a failure before re-initialisation (pysot: frame_counter = idx + 5)
BURNIN = 10  # frames after each initialisation left out of the accuracy


Record = list  # [1] | [2] | [0] | [x, y, w, h] | [x1, y1, ..., xk, yk]


# ---------------------------------------------------------------------------------------- ground truth


@dataclasses.dataclass(frozen=True)
class VOTGroundTruth:
    """What the VOT scores need of one sequence.

    ``regions``: per-frame ground-truth regions as the annotation gives them (8-value polygons, or 4-value
    rectangles for rectangle-annotated frames). ``polygons``: ``[N, 8]`` polygons the protocol uses (rectangles
    converted pixel-inclusively). ``width``/``height``: image size. ``tags``: per-frame bool arrays, with
    ``all`` and ``empty`` (no other tag) added.
    """

    name: str
    regions: tuple
    polygons: np.ndarray
    width: int
    height: int
    tags: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.regions)


def _frame_wh(sequence) -> tuple[int, int]:
    meta = getattr(sequence, "meta", None) or {}
    if "width" in meta and "height" in meta:
        return int(meta["width"]), int(meta["height"])
    h, w = sequence.frame_size
    return int(w), int(h)


def vot_ground_truth(sequence) -> VOTGroundTruth:
    """:class:`VOTGroundTruth` of a :class:`jaxtrack.data.Sequence` (its ``polygons``, or its boxes when it has
    none; image size from ``meta["width"/"height"]`` or the first frame; ``tags``)."""
    from jaxtrack.data.vot import rect_to_polygon

    gt = np.asarray(sequence.ground_truth, dtype=np.float64)
    polys = getattr(sequence, "polygons", None)
    if polys is None:
        if len(gt) == 0:
            raise ValueError(f"sequence {sequence.name!r} has neither polygons nor ground-truth boxes")
        polys = rect_to_polygon(gt)
        regions = tuple(row for row in gt)
    else:
        polys = np.asarray(polys, dtype=np.float64)
        regions = []
        for i, p in enumerate(polys):
            # A rectangle-annotated frame is stored as rect_to_polygon(rect) with the rectangle in ground_truth;
            # an 8-value polygon line can never take that form (its ground_truth row is the min/max box).
            if len(gt) == len(polys) and np.array_equal(p, rect_to_polygon(gt[i])):
                regions.append(gt[i])
            else:
                regions.append(p)
        regions = tuple(regions)
    n = len(polys)
    tags = {"all": np.ones(n, dtype=bool)}
    for key, val in dict(getattr(sequence, "tags", {}) or {}).items():
        tags[str(key)] = np.asarray(val, dtype=bool)
    others = [v for k, v in tags.items() if k not in ("all", "empty")]
    tags["empty"] = ~np.logical_or.reduce(others) if others else np.ones(n, dtype=bool)
    w, h = _frame_wh(sequence)
    return VOTGroundTruth(sequence.name, regions, polys, w, h, tags)


# -------------------------------------------------------------------------------------------- protocol


@dataclasses.dataclass
class VOTRun:
    """One supervised run: pysot's per-frame records, the number of failures and the wall time."""

    name: str
    records: list[Record]
    lost: int
    seconds: float
    tracker_calls: int = 0  # init + step calls made


def run_vot_sequence(
    tracker,
    variables,
    sequence,
    skip: int = SKIP,
    chunk_size: int = 64,
    progress: bool = False,
) -> VOTRun:
    """pysot's supervised (restart) loop on the tracker interface (``tracker.init`` / ``tracker.step``).

    Frames are read lazily in chunks; skipped frames are not tracked. Overlaps for failure detection use the
    sequence's polygons with bound ``(W, H)`` of the frame.
    """
    from jaxtrack.data.vot import rect_to_polygon, vot_init_box

    polys = getattr(sequence, "polygons", None)
    if polys is None:
        if not len(sequence.ground_truth):
            raise ValueError(f"sequence {sequence.name!r}: the VOT protocol needs ground truth in every frame")
        polys = rect_to_polygon(np.asarray(sequence.ground_truth, np.float64))
    polys = np.asarray(polys, dtype=np.float64)
    records: list[Record] = []
    lost = calls = 0
    next_init = 0
    state = None
    bar = tqdm(total=len(polys), desc=sequence.name, unit="frame", disable=not progress, leave=False)
    start = time.perf_counter()
    idx = -1
    try:
        for chunk in sequence.iter_chunks(chunk_size):
            for frame in chunk:
                idx += 1
                if idx >= len(polys):
                    raise ValueError(f"sequence {sequence.name!r}: more frames than the {len(polys)} regions")
                bound = (frame.shape[1], frame.shape[0])
                if idx == next_init:
                    try:
                        box = vot_init_box(polys[idx])
                        state = tracker.init(variables, frame, box)
                    except ValueError as err:
                        raise ValueError(f"sequence {sequence.name!r}, frame {idx}: cannot initialise: {err}") from err
                    calls += 1
                    records.append([1])
                elif idx > next_init:
                    state, box, _ = tracker.step(variables, state, frame)
                    calls += 1
                    box = [float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1)]
                    if vot_overlap(box, polys[idx], bound) > 0:
                        records.append(box)
                    else:
                        records.append([2])
                        lost += 1
                        next_init = idx + skip
                else:
                    records.append([0])
            bar.update(len(chunk))
    finally:
        bar.close()
    if idx + 1 != len(polys):
        raise ValueError(f"sequence {sequence.name!r}: {idx + 1} frames for {len(polys)} regions")
    return VOTRun(sequence.name, records, lost, time.perf_counter() - start, calls)


def format_record(record) -> str:
    """One line of pysot's result file: ``1`` / ``2`` / ``0``, or the values with ``%.4f`` joined by commas."""
    r = list(record)
    if len(r) == 1:
        return f"{int(r[0]):d}"
    return ",".join(f"{float(v):.4f}" for v in r)


def parse_record(line: str, where: str = "") -> Record:
    """Inverse of :func:`format_record`; commas, tabs or spaces separate values."""
    import re

    parts = [p for p in re.split(r"[,\s]+", line.strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{where}: cannot parse VOT record {line!r}") from None
    if len(values) not in (1, 4) and not (len(values) >= 6 and len(values) % 2 == 0):
        raise ValueError(f"{where}: a VOT record has 1, 4 or 2k >= 6 values, got {len(values)}: {line!r}")
    return values


# ---------------------------------------------------------------------------------------------- scores


def _is_code(rec, code: int) -> bool:
    return len(rec) == 1 and rec[0] == code


def failures(trajectory) -> list[int]:
    """Frame indices recorded ``2`` (pysot ``calculate_failures``)."""
    return [i for i, rec in enumerate(trajectory) if _is_code(rec, 2)]


def burnin_overlaps(trajectory, regions, bound, burnin: int = 0) -> list[float]:
    """pysot ``calculate_accuracy(...)[1]``: per-frame overlaps after turning each record ``1`` and the
    ``burnin − 1`` frames after it into ``0``; codes give NaN; the shorter of the two lists sets the length."""
    traj = list(trajectory)
    if burnin > 0:
        for i, rec in enumerate(trajectory):
            if _is_code(rec, 1):
                for j in range(burnin):
                    if i + j < len(traj):
                        traj[i + j] = [0]
    n = min(len(traj), len(regions))
    return vot_overlap_traj(traj[:n], list(regions[:n]), bound)


def _as_runs(value) -> list[list[Record]]:
    """A trajectory (list of records) or a list of runs → a list of runs."""
    v = list(value)
    if v and len(v[0]) and np.ndim(v[0][0]) == 0:
        return [v]
    return [list(r) for r in v]


def _check_names(trajectories: Mapping, gts: Mapping) -> list[str]:
    missing = [n for n in gts if n not in trajectories]
    if missing:
        raise ValueError(f"no VOT results for {len(missing)} sequence(s): {missing[:10]}")
    return list(gts)


def accuracy_robustness(trajectories: Mapping[str, Any], gts: Mapping[str, VOTGroundTruth],
                        burnin: int = BURNIN, tags: Iterable[str] | None = None) -> dict:
    """Accuracy, robustness and lost number as pysot's ``AccuracyRobustnessBenchmark`` prints them.

    ``trajectories``: sequence name → records (one run) or list of runs. Returns ``accuracy``, ``robustness``,
    ``lost``, ``length`` (frames), ``per_sequence`` {name: accuracy, robustness, lost, length} and ``per_tag``
    {tag: accuracy, robustness, lost, frames} for ``tags`` (default: every tag of the ground truth).
    """
    names = _check_names(trajectories, gts)
    overlaps: dict[str, np.ndarray] = {}
    fail_counts: dict[str, list[int]] = {}
    fail_masks: dict[str, np.ndarray] = {}
    for name in names:
        gt = gts[name]
        runs = _as_runs(trajectories[name])
        ovs = [burnin_overlaps(r, gt.regions, (gt.width, gt.height), burnin) for r in runs]
        if len({len(o) for o in ovs}) != 1:
            raise ValueError(f"sequence {name!r}: runs of different lengths")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            overlaps[name] = np.nanmean(np.asarray(ovs, dtype=np.float64), axis=0)
        fails = [failures(r) for r in runs]
        fail_counts[name] = [len(f) for f in fails]
        n = len(overlaps[name])
        mask = np.zeros(n)
        for f in fails:
            for i in f:
                if i < n:
                    mask[i] += 1.0 / len(runs)
        fail_masks[name] = mask
    if len({len(v) for v in fail_counts.values()}) > 1:
        raise ValueError("every sequence needs the same number of runs")
    length = sum(len(v) for v in overlaps.values())
    all_ov = np.concatenate([overlaps[n] for n in names]) if names else np.zeros(0)
    fails = np.asarray([fail_counts[n] for n in names], dtype=np.float64)  # [V, R]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        accuracy = float(np.nanmean(all_ov)) if len(all_ov) else float("nan")
    totals = fails.sum(axis=0) if len(names) else np.zeros(1)
    out = {
        "accuracy": accuracy,
        "robustness": float(np.mean(totals / length) * 100) if length else float("nan"),
        "lost": float(np.mean(totals)),
        "length": int(length),
        "per_sequence": {},
        "per_tag": {},
    }
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            acc = float(np.nanmean(overlaps[name]))
        lost = float(np.mean(fail_counts[name]))
        out["per_sequence"][name] = {"accuracy": acc, "robustness": lost / len(overlaps[name]) * 100,
                                     "lost": lost, "length": len(overlaps[name])}
    tag_names = list(tags) if tags is not None else _tag_names(gts, names)
    for tag in tag_names:
        ov, fl = [], 0.0
        for name in names:
            n = len(overlaps[name])
            m = _tag(gts[name], tag)[:n]
            ov.append(overlaps[name][:len(m)][m])
            fl += float(fail_masks[name][:len(m)][m].sum())
        ov = np.concatenate(ov) if ov else np.zeros(0)
        frames = int(len(ov))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            acc = float(np.nanmean(ov)) if frames else float("nan")
        out["per_tag"][tag] = {"accuracy": acc, "robustness": fl / frames * 100 if frames else float("nan"),
                               "lost": fl, "frames": frames}
    return out


def _tag_names(gts: Mapping[str, VOTGroundTruth], names) -> list[str]:
    seen = ["all"]
    for n in names:
        for t in gts[n].tags:
            if t not in seen:
                seen.append(t)
    return seen


def _tag(gt: VOTGroundTruth, tag: str) -> np.ndarray:
    v = gt.tags.get(tag)
    return np.zeros(len(gt), dtype=bool) if v is None else np.asarray(v, dtype=bool)


def _eao_entries(trajectories: Mapping[str, Any], gts: Mapping[str, VOTGroundTruth]) -> list[tuple]:
    """(name, sequence length, failures, overlaps with bound (W − 1, H − 1), 1 / runs) for every run."""
    entries = []
    for name in _check_names(trajectories, gts):
        gt = gts[name]
        runs = _as_runs(trajectories[name])
        for r in runs:
            ov = burnin_overlaps(r, gt.regions, (gt.width - 1, gt.height - 1), 0)
            entries.append((name, len(gt), failures(r), ov, 1.0 / (len(runs) + 1e-10)))
    if not entries:
        raise ValueError("no trajectories to score")
    return entries


def _eao_fragments(entries: list[tuple], gts: Mapping[str, VOTGroundTruth], tag: str,
                   skipping: int) -> tuple[np.ndarray, np.ndarray]:
    num = sum(len(e[2]) + 1 for e in entries)
    max_len = max(len(e[3]) for e in entries)
    fragments = np.full((num, max_len), np.nan)
    weights = np.full(num, np.nan)
    k = 0
    for name, traj_len, fails, overlaps, seq_weight in entries:
        tagv = _tag(gts[name], tag).astype(np.float64)
        if fails:
            points = [0] + [f + skipping for f in fails if f + skipping <= len(overlaps)]
            for i, p in enumerate(points):
                last = i == len(points) - 1
                if not last:
                    frag = np.array(overlaps[p:points[i + 1] + 1], dtype=np.float64)
                    fragments[k, :] = 0
                else:
                    frag = np.array(overlaps[p:], dtype=np.float64)
                frag[np.isnan(frag)] = 0
                fragments[k, :len(frag)] = frag
                if not last:
                    w = tagv[p:points[i + 1] + 1].sum() / (points[i + 1] - p + 1)
                else:
                    w = tagv[p:len(overlaps)].sum() / (traj_len - p + 1e-16)
                weights[k] = seq_weight * w
                k += 1
        else:
            m = min(len(overlaps), max_len)
            fragments[k, :m] = overlaps[:m]
            weights[k] = seq_weight * tagv[:m].sum() / m
            k += 1
    return fragments, weights


def expected_overlap_curve(fragments: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """pysot ``calculate_expected_overlap``: Φ[i] for i = 0 … max_len − 1 (float32, Φ[0] = 1)."""
    fragments = np.asarray(fragments, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    max_len = fragments.shape[1]
    curve = np.zeros(max_len, dtype=np.float32)
    if max_len:
        curve[0] = 1
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(1, max_len):
            mask = ~np.isnan(fragments[:, i])
            if np.any(mask):
                frag = fragments[mask, 1:i + 1]
                seq_mean = np.sum(frag, 1) / frag.shape[1]
                curve[i] = np.sum(seq_mean * weights[mask]) / np.sum(weights[mask])
    return curve


def _eao_from_curve(curve: np.ndarray, low: int, high: int) -> float:
    weight = np.zeros(len(curve))
    weight[low - 1:high] = 1
    valid = ~np.isnan(curve)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.sum(curve[valid] * weight[valid]) / np.sum(weight[valid]))


def expected_average_overlap(trajectories: Mapping[str, Any], gts: Mapping[str, VOTGroundTruth],
                             low: int = 100, high: int = 356, tags: Iterable[str] = ("all",),
                             skipping: int = SKIP, return_curves: bool = False):
    """pysot ``EAOBenchmark``: {tag: EAO} (and {tag: Φ curve} with ``return_curves``)."""
    eao, curves = {}, {}
    entries = _eao_entries(trajectories, gts)
    for tag in tags:
        fragments, weights = _eao_fragments(entries, gts, tag, skipping)
        curves[tag] = expected_overlap_curve(fragments, weights)
        eao[tag] = _eao_from_curve(curves[tag], low, high)
    return (eao, curves) if return_curves else eao


def evaluate_vot(trajectories: Mapping[str, Any], gts: Mapping[str, VOTGroundTruth], dataset: str = "VOT2018",
                 eao_range: tuple[int, int] | None = None, eao_tags: Iterable[str] = ("all",)) -> dict:
    """Everything pysot's ``tools/eval.py`` prints for a VOT dataset: ``eao``, ``accuracy``, ``robustness``,
    ``lost``, plus ``per_sequence``, ``per_tag`` (AR, and EAO for ``eao_tags``) and ``eao_curve``."""
    low, high = eao_range or EAO_RANGES.get(dataset, EAO_RANGES["VOT2018"])
    ar = accuracy_robustness(trajectories, gts)
    eao, curves = expected_average_overlap(trajectories, gts, low, high, tuple(eao_tags), return_curves=True)
    for tag, value in eao.items():
        ar["per_tag"].setdefault(tag, {})["eao"] = value
    return {
        "eao": eao["all"] if "all" in eao else float("nan"),
        "accuracy": ar["accuracy"],
        "robustness": ar["robustness"],
        "lost": ar["lost"],
        "length": ar["length"],
        "per_sequence": ar["per_sequence"],
        "per_tag": ar["per_tag"],
        "eao_curve": curves.get("all"),
    }


def records_from_boxes(boxes: np.ndarray, init_frames: Iterable[int] = (0,)) -> list[Record]:
    """Records of a trajectory without failures: ``1`` at ``init_frames``, boxes elsewhere (for tests/tools)."""
    init = set(int(i) for i in init_frames)
    return [[1] if i in init else [float(v) for v in b] for i, b in enumerate(np.asarray(boxes, np.float64))]

