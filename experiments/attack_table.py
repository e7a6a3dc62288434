"""Clean vs attacked success of every tracker with weights, per attack × loss × target × ε, on real OTB sequences
and on synthetic sequences.

Run (the README's figures)::

    .venv/bin/python experiments/attack_table.py --grid headline
    .venv/bin/python experiments/attack_table.py --grid full --otb-sequences all      # issue 5's whole grid

Each cell is one tracker (``robust.wrap(tracker, variables, attack=...)``) run by the benchmark runner into
``--results`` (pysot layout, resumable: an interrupted run re-runs nothing already written), then scored with
pysot's OTB metrics (EAO and accuracy for VOT datasets). Writes ``docs/attack_table.md`` (tables) and
``docs/attack_table.png`` (AUC vs ε per attack).

Anyone's weights on any benchmark::

    .venv/bin/python experiments/attack_table.py --models siamrpnpp_r50 \
        --weights siamrpnpp_r50=/path/to/siamrpn_r50_l234_dwxcorr/model.pth --dataset otb100 --root /data/OTB100

Grids (all online attacks, labels from the clean prediction, budgets in grey levels of the crop):

* ``headline``: PGD-10 Dua-Loss on the search region at ε ∈ {2, 4, 8, 16}; at ε = 8: FGSM, BIM-10, PGD-10 with
  the cls / reg / CSA / RTAA losses, and PGD-10 Dua-Loss on the template and on both.
* ``full``: {FGSM, BIM-10, PGD-10} × {cls, reg, dua, csa, rtaa} × {template, search, both} × ε ∈ {2, 4, 8, 16}.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from jaxtrack import robust, runtime, tracking
from jaxtrack.attacks import OnlineAttack, attack_config
from jaxtrack.eval.heldout import (
    HELD_OUT_OTB,
    add_user_data_args,
    headline_scores,
    held_out_sets,
    models_with_weights,
    parse_weights,
    run_cell,
    user_sets,
)
from jaxtrack.eval.report import score_results
from jaxtrack.fileio import atomic_save_figure, atomic_write_text

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Cell:
    attack: str  # fgsm | bim | pgd
    loss: str
    target: str
    eps: float
    steps: int = 10

    def online(self) -> OnlineAttack:
        return OnlineAttack(attack_config(self.attack, self.eps, self.steps), loss=self.loss, target=self.target)


def grid(name: str) -> list[Cell]:
    if name == "headline":
        cells = [Cell("pgd", "dua", "search", e) for e in (2.0, 4.0, 8.0, 16.0)]
        cells += [Cell("fgsm", "dua", "search", 8.0), Cell("bim", "dua", "search", 8.0)]
        cells += [Cell("pgd", loss, "search", 8.0) for loss in ("cls", "reg", "csa", "rtaa")]
        cells += [Cell("pgd", "dua", target, 8.0) for target in ("template", "both")]
        return cells
    if name == "full":
        return [Cell(a, loss, t, e) for a in ("fgsm", "bim", "pgd") for loss in ("cls", "reg", "dua", "csa", "rtaa")
                for t in ("template", "search", "both") for e in (2.0, 4.0, 8.0, 16.0)]
    if name == "smoke":  # for a quick check of the script itself
        return [Cell("fgsm", "dua", "search", 8.0)]
    raise ValueError(f"unknown grid {name!r}")


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", default="headline", choices=["headline", "full", "smoke"])
    parser.add_argument("--models", default="nanotrack_v2", help="comma-separated trackers (those with weights run)")
    parser.add_argument("--otb-sequences", default=",".join(HELD_OUT_OTB), help="comma-separated, 'all' or 'none'")
    parser.add_argument("--synthetic", type=int, default=4, help="held-out synthetic sequences (0: none)")
    parser.add_argument("--synthetic-frames", type=int, default=60)
    parser.add_argument("--results", default="out/attack_table")
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="where attack_table.md/.png go")
    add_user_data_args(parser)
    args = parser.parse_args(argv)

    cells = grid(args.grid)
    weights = parse_weights(args.weights)
    sets = user_sets(args) or held_out_sets(args.results, args.otb_sequences, args.synthetic, args.synthetic_frames)
    rows = []  # (model, dataset, cell or None, scores, CellTime, frames)
    for model, variables in models_with_weights(args.models.split(","), weights=weights):
        base = tracking.create(model)
        for label, (dataset, seqs) in sets.items():
            for cell in [None] + cells:
                tracker, cell_variables = (base, variables) if cell is None else robust.wrap(
                    base, variables, attack=cell.online())
                cost = run_cell(tracker, cell_variables, seqs, args.results, dataset, f"{label}/{tracker.name}")
                scores = score_results(args.results, dataset, seqs, trackers=[tracker.name])[tracker.name]
                rows.append((model, label, cell, scores, cost, sum(s.num_frames for s in seqs)))
                print(f"{model} {label} {tracker.name}: {headline_scores(scores)[0]:.3f} "
                      f"({_seconds_text(cost.wall)} s)")
    write_outputs(rows, args)


def _cell_text(cell: Cell | None) -> tuple[str, ...]:
    if cell is None:
        return ("clean", "–", "–", "–")
    return (_kind_text(cell.attack, cell.steps), cell.loss, cell.target, f"{cell.eps:g}")


def _kind_text(attack: str, steps: int) -> str:
    return "FGSM" if attack == "fgsm" else f"{attack.upper()}-{steps}"


def _seconds_text(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:.0f}"


def write_outputs(rows, args) -> None:
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    clean = {(m, d): s for m, d, c, s, *_ in rows if c is None}
    span = f"The first {args.max_frames} frames of each sequence" if args.dataset and args.max_frames else \
        "Whole sequences"
    lines = [
        f"Online attacks, `experiments/attack_table.py --grid {args.grid}` (ε in grey levels of the crop; labels "
        "from the clean prediction; success AUC / precision at 20 px, pysot's OTB metrics). "
        f"{span}. Cost: "
        "the run that tracked the cell, compilation included (– for a cell resumed half-way), in CPU "
        "seconds of both cores (unaffected by pauses; about twice the wall time when the run has the machine) and "
        "in wall seconds.",
        "",
        "| model | data | attack | loss | target | ε | success AUC (EAO on VOT) | P@20 (accuracy on VOT) | ÷ clean "
        "| frames | CPU (s) | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, label, cell, scores, cost, frames in rows:
        main, second = headline_scores(scores)
        ratio = main / max(headline_scores(clean[(model, label)])[0], 1e-9)
        lines.append(f"| {model} | {label} | " + " | ".join(_cell_text(cell)) +
                     f" | {main:.3f} | {second:.3f} | {ratio:.2f} | {frames} | {_seconds_text(cost.cpu)} | "
                     f"{_seconds_text(cost.wall)} |")
    if args.grid == "full":
        lines = lines[:2] + budget_tables(rows) + ["Every cell:", ""] + lines[2:]
    cpu = sum(r[4].cpu for r in rows if r[4].cpu is not None)
    wall = sum(r[4].wall for r in rows if r[4].wall is not None)
    lines += ["", f"{len(rows)} cells: {cpu / 3600:.1f} h of CPU time, {wall / 3600:.1f} h of wall time in all."]
    table = "\n".join(lines) + "\n"
    atomic_write_text(docs / "attack_table.md", table)
    print(table)
    (plot_full if args.grid == "full" else plot)(rows, docs / "attack_table.png")


def budget_tables(rows) -> list[str]:
    """One table per model and data set: a row per attack, loss and target (grid order), a column per ε, each entry
    the success AUC (EAO on VOT) with its ratio to the clean score; ``–``: not run."""
    lines = []
    for model, label in dict.fromkeys((m, d) for m, d, *_ in rows):
        sub = [(c, s) for m, d, c, s, *_ in rows if (m, d) == (model, label)]
        clean = next((headline_scores(s)[0] for c, s in sub if c is None), float("nan"))
        budgets = sorted({c.eps for c, _ in sub if c is not None})
        scores = {(c.attack, c.steps, c.loss, c.target, c.eps): headline_scores(s)[0] for c, s in sub if c is not None}
        keys = list(dict.fromkeys(k[:4] for k in scores))
        lines += [f"**{model}, {label}**: clean {clean:.3f}; attacked score (÷ clean) per budget:", "",
                  "| attack | loss | target | " + " | ".join(f"ε {e:g}" for e in budgets) + " |",
                  "|---|---|---|" + "---|" * len(budgets)]
        for attack, steps, loss, target in keys:
            kind = _kind_text(attack, steps)
            values = [scores.get((attack, steps, loss, target, e)) for e in budgets]
            lines.append(f"| {kind} | {loss} | {target} | " + " | ".join(
                "–" if v is None else f"{v:.3f} ({v / max(clean, 1e-9):.2f}×)" for v in values) + " |")
        lines.append("")
    return lines


def _budget_axes(ax, label: str) -> None:
    """Score (EAO on VOT, success AUC otherwise) against ε on a log-2 axis."""
    ax.set_xscale("log", base=2)
    ax.set_xticks([2, 4, 8, 16], ["2", "4", "8", "16"])
    ax.set_xlabel("ε (grey levels)")
    ax.set_ylabel("EAO" if label.lower().startswith("vot") else "success AUC")
    ax.set_ylim(0, 1)


def plot_full(rows, path: Path) -> None:
    """The full grid: a row of panels per model, data set and attack, a panel per target, the score against ε with a
    line per loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys((m, d) for m, d, *_ in rows))
    kinds = list(dict.fromkeys((c.attack, c.steps) for _, _, c, *_ in rows if c is not None))
    targets = list(dict.fromkeys(c.target for _, _, c, *_ in rows if c is not None))
    panels = [(g, k) for g in groups for k in kinds]
    fig, axes = plt.subplots(len(panels), len(targets), figsize=(4.2 * len(targets), 3.0 * len(panels)),
                             squeeze=False)
    for i, ((model, label), (attack, steps)) in enumerate(panels):
        sub = [(c, s) for m, d, c, s, *_ in rows if (m, d) == (model, label)]
        clean = next(headline_scores(s)[0] for c, s in sub if c is None)
        losses = list(dict.fromkeys(c.loss for c, _ in sub if c is not None))
        kind = _kind_text(attack, steps)
        for ax, target in zip(axes[i], targets):
            ax.axhline(clean, color="k", lw=1, label=f"clean [{clean:.3f}]")
            for j, loss in enumerate(losses):
                pts = sorted((c.eps, headline_scores(s)[0]) for c, s in sub if c is not None and
                             (c.attack, c.steps, c.loss, c.target) == (attack, steps, loss, target))
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, "o-", ms=3, color=f"C{j}", label=loss)
            _budget_axes(ax, label)
            crops = "both crops" if target == "both" else f"the {target} crop"
            ax.set_title(f"{model}, {label}: {kind} on {crops}", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(m, d) for m, d, *_ in rows})
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 3.8), squeeze=False)
    for ax, (model, label) in zip(axes[0], groups):
        sub = [(c, s) for m, d, c, s, *_ in rows if (m, d) == (model, label)]
        clean = next(headline_scores(s)[0] for c, s in sub if c is None)
        ax.axhline(clean, color="k", lw=1, label=f"clean [{clean:.3f}]")
        series: dict[str, list[tuple[float, float]]] = {}
        for c, s in sub:
            if c is not None:
                key = f"{_cell_text(c)[0]} {c.loss} {c.target}"
                series.setdefault(key, []).append((c.eps, headline_scores(s)[0]))
        for key, pts in sorted(series.items()):
            pts.sort()
            xs, ys = zip(*pts)
            ax.plot(xs, ys, "o-" if len(pts) > 1 else "s", label=key, ms=4)
        _budget_axes(ax, label)
        ax.set_title(f"{model}, {label}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_save_figure(fig, path)


if __name__ == "__main__":
    runtime.configure()
    run()
