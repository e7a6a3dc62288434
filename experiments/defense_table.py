"""DuaLossDef evaluated: clean / attacked / defended / defended under non-adaptive and adaptive attacks, the
ablations (where the U-Net sits, transfer to another family), the adaptive attack's convergence, and the cost.

Run (the README's figures)::

    .venv/bin/python experiments/defense_table.py --grid headline
    .venv/bin/python experiments/defense_table.py --grid attacks --plan nanotrack_v2=otb --max-frames 30
    .venv/bin/python experiments/defense_table.py --grid full          # issue 7's whole grid (accelerators)
    .venv/bin/python experiments/defense_table.py --grid all --plan nanotrack_v2=otb+vot  # issue 16's one table

Every cell is one tracker built with :func:`jaxtrack.robust.wrap` and run by the benchmark runner into
``--results`` (pysot layout, resumable), then scored with pysot's OTB metrics. The same cell from the command line::

    jaxtrack eval --model nanotrack_v2 --dataset otb-folder --root ../shared/data/sequences/OTB \\
        --sequences Crossing,Couple,KiteSurf,Football1 --attack pgd --eps 8 --steps 10 --loss dua \\
        --defense bundled [--adaptive] [--defense-where search] [--restarts 5]

Conditions (labels from the clean prediction; budgets in grey levels of the crop; the attacked branch is the
search crop of every frame):

* ``clean`` / ``defended``: no attack, without / with the U-Net shipped for the tracker (``--defense bundled``);
* ``attacked``: the undefended tracker under the attack;
* ``non-adaptive``: the defended tracker fed the crops attacked on the undefended tracker (the attacker does not
  know the defense);
* ``adaptive``: white-box, the attack's gradient flows through the U-Net end to end;
* ablations: the U-Net on the template only / the search only; the U-Net of the *other* family (transfer).

Sequences: each model runs on the sets of ``--plan`` -- by default NanoTrack (real weights) on the real OTB
sequences that no defense was trained on (Crossing, Couple, KiteSurf, Football1; the shipped defenses trained on
David and Jogging-2) and the compact SiamFC++ (weak on real video: OTB AUC 0.16) on held-out synthetic sequences
(dataset seed 90 000; training used seed 0).

Convergence of the adaptive attack (``--convergence-pairs N``): on N held-out synthetic crop pairs, PGD through the
U-Net for 100 steps from 5 random starts (Dua-Loss and margin loss), the loss traced at every step; its success rate
is compared with PGD-10 (adaptive, and non-adaptive): the adaptive attack must not be weaker than the non-adaptive
one. Cost (``--cost-iters``): U-Net milliseconds on a search crop and its share of a defended tracking step.

Loss ablation (``--loss-ablation FOLDER``, repeatable): the defended and non-adaptive cells of U-Nets trained with
another attack loss (``jaxtrack train-defense --config unet_nanotrack_cls`` / ``unet_nanotrack_reg``).

``--grid attacks``: the attacked and non-adaptive cells over the attack losses (cls, reg, Dua-Loss, CSA, RTAA at
ε 8), the budgets (ε 4, 16) and the attacks (FGSM, BIM-10, PGD-10), written to ``docs/defense_attacks.md`` / ``.png``.

Writes ``docs/defense_table.md`` and ``docs/defense_table.png`` (+ ``docs/defense_convergence.png``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

import jax
import jax.numpy as jnp

from jaxtrack import attacks, robust, tracking
from jaxtrack.attacks import OnlineAttack, attack_config
from jaxtrack.defense import defended_from_checkpoint
from jaxtrack.defense.checkpoint import (
    bundled_defense,
    bundled_spec,
    parse_bundled_spec,
    read_defense_card,
    shipped_defenses,
)
from jaxtrack.eval.heldout import (
    HELD_OUT_OTB,
    add_user_data_args,
    have_results,
    held_out_otb,
    held_out_synthetic,
    parse_weights,
    run_cell,
)
from jaxtrack.eval.benchmark import protocol_of
from jaxtrack.eval.report import score_results
from jaxtrack.fileio import atomic_save_figure, atomic_write_text
from jaxtrack.timing import interleaved
from jaxtrack.paths import shared_data_dir
from jaxtrack.tracking.crop import channel_average
from jaxtrack.weights import default_path, load_weights

DEFAULT_PLAN = "nanotrack_v2=otb,siamfcpp_tiny=synthetic"
CONDITIONS = ("clean", "defended", "attacked", "non-adaptive", "adaptive", "black-box")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One row: a condition, the attack (None: clean) and the defense placement / origin."""

    condition: str
    attack: str | None = None  # fgsm | bim | pgd | iou (the black box: it queries the deployed stack)
    loss: str = "dua"
    eps: float = 8.0
    steps: int = 10
    restarts: int = 1
    where: str = "both"
    defense: str = "bundled"  # bundled / bundled-minmax (the tracker's own) | bundled:<tracker> (transfer) | a folder
    ablation: str = ""  # "" | where | transfer | loss
    trained_with: str = ""  # the training attack's loss of a trained folder (the loss ablation)
    target: str = "search"  # the attacked crops: search (every frame), template (at initialisation), both
    frames: int = 0  # 0: whole sequences; N: the first N frames of each (results under RESULTS/first<N>)

    def online(self) -> OnlineAttack | None:
        if self.attack is None:
            return None
        cfg = attack_config(self.attack, self.eps, self.steps, restarts=self.restarts)
        return OnlineAttack(cfg, loss=self.loss, target=self.target)

    def tracker(self, base, variables):
        """``(tracker, variables)`` of this cell (:func:`jaxtrack.robust.wrap`)."""
        defense = None if self.condition in ("clean", "attacked") else robust.Defense(self.defense, self.where)
        return robust.wrap(base, variables, defense=defense, attack=self.online(),
                           adaptive=self.condition in ("adaptive", "black-box"))

    def attack_text(self) -> str:
        if self.attack is None:
            return "–"
        if self.attack == "iou":
            return f"IoU attack (black box, {self.steps} iterations) ε{self.eps:g}"
        kind = "FGSM" if self.attack == "fgsm" else f"{self.attack.upper()}-{self.steps}"
        restarts = f" ×{self.restarts} restarts" if self.restarts > 1 else ""
        return f"{kind} {self.loss} ε{self.eps:g}{restarts}"

    def frames_text(self) -> str:
        return f"first {self.frames}" if self.frames else "whole"

    def span_note(self, before: str = " ", after: str = "") -> str:
        """``before + "first N frames" + after`` for a cell on the first N frames, "" on whole sequences."""
        return f"{before}first {self.frames} frames{after}" if self.frames else ""

    def defense_text(self) -> str:
        if self.condition in ("clean", "attacked"):
            return "–"
        shipped = parse_bundled_spec(self.defense)
        if shipped is not None and shipped[1]:
            origin = f"from {shipped[1]}" + (f", {shipped[0]}" if shipped[0] else "")
        elif self.trained_with:
            origin = f"own, {self.trained_with}-only attack"
        elif shipped is not None and shipped[0] == "minmax":
            origin = "own, min-max"
        else:
            origin = "own"
        return f"{self.where}, {origin}"


