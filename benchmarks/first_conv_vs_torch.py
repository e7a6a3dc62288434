"""The AlexNet families' first convolution (11x11, stride 2, 3 input channels) against PyTorch, layer by layer.

Run::

    .venv/bin/python benchmarks/first_conv_vs_torch.py [--iters 20] [--rounds 5]

Why: a PGD step on ``siamfcpp_tiny`` costs more in JAX than in PyTorch (``benchmarks/attack_speed.py``), while the
loop itself costs less than its gradients. This measures the one layer suspected of the gap, on the search crop of
each AlexNet family (the kernel shapes are read from the trackers' own parameter trees): its forward, and its input
gradient (the cotangent of the [1, X, X, 3] crop, which every attack step needs) as jaxtrack computes it
(``jaxtrack.models.conv.conv_input_grad``, the custom VJP of every dense convolution) and as JAX's own rule does,
jitted alone and as the body of a 10-step ``lax.fori_loop`` (where an attack runs it); PyTorch: ``conv2d`` and
``torch.nn.grad.conv2d_input`` (oneDNN), 2 threads. All timed in turns (``jaxtrack.timing.interleaved``), so each
ratio is of the same background load. The outputs are checked equal first (float32 rounding: 1e-4 of the largest).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxtrack import runtime, tracking
from jaxtrack.models.conv import conv2d_nhwc, conv_input_grad
from jaxtrack.timing import interleaved

FAMILIES = ("siamfcpp_tiny", "siamfcpp_alexnet", "siamrpn_alex")
LOOP_STEPS = 10


def first_kernel_shape(model: str) -> tuple[tuple[int, ...], int]:
    """The HWIO shape of ``model``'s first convolution kernel and its search crop side."""
    tracker = tracking.create(model)
    shapes = jax.eval_shape(tracker.init_variables, jax.random.key(0))["params"]
    kernels = [leaf.shape for leaf in jax.tree_util.tree_leaves(shapes) if leaf.ndim == 4 and leaf.shape[2] == 3]
    if not kernels:
        raise ValueError(f"{model}: no convolution on 3 input channels")
    return kernels[0], tracker.config.instance_size


def measure(model: str, iters: int, rounds: int) -> dict:
    import torch

    (kh, kw, cin, cout), side = first_kernel_shape(model)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (1, side, side, cin)).astype(np.float32)
    w = (rng.standard_normal((kh, kw, cin, cout)) * 0.01).astype(np.float32)
    stride, pads = (2, 2), ((0, 0), (0, 0))
    y = np.asarray(conv2d_nhwc(jnp.asarray(x), jnp.asarray(w), 2))
    g = rng.standard_normal(y.shape).astype(np.float32)
    xj, wj, gj = jnp.asarray(x), jnp.asarray(w), jnp.asarray(g)

    def ours(g, w):
        return conv_input_grad(g, w, (side, side), stride, pads, (1, 1))

    def jax_rule(g, w):
        return jax.vjp(lambda xx: lax.conv_general_dilated(xx, w, stride, "VALID",
                                                           dimension_numbers=("NHWC", "HWIO", "NHWC")), xj)[1](g)[0]

    def in_loop(grad_fn):
        def run(g, w):
            # the gradient feeds the next step's cotangent, so no step can be hoisted out of the loop
            def body(_, carry):
                dx = grad_fn(carry, w)
                return carry + 1e-6 * jnp.sum(dx)
            return lax.fori_loop(0, LOOP_STEPS, body, g)
        return jax.jit(run)

    forward = jax.jit(lambda x, w: conv2d_nhwc(x, w, 2))
    ours_jit, rule_jit = jax.jit(ours), jax.jit(jax_rule)
    ours_loop, rule_loop = in_loop(ours), in_loop(jax_rule)

    torch.set_num_threads(2)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
    gt = torch.from_numpy(g.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        dx_torch = torch.nn.grad.conv2d_input(xt.shape, wt, gt, stride=2).numpy().transpose(0, 2, 3, 1)
    dx_ours = np.asarray(ours_jit(gj, wj))
    scale = float(np.abs(dx_torch).max())
    for name, dx in (("jaxtrack", dx_ours), ("JAX's rule", np.asarray(rule_jit(gj, wj)))):
        err = float(np.abs(dx - dx_torch).max())
        if err > 1e-4 * scale:
            raise AssertionError(f"{model}: {name} input gradient differs from PyTorch's by {err:g} (scale {scale:g})")

    def torch_forward():
        with torch.no_grad():
            return torch.nn.functional.conv2d(xt, wt, stride=2)

    def torch_input_grad():
        with torch.no_grad():
            return torch.nn.grad.conv2d_input(xt.shape, wt, gt, stride=2)

    def torch_loop():
        carry = gt
        with torch.no_grad():
            for _ in range(LOOP_STEPS):
                dx = torch.nn.grad.conv2d_input(xt.shape, wt, carry, stride=2)
                carry = carry + 1e-6 * dx.sum()
        return carry

    t = interleaved({
        "forward": lambda: forward(xj, wj), "torch forward": torch_forward,
        "input grad": lambda: ours_jit(gj, wj), "input grad (JAX rule)": lambda: rule_jit(gj, wj),
        "torch input grad": torch_input_grad,
        "loop": lambda: ours_loop(gj, wj), "loop (JAX rule)": lambda: rule_loop(gj, wj), "torch loop": torch_loop,
    }, rounds=rounds, iters=iters)
    return {"model": model, "shape": f"{side}x{side}x{cin}, {kh}x{kw}/2 -> {cout}", **{k: v * 1e3 for k, v in t.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(FAMILIES))
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rows = [measure(m, args.iters, args.rounds) for m in args.models.split(",")]
    print("| model | first conv on the search crop | forward: JAX / PyTorch (ms) | input gradient: jaxtrack / "
          "JAX's rule / PyTorch (ms) | 10-step loop of it: jaxtrack / JAX's rule / PyTorch (ms) | "
          "jaxtrack / PyTorch, in the loop |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['shape']} | {r['forward']:.2f} / {r['torch forward']:.2f} | "
              f"{r['input grad']:.2f} / {r['input grad (JAX rule)']:.2f} / {r['torch input grad']:.2f} | "
              f"{r['loop']:.1f} / {r['loop (JAX rule)']:.1f} / {r['torch loop']:.1f} | "
              f"{r['loop'] / r['torch loop']:.2f} |")


if __name__ == "__main__":
    runtime.configure()
    main()
