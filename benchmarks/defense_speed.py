"""What the DuaLossDef U-Net costs on this machine: ms per crop, and its share of one tracking step.

Run: ``.venv/bin/python benchmarks/defense_speed.py [--models nanotrack_v2,siamfcpp_alexnet] [--rounds 10] [--iters 5]
[--unet depth=3,width=16] [--variants]``

Measured (random weights; speed does not depend on the values), all jitted, ``block_until_ready``, batch 1:

* U-Net alone (``jaxtrack.defense.apply_defense``) on a template crop 127 and search crops 255 / 287 / 303;
* per tracker: ``step`` undefended, defended on the search branch (``where="search"``: one U-Net pass per frame)
  and ``where="both"`` (the template branch runs once, at ``init``, so a step costs the same as "search"); the
  U-Net share of a defended step = 1 − undefended step / defended step; and ``init`` undefended / defended
  (``where="both"``: the template U-Net runs there).

The machine is shared (other processes take CPU at random times), so the timings are interleaved: every round
times each function ``--iters`` times in turn, and the medians over all rounds are reported; the load of the other
processes during the run (from ``/proc/loadavg``) is printed with the results. Frames: OTB Crossing (360×240).

``--under-attack``: the step of each tracker under an online PGD-``--attack-steps`` search attack (Dua-Loss, ε 8),
undefended (``attacked``), defended with the attack computed on the undefended tracker (``non-adaptive``: the
attack plus one defended step) and through the U-Net (``adaptive``: every PGD step also runs the U-Net forward and
backward), against the sums of their parts measured in the same run (attacked + defended step; attacked +
attack-steps x (U-Net forward + backward)).

``--variants``: also the U-Net alone on a 255 crop for cheaper hyper-parameter choices (no GroupNorm, narrower,
one conv per block…), with parameter counts and XLA's FLOP count, to pick a defense that fits a CPU budget.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import jax
import numpy as np


from jaxtrack import tracking
from jaxtrack.data.sequence import load_otb_folder
from jaxtrack.defense import apply_defense, defended, defended_variables
from jaxtrack.models.unet import DefenseUNet
from jaxtrack.paths import shared_data_dir
from jaxtrack.timing import interleaved


def _parse_unet(spec: str) -> dict:
    out = {}
    for item in filter(None, spec.split(",")):
        k, v = item.split("=")
        out[k] = int(v) if v.isdigit() else v
    return out


def _loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="nanotrack_v2,siamfcpp_alexnet")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--unet", default="", help="DefenseUNet hyper-parameters, e.g. depth=3,width=16,norm=none")
    parser.add_argument("--variants", action="store_true", help="also time cheaper U-Net variants on a 255 crop")
    parser.add_argument("--under-attack", action="store_true",
                        help="also time the steps under an online PGD search attack (attacked / non-adaptive / "
                             "adaptive)")
    parser.add_argument("--attack-steps", type=int, default=10)
    args = parser.parse_args(argv)

    unet = DefenseUNet(**_parse_unet(args.unet))
    uv = unet.init_variables(jax.random.key(0))
    n_params = sum(np.size(v) for v in jax.tree_util.tree_leaves(uv))
    seq = load_otb_folder(shared_data_dir() / "sequences/OTB/Crossing")
    frames = [seq.frame(i) for i in range(8)]
    box0 = seq.ground_truth[0].astype(np.float32)
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"U-Net {unet}: {n_params} parameters ({n_params * 4 / 2**20:.2f} MB float32)")
    load0 = _loadavg()

    # ---------------------------------------------------------------- U-Net alone
    rng = np.random.default_rng(0)
    defend = jax.jit(lambda v, x: apply_defense(unet, v, x))
    crops = {s: rng.uniform(0, 255, (s, s, 3)).astype(np.float32) for s in (127, 255, 287, 303)}
    unet_t = interleaved({s: (lambda c=c: defend(uv, c)) for s, c in crops.items()}, args.rounds, args.iters)

    # ---------------------------------------------------------------- trackers
    rows = []
    for name in args.models.split(","):
        tracker = tracking.create(name)
        variables = tracker.init_variables(jax.random.key(0))
        d_search = defended(tracker, where="search", unet=unet)
        d_both = defended(tracker, where="both", unet=unet)
        dvars = defended_variables(variables, uv)
        state = tracker.init(variables, frames[0], box0)
        state_s = d_search.init(dvars, frames[0], box0)
        state_b = d_both.init(dvars, frames[0], box0)
        fns = {
            "step": lambda t=tracker, s=state, v=variables: t.step(v, s, frames[1]),
            "step_search": lambda t=d_search, s=state_s, v=dvars: t.step(v, s, frames[1]),
            "step_both": lambda t=d_both, s=state_b, v=dvars: t.step(v, s, frames[1]),
            "init": lambda t=tracker, v=variables: t.init(v, frames[0], box0),
            "init_both": lambda t=d_both, v=dvars: t.init(v, frames[0], box0),
        }
        t = interleaved(fns, args.rounds, args.iters)
        c = tracker.config
        rows.append((name, c.exemplar_size, c.instance_size, t))
        print(name, {k: round(v * 1e3, 2) for k, v in t.items()}, flush=True)
    load1 = _loadavg()

    print(f"\nload average of the machine during the run: {load0:.1f} → {load1:.1f} (2 cores)\n")
    print("| crop | U-Net (ms) |")
    print("|---|---|")
    for s, v in unet_t.items():
        print(f"| {s}×{s} | {v * 1e3:.1f} |")
    print("\n| tracker (z / x) | step (ms) | defended step, search (ms) | defended step, both (ms) | U-Net share of a "
          "defended step | init (ms) | defended init, both (ms) |")
    print("|---|---|---|---|---|---|---|")
    for name, z, x, t in rows:
        share = 1.0 - t["step"] / t["step_search"]
        print(f"| {name} ({z} / {x}) | {t['step'] * 1e3:.1f} | {t['step_search'] * 1e3:.1f} | "
              f"{t['step_both'] * 1e3:.1f} | {share:.0%} | {t['init'] * 1e3:.1f} | {t['init_both'] * 1e3:.1f} |")
    if args.under_attack:
        under_attack_table(args, unet, uv, frames, box0)
    if args.variants:
        variants_table(crops[255], args.rounds, args.iters)


def under_attack_table(args, unet, uv, frames, box0) -> None:
    """Steps under an online PGD search attack: undefended, non-adaptive and adaptive, against their parts."""
    from jaxtrack import robust
    from jaxtrack.attacks import OnlineAttack, attack_config

    attack = OnlineAttack(attack_config("pgd", 8.0, args.attack_steps), loss="dua", target="search")
    x = np.random.default_rng(1).uniform(0, 255, (1, 255, 255, 3)).astype(np.float32)
    unet_fb = jax.jit(jax.grad(lambda c: jax.numpy.sum(apply_defense(unet, uv, c) ** 2)))
    print(f"\n| tracker | step | defended step | attacked (PGD-{args.attack_steps}) | non-adaptive | adaptive | "
          "U-Net fwd+bwd, 255 | non-adaptive / (attacked + defended step) | adaptive / (attacked + "
          f"{args.attack_steps} x U-Net fwd+bwd) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        tracker = tracking.create(name)
        variables = tracker.init_variables(jax.random.key(0))

        def defense(t, v):
            return defended(t, where="both", unet=unet), defended_variables(v, uv)

        trackers = {
            "step": (tracker, variables),
            "defended": defense(tracker, variables),
            "attacked": robust.wrap(tracker, variables, attack=attack),
            "non_adaptive": robust.wrap(tracker, variables, defense=defense, attack=attack, adaptive=False),
            "adaptive": robust.wrap(tracker, variables, defense=defense, attack=attack, adaptive=True),
        }
        states = {k: t.init(v, frames[0], box0) for k, (t, v) in trackers.items()}
        fns = {k: (lambda t=t, v=v, s=states[k]: t.step(v, s, frames[1])) for k, (t, v) in trackers.items()}
        fns["unet_fb"] = lambda: unet_fb(x)
        t = {k: v * 1e3 for k, v in interleaved(fns, args.rounds, args.iters).items()}
        na_parts = t["attacked"] + t["defended"] - t["step"]  # the defended step replaces the attacked one's own
        ad_parts = t["attacked"] + args.attack_steps * t["unet_fb"]
        print(f"| {name} | {t['step']:.1f} | {t['defended']:.1f} | {t['attacked']:.1f} | {t['non_adaptive']:.1f} | "
              f"{t['adaptive']:.1f} | {t['unet_fb']:.1f} | {t['non_adaptive'] / na_parts:.2f} | "
              f"{t['adaptive'] / ad_parts:.2f} |", flush=True)


VARIANTS = {
    "defaults": {},
    "norm=none": {"norm": "none"},
    "up=transpose": {"up": "transpose"},
    "down=pool": {"down": "pool"},
    "convs=1": {"convs": 1},
    "width=8": {"width": 8},
    "width=8, norm=none, up=transpose": {"width": 8, "norm": "none", "up": "transpose"},
    "depth=2, width=8, norm=none": {"depth": 2, "width": 8, "norm": "none"},
}


def _gflop(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan"))) / 1e9


def variants_table(crop, rounds, iters):
    fns, info = {}, {}
    for label, kw in VARIANTS.items():
        u = DefenseUNet(**kw)
        v = u.init_variables(jax.random.key(0))
        f = jax.jit(lambda v, x, u=u: apply_defense(u, v, x))
        fns[label] = lambda f=f, v=v: f(v, crop)
        info[label] = (sum(np.size(a) for a in jax.tree_util.tree_leaves(v)), _gflop(f, v, crop))
    t = interleaved(fns, rounds, iters)
    print(f"\n| U-Net variant (else defaults) | parameters | GFLOP (XLA) at {crop.shape[0]} | ms at {crop.shape[0]} |")
    print("|---|---|---|---|")
    for label, secs in t.items():
        n, g = info[label]
        print(f"| {label} | {n:,} | {g:.2f} | {secs * 1e3:.1f} |")


if __name__ == "__main__":
    from jaxtrack import runtime

    runtime.configure(compile_cache=False)
    main()