def own_cell(cell: Cell, spec: str) -> Cell:
    """``cell`` with the user's U-Net ``spec`` (``--defense-for``) where it would use the one shipped for the
    model."""
    return dataclasses.replace(cell, defense=spec) if cell.defense == "bundled" else cell


def other_family_defense(model: str) -> str | None:
    """A shipped defense trained with another tracker (for the transfer ablation), if any."""
    for name, variant in shipped_defenses():
        if name != model and not variant:
            return bundled_spec(name)
    return None


def loss_ablation_cells(model: str, folders) -> list[Cell]:
    """``defended`` and ``non-adaptive`` cells of the trained defense folders (``jaxtrack train-defense
    --config unet_nanotrack_cls`` / ``_reg``) that were trained with ``model``; the loss comes from their card."""
    cells = []
    for folder in folders:
        card = read_defense_card(folder)
        if card.get("tracker") != model:
            continue
        loss = card.get("info", {}).get("attack", {}).get("loss", "?")
        kw = dict(defense=str(folder), ablation="loss", trained_with=loss)
        cells += [Cell("defended", **kw), Cell("non-adaptive", attack="pgd", loss="dua", eps=8.0, steps=10, **kw)]
    return cells


def own_unets(model: str) -> list[str]:
    """The specs of the U-Nets shipped for ``model``: ``bundled``, then ``bundled-minmax`` when it ships."""
    return ["bundled"] + (["bundled-minmax"] if (model, "minmax") in shipped_defenses() else [])


def surfaces_grid(model: str, targets=("search", "template", "both")) -> list[Cell]:
    """Every attack surface against each shipped U-Net of ``model`` (the fixed-perturbation one and, when it ships,
    the min-max one): the undefended tracker clean and attacked on the search crop, the template and both; per
    U-Net: defended clean, non-adaptive and adaptive PGD-10 Dua-Loss on each surface, adaptive PGD-10 margin
    loss on both, the black-box IoU attack (which queries the defended tracker itself), and adaptive PGD-10 margin
    loss on the search crop and the template. ``targets`` restricts the PGD surfaces (a cheaper run)."""
    pgd8 = dict(attack="pgd", loss="dua", eps=8.0, steps=10)
    iou = dict(attack="iou", eps=8.0, steps=10)
    cells = [Cell("clean")] + [Cell("attacked", **pgd8, target=t) for t in targets] + [Cell("attacked", **iou)]
    for u in own_unets(model):
        cells.append(Cell("defended", defense=u))
        for t in targets:
            cells += [Cell("non-adaptive", **pgd8, target=t, defense=u), Cell("adaptive", **pgd8, target=t, defense=u)]
        cells += [Cell("adaptive", **{**pgd8, "loss": "margin"}, target="both", defense=u),
                  Cell("black-box", **iou, defense=u)]
        cells += [Cell("adaptive", **{**pgd8, "loss": "margin"}, target=t, defense=u) for t in targets if t != "both"]
    return cells


def strong_grid(model: str, targets=("search",)) -> list[Cell]:
    """The strongest adaptive attack against each shipped U-Net of ``model``: PGD-100 from 5 random starts (the
    best restart per frame), Dua-Loss and margin loss, beside PGD-10 and the clean / defended references. About
    50x the cost of a PGD-10 cell: run it on a frame subset (``--max-frames``) on a CPU."""
    pgd8, unets = dict(attack="pgd", eps=8.0), own_unets(model)
    cells = [Cell("clean")]
    for u in unets:
        cells.append(Cell("defended", defense=u))
        cells += [Cell("adaptive", **pgd8, loss="dua", steps=10, target=t, defense=u) for t in targets]
    for loss in ("dua", "margin"):  # every U-Net under the Dua-Loss first: an interrupted run has those
        cells += [Cell("adaptive", **pgd8, loss=loss, steps=100, restarts=5, target=t, defense=u)
                  for u in unets for t in targets]
    return cells


