"""Attack cost on this machine: PGD-k on the search crop against k forward+backward passes, and batching.

Run: ``.venv/bin/python benchmarks/attack_speed.py [--models nanotrack_v2,siamrpn_alex] [--steps 10] [--repeats 5]``

For each model (NanoTrack with its real weights when the shared data has them, others random; speed does not
depend on the values), on search crops of the real OTB Crossing sequence with the Dua-Loss against the clean
prediction:
* forward: the jitted head on one search crop (template embedding cached);
* forward+backward: value and gradient of the Dua-Loss w.r.t. the search crop;
* PGD-k: ``attack_crops(..., target="search")`` with k steps on one crop, and its ratio to k forward+backward
  passes (the loop overhead; 1.0 means the loop costs nothing beyond its gradients);
* batched PGD-k throughput for 1 / 8 / 32 crops (crops per second and the gain over one crop).
Medians of ``--repeats`` runs after compilation. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


from jaxtrack import attacks, tracking
from jaxtrack.data.sequence import load_otb_folder
from jaxtrack.paths import shared_data_dir
from jaxtrack.tracking.weights import load_tracker_variables, shared_checkpoint


def _median(fn, repeats):
    jax.block_until_ready(fn())  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name, frames, box0, steps, repeats, batches):
    tracker = tracking.create(name)
    ckpt = shared_checkpoint(name)
    variables, _ = load_tracker_variables(tracker, ckpt and str(ckpt))
    state = tracker.init(variables, frames[0], box0)
    x, scale = tracker.search_crop(frames[1], state.center, state.size, state.channel_avg)
    z = tracker.template_crop(frames[0], state.center, state.size, state.channel_avg)
    scores, boxes = tracker.dense_predictions(tracker.head(variables, state.template, x))
    ref = attacks.best_box(scores[0], boxes[0])
    clean = (scores[0], boxes[0])

    head = jax.jit(lambda v, t, xx: tracker.head(v, t, xx))
    forward = _median(lambda: head(variables, state.template, x), repeats)

    def loss(v, t, xx):
        s, b = tracker.dense_predictions(tracker.head(v, t, xx))
        return attacks.dua_loss(s[0], b[0], ref, clean)

    grad = jax.jit(jax.value_and_grad(loss, argnums=2))
    fwd_bwd = _median(lambda: grad(variables, state.template, x), repeats)

    config = attacks.pgd(eps=8.0, steps=steps, step_size=2.0)
    key = jax.random.key(0)
    per_batch = {}
    for b in batches:
        zb, xb = jnp.stack([z] * b), jnp.stack([x] * b)
        refb = jnp.stack([ref] * b)
        per_batch[b] = _median(
            lambda: attacks.attack_crops(tracker, variables, zb, xb, refb, attacks.dua_loss, config, key,
                                         target="search"),
            repeats,
        )
    return dict(model=name, forward_ms=forward * 1e3, fwd_bwd_ms=fwd_bwd * 1e3, pgd_ms=per_batch[batches[0]] * 1e3,
                overhead=per_batch[batches[0]] / (steps * fwd_bwd),
                throughput={b: b / t for b, t in per_batch.items()})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="nanotrack_v2,siamrpn_alex")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,8,32")
    args = parser.parse_args(argv)
    seq = load_otb_folder(shared_data_dir() / "sequences/OTB/Crossing")
    frames = np.concatenate(list(seq.iter_chunks(8)))[:2]
    box0 = seq.ground_truth[0].astype(np.float32)
    batches = [int(b) for b in args.batches.split(",")]
    rows = [bench(name, frames, box0, args.steps, args.repeats, batches) for name in args.models.split(",")]
    cells = " | ".join(f"PGD-{args.steps} B={b} (crops/s, ×B={batches[0]})" for b in batches)
    print(f"\n| model | forward (ms) | forward+backward (ms) | PGD-{args.steps}, 1 crop (ms) | "
          f"PGD / ({args.steps} × fwd+bwd) | {cells} |")
    print("|" + "---|" * (5 + len(batches)))
    for r in rows:
        base = r["throughput"][batches[0]]
        tp = " | ".join(f"{r['throughput'][b]:.1f} (×{r['throughput'][b] / base:.2f})" for b in batches)
        print(f"| {r['model']} | {r['forward_ms']:.1f} | {r['fwd_bwd_ms']:.1f} | {r['pgd_ms']:.1f} | "
              f"{r['overhead']:.2f} | {tp} |")


if __name__ == "__main__":
    from jaxtrack import runtime

    runtime.configure(compile_cache=False)
    main()
