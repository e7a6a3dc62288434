"""Tracking speed on this machine: per-frame step latency, the non-network share, compile time, batching.

Run: ``.venv/bin/python benchmarks/tracking_speed.py [--models a,b] [--steps 30] [--batch-frames 12]``

For each model at its published input size (random weights; speed does not depend on the values):
* step: median wall time of the jitted ``tracker.step`` (crop + network + post-processing) over many frames;
* network: median of the jitted ``tracker.head`` alone (search branch + head, template embedding cached);
* non-network share = 1 − network / step (crop + decoding + state update);
* compile: time of the first ``step`` call minus a steady-state step;
* track_batch throughput (frames/s) for 1 / 4 / 8 sequences of ``--batch-frames`` frames, relative to 1;
* torch: the same network in PyTorch eager (the test-only twin of ``jaxtrack/testing/torch_twins.py``, 2 threads,
  ``no_grad``, template branch cached as pysot/video_analyst do), median of its search-branch + head forward,
  so JAX step / PyTorch forward is a ratio measured in one run (the PyTorch trackers' own crop and
  post-processing would add to their side).
Frames are the real OTB Crossing sequence (360×240), repeated as needed. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import numpy as np


from jaxtrack import tracking
from jaxtrack.data.sequence import load_otb_folder
from jaxtrack.paths import shared_data_dir
from jaxtrack.timing import median_seconds



def bench_model(name, frames, box0, steps, batch_frames, batches):
    tracker = tracking.create(name)
    variables = tracker.init_variables(jax.random.key(0))
    state = tracker.init(variables, frames[0], box0)
    jax.block_until_ready(state)

    start = time.perf_counter()
    jax.block_until_ready(tracker.step(variables, state, frames[1]))
    first = time.perf_counter() - start
    step_times = []
    s = state
    for t in range(steps):
        frame = frames[1 + t % (len(frames) - 1)]
        start = time.perf_counter()
        s, box, score = tracker.step(variables, s, frame)
        jax.block_until_ready(box)
        step_times.append(time.perf_counter() - start)
    step = statistics.median(step_times)

    x, _ = jax.jit(tracker.search_crop)(frames[1], state.center, state.size, state.channel_avg)
    head = jax.jit(tracker.head)
    net = median_seconds(lambda: head(variables, state.template, x), steps)  # after a compiling call

    throughput = {}
    for b in batches:
        fb = np.stack([frames[:batch_frames]] * b)
        boxes0 = np.stack([box0] * b)
        lengths = np.full(b, batch_frames)
        secs = median_seconds(lambda: tracker.track_batch(variables, fb, boxes0, lengths), 3)
        throughput[b] = b * (batch_frames - 1) / secs
    return dict(model=name, step_ms=step * 1e3, net_ms=net * 1e3, compile_s=first - step, throughput=throughput,
                torch_ms=_torch_forward_ms(name, tracker.config, steps))


def _torch_forward_ms(name, config, steps):
    """Median PyTorch eager forward of the twin network (None when torch or the twin is unavailable)."""
    try:
        import torch

        from jaxtrack.testing import torch_twins as tt
    except ImportError:
        return None
    builders = {"siamfcpp": tt.siamfcpp_alexnet, "siamrpn_alex": tt.siamrpn_alex,
                "siamrpnpp_r50": lambda: tt.siamrpn_r50_l234(True)}
    key = next((k for k in builders if name.startswith(k)), None)
    if key is None:
        return None
    torch.set_num_threads(2)
    twin = builders[key]().eval()
    z = torch.rand(1, 3, config.exemplar_size, config.exemplar_size) * 255
    x = torch.rand(1, 3, config.instance_size, config.instance_size) * 255
    with torch.no_grad():
        if key == "siamfcpp":
            zf = twin.feature(z)
            forward = lambda: twin.track(x, *zf)  # noqa: E731
        else:
            twin.template(z)
            forward = lambda: twin.track(x)  # noqa: E731
        forward()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            forward()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="siamfcpp_alexnet,siamrpn_alex,siamrpnpp_r50")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-frames", type=int, default=12)
    parser.add_argument("--batches", default="1,4,8")
    args = parser.parse_args(argv)

    seq = load_otb_folder(shared_data_dir() / "sequences/OTB/Crossing")
    frames = np.concatenate(list(seq.iter_chunks(64)))
    box0 = seq.ground_truth[0].astype(np.float32)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    rows = []
    for name in args.models.split(","):
        r = bench_model(name, frames, box0, args.steps, args.batch_frames, batches)
        rows.append(r)
        print(r, flush=True)
    head = "| model | step (ms) | network (ms) | non-network share | PyTorch forward (ms) | step / PyTorch | compile (s) | " + " | ".join(
        f"track_batch B={b} (frames/s, ×B=1)" for b in batches) + " |"
    print("\n" + head)
    print("|" + "---|" * (7 + len(batches)))
    for r in rows:
        base = r["throughput"][batches[0]]
        cells = " | ".join(f"{r['throughput'][b]:.1f} (×{r['throughput'][b] / base:.2f})" for b in batches)
        share = max(0.0, 1 - r["net_ms"] / r["step_ms"])
        t = r["torch_ms"]
        torch_cells = f"{t:.1f} | {r['step_ms'] / t:.2f}" if t else "– | –"
        print(f"| {r['model']} | {r['step_ms']:.1f} | {r['net_ms']:.1f} | {share:.0%} | {torch_cells} | "
              f"{r['compile_s']:.1f} | {cells} |")


if __name__ == "__main__":
    from jaxtrack import runtime

    runtime.configure(compile_cache=False)
    main()