def all_grid(model: str, targets=("search", "template", "both"), strong_frames: int = 15) -> list[Cell]:
    """The cells of the one consolidated table: every attack surface on whole sequences (:func:`surfaces_grid`),
    then the strongest adaptive attack on the search crop (:func:`strong_grid`, with its own clean and defended
    references) on the first ``strong_frames`` frames of each sequence (0: whole sequences; ~50x a PGD-10 cell).
    On a VOT set the cells cut to a few frames are skipped: EAO is defined over sequence lengths from 100 frames."""
    surfaces = surfaces_grid(model, targets)
    strong = [dataclasses.replace(c, frames=strong_frames) for c in strong_grid(model, ("search",))]
    return surfaces + [c for c in strong if c not in surfaces]  # strong_frames 0: its references are there already


def grid(name: str, model: str, targets=("search", "template", "both"), strong_frames: int = 15) -> list[Cell]:
    if name == "all":
        return all_grid(model, targets, strong_frames)
    if name == "surfaces":
        return surfaces_grid(model, targets)
    if name == "strong":
        return strong_grid(model, targets)
    if name == "attacks":  # the undefended and non-adaptive cells over attack losses and budgets (CPU-sized)
        cells = [Cell("clean"), Cell("defended")]
        for loss in ("cls", "reg", "dua", "csa", "rtaa"):
            cells += [Cell(c, "pgd", loss, 8.0, 10) for c in ("attacked", "non-adaptive")]
        for eps in (4.0, 16.0):
            cells += [Cell(c, "pgd", "dua", eps, 10) for c in ("attacked", "non-adaptive")]
        cells += [Cell(c, a, "dua", 8.0, 1 if a == "fgsm" else 10) for a in ("fgsm", "bim")
                  for c in ("attacked", "non-adaptive")]
        return cells
    pgd8 = dict(attack="pgd", loss="dua", eps=8.0, steps=10)
    cells = [Cell("clean"), Cell("defended"), Cell("attacked", **pgd8), Cell("non-adaptive", **pgd8),
             Cell("adaptive", **pgd8), Cell("adaptive", **{**pgd8, "loss": "margin"})]
    if name == "smoke":
        return [Cell("clean"), Cell("defended"), Cell("attacked", "fgsm"), Cell("non-adaptive", "fgsm"),
                Cell("adaptive", "fgsm")]
    if name in ("headline", "full"):
        # a U-Net on one branch against the attack on that branch, and on both crops (the other branch left bare)
        cells += [Cell("non-adaptive", **pgd8, where=w, target=t, ablation="where")
                  for w in ("template", "search") for t in (w, "both")]
        cells += [Cell("defended", where="search", ablation="where")]
        other = other_family_defense(model)
        if other is not None:
            cells += [Cell("defended", defense=other, ablation="transfer"),
                      Cell("non-adaptive", **pgd8, defense=other, ablation="transfer")]
    if name == "full":
        for attack in ("fgsm", "bim", "pgd"):
            for loss in ("cls", "reg", "dua", "csa", "rtaa"):
                for eps in (4.0, 8.0, 16.0):
                    for cond in ("attacked", "non-adaptive", "adaptive"):
                        c = Cell(cond, attack, loss, eps, 1 if attack == "fgsm" else 10)
                        if c not in cells:
                            cells.append(c)
        cells += [Cell("adaptive", "pgd", loss, 8.0, 100, 5) for loss in ("dua", "margin")]
    if name not in ("smoke", "headline", "full", "attacks"):
        raise ValueError(f"unknown grid {name!r}")
    return cells


def parse_plan(text: str) -> list[tuple[str, list[str]]]:
    out = []
    for item in filter(None, text.split(",")):
        model, _, sets = item.partition("=")
        sets_list = [s for s in sets.split("+") if s]
        for s in sets_list:
            if s not in SET_LABELS:
                raise SystemExit(f"--plan {item!r}: unknown set {s!r} ({', '.join(SET_LABELS)})")
        out.append((model, sets_list or ["otb"]))
    return out


def load_sets(args) -> dict[str, tuple[str, list]]:
    """{set: (dataset name for the runner, sequences)}; with ``--dataset`` only the user's set (``user``)."""
    from jaxtrack.eval.heldout import user_sets

    given = user_sets(args)
    if given is not None:
        (name, (dataset, seqs)), = given.items()
        SET_LABELS["user"] = f"{name} ({args.root})"
        return {"user": (dataset, seqs)}
    out = {}
    otb = held_out_otb(args.otb_sequences.split(","), max_frames=args.max_frames)
    if otb:
        out["otb"] = ("otb-folder", otb)
    out["synthetic"] = ("synthetic", held_out_synthetic(Path(args.results) / "synthetic_data", args.synthetic,
                                                        args.synthetic_frames, max_frames=args.max_frames))
    vot_root = shared_data_dir() / "sequences" / "VOT2018"
    if vot_root.is_dir():  # the supervised protocol (re-initialisation 5 frames after a failure): EAO
        from jaxtrack.data.datasets import load_dataset

        vot = list(load_dataset("vot2018", vot_root))
        out["vot"] = ("vot2018", [s.head(args.max_frames) for s in vot] if args.max_frames else vot)
    return out


