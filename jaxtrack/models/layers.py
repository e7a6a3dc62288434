"""Building blocks shared by the tracker models.

Everything here follows PyTorch semantics exactly (explicit paddings, ceil-mode pooling, eval-mode BatchNorm
with running statistics) so that converted pysot / video_analyst checkpoints reproduce the reference outputs.
Layout is NHWC throughout; convolution kernels are HWIO. Every convolution goes through :mod:`jaxtrack.models.conv`
(gradients that stay fast inside attack loops).

Naming: sub-modules carry the attribute names (or ``nn.Sequential`` indices as strings, ``'0'``, ``'1'``, ...)
of the PyTorch modules they mirror, so a parameter path is the PyTorch state-dict key split on ``'.'``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import flax.linen as nn
import jax

from .conv import SHIFT_ADD_MAX_TAPS, conv2d_nhwc, conv_general_dilated, depthwise_shift_add
from .pooling import max_pool_nhwc

__all__ = [
    "conv2d",
    "batch_norm",
    "BatchNorm2d",
    "batch_norm_inference_under",
    "path_under",
    "max_pool2d",
    "pool_output_size",
    "xcorr_depthwise",
    "ConvBN",
    "ConvBNReLU",
    "center_crop",
]


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


def conv2d(
    features: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    use_bias: bool = True,
    groups: int = 1,
    name: str | None = None,
) -> nn.Conv:
    """``torch.nn.Conv2d`` as a Linen ``nn.Conv`` with explicit symmetric padding (never 'SAME'), computed by
    :func:`jaxtrack.models.conv.conv_general_dilated` (same parameters and values as ``nn.Conv``'s default)."""
    kh, kw = _pair(kernel_size)
    ph, pw = _pair(padding)
    return nn.Conv(
        features=features,
        kernel_size=(kh, kw),
        strides=_pair(stride),
        padding=((ph, ph), (pw, pw)),
        kernel_dilation=_pair(dilation),
        feature_group_count=groups,
        use_bias=use_bias,
        conv_general_dilated=conv_general_dilated,
        name=name,
    )


class BatchNorm2d(nn.BatchNorm):
    """``nn.BatchNorm`` whose mode is set at construction (``train``: batch statistics, running averages updated)
    and may be overridden per call (``use_running_average``), which :func:`batch_norm_inference_under` does."""

    train: bool = False

    def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
        if use_running_average is None:
            use_running_average = not self.train
        return super().__call__(x, use_running_average, mask=mask)


def batch_norm(train: bool, name: str | None = None) -> BatchNorm2d:
    """``torch.nn.BatchNorm2d`` (momentum 0.1 in torch's convention = 0.9 in Flax's, eps 1e-5)."""
    return BatchNorm2d(train=train, momentum=0.9, epsilon=1e-5, name=name)


def path_under(path: str, prefix: str) -> bool:
    """Whether the ``a/b/c`` path ``path`` is ``prefix`` or lies under it (``basemodel`` covers
    ``basemodel/conv1/bn``, not ``basemodel2``)."""
    prefix = prefix.strip("/")
    return path == prefix or path.startswith(prefix + "/")


@contextlib.contextmanager
def batch_norm_inference_under(prefixes: Sequence[str]) -> Iterator[None]:
    """Inside this context (while a model is applied or traced), every BatchNorm whose module path
    (``a/b/c``, the parameter path without the leaf) is one of ``prefixes`` or lies under one normalises with its
    running statistics and leaves them unchanged, whatever ``train`` the model passes: PyTorch's ``.eval()`` on
    frozen sub-modules, as pysot does for the backbone layers it does not train. No prefixes: no effect."""
    prefixes = tuple(prefixes)
    if not prefixes:  # nothing to intercept: the model runs as written
        yield
        return

    def interceptor(next_fun, args, kwargs, context):
        if (context.method_name == "__call__" and isinstance(context.module, nn.BatchNorm)
                and any(path_under("/".join(context.module.path), p) for p in prefixes)):
            if len(args) > 1:
                args = (args[0], True, *args[2:])
            else:
                kwargs = {**kwargs, "use_running_average": True}
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        yield


def pool_output_size(n: int, kernel: int, stride: int, padding: int = 0, ceil_mode: bool = False) -> int:
    """Output length of ``torch.nn.MaxPool2d`` along one axis (PyTorch's ``pooling_output_shape``)."""
    span = n + 2 * padding - kernel
    if ceil_mode:
        out = -(-span // stride) + 1
        # PyTorch: the last window must start inside the input or the left padding.
        if (out - 1) * stride >= n + padding:
            out -= 1
    else:
        out = span // stride + 1
    return out


def max_pool2d(
    x: jax.Array,
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    ceil_mode: bool = False,
) -> jax.Array:
    """``torch.nn.MaxPool2d`` on an NHWC tensor, including ``ceil_mode`` (emulated by -inf high-side padding); its
    gradient is :mod:`jaxtrack.models.pooling`'s (PyTorch's, without XLA:CPU's slow ``select_and_scatter``)."""
    k = int(kernel_size)
    s = int(stride) if stride is not None else k
    p = int(padding)
    pads = []
    for n in x.shape[1:3]:
        out = pool_output_size(int(n), k, s, p, ceil_mode)
        pads.append((p, max(p, (out - 1) * s + k - n - p)))
    return max_pool_nhwc(x, k, s, pads)


def _xcorr_single(search: jax.Array, kernel: jax.Array) -> jax.Array:
    """search [H, W, C], kernel [h, w, C] -> [H-h+1, W-w+1, C]: correlation (no kernel flip), one group per channel
    (a depthwise kernel with more than SHIFT_ADD_MAX_TAPS taps: XLA's grouped convolution)."""
    return conv2d_nhwc(search[None], kernel[:, :, None, :], 1, "VALID", groups=search.shape[-1])[0]


def xcorr_depthwise(search: jax.Array, kernel: jax.Array) -> jax.Array:
    """Depthwise cross-correlation of pysot / video_analyst, per sample.

    search [B, H, W, C], kernel [B, h, w, C] -> [B, H-h+1, W-w+1, C]. Each sample's search map is correlated with
    its own template (channel c with channel c). A kernel with batch 1 is broadcast over the search batch.
    """
    if search.ndim != 4 or kernel.ndim != 4:
        raise ValueError(f"xcorr_depthwise expects NHWC tensors, got {search.shape} and {kernel.shape}")
    if search.shape[-1] != kernel.shape[-1]:
        raise ValueError(f"channel mismatch: search {search.shape} vs kernel {kernel.shape}")
    if kernel.shape[0] not in (1, search.shape[0]):
        raise ValueError(f"batch mismatch: search {search.shape} vs kernel {kernel.shape}")
    if kernel.shape[1] * kernel.shape[2] <= SHIFT_ADD_MAX_TAPS:
        # h·w shifted multiply-adds (XLA fuses them into one loop): far faster on XLA:CPU than the grouped
        # convolution for tracker-sized kernels, with the same result to float32 rounding; gradients are shift-adds
        # too (jaxtrack.models.conv; figures in docs/conv_gradients.md)
        return depthwise_shift_add(search, kernel)
    if kernel.shape[0] == search.shape[0]:
        return jax.vmap(_xcorr_single)(search, kernel)
    return jax.vmap(_xcorr_single, in_axes=(0, None))(search, kernel[0])


class ConvBN(nn.Module):
    """pysot's ``nn.Sequential(Conv2d, BatchNorm2d[, ReLU])``: children ``'0'`` (conv) and ``'1'`` (BN)."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    use_bias: bool = False
    relu: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = conv2d(
            self.features,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            use_bias=self.use_bias,
            name="0",
        )(x)
        x = batch_norm(train, name="1")(x)
        if self.relu:
            x = nn.relu(x)
        return x


class ConvBNReLU(nn.Module):
    """video_analyst's ``conv_bn_relu``: attributes ``conv`` (bias by default) and ``bn`` (if ``has_bn``)."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 0
    has_bn: bool = True
    has_relu: bool = True
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = conv2d(
            self.features,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            use_bias=self.use_bias,
            name="conv",
        )(x)
        if self.has_bn:
            x = batch_norm(train, name="bn")(x)
        if self.has_relu:
            x = nn.relu(x)
        return x


def center_crop(x: jax.Array, size: int) -> jax.Array:
    """Keep the central ``size`` x ``size`` window of an NHWC map (pysot's ``AdjustLayer`` rule, static shapes).

    As in pysot, the offset is computed from the width and used for both axes.
    """
    left = (x.shape[2] - size) // 2
    return x[:, left : left + size, left : left + size, :]

