"""Attack cost on this machine, per tracker family, against the sums of its parts and against PyTorch.

Run (full, ~1 h on a 2-core CPU; writes docs/attack_speed.md)::

    .venv/bin/python benchmarks/attack_speed.py [--models nanotrack_v2,siamfcpp_tiny,siamfcpp_alexnet,siamrpn_alex,siamrpnpp_r50]
        [--repeats 5] [--repeats-for siamrpnpp_r50=2] [--batch-models siamfcpp_tiny] [--no-torch] [--out docs/attack_speed.md]

Quick look: ``--models siamfcpp_tiny --repeats 2 --out /tmp/attack_speed.md``.

Weights: ``nanotrack_v2`` the real ones (shared data folder), ``siamfcpp_tiny`` the bundled ones, the others random
(speed does not depend on the values). On a search crop of OTB Crossing (frame 1, around the frame-0 box) with the
Dua-Loss against the clean prediction, one crop (batch 1), all jitted, medians after compilation:

1. forward: the jitted head on the search crop (template embedding cached);
2. forward+backward: value and gradient of the Dua-Loss w.r.t. the search crop;
3. PGD-10 (``attacks.attack_crops(..., target="search")``, ε 8, step 2, random start) and
   PGD-10 / (10 × fwd+bwd) — target ≤ 1.1;
4. one ``step`` of ``robust.wrap(tracker, variables, attack=OnlineAttack(attack_config("pgd", 8, 10), loss="dua",
   target="search"))`` after ``init`` and its ratio to (clean step + 10 × fwd+bwd) — target ≤ 1.15;
5. ``init`` with template refinement (``robust.Refinement(steps=16)``, the family loss) minus the clean ``init``, against
   16 × (fwd+bwd of the refinement loss w.r.t. the template crop) — target ≤ 1.1;
6. one ``step`` of the defended tracker (DuaLossDef U-Net on both branches: the bundled U-Net where the family has
   one, else the same architecture with random weights) under the adaptive online PGD-10 (gradients through the
   U-Net), against 10 × (U-Net fwd+bwd + tracker fwd+bwd) + the clean defended step — target ≤ 1.1;
7. compile time of the attacked tracker's ``step`` (tracing, lowering and XLA's compilation, timed ahead of time;
   the persistent compilation cache is off), the median of as many compilations as rounds, each from empty caches
   (``jax.clear_caches()``; one compilation moves by ±1.5 s between runs on this CPU) — target ≤ 5 s;
8. the PyTorch twin (``jaxtrack.testing.torch_twins``, same weights, eager, 2 threads): forward+backward and PGD-10
   with the same Dua-Loss on the same crop (the two losses are checked to agree first), and JAX PGD-10 / PyTorch
   PGD-10 — target ≤ 1.0. NanoTrack v2's twin runs the real checkpoint (``jaxtrack.testing.nanotrack_twin``, loaded strictly).

All timings of one family are interleaved (``jaxtrack.timing.interleaved``: each round runs every function once),
so the ratios compare runs under the same background load. Also: ``track_batch`` of the attacked tracker on 1 and
4 sequences (4 frames each), per sequence-frame, for ``--batch-models`` — batched should never be slower per frame.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
import time
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxtrack import attacks, robust, tracking
from jaxtrack.attacks.refine import family_refinement_loss, refinement_problem
from jaxtrack.data.sequence import load_otb_folder
from jaxtrack.defense import DefenseUNet, apply_defense, defended, defended_variables, load_defense
from jaxtrack.defense.checkpoint import bundled_defense
from jaxtrack.fileio import atomic_write_text
from jaxtrack.paths import shared_data_dir
from jaxtrack.timing import interleaved
from jaxtrack.weights import default_path, load_weights, shared_path

FAMILIES = ("nanotrack_v2", "siamfcpp_tiny", "siamfcpp_alexnet", "siamrpn_alex", "siamrpnpp_r50")
STEPS = 10  # PGD steps (attack) — the PGD-10
REFINE_STEPS = 16  # template refinement N
EPS, STEP_SIZE = 8.0, 2.0
TARGETS = {"pgd": 1.1, "online": 1.15, "refine": 1.1, "adaptive": 1.1, "compile": 5.0, "torch": 1.0, "batch": 1.0}
AGREEMENT_RTOL = 1e-2  # the twin's Dua-Loss must equal the JAX one to this (relative; float32 error of the
# networks with random weights and large logits; bundled/real weights agree to ~1e-7, tests/test_models.py 1e-4)
REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------ inputs


@flax.struct.dataclass
class Crop:
    """The attacked search crop and what the Dua-Loss needs about it."""

    z: jax.Array  # template crop [Z, Z, 3]
    x: jax.Array  # search crop [X, X, 3] of frame 1
    template: object  # cached template embedding
    ref: jax.Array  # best clean box (crop coordinates)
    clean: tuple  # clean (scores [N], boxes [N, 4])


def crossing_frames(n: int = 4):
    seq = load_otb_folder(shared_data_dir() / "sequences/OTB/Crossing")
    return np.stack([seq.frame(i) for i in range(n)]), seq.ground_truth[0].astype(np.float32)


def family_weights(name: str) -> str | None:
    """Real weights for nanotrack_v2 (shared), bundled for siamfcpp_tiny, random (None) for the others."""
    ckpt = shared_path(name) if name.startswith("nanotrack") else default_path(name)
    return None if ckpt is None else str(ckpt)


def search_crop(tracker, variables, frames, box0) -> Crop:
    state = tracker.init(variables, frames[0], box0)
    x, _ = tracker.search_crop(frames[1], state.center, state.size, state.channel_avg)
    z = tracker.template_crop(frames[0], state.center, state.size, state.channel_avg)
    scores, boxes = tracker.dense_predictions(tracker.head(variables, state.template, x))
    clean = (scores[0], boxes[0])
    return Crop(z=z, x=x, template=state.template, ref=attacks.best_box(*clean), clean=clean)


def dua_loss_of(tracker, variables, crop: Crop, x):
    """The Dua-Loss of search crop ``x`` against the clean prediction of ``crop`` (fixed labels and reference)."""
    scores, boxes = tracker.dense_predictions(tracker.head(variables, crop.template, x))
    return attacks.dua_loss(scores[0], boxes[0], crop.ref, crop.clean)


# ------------------------------------------------------------------------------------------------ JAX pieces


def crop_fns(tracker, variables, crop: Crop) -> dict:
    """1-3: forward, forward+backward of the Dua-Loss, PGD-10 on the crop."""
    # variables and template are arguments (not closed-over constants), as in the attack loops: XLA would
    # otherwise pre-transform the weights at compile time and make the parts look cheaper than they are
    head = jax.jit(tracker.head)
    fwd_bwd = jax.jit(jax.value_and_grad(dua_loss_of, argnums=3), static_argnums=0)
    config = attacks.pgd(eps=EPS, steps=STEPS, step_size=STEP_SIZE)
    zb, xb, rb, key = crop.z[None], crop.x[None], crop.ref[None], jax.random.key(0)

    def pgd():
        return attacks.attack_crops(tracker, variables, zb, xb, rb, attacks.dua_loss, config, key, target="search")

    return {"forward": lambda: head(variables, crop.template, crop.x),
            "fwd_bwd": lambda: fwd_bwd(tracker, variables, crop, crop.x), "pgd": pgd}


def online_attack() -> attacks.OnlineAttack:
    return attacks.OnlineAttack(attacks.attack_config("pgd", EPS, STEPS), loss="dua", target="search")


def step_fn(tracker, variables, frames, box0):
    """A zero-argument ``tracker.step`` on frame 1 after ``init`` on frame 0."""
    state = tracker.init(variables, frames[0], box0)
    return lambda: tracker.step(variables, state, frames[1])


def compile_seconds(tracker, variables, frames, box0, rounds: int) -> list[float]:
    """7: seconds to trace, lower and compile the attacked step (ahead of time, ``jax.jit(step_pure).lower(...)
    .compile()``: the first call's compilation without its run), ``rounds`` times, each from empty caches. Run it
    before anything else is compiled: it clears every cache."""
    attacked, attacked_variables = robust.wrap(tracker, variables, attack=online_attack())
    state = attacked.init(attacked_variables, frames[0], box0)
    out = []
    for _ in range(rounds):
        jax.clear_caches()
        start = time.perf_counter()
        jax.jit(attacked.step_pure).lower(attacked_variables, state, frames[1]).compile()
        out.append(time.perf_counter() - start)
    return out


def online_fns(tracker, variables, frames, box0) -> dict:
    """4: clean step, attacked step."""
    attacked = robust.wrap(tracker, variables, attack=online_attack())
    return {"step": step_fn(tracker, variables, frames, box0), "attacked_step": step_fn(*attacked, frames, box0)}


def refine_fns(tracker, variables, frames, box0) -> dict:
    """5: clean init, init with N-step refinement, fwd+bwd of the refinement loss w.r.t. the template crop."""
    refined, _ = robust.wrap(tracker, variables, refine=robust.Refinement(steps=REFINE_STEPS))
    z0, x0, gt, _ = jax.jit(refinement_problem, static_argnums=0)(tracker, variables, frames[0], box0)
    grad = jax.jit(jax.value_and_grad(family_refinement_loss, argnums=2), static_argnums=0)
    return {
        "init": lambda: tracker.init(variables, frames[0], box0),
        "refined_init": lambda: refined.init(variables, frames[0], box0),
        "refine_fwd_bwd": lambda: grad(tracker, variables, z0, x0, gt),
    }


def family_defense(name: str):
    """(U-Net, variables, label): the bundled DuaLossDef U-Net of the family, else nanotrack_v2's architecture
    with random weights."""
    path = bundled_defense(name)
    if path is not None:
        loaded = load_defense(path)
        return loaded.unet, loaded.variables, "bundled"
    unet = load_defense(bundled_defense("nanotrack_v2")).unet
    return unet, unet.init_variables(jax.random.key(0)), "random, nanotrack_v2's architecture"


def adaptive_fns(tracker, variables, frames, box0, unet: DefenseUNet, unet_variables, x) -> dict:
    """6: clean defended step, adaptive attacked defended step, U-Net fwd+bwd w.r.t. the search crop."""

    def defense(t, v):
        return defended(t, where="both", unet=unet), defended_variables(v, unet_variables)

    cotangent = jax.random.normal(jax.random.key(1), x.shape)
    unet_grad = jax.jit(jax.grad(lambda c: jnp.vdot(apply_defense(unet, unet_variables, c), cotangent)))
    adaptive = robust.wrap(tracker, variables, defense=defense, attack=online_attack(), adaptive=True)
    return {
        "defended_step": step_fn(*robust.wrap(tracker, variables, defense=defense), frames, box0),
        "adaptive_step": step_fn(*adaptive, frames, box0),
        "unet_fwd_bwd": lambda: unet_grad(x),
    }


# ------------------------------------------------------------------------------------------------ PyTorch twin


def torch_twin(name: str, variables):
    """The PyTorch twin of ``name`` with the same weights (None: no twin)."""
    from jaxtrack.testing import torch_twins as tt

    if name == "nanotrack_v2":  # the real weights, from the same checkpoint the JAX side converted
        from jaxtrack.convert.reader import load_torch_file
        from jaxtrack.testing.nanotrack_twin import load_nanotrack_v2

        return load_nanotrack_v2(load_torch_file(family_weights(name))["state_dict"])
    builders = {
        "siamfcpp_tiny": lambda: tt.siamfcpp_alexnet(width_mult=0.25),
        "siamfcpp_alexnet": tt.siamfcpp_alexnet,
        "siamrpn_alex": tt.siamrpn_alex,
        "siamrpnpp_r50": lambda: tt.siamrpn_r50_l234(weighted=True),
    }
    if name not in builders:
        return None
    twin = tt.load_flax_variables_(builders[name](), variables)
    for p in twin.parameters():
        p.requires_grad_(False)  # gradients w.r.t. the crop only, as on the JAX side
    return twin


def torch_objective(name: str, tracker, twin, crop: Crop):
    """``x [1, 3, X, X] -> Dua-Loss`` on the twin (template features cached), restating the JAX objective."""
    import torch

    from jaxtrack.testing import torch_twins as tt
    from jaxtrack.testing.nanotrack_twin import nanotrack_dense

    ref = torch.from_numpy(np.asarray(crop.ref))
    clean_boxes = torch.from_numpy(np.asarray(crop.clean[1]))
    z = to_torch(crop.z)
    with torch.no_grad():
        if name.startswith("siamfcpp"):
            zf = twin.feature(z)
        else:
            twin.template(z)
    size = tracker.config.instance_size

    def loss(x):
        if name.startswith("siamfcpp"):
            scores, boxes = tt.siamfcpp_dense(*twin.track(x, *zf), size)
        else:  # pysot-style ModelBuilder: track(x) -> {"cls", "loc"}
            out = twin.track(x)
            if name.startswith("nanotrack"):
                scores, boxes = nanotrack_dense(out["cls"], out["loc"], tracker.points)
            else:
                scores, boxes = tt.siamrpn_dense(out["cls"], out["loc"], tracker.anchors)
        return tt.dua_loss(scores, boxes, ref, clean_boxes)

    return loss


def to_torch(crop):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(crop, np.float32).transpose(2, 0, 1)[None]))


def torch_fwd_bwd(loss, x):
    import torch

    x = x.clone().requires_grad_(True)
    value = loss(x)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def torch_pgd(loss, x0, generator):
    """PGD-10 as ``jaxtrack.attacks.run_attack`` does it: uniform start in the ε-ball, sign steps, clip to the ball
    ∩ [0, 255]."""
    import torch

    lo, hi = (x0 - EPS).clamp_min(0.0), (x0 + EPS).clamp_max(255.0)
    x = torch.minimum(torch.maximum(x0 + torch.empty_like(x0).uniform_(-EPS, EPS, generator=generator), lo), hi)
    for _ in range(STEPS):
        _, grad = torch_fwd_bwd(loss, x)
        x = torch.minimum(torch.maximum(x + STEP_SIZE * grad.sign(), lo), hi)
    return x


def loss_agreement(tracker, variables, crop: Crop, loss) -> tuple[float, float]:
    """Relative differences (loss value, gradient max-abs / gradient scale) of the twin's Dua-Loss vs the JAX one on
    a perturbed crop (labels from the clean crop)."""
    x = jnp.clip(crop.x + jax.random.uniform(jax.random.key(2), crop.x.shape, minval=-EPS, maxval=EPS), 0, 255)
    value, grad = jax.jit(jax.value_and_grad(dua_loss_of, argnums=3), static_argnums=0)(tracker, variables, crop, x)
    t_value, t_grad = torch_fwd_bwd(loss, to_torch(x))
    t_grad = t_grad.numpy()[0].transpose(1, 2, 0)
    grad = np.asarray(grad)
    d_value = abs(float(t_value) - float(value)) / max(abs(float(value)), 1e-12)
    d_grad = float(np.abs(t_grad - grad).max()) / max(float(np.abs(grad).max()), 1e-30)
    return d_value, d_grad


def torch_fns(name, tracker, variables, crop: Crop) -> tuple[dict, tuple[float, float] | None]:
    """8: the twin's forward+backward and PGD-10 (empty without a twin), and the loss agreement."""
    import torch

    torch.set_num_threads(2)
    twin = torch_twin(name, variables)
    if twin is None:
        return {}, None
    loss = torch_objective(name, tracker, twin, crop)
    agreement = loss_agreement(tracker, variables, crop, loss)
    if agreement[0] > AGREEMENT_RTOL:
        raise AssertionError(f"{name}: PyTorch Dua-Loss differs from the JAX one by {agreement[0]:.2g} (relative)")
    x, gen = to_torch(crop.x), torch.Generator().manual_seed(0)
    return {"torch_fwd_bwd": lambda: torch_fwd_bwd(loss, x), "torch_pgd": lambda: torch_pgd(loss, x, gen)}, agreement


# ------------------------------------------------------------------------------------------------ measuring


def with_progress(fns: dict, bar: tqdm) -> dict:
    def counted(fn):
        def call():
            out = fn()
            bar.update(1)
            return out

        return call

    return {k: counted(fn) for k, fn in fns.items()}


def timed(fns: dict, repeats: int, label: str) -> dict:
    """Interleaved medians (ms) of ``fns``, one call each per round, with a progress bar."""
    with tqdm(total=len(fns) * (2 + repeats), desc=label, unit="call", leave=False) as bar:
        seconds = interleaved(with_progress(fns, bar), rounds=repeats, iters=1)
    return {k: v * 1e3 for k, v in seconds.items()}


@dataclasses.dataclass
class FamilyResult:
    name: str
    weights: str
    defense: str
    repeats: int
    ms: dict
    compile_s: list  # 7: compile times of the attacked step, one per round
    agreement: tuple[float, float] | None


def measure_family(name: str, frames, box0, repeats: int, use_torch: bool) -> FamilyResult:
    tracker = tracking.create(name)
    weights = family_weights(name)
    variables = load_weights(tracker, weights or "random").variables
    compiles = compile_seconds(tracker, variables, frames, box0, repeats)
    crop = search_crop(tracker, variables, frames, box0)
    unet, unet_variables, defense_label = family_defense(name)
    fns = {**crop_fns(tracker, variables, crop), **online_fns(tracker, variables, frames, box0),
           **refine_fns(tracker, variables, frames, box0),
           **adaptive_fns(tracker, variables, frames, box0, unet, unet_variables, crop.x)}
    agreement = None
    if use_torch:
        more, agreement = torch_fns(name, tracker, variables, crop)
        fns.update(more)
    ms = timed(fns, repeats, name)
    return FamilyResult(name, weights_label(weights), defense_label, repeats, ms, compiles, agreement)


def weights_label(weights: str | None) -> str:
    if weights is None:
        return "random"
    path = Path(weights)
    return f"{'bundled' if REPO in path.parents else 'real'} ({path.name})"


def batch_per_frame_ms(name: str, frames, box0, repeats: int) -> dict:
    """``track_batch`` of the attacked tracker on B = 1 and 4 copies of the 4-frame clip: ms per sequence-frame."""
    tracker = tracking.create(name)
    variables = load_weights(tracker, family_weights(name) or "random").variables
    attacked, _ = robust.wrap(tracker, variables, attack=online_attack())
    fns = {}
    for b in (1, 4):
        fb, bb, lb = np.stack([frames] * b), np.stack([box0] * b), np.full(b, len(frames))
        fns[b] = lambda fb=fb, bb=bb, lb=lb: attacked.track_batch(variables, fb, bb, lb)
    ms = timed(fns, repeats, f"{name} track_batch")
    return {b: t / (b * len(frames)) for b, t in ms.items()}


# ------------------------------------------------------------------------------------------------ report


def verdict(value: float, target: float) -> str:
    return "meets" if value <= target else "misses"


def ratios(r: FamilyResult) -> dict:
    t = r.ms
    out = {
        "pgd": t["pgd"] / (STEPS * t["fwd_bwd"]),
        "online": t["attacked_step"] / (t["step"] + STEPS * t["fwd_bwd"]),
        "refine": (t["refined_init"] - t["init"]) / (REFINE_STEPS * t["refine_fwd_bwd"]),
        "adaptive": t["adaptive_step"] / (STEPS * (t["unet_fwd_bwd"] + t["fwd_bwd"]) + t["defended_step"]),
        "compile": float(np.median(r.compile_s)),
    }
    if "torch_pgd" in t:
        out["torch"] = t["pgd"] / t["torch_pgd"]
    return out


def row(what: str, ms: float | None, ratio: str = "", key: str | None = None, value: float | None = None) -> str:
    cell = "" if ms is None else f"{ms:.1f}"
    if key is None:
        return f"| {what} | {cell} | {ratio} | | |"
    return f"| {what} | {cell} | {ratio} = **{value:.2f}** | ≤ {TARGETS[key]:g} | {verdict(value, TARGETS[key])} |"


def family_table(r: FamilyResult) -> str:
    t, q, n, k = r.ms, ratios(r), STEPS, REFINE_STEPS
    lines = [
        f"### {r.name}",
        "",
        f"Weights: {r.weights}. U-Net: {r.defense}. Medians of {r.repeats} interleaved rounds.",
        "",
        "| measurement | ms | ratio | target | |",
        "|---|---|---|---|---|",
        row("1. forward (head, template cached)", t["forward"]),
        row("2. forward+backward (Dua-Loss w.r.t. search crop)", t["fwd_bwd"]),
        row(f"3. PGD-{n}, one crop", t["pgd"], f"PGD / ({n} × fwd+bwd)", "pgd", q["pgd"]),
        row("4a. clean step", t["step"]),
        row(f"4b. attacked step (online PGD-{n})", t["attacked_step"], f"attacked / (step + {n} × fwd+bwd)",
            "online", q["online"]),
        row("5a. clean init", t["init"]),
        row("5b. refinement loss fwd+bwd w.r.t. template", t["refine_fwd_bwd"]),
        row(f"5c. refined init (N = {k})", t["refined_init"], f"(refined − clean init) / ({k} × fwd+bwd)",
            "refine", q["refine"]),
        row("6a. clean defended step", t["defended_step"]),
        row("6b. U-Net fwd+bwd (search crop)", t["unet_fwd_bwd"]),
        row(f"6c. adaptive PGD-{n} defended step", t["adaptive_step"],
            f"adaptive / ({n} × (U-Net + tracker fwd+bwd) + defended step)", "adaptive", q["adaptive"]),
        f"| 7. compile of the attacked step (s), {len(r.compile_s)} times from empty caches | "
        f"{' / '.join(f'{c:.2f}' for c in r.compile_s)} | trace + lower + compile, median **{q['compile']:.2f} s** | "
        f"≤ {TARGETS['compile']:g} s | {verdict(q['compile'], TARGETS['compile'])} |",
    ]
    lines += torch_rows(r, q)
    return "\n".join(lines)


def torch_rows(r: FamilyResult, q: dict) -> list[str]:
    if r.agreement is None:
        why = "no PyTorch twin of this family, or --no-torch"
        return [f"| 8. PyTorch fwd+bwd / PGD-{STEPS} | missing | {why} | ≤ 1 | — |"]
    t = r.ms
    return [
        row("8a. PyTorch fwd+bwd (eager, 2 threads)", t["torch_fwd_bwd"],
            f"loss agrees to {r.agreement[0]:.1e}, gradient to {r.agreement[1]:.1e} (relative)"),
        row(f"8b. PyTorch PGD-{STEPS}", t["torch_pgd"], "JAX PGD / PyTorch PGD", "torch", q["torch"]),
    ]


def batch_table(batches: dict) -> str:
    lines = ["### Attacked `track_batch`: 1 vs 4 sequences (4 frames each, online PGD-10 on every frame after the "
             "first)", "", "| tracker | B = 1 (ms / sequence-frame) | B = 4 (ms / sequence-frame) | B=4 / B=1 | "
             "target | |", "|---|---|---|---|---|---|"]
    for name, per in batches.items():
        ratio = per[4] / per[1]
        lines.append(f"| {name} | {per[1]:.1f} | {per[4]:.1f} | **{ratio:.2f}** | ≤ {TARGETS['batch']:g} | "
                     f"{verdict(ratio, TARGETS['batch'])} |")
    return "\n".join(lines)


def environment_line(load: tuple[float, float], torch_on: bool) -> str:
    torch_version = ""
    if torch_on:
        import torch

        torch_version = f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    return (f"jax {jax.__version__}{torch_version}, backend {jax.default_backend()}, {os.cpu_count()} CPUs, "
            f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, persistent compilation cache off; load average "
            f"{load[0]:.1f} → {load[1]:.1f}; {datetime.date.today().isoformat()}")


def report(results, batches, env: str, command: str) -> str:
    head = ["# Attack speed", "", f"Made by `{command}` (benchmarks/attack_speed.py; its docstring says what each "
            "row measures).", "", env, ""]
    body = [family_table(r) + "\n" for r in results]
    tail = [batch_table(batches)] if batches else []
    return "\n".join(head + body + tail) + "\n"


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(FAMILIES))
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per family (medians)")
    parser.add_argument("--repeats-for", default="", help="per-family rounds, e.g. siamrpnpp_r50=2")
    parser.add_argument("--batch-models", default="siamfcpp_tiny", help="families for the track_batch 1 vs 4 rows "
                        "('' for none)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    parser.add_argument("--out", default=str(REPO / "docs/attack_speed.md"), help="markdown file ('' for none)")
    return parser.parse_args(argv)


def repeats_of(args) -> dict:
    out = {}
    for item in filter(None, args.repeats_for.split(",")):
        name, n = item.split("=")
        out[name] = int(n)
    return out


def main(argv=None):
    args = parse_args(argv)
    frames, box0 = crossing_frames()
    per_family = repeats_of(args)
    load0 = loadavg()
    results, batches = [], {}
    names = args.models.split(",")
    for name in tqdm(names, desc="families", unit="family"):
        results.append(measure_family(name, frames, box0, per_family.get(name, args.repeats), not args.no_torch))
        tqdm.write(family_table(results[-1]) + "\n")
    for name in filter(None, args.batch_models.split(",")):
        batches[name] = batch_per_frame_ms(name, frames, box0, per_family.get(name, args.repeats))
    env = environment_line((load0, loadavg()), not args.no_torch)
    command = "python benchmarks/attack_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(results, batches, env, command.strip())
    print(text)
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    from jaxtrack import runtime

    runtime.configure(compile_cache=False)
    main()
