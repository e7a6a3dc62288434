"""The demo: synthetic sequences (exact ground truth), tracked by every model, a table and a plot.

Run: ``jaxtrack demo`` (or ``make demo``); ``jaxtrack demo --help`` for the options.

NanoTrack runs with its real pretrained weights when the shared data folder holds them (converted in memory by
the torch-free reader); SiamFC++ / SiamRPN have no checkpoint here and run with random weights, and the output
says so: their success is that of an untrained network, the speed figures are real.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from jaxtrack.data.sequence import load_otb_folder, write_boxes
from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset
from jaxtrack.eval import metrics
from jaxtrack.tracking import create
from jaxtrack.tracking.weights import load_tracker_variables, shared_checkpoint


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    out: str = "out/demo"
    models: tuple[str, ...] = ("nanotrack_v2", "siamfcpp_alexnet", "siamrpn_alex")
    num_sequences: int = 4
    num_frames: int = 48
    seed: int = 0


@dataclasses.dataclass
class DemoRow:
    model: str
    weights: str
    sequences: int
    frames: int
    compile_s: float
    fps: float
    auc: float
    precision: float
    curve: np.ndarray


def run_demo(config: DemoConfig, log=print) -> list[DemoRow]:
    out = Path(config.out)
    data_root = out / "synthetic"
    synth = SyntheticConfig(num_frames=config.num_frames)
    log(f"generating {config.num_sequences} synthetic sequences of {config.num_frames} frames in {data_root}")
    paths = generate_dataset(data_root, config.num_sequences, synth, seed=config.seed)
    sequences = [load_otb_folder(p) for p in paths]
    frames = np.stack([np.concatenate(list(s.iter_chunks(s.num_frames))) for s in sequences])
    boxes0 = np.stack([s.ground_truth[0] for s in sequences]).astype(np.float32)
    lengths = np.array([s.num_frames for s in sequences])
    rows = []
    for name in config.models:
        tracker = create(name)
        checkpoint = shared_checkpoint(name)
        variables, is_random = load_tracker_variables(tracker, checkpoint and str(checkpoint), seed=config.seed)
        weights = "random (untrained)" if is_random else f"pretrained ({checkpoint.name})"
        start = time.perf_counter()
        compiled = tracker.compile_track_batch(variables, frames, boxes0, lengths)
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        boxes, _ = jax.block_until_ready(compiled(variables, frames, boxes0, lengths))
        seconds = time.perf_counter() - start
        boxes = np.asarray(boxes)
        curves, precisions = [], []
        for seq, seq_boxes in zip(sequences, boxes):
            write_boxes(out / "results" / "Synthetic" / name / f"{seq.name}.txt", seq_boxes[: seq.num_frames])
            curves.append(metrics.success_curve(seq.ground_truth, seq_boxes[: seq.num_frames]))
            precisions.append(metrics.precision_at_20(seq.ground_truth, seq_boxes[: seq.num_frames]))
        curve = np.mean(curves, axis=0)
        rows.append(
            DemoRow(
                name,
                weights,
                len(sequences),
                int(lengths.sum()),
                compile_s,
                float(lengths.sum() / seconds),
                float(curve.mean()),
                float(np.mean(precisions)),
                curve,
            )
        )
        log(f"{name}: {rows[-1].fps:.1f} frames/s, AUC {rows[-1].auc:.3f}")
    return rows


def format_table(rows: list[DemoRow]) -> str:
    head = "| model | weights | sequences | frames | compile (s) | frames/s (batched) | success AUC | P@20 |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.weights} | {r.sequences} | {r.frames} | {r.compile_s:.1f} | {r.fps:.1f} | "
            f"{r.auc:.3f} | {r.precision:.3f} |"
        )
    return "\n".join(lines)


def plot_success(rows: list[DemoRow], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for r in rows:
        ax.plot(metrics.SUCCESS_THRESHOLDS, r.curve, label=f"{r.model} [{r.auc:.3f}] ({r.weights})")
    ax.set_xlabel("overlap threshold")
    ax.set_ylabel("success rate")
    ax.set_title("Success plot, synthetic sequences")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".partial.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
