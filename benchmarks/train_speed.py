"""Training throughput of the compact SiamFC++ (``siamfcpp_tiny``): the jitted train step on 1 vs 8 (fake) CPU
devices, and the input pipeline alone.

    python benchmarks/train_speed.py                     # 1 and 8 devices, pipeline with 1 and 2 threads
    python benchmarks/train_speed.py --devices 1,2,8 --batch 16 --steps 20 --json out.json

What is measured (medians over ``--repeats``):

* **step**: ``jaxtrack.train.state.make_train_step`` (the exact function ``jaxtrack train`` runs) on a fixed batch
  already on the devices, so no input cost; each device count runs in its own process because
  ``--xla_force_host_platform_device_count`` must be set before JAX starts. Compilation is timed apart.
  On one 2-core CPU the 8 "devices" share the same 2 cores: this checks that sharding costs little, it cannot
  show a speed-up (that needs real devices).
* **pipeline**: ``jaxtrack.data.pipeline.make_loader`` over synthetic sequences (decode JPEG, pre-crop, augment,
  batch) with ``num_threads`` threads, pairs per second with nothing else running.

Training pairs/s of a real run (step + pipeline together, sharing the CPU) are in its ``metrics.jsonl``.

Measured (2-core x86_64 CPU shared with other jobs, load average 7-14, so absolute figures are pessimistic;
global batch 16, medians of 3 x 10 steps): step on 1 device 1.41 s = 11.4 pairs/s, on 8 fake devices 2.20 s =
7.3 pairs/s (0.64x: the 8 "devices" split the same 2 cores); compile 14 s / 22 s. Input pipeline alone (JPEG
decode + pre-crop + augment): 112 pairs/s with 1 thread, 157 with 2, i.e. 10-15x what the step consumes. On a
quiet machine the same step took 0.42 s (38 pairs/s). The 3,000-step ``siamfcpp_tiny_synthetic`` run took 77 min
at a median 11 pairs/s end to end on the loaded machine (data wait ~5 % of the time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def step_worker(devices: int, batch: int, steps: int, repeats: int, config_name: str) -> dict:
    """Runs in a subprocess whose XLA_FLAGS give it ``devices`` CPU devices."""
    import jax
    import numpy as np

    from jaxtrack import tracking
    from jaxtrack.train import config as C
    from jaxtrack.train import mesh as M
    from jaxtrack.train import state as S

    assert jax.device_count() == devices, jax.devices()
    cfg = C.get_config(config_name)
    tracker = tracking.create(cfg.tracker)
    variables = tracker.init_variables(jax.random.key(0))
    tx, _ = S.make_optimizer(cfg.optim, cfg.steps, variables["params"])
    mesh = M.make_data_mesh()
    step = S.make_train_step(tracker, cfg.optim, cfg.steps, mesh)
    c = tracker.config
    rng = np.random.default_rng(0)
    host = {
        "template": rng.integers(0, 256, (batch, c.exemplar_size, c.exemplar_size, 3), dtype=np.uint8),
        "search": rng.integers(0, 256, (batch, c.instance_size, c.instance_size, 3), dtype=np.uint8),
        "box": np.array([[100, 100, 160, 150]] * batch, np.float32),
        "negative": np.zeros(batch, bool),
    }
    data = M.shard_batch(host, mesh)
    state = M.replicate(S.create_train_state(variables, tx, jax.random.key(1)), mesh)
    key = state.step_key()
    t = time.perf_counter()
    compiled = step.lower(state, data, key).compile()
    compile_s = time.perf_counter() - t
    state, _ = compiled(state, data, key)  # warm-up
    jax.block_until_ready(state)
    per_step = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            state, metrics = compiled(state, data, key)
        jax.block_until_ready(state)
        per_step.append((time.perf_counter() - t) / steps)
    med = statistics.median(per_step)
    return {"devices": devices, "batch": batch, "compile_s": compile_s, "step_s": med, "pairs_per_s": batch / med,
            "loss": float(metrics["loss"])}


def run_step_benchmark(devices: int, args) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "--worker", str(devices), "--batch", str(args.batch), "--steps",
           str(args.steps), "--repeats", str(args.repeats), "--config", args.config]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker with {devices} devices failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def pipeline_benchmark(threads: int, args, root: Path) -> dict:
    from jaxtrack import tracking
    from jaxtrack.data import load_dataset
    from jaxtrack.data.pipeline import make_loader
    from jaxtrack.train import config as C
    from jaxtrack.train.loop import pair_config

    cfg = C.get_config(args.config)
    tracker = tracking.create(cfg.tracker)
    seqs = load_dataset("synthetic", root)
    loader = make_loader(seqs, pair_config(cfg, tracker), batch_size=args.batch, seed=0, num_threads=threads,
                         prefetch_batches=4)
    it = iter(loader)
    next(it)  # start-up
    rates = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        for _ in range(args.pipeline_batches):
            next(it)
        rates.append(args.pipeline_batches * args.batch / (time.perf_counter() - t))
    return {"threads": threads, "batch": args.batch, "pairs_per_s": statistics.median(rates)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", default="1,8", help="comma-separated device counts")
    p.add_argument("--threads", default="1,2", help="comma-separated pipeline thread counts")
    p.add_argument("--config", default="siamfcpp_tiny_synthetic", help="training config (its tracker/optimizer)")
    p.add_argument("--batch", type=int, default=16, help="global batch")
    p.add_argument("--steps", type=int, default=10, help="steps per timed repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pipeline-batches", type=int, default=10)
    p.add_argument("--sequences", type=int, default=16, help="synthetic sequences for the pipeline benchmark")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(step_worker(args.worker, args.batch, args.steps, args.repeats, args.config)))
        return 0

    import platform

    print(f"# train speed: {args.config}, global batch {args.batch}, {os.cpu_count()} CPU cores, "
          f"{platform.processor() or platform.machine()}")
    steps = []
    for n in [int(x) for x in args.devices.split(",")]:
        r = run_step_benchmark(n, args)
        steps.append(r)
    base = steps[0]["pairs_per_s"]
    print("\n| devices | step (s) | pairs/s | vs first | compile (s) |")
    print("|---:|---:|---:|---:|---:|")
    for r in steps:
        print(f"| {r['devices']} | {r['step_s']:.3f} | {r['pairs_per_s']:.1f} | {r['pairs_per_s'] / base:.2f}x | "
              f"{r['compile_s']:.1f} |")

    from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset
    from jaxtrack.train import config as C

    d = C.get_config(args.config).data
    pipes = []
    with tempfile.TemporaryDirectory() as tmp:
        synth = SyntheticConfig(num_frames=d.synthetic_frames, height=d.synthetic_height, width=d.synthetic_width)
        generate_dataset(tmp, args.sequences, synth, seed=0)
        for t in [int(x) for x in args.threads.split(",")]:
            pipes.append(pipeline_benchmark(t, args, Path(tmp)))
    print("\n| pipeline threads | pairs/s |")
    print("|---:|---:|")
    for r in pipes:
        print(f"| {r['threads']} | {r['pairs_per_s']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"steps": steps, "pipeline": pipes}, indent=1))
    return 0


if __name__ == "__main__":
    from jaxtrack import runtime

    runtime.configure(compile_cache=False)
    sys.exit(main())
