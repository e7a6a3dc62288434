#!/usr/bin/env python
"""Which XLA:CPU settings make conv-heavy Siamese tracker networks fastest?

Self-contained benchmark (it does not import ``jaxtrack``).  XLA reads
``XLA_FLAGS`` once, when the CPU backend is created, so every candidate setting
runs in its own worker subprocess with the flags in its environment before
``import jax``.  Workloads (NHWC, batch 1, float32, fixed numpy weights/inputs
shared bit-for-bit by every worker):

* ``alex127`` / ``alex303``: a Flax AlexNet-BN (SiamFC AlexNetV1 layout, explicit
  zero paddings): conv11x11/2 96, BN, ReLU, maxpool3/2, conv5x5 256, BN, ReLU,
  maxpool3/2, conv3x3 384 (BN, ReLU), conv3x3 384 (BN, ReLU), conv3x3 256 (BN),
  on a 127x127 exemplar and a 303x303 search image,
* ``bneck``: 3 ResNet-50-style bottlenecks at 63x63x256 (1x1 256->64, 3x3
  dilation-2 64->64, 1x1 64->256, BN, residual ReLU),
* ``xcorr``: depthwise cross-correlation via ``lax.conv_general_dilated`` with
  ``feature_group_count=256``: search [1,28,28,256] * kernel [1,6,6,256],
* extras (not in the speed-up metric): ``xcorr_shift`` (same depthwise xcorr as
  36 shifted multiply-adds), ``alex303_nchw`` (same AlexNet in raw ``lax``,
  NCHW/OIHW), ``upsample`` (SiamFC post-processing: 22x22 response -> 352x352
  bicubic (XLA lowers it to dots) + cosine window + argmax), and in the confirmation round a whole tracker step (bilinear crop
  -> AlexNet-303 -> SiamFC xcorr -> 16x bicubic upsample -> window -> argmax)
  as one ``jit`` vs three chained ``jit`` calls.

Measurement.  The machine is shared (other people's test runs take up to a
whole core at random times, which doubles XLA conv times and makes 2-thread
PyTorch 2-20x slower), so settings are NOT measured one after another.  A group
of workers (the ``default`` anchor + up to ``--group`` candidates, and the
PyTorch references) is started, each compiles + warms up, and then the parent
makes them take turns: ``--rounds`` rounds, each worker doing
``iters/rounds`` calls of every workload per turn.  All members of a group
therefore see the same background load, and speed-ups are computed against the
``default`` worker of the *same* group.  The CPU time used by other processes
during each worker's turns is recorded ("other load", in cores).

Reported per setting: total compile time (lower+compile of all workloads), the
median of the timed calls (``block_until_ready``), ratio to PyTorch eager
(``torch.set_num_threads(2)``, ``no_grad``, oneDNN, same weights), max abs/rel
difference of all outputs vs default, and how the AlexNet convs were lowered
(YNNPACK fusion / Eigen convolution / oneDNN) in the optimized HLO.  Flag
settings XLA does not know are reported as "unsupported" (XLA aborts with
"Unknown flag in XLA_FLAGS").  Finally the best three numerics-safe settings
(and the combination of the best two, if they use different flags) are measured
once more in a confirmation group together with default, the PyTorch references
and the whole tracker step.

Usage::

    .venv/bin/python benchmarks/xla_cpu_flags.py             # full run, ~6-8 min on 2 cores
    .venv/bin/python benchmarks/xla_cpu_flags.py --quick     # fewer settings
    .venv/bin/python benchmarks/xla_cpu_flags.py --list      # candidate settings
    .venv/bin/python benchmarks/xla_cpu_flags.py --only ynn_conv_off,fast_math
    .venv/bin/python benchmarks/xla_cpu_flags.py --extra 'mine=--xla_cpu_enable_fast_min_max=false'

Findings with jaxlib 0.10.2 on the 2-core AVX-512 VM (flag list: ``strings
jaxlib/libjax_common.so | grep -o 'xla_cpu_[a-z_]*'``; descriptions: give any
flag an invalid value and XLA prints them all):

* ``--xla_cpu_use_xnnpack`` already defaults to true.  Convolutions and dots are
  by default rewritten into YNNPACK custom fusions (``__ynn_fusion``); the
  default of ``--xla_cpu_experimental_ynn_fusion_type`` is
  ``individual_convolution,individual_dot``.  Those YNNPACK convs are 1.3-2.9x
  slower than XLA's Eigen convs here (AlexNet conv2 5x5: 41 ms vs 14 ms).
  ``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`` puts the
  convs back on Eigen: AlexNet-303 ~95-110 ms -> ~40-47 ms (torch 2 threads:
  ~44-54 ms), bottlenecks 12-14 -> 7-9 ms, outputs within 1e-6 relative.  With
  one core taken by another process the Eigen path loses on the small convs
  (bottlenecks ~17 vs 15 ms, depthwise xcorr 12 vs 6.5 ms) but AlexNet still
  gains ~2.2x.
* Depthwise xcorr as a grouped conv costs ~6 ms with either backend; the same
  thing as 36 shifted multiply-adds (``xcorr_shift``) costs ~0.2-0.35 ms.
* ``--xla_cpu_use_onednn`` exists but convs never go to oneDNN; with
  ``--xla_cpu_experimental_onednn_fusion_type=dot[,eltwise]`` any dot (even
  ``relu(a @ b)`` at 3x4x5, or ``jax.image.resize(..., "cubic")``) aborts the
  process with "partition compile failed" + SIGILL.
* ``--xla_cpu_use_thunk_runtime`` is deprecated and ignored;
  ``xnnpack=false``, ``multi_thread_eigen=false``, ``fast_math``,
  ``prefer_vector_width=512``, ``opt_preset=FAST_RUNTIME``,
  ``xnn_graph_fusion_mode=GREEDY`` do not change the optimized HLO and are
  within noise.  ``ynn_fusion_type=+eltwise`` is slower (bottlenecks ~1.6x).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

# --------------------------------------------------------------------------
# Candidate settings
# --------------------------------------------------------------------------

YNN = "--xla_cpu_experimental_ynn_fusion_type="
YNN_OFF = YNN + "-individual_convolution,-individual_dot"
YNN_CONV_OFF = YNN + "-individual_convolution"

# name -> dict(flags=XLA_FLAGS, note=..., cpus=affinity set or None)
SETTINGS = {
    "default": dict(flags="", note="no XLA_FLAGS"),
    "xnnpack=true": dict(flags="--xla_cpu_use_xnnpack=true", note="already the default value", noop=True),
    "xnnpack=false": dict(flags="--xla_cpu_use_xnnpack=false"),
    "onednn=true": dict(flags="--xla_cpu_use_onednn=true"),
    "eigen_single_thread": dict(flags="--xla_cpu_multi_thread_eigen=false"),
    "fast_math": dict(flags="--xla_cpu_enable_fast_math=true", note="unsafe numerics, never a default"),
    "thunk_runtime=false": dict(flags="--xla_cpu_use_thunk_runtime=false", noop=True),
    "ynn_conv_off": dict(flags=YNN_CONV_OFF, note="convs on Eigen, dots stay on YNNPACK"),
    "ynn_off": dict(flags=YNN_OFF, note="convs + dots on Eigen"),
    "ynn_off+onednn_dot": dict(flags=YNN_OFF + " --xla_cpu_use_onednn=true"
                               " --xla_cpu_experimental_onednn_fusion_type=dot,eltwise",
                               note="convs on Eigen, dots on oneDNN"),
    "ynn+eltwise": dict(flags=YNN + "+eltwise", note="YNN subgraphs absorb conv+BN+ReLU"),
    "ynn_dot": dict(flags=YNN + "dot", note="only YNN graph fusions rooted at dots"),
    "xnn_graph_greedy": dict(flags="--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY"),
    "vector_width=512": dict(flags="--xla_cpu_prefer_vector_width=512", note="AVX-512 codegen for loop fusions"),
    "opt_preset=FAST_RUNTIME": dict(flags="--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_RUNTIME"),
    "ynn_conv_off+vw512": dict(flags=YNN_CONV_OFF + " --xla_cpu_prefer_vector_width=512"),
    "bogus_flag(probe)": dict(flags="--xla_cpu_no_such_flag_probe=true", note="checks 'unsupported' detection"),
    # not flags: pinned to one core (XLA sizes its thread pools from the affinity mask)
    "default@1cpu": dict(flags="", note="taskset 1 core", cpus={0}),
    "ynn_conv_off@1cpu": dict(flags=YNN_CONV_OFF, note="taskset 1 core", cpus={0}),
}
TORCH = {
    "torch 2 threads": dict(threads=2, env={}),
    "torch 2 thr, OMP passive": dict(threads=2, env={"OMP_WAIT_POLICY": "PASSIVE"}),
    "torch 1 thread": dict(threads=1, env={}),
}
TORCH_REF = "torch 2 threads"
QUICK = ["default", "onednn=true", "eigen_single_thread", "fast_math", "ynn_conv_off", "ynn_dot",
         "bogus_flag(probe)", "default@1cpu"]
FAST_MATH_FLAGS = ("xla_cpu_enable_fast_math=true",)
MAIN_WORKLOADS = ("alex127", "alex303", "bneck", "xcorr")

# --------------------------------------------------------------------------
# Deterministic weights / inputs (numpy only, shared by all workers)
# --------------------------------------------------------------------------

# AlexNet-BN: (name, k, stride, cin, cout, bn, relu, pool)
ALEX = [
    ("conv1", 11, 2, 3, 96, True, True, True),
    ("conv2", 5, 1, 96, 256, True, True, True),
    ("conv3", 3, 1, 256, 384, True, True, False),
    ("conv4", 3, 1, 384, 384, True, True, False),
    ("conv5", 3, 1, 384, 256, True, False, False),
]
BNECK_C, BNECK_MID, BNECK_N, BNECK_HW, BNECK_DIL = 256, 64, 3, 63, 2


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _conv_w(name, k, cin, cout):  # HWIO, He init
    return (_rng(name).standard_normal((k, k, cin, cout)) * math.sqrt(2.0 / (k * k * cin))).astype(np.float32)


def _bn(name, c):
    r = _rng(name)
    return dict(scale=r.uniform(0.5, 1.5, c).astype(np.float32), bias=(0.1 * r.standard_normal(c)).astype(np.float32),
                mean=(0.1 * r.standard_normal(c)).astype(np.float32), var=r.uniform(0.5, 1.5, c).astype(np.float32))


def alex_weights():
    w = {}
    for name, k, _s, cin, cout, _bnf, _relu, _pool in ALEX:
        w[name] = dict(kernel=_conv_w(name, k, cin, cout),
                       bias=(0.01 * _rng(name + "b").standard_normal(cout)).astype(np.float32))
        w["bn" + name[-1]] = _bn("bn" + name[-1], cout)
    return w


def bneck_weights():
    w = {}
    for b in range(BNECK_N):
        for i, (k, cin, cout) in enumerate([(1, BNECK_C, BNECK_MID), (3, BNECK_MID, BNECK_MID), (1, BNECK_MID, BNECK_C)]):
            w[f"b{b}_conv{i}"] = dict(kernel=_conv_w(f"b{b}_conv{i}", k, cin, cout))
            w[f"b{b}_bn{i}"] = _bn(f"b{b}_bn{i}", cout)
    return w


def inputs():
    r = np.random.default_rng(1234)
    return dict(
        z127=r.standard_normal((1, 127, 127, 3)).astype(np.float32),
        x303=r.standard_normal((1, 303, 303, 3)).astype(np.float32),
        feat63=r.standard_normal((1, BNECK_HW, BNECK_HW, BNECK_C)).astype(np.float32),
        xc_search=r.standard_normal((1, 28, 28, 256)).astype(np.float32),
        xc_kernel=r.standard_normal((1, 6, 6, 256)).astype(np.float32),
        frame=r.uniform(0, 255, (480, 640, 3)).astype(np.float32),
    )


# --------------------------------------------------------------------------
# JAX worker
# --------------------------------------------------------------------------

def _entry_ops(hlo_text: str) -> dict:
    """Count how convolutions are lowered in the optimized HLO entry computation."""
    ent = hlo_text[hlo_text.find("ENTRY"):]
    counts = {"ynn": 0, "xnn": 0, "onednn": 0, "eigen_conv": 0, "other": 0}
    for line in ent.splitlines()[1:]:
        m = re.search(r"=\s*\S+\s+([\w-]+)\(", line)
        if not m or m.group(1) in ("parameter", "constant", "bitcast", "tuple", "get-tuple-element"):
            continue
        kind = re.search(r'"kind":"(__\w+)"', line)
        if kind and "ynn" in kind.group(1):
            counts["ynn"] += 1
        elif kind and "xnn" in kind.group(1):
            counts["xnn"] += 1
        elif (kind and "onednn" in kind.group(1)) or "onednn" in line:
            counts["onednn"] += 1
        elif m.group(1) == "convolution":
            counts["eigen_conv"] += 1
        else:
            counts["other"] += 1
    return counts


def jax_setup(args):
    """Build + compile + warm up every workload. Returns (calls, info, outputs)."""
    t_import = time.perf_counter()
    import jax
    import jax.numpy as jnp
    from jax import lax
    import flax.linen as nn

    jax.devices()  # creates the CPU backend (parses XLA_FLAGS; aborts on unknown flags)
    t_import = time.perf_counter() - t_import
    inp = inputs()
    aw, bw = alex_weights(), bneck_weights()

    class AlexNetBN(nn.Module):
        @nn.compact
        def __call__(self, x):
            for name, k, s, _cin, cout, bn, relu, pool in ALEX:
                x = nn.Conv(cout, (k, k), strides=(s, s), padding=((0, 0), (0, 0)), name=name)(x)
                if bn:
                    x = nn.BatchNorm(use_running_average=True, epsilon=1e-5, name="bn" + name[-1])(x)
                if relu:
                    x = nn.relu(x)
                if pool:
                    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((0, 0), (0, 0)))
            return x

    class Bottlenecks(nn.Module):
        @nn.compact
        def __call__(self, x):
            for b in range(BNECK_N):
                y = x
                for i, (k, cout) in enumerate([(1, BNECK_MID), (3, BNECK_MID), (1, BNECK_C)]):
                    d = BNECK_DIL if k == 3 else 1
                    p = d * (k - 1) // 2
                    y = nn.Conv(cout, (k, k), padding=((p, p), (p, p)), kernel_dilation=(d, d), use_bias=False,
                                name=f"b{b}_conv{i}")(y)
                    y = nn.BatchNorm(use_running_average=True, epsilon=1e-5, name=f"b{b}_bn{i}")(y)
                    if i < 2:
                        y = nn.relu(y)
                x = nn.relu(x + y)
            return x

    def flax_vars(w):
        params, stats = {}, {}
        for k, v in w.items():
            if "mean" in v:
                params[k] = {"scale": v["scale"], "bias": v["bias"]}
                stats[k] = {"mean": v["mean"], "var": v["var"]}
            else:
                params[k] = dict(v)
        return jax.tree.map(jnp.asarray, {"params": params, "batch_stats": stats})

    alex, bneck = AlexNetBN(), Bottlenecks()
    av, bv = flax_vars(aw), flax_vars(bw)

    # NCHW/OIHW variant of the same AlexNet written with raw lax ops (same weights).
    nchw_w = jax.tree.map(jnp.asarray, {
        k: ({"kernel": np.ascontiguousarray(v["kernel"].transpose(3, 2, 0, 1)), "bias": v["bias"]}
            if "kernel" in v else v) for k, v in aw.items()})

    def alex_nchw(w, x):
        for name, k, s, _cin, _cout, bn, relu, pool in ALEX:
            x = lax.conv_general_dilated(x, w[name]["kernel"], (s, s), ((0, 0), (0, 0)),
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
            x = x + w[name]["bias"][None, :, None, None]
            if bn:
                b = w["bn" + name[-1]]
                inv = b["scale"] * lax.rsqrt(b["var"] + 1e-5)
                x = (x - b["mean"][None, :, None, None]) * inv[None, :, None, None] + b["bias"][None, :, None, None]
            if relu:
                x = jnp.maximum(x, 0)
            if pool:
                x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 3, 3), (1, 1, 2, 2), "VALID")
        return x.transpose(0, 2, 3, 1)  # compare in NHWC

    def xcorr_dw(x, z):  # [1,H,W,C] * [1,h,w,C] -> [1,H-h+1,W-w+1,C]
        kern = jnp.transpose(z, (1, 2, 0, 3))  # HWIO with I=1, O=C
        return lax.conv_general_dilated(x, kern, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=x.shape[-1])

    def xcorr_shift(x, z):  # same result as xcorr_dw as h*w shifted multiply-adds (one loop fusion)
        h, w = z.shape[1:3]
        H, W = x.shape[1] - h + 1, x.shape[2] - w + 1
        acc = jnp.zeros((x.shape[0], H, W, x.shape[3]), x.dtype)
        for i in range(h):
            for j in range(w):
                acc = acc + x[:, i:i + H, j:j + W, :] * z[:, i:i + 1, j:j + 1, :]
        return acc

    def upsample(r, hann):  # SiamFC post-processing on a [22,22] response
        up = jax.image.resize(r, hann.shape, "cubic")
        up = (up - up.min()) / (up.max() - up.min() + 1e-12)
        score = 0.824 * up + 0.176 * hann
        return score, jnp.argmax(score)

    n_up = 22 * 16
    workloads = {
        "alex127": (lambda v, x: alex.apply(v, x), (av, jnp.asarray(inp["z127"]))),
        "alex303": (lambda v, x: alex.apply(v, x), (av, jnp.asarray(inp["x303"]))),
        "bneck": (lambda v, x: bneck.apply(v, x), (bv, jnp.asarray(inp["feat63"]))),
        "xcorr": (xcorr_dw, (jnp.asarray(inp["xc_search"]), jnp.asarray(inp["xc_kernel"]))),
        "xcorr_shift": (xcorr_shift, (jnp.asarray(inp["xc_search"]), jnp.asarray(inp["xc_kernel"]))),
        "alex303_nchw": (alex_nchw, (nchw_w, jnp.asarray(inp["x303"].transpose(0, 3, 1, 2)))),
        "upsample": (upsample, (jnp.asarray(inp["xc_search"][0, :22, :22, 0]),
                                jnp.outer(jnp.hanning(n_up), jnp.hanning(n_up)))),
    }

    info = {"import_s": t_import, "compile_s": {}, "conv_path": None, "version": jax.__version__}
    calls, outs, hlo_crc = {}, {}, 0
    for name, (fn, fargs) in workloads.items():
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(*fargs).compile()
        info["compile_s"][name] = time.perf_counter() - t0
        hlo_crc = zlib.crc32(re.sub(r"metadata=\{[^}]*\}", "", compiled.as_text()).encode(), hlo_crc)
        if name == "alex303":
            txt = compiled.as_text()
            info["conv_path"] = _entry_ops(txt)
            if args.hlo:
                print(txt, file=sys.stderr)
        calls[name] = (lambda c=compiled, fa=fargs: jax.block_until_ready(c(*fa)))
        o = compiled(*fargs)
        outs[name] = np.asarray(o[0] if isinstance(o, tuple) else o)

    info["hlo_crc"] = hlo_crc  # equal to default's => the flag did not change the optimized HLO
    if args.step:
        step_calls, step_info, resp = make_step(jax, jnp, lax, alex, av, inp)
        calls.update(step_calls)
        info["step"] = step_info
        outs["step_resp"] = resp
    for fn in calls.values():
        for _ in range(args.warmup):
            fn()
    return calls, info, outs


def make_step(jax, jnp, lax, alex, av, inp):
    """Tracker step: bilinear crop (dynamic centre/scale) -> AlexNet(303) -> SiamFC xcorr -> 16x bicubic
    upsample -> cosine-window penalty -> argmax.  Fused: one jit; split: three jits chained on device."""
    S, UP = 303, 16
    z_feat = alex.apply(av, jnp.asarray(inp["z127"]))  # [1,6,6,256] template feature, computed once
    frame = jnp.asarray(inp["frame"])
    centre, size = jnp.array([240.0, 320.0]), jnp.array(290.0)

    def crop(frame, centre, size):
        scale = S / size
        trans = S / 2 - centre * scale
        patch = jax.image.scale_and_translate(frame, (S, S, 3), (0, 1), jnp.stack([scale, scale]), trans,
                                              method="linear", antialias=False)
        return patch[None]

    def net(patch, z_feat):
        x = alex.apply(av, patch)
        k = jnp.transpose(z_feat, (1, 2, 3, 0))  # [h,w,C,1] HWIO
        return lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")) * 1e-3

    def post(resp):
        r = resp[0, :, :, 0]
        n = r.shape[0] * UP
        up = jax.image.resize(r, (n, n), "cubic")
        hann = jnp.outer(jnp.hanning(n), jnp.hanning(n))
        up = (up - up.min()) / (up.max() - up.min() + 1e-12)
        idx = jnp.argmax(0.824 * up + 0.176 * hann)
        return jnp.stack([idx // n, idx % n]).astype(jnp.float32) - (n - 1) / 2, up

    fused = jax.jit(lambda f, c, s, z: post(net(crop(f, c, s), z)))
    j_crop, j_net, j_post = jax.jit(crop), jax.jit(net), jax.jit(post)
    info = {}
    t0 = time.perf_counter()
    resp = np.asarray(fused(frame, centre, size, z_feat)[1])
    info["fused_first_call_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(j_post(j_net(j_crop(frame, centre, size), z_feat)))
    info["split_first_call_s"] = time.perf_counter() - t0
    calls = {
        "step_fused": lambda: jax.block_until_ready(fused(frame, centre, size, z_feat)),
        "step_split": lambda: jax.block_until_ready(j_post(j_net(j_crop(frame, centre, size), z_feat))),
    }
    return calls, info, resp


# --------------------------------------------------------------------------
# PyTorch reference worker
# --------------------------------------------------------------------------

def torch_setup(args):
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    layers = []
    aw = alex_weights()
    for name, k, s, cin, cout, bn, relu, pool in ALEX:
        conv = nn.Conv2d(cin, cout, k, s, padding=0)
        conv.weight.data = torch.from_numpy(np.ascontiguousarray(aw[name]["kernel"].transpose(3, 2, 0, 1)))
        conv.bias.data = torch.from_numpy(aw[name]["bias"])
        layers.append(conv)
        if bn:
            b = aw["bn" + name[-1]]
            m = nn.BatchNorm2d(cout, eps=1e-5)
            m.weight.data, m.bias.data = torch.from_numpy(b["scale"]), torch.from_numpy(b["bias"])
            m.running_mean.data, m.running_var.data = torch.from_numpy(b["mean"]), torch.from_numpy(b["var"])
            layers.append(m)
        if relu:
            layers.append(nn.ReLU(inplace=True))
        if pool:
            layers.append(nn.MaxPool2d(3, 2))
    model = nn.Sequential(*layers).eval()
    torch.set_grad_enabled(False)
    inp = inputs()
    z = torch.from_numpy(np.ascontiguousarray(inp["z127"].transpose(0, 3, 1, 2)))
    x = torch.from_numpy(np.ascontiguousarray(inp["x303"].transpose(0, 3, 1, 2)))
    xs = torch.from_numpy(np.ascontiguousarray(inp["xc_search"].transpose(0, 3, 1, 2)))
    zk = torch.from_numpy(np.ascontiguousarray(inp["xc_kernel"].transpose(3, 0, 1, 2)))  # [C,1,h,w]
    calls = {
        "alex127": lambda: model(z),
        "alex303": lambda: model(x),
        "xcorr": lambda: torch.nn.functional.conv2d(xs, zk, groups=256),
    }
    outs = {k: f().numpy().transpose(0, 2, 3, 1) for k, f in calls.items()}
    for fn in calls.values():
        for _ in range(args.warmup):
            fn()
    info = {"version": torch.__version__, "threads": torch.get_num_threads(),
            "mkldnn": bool(torch.backends.mkldnn.is_available())}
    return calls, info, outs


def serve(args):
    """Worker main loop: set up, then answer 'run N' (N timed calls of every workload) until 'quit'."""
    calls, info, outs = (torch_setup if args._worker == "torch" else jax_setup)(args)
    print("READY " + json.dumps(info), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        n = int(cmd[1])
        times = {}
        for name, fn in calls.items():
            ts = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t0) * 1e3)
            times[name] = ts
        print("TIMES " + json.dumps(times), flush=True)
    np.savez(args._out, **outs)
    print("BYE", flush=True)


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

def _busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle + iowait


def _proc_cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads
    except OSError:
        return 0.0


class Worker:
    def __init__(self, name, kind, flags="", cpus=None, threads=2, env=None, step=False, a=None, tmp="/tmp"):
        self.name, self.kind, self.flags, self.cpus = name, kind, flags, cpus
        self.out = os.path.join(tmp, re.sub(r"\W", "_", name) + f"_{id(self)}.npz")
        self.errpath = self.out + ".err"
        self.times, self.other = {}, []
        self.status, self.detail, self.info = "starting", "", {}
        e = dict(os.environ)
        e.pop("XLA_FLAGS", None)
        if flags:
            e["XLA_FLAGS"] = flags
        e.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
        e.update(env or {})
        cmd = [sys.executable, os.path.abspath(__file__), "--_worker", kind, "--_out", self.out,
               "--warmup", str(a.warmup), "--threads", str(threads)] + (["--_step"] if step else [])
        self.err = open(self.errpath, "w")
        self.p = subprocess.Popen(cmd, env=e, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                  text=True, bufsize=1,
                                  preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)

    def _readline(self, timeout):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        return self.p.stdout.readline() if r else None

    def _fail(self, why):
        self.p.kill()
        self.p.wait()
        self.err.close()
        text = open(self.errpath).read()
        if "Unknown flag" in text:
            self.status, self.detail = "unsupported", "Unknown flag in XLA_FLAGS"
        elif "Flags:" in text and "usage:" in text.lower():
            self.status, self.detail = "unsupported", "flag value rejected"
        else:
            self.status = "error"
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            rc = self.p.returncode
            sig = f"exit {rc}" if rc >= 0 else f"signal {-rc}"
            if rc > 128:
                sig = f"exit {rc} (signal {rc - 128})"
            self.detail = f"{why}, {sig}: {lines[-1] if lines else ''}"[:200]

    def wait_ready(self, timeout=300):
        t0 = time.perf_counter()
        while True:
            line = self._readline(max(1.0, timeout - (time.perf_counter() - t0)))
            if not line:
                return self._fail("no READY")
            if line.startswith("READY"):
                self.info = json.loads(line[6:])
                self.status = "ok"
                if "no longer supported" in open(self.errpath).read():
                    self.detail = "deprecated flag, ignored"
                return

    def run(self, n, timeout=300):
        if self.status != "ok":
            return
        t0, b0, c0 = time.perf_counter(), _busy_s(), _proc_cpu_s(self.p.pid)
        self.p.stdin.write(f"run {n}\n")
        self.p.stdin.flush()
        line = self._readline(timeout)
        if not line or not line.startswith("TIMES"):
            return self._fail("died while running")
        wall = time.perf_counter() - t0
        self.other.append(max(0.0, (_busy_s() - b0 - (_proc_cpu_s(self.p.pid) - c0)) / wall))
        for k, v in json.loads(line[6:]).items():
            self.times.setdefault(k, []).extend(v)

    def finish(self):
        if self.status != "ok":
            return
        self.p.stdin.write("quit\n")
        self.p.stdin.flush()
        self._readline(120)
        self.p.wait()
        self.err.close()

    def result(self):
        r = {"name": self.name, "status": self.status, "detail": self.detail, "flags": self.flags, "out": self.out}
        if self.status == "ok":
            r.update(self.info)
            r["times_ms"] = {k: statistics.median(v) for k, v in self.times.items()}
            r["min_ms"] = {k: min(v) for k, v in self.times.items()}
            r["other_load"] = statistics.mean(self.other) if self.other else float("nan")
        return r


def run_group(members, a, tmp, step=False, label=""):
    """Start workers one at a time (so compile times are not inflated), then measure them round-robin."""
    workers = []
    for m in members:
        if m["kind"] == "torch":
            w = Worker(m["name"], "torch", threads=m["threads"], env=m["env"], a=a, tmp=tmp)
        else:
            w = Worker(m["name"], "jax", flags=m["flags"], cpus=m.get("cpus"), step=step, a=a, tmp=tmp)
        w.wait_ready()
        workers.append(w)
    n = max(1, a.iters // a.rounds)
    t0 = time.perf_counter()
    for r in range(a.rounds):
        order = workers[r % len(workers):] + workers[:r % len(workers)]  # rotate who goes first
        for w in order:
            w.run(n)
    for w in workers:
        w.finish()
    res = [w.result() for w in workers]
    print(f"  [{label}] {len(workers)} workers x {a.rounds} rounds x {n} calls: {time.perf_counter() - t0:.0f}s; "
          + ", ".join(f"{r['name']}: " + (f"alex303 {r['times_ms']['alex303']:.0f} ms" if r["status"] == "ok"
                                           else r["status"]) for r in res), flush=True)
    return res


def diffs(out_path, ref_path):
    a, b = np.load(out_path), np.load(ref_path)
    mx_abs, mx_rel = 0.0, 0.0
    for k in b.files:
        if k not in a.files or a[k].shape != b[k].shape:
            continue
        d = float(np.max(np.abs(a[k].astype(np.float64) - b[k])))
        mx_abs = max(mx_abs, d)
        mx_rel = max(mx_rel, d / (float(np.max(np.abs(b[k]))) + 1e-30))
    return mx_abs, mx_rel


def total_ms(r):
    return sum(r["times_ms"][w] for w in MAIN_WORKLOADS)


def conv_path_str(r, ref_crc=None):
    cp = r.get("conv_path")
    if not cp:
        return ""
    s = " ".join(f"{k}:{v}" for k, v in cp.items() if v and k != "other") + f" (+{cp['other']} other)"
    return s + ("; HLO = default" if ref_crc is not None and r.get("hlo_crc") == ref_crc and r["flags"] else "")


def print_table(rows, torch_rows, title, ref_crc=None):
    print(f"\n### {title}\n")
    print("| setting | compile s | AlexNet-127 ms | AlexNet-303 ms | bottlenecks ms | xcorr ms | ratio vs torch (303) "
          "| max abs diff (rel) | speed-up vs default | xcorr shift-add ms | AlexNet-303 NCHW ms | upsample ms "
          "| other load (cores) | conv lowering (alex303) | XLA_FLAGS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    tref = torch_rows.get(TORCH_REF)
    t2 = tref["times_ms"]["alex303"] if tref and tref["status"] == "ok" else float("nan")
    for name, r in torch_rows.items():
        if r["status"] == "ok":
            t = r["times_ms"]
            print(f"| *{name}* | - | {t['alex127']:.1f} | {t['alex303']:.1f} | - | {t['xcorr']:.2f} | "
                  f"{t['alex303'] / t2:.2f} | {r.get('maxabs', float('nan')):.1e} ({r.get('maxrel', float('nan')):.0e}) "
                  f"| - | - | - | - | {r['other_load']:.1f} | oneDNN | - |")
        else:
            print(f"| *{name}* | {r['status']} | | | | | | | | | | | | {r['detail']} | - |")
    for r in rows:
        name = r["label"]
        fl = f"`{r['flags']}`" if r["flags"] else "(none)"
        if r["status"] != "ok":
            print(f"| {name} | {r['status']} | | | | | | | | | | | | {r['detail']} | {fl} |")
            continue
        t = r["times_ms"]
        print(f"| {name} | {sum(r['compile_s'].values()):.2f} | {t['alex127']:.1f} | {t['alex303']:.1f} | "
              f"{t['bneck']:.1f} | {t['xcorr']:.2f} | {t['alex303'] / t2:.2f} | {r['maxabs']:.1e} ({r['maxrel']:.0e}) | "
              f"{r['speedup']:.2f}x | {t['xcorr_shift']:.2f} | {t['alex303_nchw']:.1f} | {t['upsample']:.2f} | "
              f"{r['other_load']:.1f} | "
              f"{conv_path_str(r, ref_crc)} | {fl} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=30, help="timed calls per workload and setting")
    ap.add_argument("--rounds", type=int, default=6, help="round-robin turns the calls are split into")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--group", type=int, default=5, help="candidates measured together with a default anchor")
    ap.add_argument("--quick", action="store_true", help="fewer settings")
    ap.add_argument("--only", default="", help="comma-separated setting names (default is always included)")
    ap.add_argument("--extra", action="append", default=[], help="extra setting 'name=XLA_FLAGS'")
    ap.add_argument("--rtol", type=float, default=1e-4, help="max relative output change allowed for a default")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-confirm", action="store_true")
    ap.add_argument("--confirm-top", type=int, default=3, help="best settings re-measured in the confirmation group")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--json", default="", help="write all raw results to this file")
    ap.add_argument("--hlo", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--_worker", default="", help=argparse.SUPPRESS)
    ap.add_argument("--_out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--_step", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._worker:
        a.step = a._step
        return serve(a)

    settings = dict(SETTINGS)
    for e in a.extra:
        n, f = e.split("=", 1)
        settings[n] = dict(flags=f, note="user")
    if a.list:
        for n, s in settings.items():
            print(f"{n:26s} {s['flags'] or '(none)'}  {s.get('note', '')}")
        return
    if a.only:
        names = [n for n in a.only.split(",") if n != "default"]
    elif a.quick:
        names = [n for n in QUICK if n != "default"] + [n for n, s in settings.items() if s.get("note") == "user"]
    else:
        names = [n for n in settings if n != "default"]
    unknown = [n for n in names if n not in settings]
    if unknown:
        sys.exit(f"unknown setting(s) {unknown}; see --list")

    t_start = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="xla_cpu_flags_")
    print(f"# XLA:CPU flag sweep: {os.cpu_count()} CPUs, {a.iters} timed calls per workload in {a.rounds} "
          f"round-robin turns, warmup {a.warmup}", flush=True)

    def jm(n):
        return dict(name=n, kind="jax", **settings[n])

    torch_members = [] if a.no_torch else [dict(name=n, kind="torch", **t) for n, t in TORCH.items()]
    groups = [names[i:i + a.group] for i in range(0, len(names), a.group)] or [[]]
    rows, torch_rows, defaults = [], {}, []
    for gi, g in enumerate(groups):
        members = [jm("default")] + [jm(n) for n in g] + (torch_members if gi == 0 else [])
        res = run_group(members, a, tmp, label=f"group {gi + 1}/{len(groups)}")
        base = res[0]
        if base["status"] != "ok":
            sys.exit(f"default worker failed: {base}")
        defaults.append(base)
        for r in res:
            if r["name"] in TORCH:
                torch_rows[r["name"]] = r
                continue
            r["label"] = (f"default (group {gi + 1})" if r is base
                          else r["name"] + (f" ({settings[r['name']]['note']})" if settings[r["name"]].get("note") else ""))
            if r["status"] == "ok":
                r["speedup"] = total_ms(base) / total_ms(r)
                r["group_default_ms"] = base["times_ms"]
                if r["detail"]:
                    r["label"] += f" [{r['detail']}]"
            rows.append(r)
    ref_out = defaults[0]["out"]
    for r in rows + list(torch_rows.values()):
        if r["status"] == "ok":
            r["maxabs"], r["maxrel"] = diffs(r["out"], ref_out)
    ref_crc = defaults[0].get("hlo_crc")
    print_table(rows, torch_rows, f"Sweep: median of {a.iters} calls; speed-up = (sum of the 4 main workload times of "
                                  f"the group's default) / (same for the setting)", ref_crc)

    # candidates for a project default: real flags (not pinning, not no-ops/deprecated), numerics within rtol
    safe = [r for r in rows if r["status"] == "ok" and r["name"] != "default" and r["flags"]
            and not settings[r["name"]].get("cpus") and not settings[r["name"]].get("noop")
            and "deprecated" not in r["detail"] and r["maxrel"] <= a.rtol
            and not any(f in r["flags"] for f in FAST_MATH_FLAGS)]
    safe.sort(key=lambda r: -r["speedup"])
    result = {"torch": torch_rows, "sweep": rows}
    best = None
    if not a.no_confirm and safe:
        top = safe[:a.confirm_top]
        confirm = [jm("default")] + [jm(r["name"]) for r in top]
        if len(top) >= 2:
            f0, f1 = top[0]["flags"], top[1]["flags"]
            if not {x.split("=")[0] for x in f0.split()} & {x.split("=")[0] for x in f1.split()}:
                confirm.append(dict(name=f"{top[0]['name']} + {top[1]['name']}", kind="jax", flags=f0 + " " + f1))
        confirm += [m for m in torch_members if m["name"] in (TORCH_REF, "torch 1 thread")]
        print("\n# confirmation group: " + ", ".join(m["name"] for m in confirm), flush=True)
        res = run_group(confirm, a, tmp, step=True, label="confirm")
        cbase = res[0]
        if cbase["status"] != "ok":
            sys.exit(f"default worker failed: {cbase}")
        crows, ctorch = [], {}
        for r in res:
            if r["status"] == "ok":
                r["maxabs"], r["maxrel"] = diffs(r["out"], ref_out)
            if r["name"] in TORCH:
                ctorch[r["name"]] = r
                continue
            r["label"] = r["name"]
            if r["status"] == "ok":
                r["speedup"] = total_ms(cbase) / total_ms(r)
            crows.append(r)
        print_table(crows, ctorch, "Confirmation group (all re-measured together, speed-up vs this group's default)",
                    ref_crc)

        print("\n### Tracker step: bilinear crop 303 + AlexNet + SiamFC xcorr + 16x bicubic upsample + window + "
              "argmax (median ms)\n")
        print("| setting | fused: 1 jit | 3 chained jits | fused compile + 1st call s | response max abs diff |")
        print("|---|---|---|---|---|")
        ref_step = np.load(cbase["out"])["step_resp"]
        for r in crows:
            if r["status"] == "ok":
                t = r["times_ms"]
                d = float(np.max(np.abs(np.load(r["out"])["step_resp"] - ref_step)))
                print(f"| {r['name']} | {t['step_fused']:.1f} | {t['step_split']:.1f} | "
                      f"{r['step']['fused_first_call_s']:.2f} | {d:.1e} |")
        result["confirm"] = crows + list(ctorch.values())

        # recommendation: >3% faster than default in both the sweep and the confirmation group; among those
        # within 3% of the fastest: fewest workloads (incl. upsample / shift-add xcorr / tracker step) that got
        # >10% and >0.2 ms slower than default, then fewest flags, then fastest summed time
        sweep_speed = {r["name"]: r["speedup"] for r in rows if r["status"] == "ok"}
        ok = [r for r in crows if r["name"] != "default" and r["status"] == "ok" and r["maxrel"] <= a.rtol
              and r["speedup"] > 1.03 and sweep_speed.get(r["name"], r["speedup"]) > 1.03]
        for r in ok:
            r["regressions"] = [w for w, t in r["times_ms"].items()
                                if t > 1.10 * cbase["times_ms"][w] and t - cbase["times_ms"][w] > 0.2]
        if ok:
            top_speed = max(r["speedup"] for r in ok)
            tied = [r for r in ok if r["speedup"] >= top_speed / 1.03]
            best = min(tied, key=lambda r: (len(r["regressions"]), len(r["flags"].split()), total_ms(r)))
            print("\nrecommendation candidates (>3% faster in sweep and confirmation; * = within 3% of the best):")
            for r in sorted(ok, key=lambda r: -r["speedup"]):
                print(f"  {'*' if r in tied else ' '} {r['name']}: {r['speedup']:.2f}x, "
                      f"{len(r['flags'].split())} flag(s), >10% (and >0.2 ms) slower than default on: "
                      f"{', '.join(r['regressions']) or 'nothing'}")
    print()
    if best:
        print(f"RECOMMENDED default XLA_FLAGS: {best['flags']!r}  ({best['name']}: {best['speedup']:.2f}x vs default "
              f"in the confirmation group, max rel output diff {best['maxrel']:.0e})")
    elif not a.no_confirm:
        print("RECOMMENDED: keep the XLA:CPU defaults (nothing was >3% faster in both sweep and confirmation)")
    print(f"total wall time {time.perf_counter() - t_start:.0f}s")
    shutil.rmtree(tmp, ignore_errors=True)  # worker outputs / stderr logs
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
    main()
