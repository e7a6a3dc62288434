"""Tracking success on held-out real sequences, measured on the training run's own checkpoints.

A tracker run with ``eval.sequences`` set evaluates every checkpoint it saves: each sequence is tracked from its
first ground-truth box with the checkpoint's variables (one-pass, as ``jaxtrack eval``), scored with pysot's OTB
success AUC (:func:`jaxtrack.eval.report.score_ope`), and one line is appended to ``WORKDIR/heldout.jsonl``::

    {"step": 750, "success_auc": 0.328, "per_sequence": {"Crossing": 0.61, ...}, "seconds": 41.2}

``loss.png`` gets a panel of these values. Lines past the step a run resumes from are dropped (as for
``metrics.jsonl``), so the file never has a step twice.

The sequences must be disjoint from the training data (the recipe lists them in ``data.held_out`` too). They are
for watching generalisation; picking the checkpoint to ship by them would select on the evaluation set.

Checkpoints of a run can also be evaluated after the fact (:func:`evaluate_checkpoints`,
``jaxtrack train --config NAME --workdir DIR --eval-checkpoints``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

HELDOUT_FILE = "heldout.jsonl"


def load_eval_sequences(eval_config) -> list:
    """The sequences ``eval_config`` names (OTB layout under ``eval_config.root``), cut to ``max_frames``."""
    from jaxtrack.data.datasets import load_dataset
    from jaxtrack.paths import resolve_data_path

    root = resolve_data_path(eval_config.root)
    if not root.is_dir():
        raise FileNotFoundError(f"eval.root {eval_config.root!r} -> {root} is not a folder")
    seqs = list(load_dataset("otb-folder", root, sequences=list(eval_config.sequences)))
    return [s.head(eval_config.max_frames) for s in seqs] if eval_config.max_frames else seqs


def track_and_score(tracker, variables, sequences, chunk_size: int = 64) -> dict:
    """``{"success_auc": mean over sequences, "per_sequence": {name: AUC}}`` of one-pass tracking from each
    sequence's first ground-truth box (frames streamed in chunks: memory holds one chunk)."""
    from jaxtrack.eval.report import score_ope

    results = {}
    for seq in sequences:
        boxes, _ = tracker.track_chunks(variables, seq.iter_chunks(chunk_size), seq.init_box, chunk_size)
        results[seq.name] = np.asarray(boxes)
    scores = score_ope(sequences, results)
    return {"success_auc": scores["success_auc"],
            "per_sequence": {n: v["success_auc"] for n, v in scores["per_sequence"].items()}}


class HeldOutEvaluator:
    """Called with ``(variables, step)`` after each checkpoint: tracks the held-out sequences and appends a line
    to ``heldout.jsonl`` (process 0; the other processes return at once)."""

    def __init__(self, eval_config, tracker, workdir, log: Callable[[str], None] = print):
        self.config, self.tracker, self.log = eval_config, tracker, log
        self.path = Path(workdir) / HELDOUT_FILE
        self._sequences = None

    def __call__(self, variables, step: int) -> dict | None:
        if jax.process_index() != 0:
            return None
        if self._sequences is None:
            self._sequences = load_eval_sequences(self.config)
        start = time.perf_counter()
        row = {"step": int(step), **track_and_score(self.tracker, jax.device_get(variables), self._sequences)}
        row["seconds"] = round(time.perf_counter() - start, 2)
        append_row(self.path, row)
        return row


def append_row(path: Path, row: dict) -> None:
    """Append one JSON line (replacing an earlier line of the same step) atomically."""
    from jaxtrack.fileio import atomic_write_text
    from jaxtrack.train.runner import read_metrics

    rows = [r for r in read_metrics(path) if r.get("step") != row["step"]] + [row]
    rows.sort(key=lambda r: r["step"])
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def checkpoint_variables(workdir, step: int) -> dict:
    """``{"params", "batch_stats"}`` of checkpoint ``step`` of a run (numpy arrays; no optimizer state), with the
    parameter average in place of ``params`` when the run keeps one (``optim.ema_decay``)."""
    import orbax.checkpoint as ocp

    from jaxtrack.train.runner import CHECKPOINT_DIR

    path = Path(workdir).absolute() / CHECKPOINT_DIR / str(int(step)) / "state"
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint state at {path}")
    restored = ocp.StandardCheckpointer().restore(path)
    from jaxtrack.train.state import find_param_ema

    average = find_param_ema(restored.get("opt_state"))
    variables = {"params": restored["params"] if average is None else average}
    if restored.get("batch_stats"):
        variables["batch_stats"] = restored["batch_stats"]
    return variables


def saved_steps(workdir) -> list[int]:
    """The checkpoint steps present in ``WORKDIR/checkpoints`` (ascending)."""
    from jaxtrack.train.runner import CHECKPOINT_DIR

    folder = Path(workdir) / CHECKPOINT_DIR
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def evaluate_checkpoints(config, workdir, tracker=None, redo: bool = False, log: Callable[[str], None] = print):
    """Evaluate every checkpoint of ``workdir`` that ``heldout.jsonl`` has no line for (all with ``redo``);
    returns the new rows."""
    from jaxtrack import tracking

    if not config.eval.sequences:
        raise ValueError(f"{config.name}: eval.sequences is empty; --set eval.sequences=Crossing,Couple,...")
    tracker = tracker or tracking.create(config.tracker)
    evaluator = HeldOutEvaluator(config.eval, tracker, workdir, log)
    from jaxtrack.train.runner import read_metrics

    done = set() if redo else {r["step"] for r in read_metrics(evaluator.path)}
    rows = []
    for step in saved_steps(workdir):
        if step in done:
            continue
        row = evaluator(checkpoint_variables(workdir, step), step)
        log(f"step {step}: held-out success AUC {row['success_auc']:.3f} "
            + " ".join(f"{k} {v:.3f}" for k, v in row["per_sequence"].items()))
        rows.append(row)
    return rows