SET_LABELS = {"otb": "OTB (real, held out)", "synthetic": "synthetic (held out)",
              "vot": "VOT2018 bag (real, held out)"}


# ----------------------------------------------------------------------------------------------- sequences
def run_cells(model: str, variables, sets: list[str], cells: list[Cell], data: dict, results: str,
              cached_only: bool = False) -> list[dict]:
    base = tracking.create(model)
    rows = []
    for set_name in sets:
        if set_name not in data:
            print(f"skipping {model} on {set_name}: no sequences")
            continue
        dataset, all_frames = data[set_name]
        skipped = set()
        for cell in cells:
            seqs, cell_results = all_frames, results
            if cell.frames and protocol_of(dataset) == "vot":
                # VOT2018's EAO averages expected overlaps over sequence lengths 100-356: undefined on a few frames
                if cell.frames not in skipped:
                    print(f"skipping {model}'s cells on the first {cell.frames} frames of {set_name}: EAO needs "
                          "whole sequences")
                skipped.add(cell.frames)
                continue
            if cell.frames:  # a cell on the first frames only: its own results folder, as --max-frames
                seqs = [s.head(cell.frames) for s in all_frames]
                cell_results = str(Path(results) / f"first{cell.frames}")
            try:
                tracker, cell_variables = cell.tracker(base, variables)
            except ValueError as err:  # e.g. no shipped defense for this model
                print(f"skipping {model} {cell}: {err}")
                continue
            if cached_only and not have_results(cell_results, dataset, tracker.name, seqs):
                print(f"not run (--cached-only): {model} {set_name} {tracker.name}")
                continue
            seconds = run_cell(tracker, cell_variables, seqs, cell_results, dataset,
                               f"{set_name}/{tracker.name}").wall
            scores = score_results(cell_results, dataset, seqs, trackers=[tracker.name])[tracker.name]
            if "eao" in scores:  # VOT: the main figure is EAO; accuracy and robustness take the other columns
                main = {"auc": scores["eao"], "precision": scores["accuracy"], "robustness": scores["robustness"],
                        "protocol": "vot"}
            else:
                main = {"auc": scores["success_auc"], "precision": scores["precision"], "protocol": "ope"}
            rows.append({"model": model, "set": set_name, "cell": cell, "tracker": tracker.name, **main,
                         "seconds": seconds, "frames": int(sum(s.num_frames for s in seqs))})
            label = "EAO" if main["protocol"] == "vot" else "AUC"
            print(f"{model} {set_name} {tracker.name}{cell.span_note(' (', ')')}: {label} {main['auc']:.3f}",
                  flush=True)
    return rows


