"""NanoTrack v2 per-frame time: our jitted JAX tracker vs OpenCV's C++ ``cv2.TrackerNano`` on the same machine.

Run: ``.venv/bin/python benchmarks/nanotrack_vs_opencv.py [--passes 5] [--sequence Crossing]``

Both trackers run the real NanoTrack v2 weights (ours converted from ``nanotrackv2.pth`` without torch; OpenCV
loads the ONNX pair ``nanotrackv2_backbone_sim.onnx`` / ``nanotrackv2_head_sim.onnx``) over the OTB sequence,
from the ground-truth first box, several passes, interleaved (one OpenCV pass, then one pass of each JAX variant)
so that load from other processes hits all of them alike. Reported: median wall time per tracked frame.

* ``cv2.TrackerNano.update``: crop + backbone + head + post-processing in C++ (OpenCV DNN, its default threads);
* ``jax step``: ``tracker.step`` (one jitted call per frame: crop + network + decoding + state update), the
  frame given as a NumPy uint8 array, ``block_until_ready`` on the box;
* ``jax scan``: ``track_chunks`` (whole chunks of frames per ``lax.scan`` call), total time / frames;
* ``jax step (OpenCV emulation)``: the ``nanotrack_v2_opencv`` tracker (uint8 fixed-point crop).

Prints a markdown table with each time relative to OpenCV's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import cv2
import jax
import numpy as np


from jaxtrack import tracking
from jaxtrack.convert.convert import abstract_variables, state_dict_to_variables
from jaxtrack.convert.reader import load_torch_file
from jaxtrack.data.sequence import load_otb_folder
from jaxtrack.paths import shared_data_dir

WEIGHTS = "weights/nanotrack"


def opencv_pass(weights: Path, frames, box0) -> list[float]:
    params = cv2.TrackerNano_Params()
    params.backbone = str(weights / "nanotrackv2_backbone_sim.onnx")
    params.neckhead = str(weights / "nanotrackv2_head_sim.onnx")
    tracker = cv2.TrackerNano_create(params)
    tracker.init(frames[0], tuple(int(v) for v in box0))
    times = []
    for frame in frames[1:]:
        start = time.perf_counter()
        tracker.update(frame)
        times.append(time.perf_counter() - start)
    return times


def jax_step_pass(tracker, variables, frames, box0) -> list[float]:
    state = tracker.init(variables, frames[0], box0)
    jax.block_until_ready(state)
    times = []
    for frame in frames[1:]:
        start = time.perf_counter()
        state, box, _ = tracker.step(variables, state, frame)
        jax.block_until_ready(box)
        times.append(time.perf_counter() - start)
    return times


def jax_scan_pass(tracker, variables, frames, box0, chunk) -> list[float]:
    chunks = [frames[i : i + chunk] for i in range(0, len(frames), chunk)]
    start = time.perf_counter()
    tracker.track_chunks(variables, chunks, box0, chunk)
    return [(time.perf_counter() - start) / len(frames)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequence", default="Crossing", help="OTB sequence folder under the shared data")
    parser.add_argument("--passes", type=int, default=5, help="interleaved passes over the sequence")
    parser.add_argument("--chunk", type=int, default=64, help="frames per lax.scan call in the scan variant")
    args = parser.parse_args(argv)

    data = shared_data_dir()
    weights = data / WEIGHTS
    seq = load_otb_folder(data / "sequences/OTB" / args.sequence)
    frames = np.concatenate(list(seq.iter_chunks(64)))
    box0 = seq.init_box.astype(np.float32)
    state_dict = load_torch_file(weights / "nanotrackv2.pth")

    ours = tracking.create("nanotrack_v2")
    emulation = tracking.create("nanotrack_v2_opencv")
    variables = jax.device_put(
        state_dict_to_variables(state_dict, abstract_variables(ours), ignore_prefixes=("neck.",))
    )
    print(f"jax {jax.__version__} ({jax.default_backend()}), OpenCV {cv2.__version__} "
          f"(cv2.getNumThreads() = {cv2.getNumThreads()}), {os.cpu_count()} CPUs, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; {args.sequence}: {len(frames)} frames "
          f"{frames.shape[2]}x{frames.shape[1]}")

    start = time.perf_counter()  # compile (not timed below)
    jax_step_pass(ours, variables, frames[:3], box0)
    jax_step_pass(emulation, variables, frames[:3], box0)
    jax_scan_pass(ours, variables, frames, box0, args.chunk)
    print(f"compilation and first runs: {time.perf_counter() - start:.1f} s")

    runs = {
        "cv2.TrackerNano.update (C++, OpenCV DNN)": lambda: opencv_pass(weights, frames, box0),
        "jax step (nanotrack_v2, jitted per frame)": lambda: jax_step_pass(ours, variables, frames, box0),
        f"jax scan (nanotrack_v2, track_chunks, {args.chunk} frames per call)": lambda: jax_scan_pass(
            ours, variables, frames, box0, args.chunk),
        "jax step (nanotrack_v2_opencv emulation)": lambda: jax_step_pass(emulation, variables, frames, box0),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.passes):
        for name, run in runs.items():
            times[name].extend(run())

    medians = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    base = medians[next(iter(runs))]
    print("\n| implementation | median per frame (ms) | × cv2.TrackerNano |")
    print("|---|---|---|")
    for name, ms in medians.items():
        print(f"| {name} | {ms:.2f} | {ms / base:.2f} |")


if __name__ == "__main__":
    from jaxtrack import runtime

    runtime.configure(compile_cache=False)
    main()
