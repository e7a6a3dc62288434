"""Every convolution of a tracker's search branch against PyTorch, layer by layer, beside the whole network.

Run::

    .venv/bin/python benchmarks/conv_layers_vs_torch.py [--models siamrpn_alex,siamfcpp_alexnet] [--rounds 5]

Why: on the 96-channel AlexNet families a PGD-10 step costs 1.05-1.15x its PyTorch twin's
(``benchmarks/attack_speed.py``) while the first layer is not the cause (``benchmarks/first_conv_vs_torch.py``).
This splits one attack step -- forward and backward of the Dua-Loss w.r.t. the search crop -- into its
convolutions and the rest:

- the convolutions are read from the jaxpr of the tracker's ``head`` on the search crop (every
  ``conv_general_dilated``, with its shapes, strides, padding, dilation and groups; the template features are an
  argument, as in the attack loop);
- each is timed as an attack step runs it: forward, then the gradient w.r.t. its input (``jax.vjp`` of
  ``jaxtrack.models.conv.conv2d_nhwc``, i.e. the networks' own convolution and its custom VJP), jitted alone and
  as the body of a 10-step ``lax.fori_loop``; PyTorch: ``conv2d`` then ``torch.nn.grad.conv2d_input``
  (oneDNN), 2 threads, and the same 10-step loop;
- the whole networks: JAX's jitted forward+backward of the Dua-Loss and the PyTorch twin's (``attack_speed``'s
  ``fwd_bwd`` and ``torch_fwd_bwd``; the twin's loss is checked equal first).

Everything of one family is timed in turns (``jaxtrack.timing.interleaved``), so ratios are of the same background
load. Per-layer outputs are checked equal to PyTorch's first (float32 rounding: 1e-4 of the largest).
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import attack_speed as A  # the crop, loss and PyTorch twins (python puts this script's folder first on the path)

from jaxtrack import runtime, tracking
from jaxtrack.models.conv import conv2d_nhwc
from jaxtrack.timing import interleaved
from jaxtrack.weights import load_weights

FAMILIES = ("siamrpn_alex", "siamfcpp_alexnet")
LOOP_STEPS = 10


@dataclasses.dataclass(frozen=True)
class ConvLayer:
    """One NHWC / HWIO convolution of the network: input [1, H, W, Cin], kernel [kh, kw, Cin / groups, Cout]."""

    in_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    strides: tuple[int, int]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, int]
    groups: int

    def label(self) -> str:
        kh, kw, _, cout = self.kernel_shape
        s = f"{self.in_shape[1]}x{self.in_shape[2]}x{self.in_shape[3]}, {kh}x{kw}/{self.strides[0]}"
        if self.dilation != (1, 1):
            s += f" dil {self.dilation[0]}"
        if self.groups > 1:
            s += f" groups {self.groups}"
        return s + f" -> {cout}"


def _sub_jaxprs(params: dict):
    for value in params.values():
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, jax.extend.core.ClosedJaxpr):
                yield v.jaxpr
            elif isinstance(v, jax.extend.core.Jaxpr):
                yield v


def conv_layers(jaxpr) -> list[ConvLayer]:
    """Every ``conv_general_dilated`` of ``jaxpr`` and its sub-jaxprs, in program order (NHWC / HWIO only)."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            p = eqn.params
            dn = p["dimension_numbers"]
            if (tuple(dn.lhs_spec), tuple(dn.rhs_spec)) != ((0, 3, 1, 2), (3, 2, 0, 1)):
                raise ValueError(f"not an NHWC / HWIO convolution: {dn}")
            if any(d != 1 for d in p["lhs_dilation"]) or p["batch_group_count"] != 1:
                raise ValueError("input-dilated or batch-grouped convolutions are not timed here")
            found.append(ConvLayer(tuple(eqn.invars[0].aval.shape), tuple(eqn.invars[1].aval.shape),
                                   tuple(p["window_strides"]), tuple(tuple(x) for x in p["padding"]),
                                   tuple(p["rhs_dilation"]), int(p["feature_group_count"])))
        for sub in _sub_jaxprs(eqn.params):
            found.extend(conv_layers(sub))
    return found


