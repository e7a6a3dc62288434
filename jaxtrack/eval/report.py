"""Score result folders (ours or other toolkits') and present them: tables (Markdown, CSV, JSON) and plots.

One-pass datasets follow pysot's ``OPEBenchmark`` (:mod:`jaxtrack.eval.metrics`); LaSOT and GOT-10k are scored
with their visibility flags (invisible frames count as failures, full-length denominator), as pysot scores
LaSOT's ``absent`` field; OTB, UAV123 and the others score every annotated frame (pysot's OTB/UAV branch, its
"non-positive centre" precision quirk included). Results longer than the ground truth (OTB Football1: 81 images,
74 annotated) are scored on the annotated frames. VOT datasets follow pysot's AR and EAO benchmarks
(:mod:`jaxtrack.eval.vot`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence as _Seq
from pathlib import Path

import numpy as np

from jaxtrack.eval import metrics
from jaxtrack.eval.benchmark import find_dataset_dir, find_trackers, load_results, protocol_of, result_folder
from jaxtrack.fileio import atomic_save_figure

__all__ = [
    "VISIBILITY_DATASETS",
    "score_ope",
    "score_vot",
    "score_results",
    "to_json",
    "format_table",
    "plot_scores",
]

#: Datasets whose per-frame visibility is scored (invisible frames = failures): pysot's LaSOT ``absent``;
#: GOT-10k's ``absence.label`` by the same rule.
VISIBILITY_DATASETS = frozenset({"lasot", "got10k-val", "got10k-train"})


def _gt_length_check(name: str, gt: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    if len(boxes) < len(gt):
        raise ValueError(f"sequence {name!r}: the result has {len(boxes)} boxes for {len(gt)} annotated frames")
    return boxes[: len(gt)]


def score_ope(sequences: _Seq, results: Mapping[str, np.ndarray], dataset: str = "otb100") -> dict:
    """pysot-style one-pass scores of one tracker: ``success_auc``, ``precision`` (20 px), ``norm_precision``
    (0.20), mean curves (``*_curve``), ``per_sequence`` {video: success_auc, precision, norm_precision} and,
    when the sequences carry attributes, ``per_attribute``."""
    use_vis = str(dataset).lower() in VISIBILITY_DATASETS
    curves, attrs = {}, {}
    for seq in sequences:
        gt = np.asarray(seq.ground_truth, dtype=np.float64)
        boxes = _gt_length_check(seq.name, gt, np.asarray(results[seq.name], dtype=np.float64))
        vis = getattr(seq, "visible", None) if use_vis else None
        curves[seq.name] = metrics.sequence_curves(gt, boxes, vis)
        if getattr(seq, "attributes", ()):
            attrs[seq.name] = tuple(seq.attributes)
    out = metrics.dataset_scores(curves)
    out["per_sequence"] = {
        n: {"success_auc": float(c["success"].mean()), "precision": float(c["precision"][20]),
            "norm_precision": float(c["norm_precision"][20])}
        for n, c in curves.items()
    }
    if attrs:
        out["per_attribute"] = metrics.attribute_breakdown(curves, attrs)
    return out


def score_vot(sequences: _Seq, trajectories: Mapping, dataset: str = "vot2018") -> dict:
    """pysot-style VOT scores of one tracker (:func:`jaxtrack.eval.vot.evaluate_vot`): ``eao``, ``accuracy``,
    ``robustness``, ``lost``, ``per_sequence``, ``per_tag`` (AR per tag; EAO for ``all`` and the tags)."""
    from jaxtrack.eval import vot

    gts = {s.name: vot.vot_ground_truth(s) for s in sequences}
    tags = ["all"] + [t for t in next(iter(gts.values())).tags if t not in ("all", "empty")] if gts else ["all"]
    return vot.evaluate_vot(trajectories, gts, result_folder(dataset), eao_tags=tags)


def score_results(results_dir, dataset: str, sequences: _Seq, trackers: Iterable[str] | None = None,
                  warn=None) -> dict[str, dict]:
    """Scores of every tracker found under ``results_dir`` for ``dataset`` (or of ``trackers``).

    A tracker folder lacking results for some of the sequences is left out with a warning (``warn(msg)``,
    default: printed on stderr); an explicitly requested tracker with missing results raises.
    """
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    found = find_trackers(results_dir, dataset)
    explicit = trackers is not None
    names = list(trackers) if explicit else list(found)
    if explicit:
        unknown = [t for t in names if t not in found]
        if unknown:
            raise FileNotFoundError(f"no results of {unknown} for {dataset} under "
                                    f"{find_dataset_dir(results_dir, dataset)} (found: {sorted(found) or 'none'})")
    protocol = protocol_of(dataset)
    scores = {}
    for t in names:
        try:
            res = load_results(results_dir, dataset, t, sequences)
        except FileNotFoundError as err:
            if explicit:
                raise
            warn(f"skipping {err}")
            continue
        try:
            scores[t] = score_vot(sequences, res, dataset) if protocol == "vot" else score_ope(sequences, res, dataset)
        except ValueError as err:
            raise ValueError(f"tracker {t!r}: {err}") from err
    if not scores:
        raise FileNotFoundError(f"no complete tracker results for {dataset} under "
                                f"{find_dataset_dir(results_dir, dataset)}")
    return scores


# ------------------------------------------------------------------------------------------------ output


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def to_json(scores: Mapping[str, dict], protocol: str = "ope") -> dict:
    """JSON-ready scores without curves: one-pass ``{tracker: {success_auc, precision, norm_precision,
    per_sequence: {video: {success_auc, precision, norm_precision}}[, per_attribute]}}``; VOT ``{tracker:
    {eao, accuracy, robustness, lost, per_sequence, per_tag}}``."""
    def table(d: Mapping[str, Mapping]) -> dict:
        return {row: {k: int(x) if isinstance(x, (int, np.integer)) else _clean(float(x)) for k, x in vals.items()}
                for row, vals in d.items()}

    out = {}
    for t, s in scores.items():
        if protocol == "vot":
            out[t] = {k: _clean(float(s[k])) for k in ("eao", "accuracy", "robustness", "lost")}
            out[t]["per_sequence"] = table(s["per_sequence"])
            out[t]["per_tag"] = table(s["per_tag"])
        else:
            out[t] = {k: _clean(float(s[k])) for k in ("success_auc", "precision", "norm_precision")}
            out[t]["per_sequence"] = table(s["per_sequence"])
            if "per_attribute" in s:
                out[t]["per_attribute"] = {
                    a: {k: _clean(float(d[k])) for k in ("success_auc", "precision", "norm_precision")}
                    | {"num_sequences": int(d["num_sequences"])}
                    for a, d in s["per_attribute"].items()
                }
    return out


def _sorted(scores: Mapping[str, dict], protocol: str) -> list[str]:
    key = "eao" if protocol == "vot" else "success_auc"
    return sorted(scores, key=lambda t: -np.nan_to_num(float(scores[t][key]), nan=-np.inf))


def _rows(scores: Mapping[str, dict], protocol: str) -> tuple[list[str], list[list]]:
    if protocol == "vot":
        header = ["Tracker", "Accuracy", "Robustness", "Lost", "EAO"]
        rows = [[t, scores[t]["accuracy"], scores[t]["robustness"], scores[t]["lost"], scores[t]["eao"]]
                for t in _sorted(scores, protocol)]
    else:
        header = ["Tracker", "Success (AUC)", "Precision (20 px)", "Norm. precision (0.20)"]
        rows = [[t, scores[t]["success_auc"], scores[t]["precision"], scores[t]["norm_precision"]]
                for t in _sorted(scores, protocol)]
    return header, rows


def format_table(scores: Mapping[str, dict], protocol: str = "ope", fmt: str = "md") -> str:
    """Scores as a Markdown table (best first; per-attribute / per-tag tables after it), CSV or JSON."""
    if fmt == "json":
        return json.dumps(to_json(scores, protocol), indent=2)
    header, rows = _rows(scores, protocol)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([r[0]] + [repr(float(v)) for v in r[1:]])
        return buf.getvalue()
    if fmt != "md":
        raise ValueError(f"unknown format {fmt!r} (md, json, csv)")

    def md(head, body, digits=3):
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for r in body:
            lines.append("| " + " | ".join([str(r[0])] + [f"{float(v):.{digits}f}" for v in r[1:]]) + " |")
        return "\n".join(lines)

    parts = [md(header, rows)]
    order = [r[0] for r in rows]
    if protocol == "vot":
        tags = [g for g in scores[order[0]]["per_tag"]]
        if tags:
            head = ["Tag"] + [f"{t} {k}" for t in order for k in ("A", "R", "EAO")]
            body = []
            for g in tags:
                row = [g]
                for t in order:
                    d = scores[t]["per_tag"].get(g, {})
                    row += [d.get("accuracy", float("nan")), d.get("robustness", float("nan")),
                            d.get("eao", float("nan"))]
                body.append(row)
            parts.append("Per tag (A = accuracy, R = failures per 100 frames):\n\n" + md(head, body))
    else:
        attrs = sorted({a for t in order for a in scores[t].get("per_attribute", {})})
        if attrs:
            head = ["Attribute", "Sequences"] + [f"{t} AUC" for t in order]
            body = [[a, scores[order[0]]["per_attribute"].get(a, {}).get("num_sequences", 0)]
                    + [scores[t].get("per_attribute", {}).get(a, {}).get("success_auc", float("nan")) for t in order]
                    for a in attrs]
            lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
            for r in body:
                lines.append("| " + " | ".join([str(r[0]), str(int(r[1]))] + [f"{float(v):.3f}" for v in r[2:]]) + " |")
            parts.append("Per attribute (success AUC):\n\n" + "\n".join(lines))
    return "\n\n".join(parts) + "\n"


def plot_scores(scores: Mapping[str, dict], out, dataset: str = "", protocol: str = "ope") -> Path:
    """OTB-toolkit style plots, one line per tracker with its score in the legend, written atomically.

    One-pass: success plot (overlap threshold → success rate, legend ``[AUC]``) and precision plot (location
    error threshold → precision, legend ``[P@20]``), plus the normalised-precision plot for LaSOT/GOT-10k.
    VOT: the expected-overlap curves Φ(N_s) with the EAO in the legend and the averaging range shaded.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    name = result_folder(dataset) if dataset else ""
    order = _sorted(scores, protocol)
    if protocol == "vot":
        from jaxtrack.eval.vot import EAO_RANGES

        low, high = EAO_RANGES.get(name, EAO_RANGES["VOT2018"])
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for t in order:
            c = scores[t].get("eao_curve")
            if c is not None:
                ax.plot(np.arange(len(c)), c, lw=2, label=f"[{scores[t]['eao']:.3f}] {t}")
        ax.axvspan(low - 1, high - 1, color="0.9", zorder=0)
        ax.set(xlabel="Sequence length", ylabel="Expected overlap", title=f"Expected overlap curves {name}".strip(),
               ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    else:
        panels = [("success_curve", metrics.SUCCESS_THRESHOLDS, "Overlap threshold", "Success rate",
                   "Success plots of OPE", "success_auc"),
                  ("precision_curve", metrics.PRECISION_THRESHOLDS, "Location error threshold (px)", "Precision",
                   "Precision plots of OPE", "precision")]
        if str(dataset).lower() in VISIBILITY_DATASETS:
            panels.append(("norm_precision_curve", metrics.NORM_PRECISION_THRESHOLDS, "Normalised location error",
                           "Precision", "Normalised precision plots of OPE", "norm_precision"))
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5))
        for ax, (key, xs, xl, yl, title, score_key) in zip(np.atleast_1d(axes), panels):
            for t in sorted(order, key=lambda q: -float(scores[q][score_key])):
                ax.plot(xs, scores[t][key], lw=2, label=f"[{scores[t][score_key]:.3f}] {t}")
            ax.set(xlabel=xl, ylabel=yl, title=f"{title} {('on ' + name) if name else ''}".strip(),
                   xlim=(xs[0], xs[-1]), ylim=(0, 1))
            ax.grid(alpha=0.3)
            ax.legend(loc="lower right" if key != "success_curve" else "lower left", fontsize=8)
    return atomic_save_figure(fig, out, bbox_inches="tight")  # closes the figure
