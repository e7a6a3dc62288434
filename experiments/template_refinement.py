"""Baseline vs adversarially refined template (the AUTracker / MTP seed) over N ∈ {1, 2, 4, 8, 16} steps.

Run (the README's figures)::

    .venv/bin/python experiments/template_refinement.py

Every tracker with weights runs clean and with ``attacks.refined(tracker, N)`` (α = 0.05 grey levels per step,
MTP's setting; the family's own training loss on the first frame) through the benchmark runner on the real OTB
sequences of the shared data and on held-out synthetic sequences (resumable results in ``--results``). Writes
``docs/template_refinement.md`` (table, with the refinement's cost at initialisation) and
``docs/template_refinement.png`` (success AUC vs N).

MTP's own protocol (``--mtp``): N = 16 on one-pass benchmarks and N = 2 on VOT (scored with EAO), with MTP's
SiamFC++ loss settings (``--loss mtp``: focal α 0.5, γ 0, IoU weight 1) for SiamFC++ trackers; anyone's weights on
any benchmark::

    .venv/bin/python experiments/template_refinement.py --mtp --models siamfcpp_tiny
    .venv/bin/python experiments/template_refinement.py --mtp --models siamfcpp_alexnet \
        --weights siamfcpp_alexnet=/path/to/siamfcpp-alexnet-vot-md5.pkl --dataset vot2018 --root /data/VOT2018
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

from jaxtrack import attacks, runtime, tracking
from jaxtrack.eval.benchmark import run_dataset
from jaxtrack.eval.heldout import (
    add_user_data_args,
    headline_scores,
    held_out_sets,
    models_with_weights,
    parse_weights,
    user_sets,
)
from jaxtrack.eval.report import score_results
from jaxtrack.fileio import atomic_save_figure, atomic_write_text

ROOT = Path(__file__).resolve().parent.parent

STEPS = (0, 1, 2, 4, 8, 16)


def init_cost_ms(tracker, variables, frame, box, repeats: int = 5) -> float:
    """Median wall time of one (jitted, compiled) initialisation, in ms."""
    jax.block_until_ready(tracker.init(variables, frame, box))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(tracker.init(variables, frame, box))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="nanotrack_v2", help="comma-separated trackers (those with weights run)")
    parser.add_argument("--steps", default=",".join(map(str, STEPS)), help="refinement steps N (0 = baseline)")
    parser.add_argument("--alpha", type=float, default=attacks.MTP_ALPHA)
    parser.add_argument("--otb-sequences", default="all", help="comma-separated, 'all' or 'none'")
    parser.add_argument("--synthetic", type=int, default=8)
    parser.add_argument("--synthetic-frames", type=int, default=60)
    parser.add_argument("--results", default="out/template_refinement")
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    parser.add_argument("--loss", default="family", choices=attacks.REFINE_LOSSES,
                        help="loss descended (mtp: MTP's SiamFC++ weights; SiamFC++ trackers only)")
    parser.add_argument("--mtp", action="store_true",
                        help="MTP's protocol: N = 16 (one-pass sets) / 2 (VOT, EAO) and, for SiamFC++, --loss mtp")
    add_user_data_args(parser)
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",")]

    weights = parse_weights(args.weights)
    sets = user_sets(args) or held_out_sets(args.results, args.otb_sequences, args.synthetic, args.synthetic_frames)
    rows = []  # (model, data, N, scores, init ms)
    for model, variables in models_with_weights(args.models.split(","), weights=weights):
        base = tracking.create(model)
        loss = args.loss
        if args.mtp and base.config.family == "siamfcpp" and loss == "family":
            loss = "mtp"
        for label, (dataset, seqs) in sets.items():
            frame0, box0 = seqs[0].frame(0), seqs[0].init_box
            set_steps = steps
            if args.mtp:
                set_steps = [0, attacks.MTP_STEPS["vot" if dataset.lower().startswith("vot") else "otb"]]
            for n in set_steps:
                tracker = base if n == 0 else attacks.refined(base, n, args.alpha, loss=loss)
                run_dataset(tracker, variables, seqs, args.results, dataset, tracker.name, progress=True)
                scores = score_results(args.results, dataset, seqs, trackers=[tracker.name])[tracker.name]
                cost = init_cost_ms(tracker, variables, frame0, box0)
                rows.append((model, label, n, scores, cost))
                print(f"{model} {label} N={n}: {headline_scores(scores)[0]:.3f}, init {cost:.1f} ms")

    lines = [
        f"Template refinement (MTP, α = {args.alpha:g} grey levels, loss {args.loss}"
        f"{'; MTP protocol: mtp loss for SiamFC++' if args.mtp else ''}), "
        "`experiments/template_refinement.py`; init = one initialisation incl. the refinement (median, this CPU).",
        "",
        "| model | data | N | success AUC (EAO on VOT) | P@20 (accuracy on VOT) | Δ vs N=0 | init (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    base_auc = {(m, d): headline_scores(s)[0] for m, d, n, s, _ in rows if n == 0}
    for model, label, n, scores, cost in rows:
        main, second = headline_scores(scores)
        delta = main - base_auc.get((model, label), np.nan)
        lines.append(f"| {model} | {label} | {n} | {main:.3f} | {second:.3f} | {delta:+.3f} | {cost:.1f} |")
    steps = sorted({r[2] for r in rows})
    per_seq = []
    for model, label in sorted({(m, d) for m, d, *_ in rows}):
        by_n = {n: s for m, d, n, s, _ in rows if (m, d) == (model, label)}
        first = by_n[min(by_n)]
        if "success_auc" not in first:  # VOT: per-sequence EAO is not defined
            continue
        for seq in first["per_sequence"]:
            per_seq.append(f"| {model} | {label} | {seq} | " + " | ".join(
                f"{by_n[n]['per_sequence'][seq]['success_auc']:.3f}" if n in by_n else "–" for n in steps) + " |")
    if per_seq:  # VOT sets have no per-sequence AUC
        per_seq = ["", "Per sequence (success AUC):", "",
                   "| model | data | sequence | " + " | ".join(f"N={n}" for n in steps) + " |",
                   "|---|---|---|" + "---|" * len(steps)] + per_seq
    table = "\n".join(lines + per_seq) + "\n"
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    atomic_write_text(docs / "template_refinement.md", table)
    print(table)
    plot(rows, docs / "template_refinement.png")


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.8))
    for model, label in sorted({(m, d) for m, d, *_ in rows}):
        pts = sorted((n, headline_scores(s)[0]) for m, d, n, s, _ in rows if (m, d) == (model, label))
        xs = [max(n, 0.5) for n, _ in pts]  # N = 0 drawn at 0.5 on the log axis
        ax.plot(xs, [a for _, a in pts], "o-", label=f"{model}, {label}")
    ax.set_xscale("log", base=2)
    ticks = sorted({n for _, _, n, _, _ in rows})
    ax.set_xticks([max(n, 0.5) for n in ticks], [str(n) for n in ticks])
    ax.set_xlabel("refinement steps N (log scale; 0 = baseline)")
    ax.set_ylabel("success AUC (EAO on VOT)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Adversarial template refinement", fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path)


if __name__ == "__main__":
    runtime.configure()
    run()
