"""Input-pipeline speed: pairs per second of the training loader alone, so a training run can be checked not to
be input-bound.

Run: ``.venv/bin/python benchmarks/pipeline_speed.py [--sizes 240x320,720x1280] [--batch 32] [--batches 6]``

For each frame size, synthetic sequences (``--sequences`` x ``--frames``) are generated into a temporary folder
(OTB layout, JPEG q95 like the real datasets), then, with SiamRPN++'s training config (template 127, search 255,
pre-crop 511, pysot augmentation) and SiamFC++'s (303, video_analyst sampling):

* ``sampler``: ``PairSampler.sample`` in a plain loop (one thread, no grain) on the raw frames;
* ``raw + grain``: ``make_loader`` over the raw sequences (frames decoded and pre-cropped on the fly), with
  ``num_threads`` threads and ``worker_count`` processes;
* ``build``: ``build_tfds`` (pre-crop every frame to 511, JPEG q95, ArrayRecord), frames per second;
* ``tfds + grain``: ``make_loader`` over the shards (511 crops decoded instead of whole frames);
* the milliseconds of each step of the per-frame work (decode, pre-crop, final crops), for reading the above on a
  busy machine.

Loader figures are the median over ``--repeats`` runs of ``--batches`` batches after one warm-up batch.
Prints a markdown table. The machine has 2 cores; on a host with more, raise ``worker_count``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


import cv2
import numpy as np

from jaxtrack.data.augment import augment, precrop
from jaxtrack.data.datasets import load_dataset
from jaxtrack.data.pairs import PairConfig, PairSampler
from jaxtrack.data.pipeline import build_tfds, make_loader
from jaxtrack.data.sequence import read_frame
from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset


def sampler_rate(seqs, cfg, n):
    sampler = PairSampler(seqs, cfg, seed=0)
    sampler.sample(0)
    start = time.perf_counter()
    for i in range(1, n + 1):
        sampler.sample(i)
    return n / (time.perf_counter() - start)


def _median_ms(fn, n=30):
    fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def stage_costs(seq, cfg):
    """Median milliseconds of each step of one pair's frame work (one frame)."""
    frame = read_frame(seq.frame_paths[0])
    box = seq.ground_truth[0]
    crop, cbox, pad = precrop(frame, box, cfg.crop_size, cfg.exemplar_size, cfg.context_amount)
    _, jpg = cv2.imencode(".jpg", crop, [int(cv2.IMWRITE_JPEG_QUALITY), 95])
    rng = np.random.default_rng(0)
    return {
        "decode frame (raw path)": _median_ms(lambda: read_frame(seq.frame_paths[0])),
        "pre-crop 511 warp (raw path)": _median_ms(lambda: precrop(frame, box, cfg.crop_size, cfg.exemplar_size)),
        "decode 511 JPEG (shard path)": _median_ms(lambda: cv2.imdecode(jpg, cv2.IMREAD_COLOR)),
        "search crop + augmentation": _median_ms(
            lambda: augment(crop, cbox, cfg.instance_size, cfg.search_aug, rng, style=cfg.style, pad_value=pad)),
        "template crop + augmentation": _median_ms(
            lambda: augment(crop, cbox, cfg.exemplar_size, cfg.template_aug, rng, style=cfg.style, template=True,
                            pad_value=pad)),
    }


def loader_rate(source, cfg, batch, batches, repeats, threads, workers):
    rates = []
    for r in range(repeats):
        it = iter(make_loader(source, cfg, batch_size=batch, seed=r, num_threads=threads, worker_count=workers,
                              prefetch_batches=max(2, threads * 2)))
        next(it)  # warm-up (and worker start-up)
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        rates.append(batch * batches / (time.perf_counter() - start))
        if hasattr(it, "close"):
            it.close()
        del it
    return statistics.median(rates)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="240x320,720x1280", help="frame sizes HxW, comma separated")
    p.add_argument("--sequences", type=int, default=6)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--samples", type=int, default=100, help="pairs for the plain sampler loop")
    p.add_argument("--configs", default="siamrpn,siamfcpp")
    p.add_argument("--loaders", default="1x0,2x0,1x2", help="threads x workers of the grain loader")
    args = p.parse_args()

    configs = {"siamrpn": PairConfig.siamrpn(), "siamfcpp": PairConfig.siamfcpp()}
    loaders = [tuple(int(v) for v in s.split("x")) for s in args.loaders.split(",")]
    rows = []
    print(f"# pipeline speed: {os.cpu_count()} CPUs, batch {args.batch}, pairs/s (median of {args.repeats})",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            h, w = (int(v) for v in size.split("x"))
            root = Path(tmp) / f"synth_{h}x{w}"
            scale = min(h, w) / 240
            syn = SyntheticConfig(num_frames=args.frames, height=h, width=w,
                                  target_size_range=(28.0 * scale, 64.0 * scale), texture_size=64)
            t0 = time.perf_counter()
            generate_dataset(root, args.sequences, syn, seed=0)
            print(f"generated {args.sequences} x {args.frames} frames of {h}x{w} in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
            seqs = load_dataset("synthetic", root)
            t0 = time.perf_counter()
            built = build_tfds(root, Path(tmp) / f"tfds_{h}x{w}", dataset="synthetic", crop_size=511)
            build_fps = args.sequences * args.frames / (time.perf_counter() - t0)
            rows.append((f"{h}x{w}", "-", "build_tfds (frames/s, 2 threads)", build_fps))
            print(f"  build_tfds {h}x{w}: {build_fps:.0f} frames/s", flush=True)
            for stage, ms in stage_costs(seqs[0], configs["siamrpn"]).items():
                rows.append((f"{h}x{w}", "siamrpn", f"{stage} (ms, not pairs/s)", ms))
                print(f"  {stage}: {ms:.2f} ms", flush=True)
            for cname in args.configs.split(","):
                cfg = configs[cname]
                r = sampler_rate(seqs, cfg, args.samples)
                rows.append((f"{h}x{w}", cname, "sampler loop, raw frames", r))
                print(f"  {cname} sampler: {r:.0f}", flush=True)
                for source_name, source in (("raw", seqs), ("tfds", built)):
                    for threads, workers in loaders:
                        r = loader_rate(source, cfg, args.batch, args.batches, args.repeats, threads, workers)
                        what = f"{source_name} + grain, {threads} thread(s), {workers} worker(s)"
                        rows.append((f"{h}x{w}", cname, what, r))
                        print(f"  {cname} {what}: {r:.0f}", flush=True)
    print()
    print("| frames | config | what | pairs/s |")
    print("|---|---|---|---:|")
    for frames, cname, what, r in rows:
        print(f"| {frames} | {cname} | {what} | {r:.0f} |" if r >= 20 else f"| {frames} | {cname} | {what} | {r:.2f} |")


if __name__ == "__main__":
    from jaxtrack import runtime

    runtime.configure(compile_cache=False)
    main()