# ----------------------------------------------------------------------------------------------- convergence
def convergence(model: str, variables, pairs: int, steps: int, restarts: int, eps: float, workdir: Path,
                spec: str = "bundled") -> dict:
    """The adaptive attack on held-out crop pairs against the U-Net ``spec`` (a shipped-defense spec): loss traces
    of PGD-``steps`` through the U-Net from ``restarts`` random starts, and success rates (best-box IoU > 0.5) of
    every attack."""
    from jaxtrack.defense.checkpoint import resolve_defense
    from jaxtrack.defense.config import get_defense_config
    from jaxtrack.defense.evaluate import heldout_pairs
    from jaxtrack.defense.objective import gt_ref_boxes

    card = read_defense_card(resolve_defense(spec, model))
    config = get_defense_config(card["info"]["config_name"])  # the recipe that trained the shipped U-Net
    base = tracking.create(model)
    defended, dvars = defended_from_checkpoint(base, variables, spec, where="both")
    data = heldout_pairs(config, base, workdir / f"pairs_{model}", pairs=pairs, seed=2000)
    z = jnp.asarray(data["template"], jnp.float32)
    x = jnp.asarray(data["search"], jnp.float32)
    ref = gt_ref_boxes(jnp.asarray(data["box"], jnp.float32), base.config.instance_size)

    def dense(t, zz, xx):
        v = dvars if t is defended else variables
        s, b = t.dense_predictions(t.head(v, t.embed_template(v, zz[None]), xx[None]))
        return s[0], b[0]

    def iou(t, zz, xx, r):
        return attacks.box_iou(attacks.best_box(*dense(t, zz, xx)), r)

    def attack_one(t, zz, xx, r, loss, cfg, key, trace):
        clean = jax.lax.stop_gradient(dense(t, zz, xx))
        fn = attacks.LOSSES[loss]
        return attacks.run_attack(lambda a: fn(*dense(t, zz, a), r, clean), xx, cfg, key, return_losses=trace)

    out = {"pairs": pairs, "steps": steps, "restarts": restarts, "eps": eps, "success": {}, "traces": {},
           "defense": spec}
    ious = jax.jit(jax.vmap(lambda zz, xx, r: iou(defended, zz, xx, r)))
    ious_base = jax.jit(jax.vmap(lambda zz, xx, r: iou(base, zz, xx, r)))
    out["success"]["clean, undefended"] = float(np.mean(np.asarray(ious_base(z, x, ref)) > 0.5))
    out["success"]["clean, defended"] = float(np.mean(np.asarray(ious(z, x, ref)) > 0.5))
    keys = jax.random.split(jax.random.key(7), pairs)
    for loss in ("dua", "margin"):
        pgd10 = attack_config("pgd", eps, 10)
        def run10(t):
            return jax.jit(jax.vmap(lambda zz, xx, r, k: attack_one(t, zz, xx, r, loss, pgd10, k, False)))

        x_na = run10(base)(z, x, ref, keys)
        x_ad = run10(defended)(z, x, ref, keys)
        out["success"][f"{loss}: attacked (undefended), PGD-10"] = float(np.mean(np.asarray(ious_base(z, x_na, ref)) > 0.5))
        out["success"][f"{loss}: non-adaptive, PGD-10"] = float(np.mean(np.asarray(ious(z, x_na, ref)) > 0.5))
        out["success"][f"{loss}: adaptive, PGD-10"] = float(np.mean(np.asarray(ious(z, x_ad, ref)) > 0.5))
        long = attack_config("pgd", eps, steps)
        run_long = jax.jit(jax.vmap(lambda zz, xx, r, k: attack_one(defended, zz, xx, r, loss, long, k, True)))
        finals, advs, traces = [], [], []
        for r in range(restarts):
            t0 = time.perf_counter()
            x_adv, losses = run_long(z, x, ref, jax.vmap(lambda k: jax.random.fold_in(k, r))(keys))
            advs.append(np.asarray(x_adv))
            traces.append(np.asarray(losses))  # [pairs, steps + 1]
            finals.append(np.asarray(losses)[:, -1])
            print(f"{model} {loss}: restart {r + 1}/{restarts} of PGD-{steps} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        traces = np.stack(traces)  # [R, pairs, steps + 1]
        best = np.argmax(np.stack(finals), axis=0)  # per pair
        x_best = np.stack([advs[b][i] for i, b in enumerate(best)])
        out["success"][f"{loss}: adaptive, PGD-{steps}"] = float(np.mean(np.asarray(ious(z, jnp.asarray(advs[0]), ref)) > 0.5))
        out["success"][f"{loss}: adaptive, PGD-{steps} ×{restarts} restarts"] = float(
            np.mean(np.asarray(ious(z, jnp.asarray(x_best), ref)) > 0.5))
        # best over restarts at every step, mean over pairs
        out["traces"][loss] = np.mean(np.max(traces, axis=0), axis=0).tolist()
        out["traces"][f"{loss} (one restart)"] = np.mean(traces[0], axis=0).tolist()
    return out


# ----------------------------------------------------------------------------------------------- cost
def cost(model: str, variables, iters: int) -> dict:
    """Median ms of a tracking step undefended and defended (both branches; the template U-Net runs at init)."""
    from jaxtrack.data.sequence import load_otb_folder

    seq = load_otb_folder(shared_data_dir() / "sequences/OTB/Crossing")
    f0, f1 = seq.frame(0), seq.frame(1)
    box0 = seq.ground_truth[0].astype(np.float32)
    base = tracking.create(model)
    d, dvars = defended_from_checkpoint(base, variables, "bundled", where="both")
    crop = np.asarray(base.search_crop(f1, *base.box_to_center_size(jnp.asarray(box0)),
                                       channel_average(f1))[0])
    s0, s1 = base.init(variables, f0, box0), d.init(dvars, f0, box0)
    defend = jax.jit(d.defend)
    t = interleaved({"step": lambda: base.step(variables, s0, f1), "defended": lambda: d.step(dvars, s1, f1),
                     "unet": lambda: defend(dvars, crop)}, rounds=max(1, iters // 5), iters=5)
    return {"step_ms": t["step"] * 1e3, "defended_ms": t["defended"] * 1e3, "unet_ms": t["unet"] * 1e3,
            "share": 1.0 - t["step"] / t["defended"], "crop": int(base.config.instance_size)}


# ----------------------------------------------------------------------------------------------- outputs
def write_outputs(rows: list[dict], conv: dict, costs: dict, args) -> None:
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    clean = {(r["model"], r["set"], r["cell"].frames): r["auc"] for r in rows if r["cell"].condition == "clean"}
    lines = [
        f"DuaLossDef, `experiments/defense_table.py {args.command or '(defaults)'}` (the U-Nets shipped in "
        "`jaxtrack/assets/defenses`; attacks on every frame's search crop unless the attack names the template (perturbed "
        "at initialisation) or both; ε in grey levels, labels from the clean prediction; success AUC / precision at "
        "20 px with pysot's OTB metrics).",
        "",
        "| model | sequences | condition | attack (target) | defense (where, trained with) | ablation | "
        "success AUC (OTB) / EAO (VOT) | P@20 (OTB) / accuracy, robustness (VOT) | ÷ clean | frames/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c: Cell = r["cell"]
        ratio = r["auc"] / max(clean.get((r["model"], r["set"], c.frames), float("nan")), 1e-9)
        fps = "–" if not r["seconds"] else f"{r['frames'] / r['seconds']:.1f}"
        second = (f"{r['precision']:.3f}, {r['robustness']:.3f}" if r.get("protocol") == "vot"
                  else f"{r['precision']:.3f}")
        attack = c.attack_text() if c.attack is None or c.target == "search" else f"{c.attack_text()} ({c.target})"
        attack += c.span_note(" [", "]")
        lines.append(f"| {r['model']} | {SET_LABELS[r['set']]} | {c.condition} | {attack} | "
                     f"{c.defense_text()} | {c.ablation or '–'} | {r['auc']:.3f} | {second} | "
                     f"{ratio:.2f} | {fps} |")
    lines.append("")
    lines.append("frames/s: the whole run of that cell on this 2-core CPU, compile included. "
                 + (f"Every sequence cut to its first {args.max_frames} frames." if args.max_frames
                    else "Whole sequences, except cells marked [first N frames]." if any(r["cell"].frames for r in rows)
                    else "Whole sequences."))
    for model, c in conv.items():
        lines += ["", f"**Adaptive attack on {model}**: {c['pairs']} held-out synthetic crop pairs, PGD through the "
                      f"U-Net, ε = {c['eps']:g}, success = best-box IoU > 0.5 (lower = stronger attack).", "",
                  "| attack | success |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in c["success"].items()]
        for loss in ("dua", "margin"):
            tr = c["traces"][loss]
            s = c["steps"]
            lines.append("")
            lines.append(f"{loss} loss, best over restarts, mean over pairs: step 10 {tr[10]:.3f}, step {s // 2} "
                         f"{tr[s // 2]:.3f}, step {s} {tr[s]:.3f} (gain over the last half: {tr[s] - tr[s // 2]:+.3f}).")
    if costs:
        lines += ["", "**Cost** (median over interleaved runs; this 2-core CPU, shared):", "",
                  "| model | search crop | U-Net (ms) | step (ms) | defended step (ms) | U-Net share |",
                  "|---|---|---|---|---|---|"]
        for model, c in costs.items():
            lines.append(f"| {model} | {c['crop']} | {c['unet_ms']:.1f} | {c['step_ms']:.1f} | "
                         f"{c['defended_ms']:.1f} | {c['share']:.0%} |")
    if args.grid == "all":
        lines = lines[:2] + summary_tables(rows) + ["Every cell:", ""] + lines[2:]
    table = "\n".join(lines) + "\n"
    stems = {"attacks": "defense_attacks", "surfaces": "defense_surfaces", "strong": "defense_strong",
             "all": "defense_all"}
    stem = stems.get(args.grid, "defense_table")
    atomic_write_text(docs / f"{stem}.md", table)
    print(table)
    raw = [{**{k: v for k, v in r.items() if k != "cell"}, "cell": dataclasses.asdict(r["cell"])} for r in rows]
    atomic_write_text(Path(args.results) / f"{stem}.json",
                      json.dumps({"rows": raw, "convergence": conv, "cost": costs}, indent=1))
    (plot_summary if args.grid == "all" else plot)(rows, docs / f"{stem}.png")
    if conv:
        plot_convergence(conv, docs / "defense_convergence.png")


UNET_NAMES = {"bundled": "fixed-perturbation U-Net", "bundled-minmax": "min-max U-Net"}
KIND_ORDER = ("none", "non-adaptive", "adaptive", "black box")
TARGET_ORDER = ("–", "search", "template", "both")
ATTACK_ORDER = (None, "fgsm", "bim", "pgd", "iou")


def pivot(rows: list[dict], model: str) -> tuple[list, list[dict]]:
    """The consolidated view of ``model``'s cells (``--grid all``): ``(columns, entries)``, a column ``(set,
    defense)`` per set and defense (None: undefended, then each U-Net on both branches), an entry per attack (kind,
    attack, attacked crops, frames; sorted) holding ``(score, score ÷ clean)`` per column, with the clean score of the
    same set and frames. An undefended attacked cell fills the undefended column of both the non-adaptive and the
    adaptive entry of its attack (the same attack on the same tracker)."""
    sub = [r for r in rows if r["model"] == model and not r["cell"].ablation and r["cell"].where == "both"]
    sets = list(dict.fromkeys(r["set"] for r in sub))
    unets = list(dict.fromkeys(r["cell"].defense for r in sub if r["cell"].condition not in ("clean", "attacked")))
    clean = {(r["set"], r["cell"].frames): r["auc"] for r in sub if r["cell"].condition == "clean"}
    entries: dict[tuple, dict] = {}
    for r in sub:
        c = r["cell"]
        if c.attack is None:
            kinds = ["none"]
        elif c.condition == "attacked":
            kinds = ["black box"] if c.attack == "iou" else ["non-adaptive", "adaptive"]
        else:
            kinds = ["black box" if c.condition == "black-box" else c.condition]
        ratio = r["auc"] / clean[(r["set"], c.frames)] if clean.get((r["set"], c.frames)) else float("nan")
        defense = None if c.condition in ("clean", "attacked") else c.defense
        for kind in kinds:
            key = (c.frames, KIND_ORDER.index(kind), ATTACK_ORDER.index(c.attack), c.steps, c.restarts, c.loss, c.eps,
                   TARGET_ORDER.index(c.target if c.attack else "–"))
            entries.setdefault(key, {"kind": kind, "cell": c})[(r["set"], defense)] = (r["auc"], ratio)
    return [(s, d) for s in sets for d in [None] + unets], [entries[k] for k in sorted(entries)]


def _defense_name(defense: str | None) -> str:
    return "undefended" if defense is None else UNET_NAMES.get(defense, defense)


def _column_text(column, protocols: dict) -> str:
    set_name, defense = column
    metric = "EAO" if protocols.get(set_name) == "vot" else "AUC"
    return f"{SET_LABELS[set_name].split(' (')[0]} {metric}: {_defense_name(defense)}"


def _protocols(rows: list[dict]) -> dict:
    """{set: "vot" | "ope"} of the rows (the set's scoring protocol)."""
    return {r["set"]: r.get("protocol", "ope") for r in rows}


def _entry_text(entry) -> str:
    c = entry["cell"]
    attack = f"{c.attack_text()} ({c.target})" if c.attack else "no attack"
    return f"{entry['kind']} · {attack}{c.span_note(' · ')}"


def summary_tables(rows: list[dict]) -> list[str]:
    """One table per model (``--grid all``, :func:`pivot`): each entry ``score (÷ clean)``; ``–``: not run."""
    lines, protocols = [], _protocols(rows)
    for model in dict.fromkeys(r["model"] for r in rows):
        columns, entries = pivot(rows, model)
        lines += [f"**{model}** (score ÷ the clean score of the same sequences and frames):", "",
                  "| kind | attack | crops | frames | " + " | ".join(_column_text(c, protocols) for c in columns)
                  + " |",
                  "|---|---|---|---|" + "---|" * len(columns)]
        for e in entries:
            c = e["cell"]
            values = [f"{e[col][0]:.3f} ({e[col][1]:.2f}×)" if col in e else "–" for col in columns]
            crops = c.target if c.attack else "–"
            lines.append(f"| {e['kind']} | {c.attack_text()} | {crops} | {c.frames_text()} | "
                         + " | ".join(values) + " |")
        lines.append("")
    return lines


def plot_summary(rows: list[dict], path: Path) -> None:
    """:func:`pivot` as grouped bars: a panel per model and set, an entry per row, a bar per defense."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(m, s, pivot(rows, m)) for m in dict.fromkeys(r["model"] for r in rows)
              for s in dict.fromkeys(r["set"] for r in rows if r["model"] == m)]
    panels = [(m, s, [c for c in cols if c[0] == s], [e for e in entries if any(c in e for c in cols if c[0] == s)])
              for m, s, (cols, entries) in panels]  # each panel: its set's columns and the entries run there
    longest, protocols = max(len(entries) for *_, entries in panels), _protocols(rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 0.42 * longest + 1.6), squeeze=False)
    colours = ["tab:gray", "tab:blue", "tab:purple", "tab:olive"]
    for ax, (model, set_name, mine, entries) in zip(axes[0], panels):
        height = 0.8 / len(mine)
        for j, col in enumerate(mine):
            ys = [i + (j - (len(mine) - 1) / 2) * height for i in range(len(entries))]
            ax.barh(ys, [e[col][0] if col in e else float("nan") for e in entries], height=height,
                    color=colours[j % 4], label=_defense_name(col[1]))
            for y, e in zip(ys, entries):
                if col not in e:  # a bar of length 0 would read as a score of 0
                    ax.text(0.005, y, "not run", fontsize=5, va="center", color="0.4")
        ax.set_yticks(range(len(entries)), [_entry_text(e) for e in entries], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("EAO" if protocols.get(set_name) == "vot" else "success AUC")
        ax.set_xlim(0, 1.35)  # the legend right of the bars (every score is at most 1)
        ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.set_title(f"{model}, {SET_LABELS[set_name]}", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    atomic_save_figure(fig, path)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["model"], r["set"]) for r in rows})
    longest = max(sum(1 for r in rows if (r["model"], r["set"]) == g) for g in groups)
    # horizontal bars, one readable line of text per cell, the figure as tall as the longest group
    fig, axes = plt.subplots(1, len(groups), figsize=(9.0 * len(groups), 0.26 * longest + 1.4), squeeze=False)
    colours = {"clean": "tab:green", "defended": "tab:olive", "attacked": "tab:red", "non-adaptive": "tab:blue",
               "adaptive": "tab:purple", "black-box": "tab:orange"}
    for ax, (model, set_name) in zip(axes[0], groups):
        sub = [r for r in rows if (r["model"], r["set"]) == (model, set_name)]
        labels = []
        for r in sub:
            c = r["cell"]
            attack = "" if c.attack_text() == "–" else f" · {c.attack_text()} ({c.target})"
            defense = "" if c.defense_text() == "–" else f" · {c.defense_text()}"
            labels.append(f"{c.condition}{attack}{defense}{c.span_note(' · ')}")
        ax.barh(range(len(sub)), [r["auc"] for r in sub], color=[colours[r["cell"].condition] for r in sub])
        ax.set_yticks(range(len(sub)), labels, fontsize=7)
        ax.invert_yaxis()  # table order, top to bottom
        ax.set_xlabel("EAO" if set_name == "vot" else "success AUC")
        ax.set_xlim(0, 1)
        ax.set_title(f"{model}, {SET_LABELS[set_name]}", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    atomic_save_figure(fig, path)


def plot_convergence(conv: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 * len(conv), figsize=(4.2 * 2 * len(conv), 3.4), squeeze=False)
    i = 0
    for model, c in conv.items():
        for loss in ("dua", "margin"):
            ax = axes[0][i]
            i += 1
            ax.plot(c["traces"][loss], label=f"best of {c['restarts']} restarts")
            ax.plot(c["traces"][f"{loss} (one restart)"], "--", label="one restart")
            ax.set_xlabel("PGD step (through the U-Net)")
            ax.set_ylabel(f"{loss} loss (mean over pairs)")
            ax.set_title(f"{model}: adaptive, {loss}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", default="headline",
                        choices=["smoke", "headline", "full", "attacks", "surfaces", "strong", "all"],
                        help="smoke: FGSM only; headline: PGD-10 Dua-Loss ε 8 with the ablations; surfaces: every "
                             "attack surface (search, template, both), the black-box IoU attack, against each "
                             "shipped U-Net (fixed-perturbation and min-max); strong: adaptive PGD-100 x 5 "
                             "restarts (Dua-Loss, margin) against each shipped U-Net; attacks: "
                             "attacked / non-adaptive over the losses, ε 4 / 16, FGSM and BIM; all: surfaces "
                             "and strong in one table (strong on the first --strong-frames frames); full: every "
                             "attack x loss x ε x condition and the 100-step, 5-restart adaptive attack")
    parser.add_argument("--plan", default=DEFAULT_PLAN, help="model=set[+set],... (sets: otb, synthetic, vot)")
    parser.add_argument("--otb-sequences", default=",".join(HELD_OUT_OTB))
    parser.add_argument("--synthetic", type=int, default=4, help="held-out synthetic sequences")
    parser.add_argument("--synthetic-frames", type=int, default=60)
    parser.add_argument("--max-frames", type=int, default=0,
                        help="track only the first N frames of every sequence (0: all); results go to "
                             "RESULTS/first<N>")
    parser.add_argument("--convergence-pairs", type=int, default=8,
                        help="0: skip the convergence check (an earlier run's result in --results is still shown)")
    parser.add_argument("--convergence-models", default="", help="comma-separated (default: every model run)")
    parser.add_argument("--convergence-steps", type=int, default=100)
    parser.add_argument("--convergence-restarts", type=int, default=5)
    parser.add_argument("--cost-iters", type=int, default=20, help="0: skip the cost measurement")
    parser.add_argument("--loss-ablation", action="append", default=[], metavar="FOLDER",
                        help="a defense trained with another attack loss (the defense folder of jaxtrack "
                             "train-defense --config unet_nanotrack_cls / _reg); repeatable")
    parser.add_argument("--cached-only", action="store_true",
                        help="only tabulate cells an earlier run finished (no tracking)")
    parser.add_argument("--results", default="out/defense_table")
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    add_user_data_args(parser, max_frames=False)  # --weights, --dataset/--root/--sequences (every --plan model)
    parser.add_argument("--defense-for", action="append", default=[], metavar="MODEL=SPEC",
                        help="the U-Net that defends MODEL in the 'own' cells: a jaxtrack train-defense folder "
                             "(WORKDIR/defense) or a shipped spec (bundled[-minmax][:TRACKER], transfer allowed); "
                             "default: the one shipped for MODEL; repeatable")
    parser.add_argument("--strong-frames", type=int, default=15,
                        help="--grid all: the PGD-100 x 5 cells track the first N frames of each sequence (0: all)")
    parser.add_argument("--targets", default="search,template,both",
                        help="--grid surfaces / strong / all: the attacked crops of the PGD cells (comma-separated)")
    args = parser.parse_args(argv)
    args.command = " ".join(sys.argv[1:] if argv is None else argv)
    if args.max_frames and args.grid == "all":
        parser.error("--grid all tracks whole sequences (its strongest attack: the first --strong-frames frames); "
                     "--max-frames cuts every cell, use --grid surfaces / strong with it")
    if args.max_frames:
        args.results = str(Path(args.results) / f"first{args.max_frames}")
    plan = parse_plan(args.plan)
    data = load_sets(args)
    weights = parse_weights(args.weights)
    own_defense = dict(item.partition("=")[::2] for item in args.defense_for)
    rows, conv, costs = [], {}, {}
    for model, sets in plan:
        if args.dataset:
            sets = ["user"]
        tracker = tracking.create(model)
        if model not in weights and default_path(model) is None:
            print(f"skipping {model}: no trained weights here (give them with --weights {model}=PATH)")
            continue
        variables = load_weights(tracker, weights.get(model), allow_random=False).variables
        cells = grid(args.grid, model, tuple(args.targets.split(",")), args.strong_frames)
        cells += loss_ablation_cells(model, args.loss_ablation)
        if model in own_defense:
            cells = [own_cell(c, own_defense[model]) for c in cells]
        rows += run_cells(model, variables, sets, cells, data, args.results, args.cached_only)
        if bundled_defense(model) is None or model in own_defense:
            continue
        for spec in own_unets(model) if args.grid in ("surfaces", "strong", "all") else ["bundled"]:
            key = model if spec == "bundled" else f"{model} ({spec})"
            tag = "" if spec == "bundled" else f"{spec}_"
            earlier = sorted(Path(args.results).glob(f"convergence_{model}_{tag}[0-9]*.json"))
            if not args.convergence_pairs and earlier:  # reuse a check made by an earlier run
                conv[key] = json.loads(earlier[-1].read_text())
            elif args.convergence_pairs and (not args.convergence_models or
                                             model in args.convergence_models.split(",")):
                cache = Path(args.results) / f"convergence_{model}_{tag}{args.convergence_pairs}x" \
                                             f"{args.convergence_steps}x{args.convergence_restarts}.json"
                if cache.is_file():  # an interrupted or extended run does not redo it
                    conv[key] = json.loads(cache.read_text())
                else:
                    conv[key] = convergence(model, variables, args.convergence_pairs, args.convergence_steps,
                                            args.convergence_restarts, 8.0, Path(args.results), spec)
                    atomic_write_text(cache, json.dumps(conv[key]))
        if args.cost_iters:
            costs[model] = cost(model, variables, args.cost_iters)
        write_outputs(rows, conv, costs, args)  # after every model: partial results are never lost
    write_outputs(rows, conv, costs, args)


if __name__ == "__main__":
    from jaxtrack import runtime

    runtime.configure()
    run()
