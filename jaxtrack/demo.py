"""The demo: synthetic sequences (exact ground truth), tracked by every model, a table and a plot.

Run: ``jaxtrack demo`` (or ``make demo``); ``jaxtrack demo --help`` for the options.

``siamfcpp_tiny`` (a compact SiamFC++ trained by this project on synthetic sequences) runs with the weights shipped
in the package; ``siamfcpp_nano`` (a SiamFC++ head trained here on real video over NanoTrack v2's backbone) and
NanoTrack with its real pretrained weights when the shared data folder holds them (converted in memory by the
torch-free reader; without it both run with random weights, and the output says so); SiamRPN has no checkpoint here and runs with random weights, and the output
says so: its success is that of an untrained network, the speed figures are real.

Beside each clean row of the ``robust_models``, more: the tracker under an online attack (PGD-10, ε = 8 grey
levels, Dua-Loss, every frame's search crop); each DuaLossDef U-Net shipped for it under the same attack in the
setting that U-Net was built for -- the fixed-perturbation U-Net against the attack computed on the undefended
tracker (non-adaptive: it was trained on such crops), the min-max U-Net against the attack through it (adaptive:
it was trained against that attacker); and the tracker with MTP template refinement (16 steps of 0.05). The data
are the same synthetic sequences for every row (never chosen for the defense).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from jaxtrack import robust
from jaxtrack.attacks import OnlineAttack, attack_config
from jaxtrack.data.sequence import load_otb_folder, write_boxes
from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset
from jaxtrack.defense.checkpoint import bundled_defense
from jaxtrack.eval import metrics
from jaxtrack.fileio import atomic_save_figure
from jaxtrack.tracking import create
from jaxtrack.weights import load_weights


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    out: str = "out/demo"
    models: tuple[str, ...] = ("siamfcpp_tiny", "siamfcpp_nano", "nanotrack_v2", "siamrpn_alex")
    num_sequences: int = 4
    num_frames: int = 48
    seed: int = 0
    robust_models: tuple[str, ...] = ("siamfcpp_tiny", "nanotrack_v2")  # also attacked and template-refined
    attack: str = "pgd"
    attack_loss: str = "dua"
    attack_eps: float = 8.0
    attack_steps: int = 10
    refine_steps: int = 16
    defend: bool = True  # rows with the shipped DuaLossDef U-Nets under the same attack, each in its own setting

    def variants(self, tracker, variables):
        """(label, tracker, variables) shown for one model: clean, then attacked and refined for
        ``robust_models``."""
        out = [("clean", tracker, variables)]
        if tracker.name in self.robust_models:
            attack = OnlineAttack(attack_config(self.attack, self.attack_eps, self.attack_steps), loss=self.attack_loss)
            out.append((f"attacked: {attack.describe()}", *robust.wrap(tracker, variables, attack=attack)))
            if self.defend and bundled_defense(tracker.name) is not None:
                defended = robust.wrap(tracker, variables, attack=attack, defense=robust.Defense("bundled"),
                                       adaptive=False)
                out.append(("defended: fixed-perturbation U-Net, attack on the undefended tracker", *defended))
            if self.defend and bundled_defense(tracker.name, "minmax") is not None:
                defended = robust.wrap(tracker, variables, attack=attack, defense=robust.Defense("bundled-minmax"),
                                       adaptive=True)
                out.append(("defended: min-max U-Net, attack through it (adaptive)", *defended))
            refined = robust.wrap(tracker, variables, refine=robust.Refinement(self.refine_steps))
            out.append((f"template refined ({self.refine_steps} steps)", *refined))
        return out


@dataclasses.dataclass
class DemoRow:
    model: str
    variant: str
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
        base = create(name)
        loaded = load_weights(base, seed=config.seed)
        is_random = loaded.is_random
        weights = ("random (untrained)" if is_random else "trained here (shipped)" if loaded.source.startswith(
            "bundled:") else f"pretrained ({loaded.source.rsplit('/', 1)[-1]})")
        if not is_random and (loaded.card or {}).get("backbone_from"):
            weights = f"{weights}, backbone {loaded.card['backbone_from']['file'].rsplit('/', 1)[-1]}"
        for variant, tracker, variables in config.variants(base, loaded.variables):
            start = time.perf_counter()
            compiled = tracker.compile_track_batch(variables, frames, boxes0, lengths)
            compile_s = time.perf_counter() - start
            start = time.perf_counter()
            boxes, _ = jax.block_until_ready(compiled(variables, frames, boxes0, lengths))
            seconds = time.perf_counter() - start
            boxes = np.asarray(boxes)
            curves, precisions = [], []
            for seq, seq_boxes in zip(sequences, boxes):
                write_boxes(out / "results" / "Synthetic" / tracker.name / f"{seq.name}.txt",
                            seq_boxes[: seq.num_frames])
                curves.append(metrics.success_curve(seq.ground_truth, seq_boxes[: seq.num_frames]))
                precisions.append(metrics.precision_at_20(seq.ground_truth, seq_boxes[: seq.num_frames]))
            curve = np.mean(curves, axis=0)
            rows.append(
                DemoRow(
                    name,
                    variant,
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
            log(f"{name} ({variant}): {rows[-1].fps:.1f} frames/s, AUC {rows[-1].auc:.3f}")
    return rows


def format_table(rows: list[DemoRow]) -> str:
    head = "| model | variant | weights | sequences | frames | compile (s) | frames/s (batched) | success AUC | P@20 |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.variant} | {r.weights} | {r.sequences} | {r.frames} | {r.compile_s:.1f} | {r.fps:.1f} | "
            f"{r.auc:.3f} | {r.precision:.3f} |"
        )
    return "\n".join(lines)


def plot_success(rows: list[DemoRow], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for r in rows:
        variant = "" if r.variant == "clean" else f", {r.variant}"
        style = ("--" if r.variant.startswith("attacked") else ":" if r.variant.startswith("template")
                 else "-." if r.variant.startswith("defended") else "-")
        ax.plot(metrics.SUCCESS_THRESHOLDS, r.curve, style,
                label=f"{r.model}{variant} [{r.auc:.3f}] ({r.weights.split(' ')[0]})")
    ax.set_xlabel("overlap threshold")
    ax.set_ylabel("success rate")
    ax.set_title("Success plot, synthetic sequences")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_figure(fig, path)
    return path