def layer_fns(layer: ConvLayer, rng: np.random.Generator) -> tuple[dict, float]:
    """JAX and PyTorch forward + input gradient of ``layer`` (once, and a 10-step loop); the largest difference of
    the input gradients relative to PyTorch's largest value."""
    import torch

    x = rng.uniform(0, 1, layer.in_shape).astype(np.float32)
    w = (rng.standard_normal(layer.kernel_shape) * 0.05).astype(np.float32)
    y_shape = jax.eval_shape(lambda a, b: conv2d_nhwc(a, b, layer.strides, layer.padding, layer.dilation,
                                                      layer.groups), x, w).shape
    g = rng.standard_normal(y_shape).astype(np.float32)

    def fwd_and_input_grad(x, w, g):
        # the cotangent depends on the output (as a loss's does), so the forward cannot be dropped
        y, vjp = jax.vjp(lambda xx: conv2d_nhwc(xx, w, layer.strides, layer.padding, layer.dilation, layer.groups), x)
        return y, vjp(g + 1e-6 * y)[0]

    def loop(x, w, g):
        def body(_, carry):  # the input gradient feeds the next input: no step can be hoisted
            _, dx = fwd_and_input_grad(carry, w, g)
            return carry + 1e-6 * dx
        return lax.fori_loop(0, LOOP_STEPS, body, x)

    xj, wj, gj = jnp.asarray(x), jnp.asarray(w), jnp.asarray(g)
    once, looped = jax.jit(fwd_and_input_grad), jax.jit(loop)

    (pt, pb), (pl, pr) = layer.padding
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    xt_padded = torch.nn.functional.pad(xt, (pl, pr, pt, pb))  # (left, right, top, bottom): any asymmetric padding
    wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
    gt = torch.from_numpy(g.transpose(0, 3, 1, 2).copy())
    conv = dict(stride=layer.strides, dilation=layer.dilation, groups=layer.groups)

    def torch_once(xp=xt_padded):
        with torch.no_grad():
            y = torch.nn.functional.conv2d(xp, wt, **conv)
            return y, torch.nn.grad.conv2d_input(xp.shape, wt, gt + 1e-6 * y, **conv)

    def torch_loop():
        carry = xt_padded
        with torch.no_grad():
            for _ in range(LOOP_STEPS):
                _, dx = torch_once(carry)
                carry = carry + 1e-6 * dx
        return carry

    dx_torch = torch_once()[1].numpy().transpose(0, 2, 3, 1)
    dx_torch = dx_torch[:, pt:dx_torch.shape[1] - pb, pl:dx_torch.shape[2] - pr]
    dx_jax = np.asarray(once(xj, wj, gj)[1])
    error = float(np.abs(dx_jax - dx_torch).max() / np.abs(dx_torch).max())
    fns = {"jax": lambda: once(xj, wj, gj), "torch": torch_once,
           "jax loop": lambda: looped(xj, wj, gj), "torch loop": torch_loop}
    return fns, error


def measure(model: str, rounds: int, iters: int) -> dict:
    tracker = tracking.create(model)
    variables = load_weights(tracker, A.family_weights(model) or "random").variables
    frames, box0 = A.crossing_frames()
    crop = A.search_crop(tracker, variables, frames, box0)
    jaxpr = jax.make_jaxpr(lambda v, t, x: tracker.head(v, t, x))(variables, crop.template, crop.x).jaxpr
    layers = conv_layers(jaxpr)
    rng = np.random.default_rng(0)
    fns, errors = {}, {}
    for i, layer in enumerate(layers):
        per_layer, errors[i] = layer_fns(layer, rng)
        if errors[i] > 1e-4:
            raise AssertionError(f"{model} layer {i} ({layer.label()}): input gradient differs from PyTorch's by "
                                 f"{errors[i]:.2g} of the largest value")
        fns.update({(i, k): f for k, f in per_layer.items()})
    whole = A.crop_fns(tracker, variables, crop)
    twin, _ = A.torch_fns(model, tracker, variables, crop)
    if not twin:
        raise ValueError(f"{model}: no PyTorch twin in benchmarks/attack_speed.py")
    fns[("net", "jax")], fns[("net", "torch")] = whole["fwd_bwd"], twin["torch_fwd_bwd"]
    seconds = interleaved({repr(k): f for k, f in fns.items()}, rounds=rounds, iters=iters)
    ms = {k: seconds[repr(k)] * 1e3 for k in fns}
    return {"model": model, "layers": layers, "ms": ms}


def report(result: dict) -> list[str]:
    ms, layers = result["ms"], result["layers"]
    lines = [f"### {result['model']}", "",
             "| # | convolution (search branch) | fwd + input grad: JAX / PyTorch (ms) | ratio | 10-step loop: JAX / "
             "PyTorch (ms) | ratio |", "|---|---|---|---|---|---|"]
    for i, layer in enumerate(layers):
        a, b, la, lb = ms[(i, "jax")], ms[(i, "torch")], ms[(i, "jax loop")], ms[(i, "torch loop")]
        lines.append(f"| {i} | {layer.label()} | {a:.2f} / {b:.2f} | {a / b:.2f} | {la:.1f} / {lb:.1f} | "
                     f"{la / lb:.2f} |")
    sa = sum(ms[(i, "jax")] for i in range(len(layers)))
    sb = sum(ms[(i, "torch")] for i in range(len(layers)))
    na, nb = ms[("net", "jax")], ms[("net", "torch")]
    lines += [f"| Σ | all convolutions, each alone | {sa:.2f} / {sb:.2f} | {sa / sb:.2f} | | |",
              f"| net | whole forward+backward of the Dua-Loss | {na:.2f} / {nb:.2f} | {na / nb:.2f} | | |",
              f"| rest | net − Σ (pooling, BN, ReLU, head, loss; fusion) | {na - sa:.2f} / {nb - sb:.2f} | | | |", ""]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(FAMILIES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args(argv)
    for model in args.models.split(","):
        print("\n".join(report(measure(model, args.rounds, args.iters))), flush=True)


if __name__ == "__main__":
    runtime.configure(compile_cache=False)
    main()
