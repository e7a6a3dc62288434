"""jaxtrack.models.conv: the convolution of every network, against JAX's differentiation of lax.conv_general_dilated.

Reference: ``jax.lax.conv_general_dilated`` (NHWC / HWIO, ``feature_group_count`` for grouped kernels) and its
autodiff; values, input gradients and kernel gradients, outside and inside ``lax.fori_loop`` / ``lax.scan`` (where
the parameters are loop-carried and XLA cannot constant-fold the kernel). One configuration per kind of convolution
the networks use.

Tolerances. The dense forward pass *is* ``lax.conv_general_dilated`` (same operation), so its values are compared
exactly. Gradients are computed by other convolutions (or shift-adds) than JAX's rule, i.e. the same float32 sums in
another order: each element is a sum of at most a few hundred products here, so the difference is a few float32
ulps of the largest terms. Measured on these shapes (jaxlib 0.10.2, CPU), as a fraction of the largest element: dense
gradients 0 outside a loop and at most 2.4e-7 inside one, depthwise values and gradients at most 4.2e-7. The tests
allow 5e-6 of the largest element (``_close``), ~10x the measurement and far below any real error (a wrong tap, pad
or flip changes gradients by O(1) of their scale).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtrack.models.conv import SHIFT_ADD_MAX_TAPS, conv2d_nhwc, conv_general_dilated, depthwise_shift_add
from jaxtrack.models.layers import xcorr_depthwise

DN = ("NHWC", "HWIO", "NHWC")
REL_TOL = 5e-6  # of the largest element; see the module docstring


def _close(got, want, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = float(np.max(np.abs(want))) or 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=REL_TOL * scale, err_msg=what)


def _lax(x, w, stride, padding, dilation=1, groups=1):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), padding, rhs_dilation=(dilation, dilation),
                                        dimension_numbers=DN, feature_group_count=groups,
                                        precision=jax.lax.Precision.HIGHEST)


def _ours(stride, padding, dilation=1, groups=1):
    return lambda x, w: conv2d_nhwc(x, w, stride, padding, dilation, groups)


def _ref(stride, padding, dilation=1, groups=1):
    return lambda x, w: _lax(x, w, stride, padding, dilation, groups)


def _loss(conv):
    """A non-linear scalar of the output, so the cotangent varies per element."""
    return lambda x, w: jnp.sum(jnp.sin(conv(x, w)))


def _operands(seed, n, h, w, cin, k, cout, groups=1):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, h, w, cin)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k, k, cin // groups, cout)) / k, jnp.float32)
    return x, kernel


# (id, input N x H x W x Cin, kernel k, Cout, stride, padding, dilation): every dense convolution of the networks
DENSE = [
    ("alexnet_conv1_11x11_s2_valid", (2, 23, 21, 3), 11, 8, 2, ((0, 0), (0, 0)), 1),
    ("alexnet_5x5_valid", (2, 11, 12, 4), 5, 6, 1, "VALID", 1),
    ("alexnet_head_3x3_valid", (2, 9, 8, 5), 3, 6, 1, ((0, 0), (0, 0)), 1),
    ("resnet_conv1_7x7_s2_valid", (2, 19, 20, 3), 7, 6, 2, ((0, 0), (0, 0)), 1),
    # large strided kernels take the space-to-depth input gradient: padded, uneven, rows no output reads
    ("strided_7x7_s2_pad_uneven", (2, 21, 18, 3), 7, 5, 2, ((3, 1), (2, 3)), 1),
    ("strided_5x5_s2_unread_rows", (1, 16, 15, 2), 5, 3, 2, ((0, 0), (1, 0)), 1),
    ("resnet_layer2_3x3_s2_pad0", (2, 15, 16, 4), 3, 6, 2, ((0, 0), (0, 0)), 1),
    ("resnet_3x3_pad1", (2, 10, 9, 4), 3, 6, 1, ((1, 1), (1, 1)), 1),
    ("resnet_layer3_3x3_dil2_pad2", (2, 12, 11, 4), 3, 6, 1, ((2, 2), (2, 2)), 2),
    ("resnet_layer4_3x3_dil4_pad4", (2, 13, 12, 4), 3, 6, 1, ((4, 4), (4, 4)), 4),
    ("resnet_1x1", (2, 7, 8, 6), 1, 5, 1, ((0, 0), (0, 0)), 1),
    ("neck_1x1_valid", (2, 7, 7, 6), 1, 4, 1, "VALID", 1),
    ("nanotrack_stem_3x3_s2_pad1", (2, 17, 16, 3), 3, 5, 2, ((1, 1), (1, 1)), 1),
    ("unet_3x3_s2_pad1_odd", (2, 15, 18, 5), 3, 7, 2, ((1, 1), (1, 1)), 1),
    ("unet_1x1_same", (2, 9, 7, 5), 1, 3, 1, "SAME", 1),
    ("same_3x3_s2", (2, 9, 10, 4), 3, 5, 2, "SAME", 1),
    ("asymmetric_5x5_s3", (2, 17, 14, 4), 5, 6, 3, ((2, 0), (1, 3)), 1),
    ("strided_1x1_s2", (2, 9, 8, 4), 1, 5, 2, "VALID", 1),
]


@pytest.mark.parametrize("shape, k, cout, stride, padding, dilation", [c[1:] for c in DENSE], ids=[c[0] for c in DENSE])
def test_dense_values_and_gradients_equal_lax(shape, k, cout, stride, padding, dilation):
    x, w = _operands(k * 7 + stride, *shape, k, cout)
    ours, ref = _ours(stride, padding, dilation), _ref(stride, padding, dilation)
    np.testing.assert_array_equal(ours(x, w), jax.lax.conv_general_dilated(
        x, w, (stride, stride), padding, rhs_dilation=(dilation, dilation), dimension_numbers=DN))
    got = jax.jit(jax.grad(_loss(ours), (0, 1)))(x, w)
    want = jax.jit(jax.grad(_loss(ref), (0, 1)))(x, w)
    _close(got[0], want[0], "input gradient")
    _close(got[1], want[1], "kernel gradient")


def _loop(conv, steps=3):
    """``steps`` gradient steps on input and kernel in a ``fori_loop`` (both loop-carried), returning the sum of
    the gradients seen: the attack / training setting the module is for."""

    def run(x, w):
        grad = jax.grad(_loss(conv), (0, 1))

        def body(i, c):
            x, w, sx, sw = c
            gx, gw = grad(x, w)
            return x + 1e-3 * gx, w - 1e-3 * gw, sx + gx, sw + gw

        _, _, sx, sw = jax.lax.fori_loop(0, steps, body, (x, w, jnp.zeros_like(x), jnp.zeros_like(w)))
        return sx, sw

    return jax.jit(run)


@pytest.mark.parametrize("shape, k, cout, stride, padding, dilation", [c[1:] for c in DENSE], ids=[c[0] for c in DENSE])
def test_dense_gradients_inside_fori_loop_equal_lax(shape, k, cout, stride, padding, dilation):
    x, w = _operands(k * 7 + stride, *shape, k, cout)
    got = _loop(_ours(stride, padding, dilation))(x, w)
    want = _loop(_ref(stride, padding, dilation))(x, w)
    _close(got[0], want[0], "input gradients")
    _close(got[1], want[1], "kernel gradients")


# (id, input, kernel k, stride, padding, dilation): every depthwise convolution (NanoTrack's MobileNetV3 and BAN
# towers; the v3 head's 2x2) and a dilated one
DEPTHWISE = [
    ("mobilenet_3x3_s2_pad1", (2, 17, 16, 6), 3, 2, ((1, 1), (1, 1)), 1),
    ("mobilenet_5x5_s2_pad2", (2, 15, 16, 6), 5, 2, ((2, 2), (2, 2)), 1),
    ("mobilenet_5x5_pad2", (2, 9, 10, 6), 5, 1, ((2, 2), (2, 2)), 1),
    ("ban_tower_3x3_pad1", (2, 8, 8, 6), 3, 1, ((1, 1), (1, 1)), 1),
    ("ban_v3_2x2_valid", (2, 9, 9, 6), 2, 1, "VALID", 1),
    ("dilated_3x3_dil2", (2, 12, 11, 6), 3, 1, ((2, 2), (2, 2)), 2),
    ("asymmetric_3x3_s2", (2, 13, 12, 6), 3, 2, ((0, 1), (2, 0)), 1),
]


@pytest.mark.parametrize("shape, k, stride, padding, dilation", [c[1:] for c in DEPTHWISE],
                         ids=[c[0] for c in DEPTHWISE])
def test_depthwise_values_and_gradients_equal_grouped_lax(shape, k, stride, padding, dilation):
    c = shape[-1]
    x, w = _operands(k + stride, *shape, k, c, groups=c)
    ours, ref = _ours(stride, padding, dilation, c), _ref(stride, padding, dilation, c)
    _close(jax.jit(ours)(x, w), ref(x, w), "values")
    got = jax.jit(jax.grad(_loss(ours), (0, 1)))(x, w)
    want = jax.jit(jax.grad(_loss(ref), (0, 1)))(x, w)
    _close(got[0], want[0], "input gradient")
    _close(got[1], want[1], "kernel gradient")
    got = _loop(ours)(x, w)
    want = _loop(ref)(x, w)
    _close(got[0], want[0], "input gradients in a loop")
    _close(got[1], want[1], "kernel gradients in a loop")


@pytest.mark.parametrize("template_batch", [3, 1], ids=["per_sample", "broadcast"])
def test_depthwise_xcorr_matches_per_sample_grouped_lax_in_a_scan(template_batch):
    """The trackers' depthwise cross-correlation (per-sample template kernels, or one broadcast over the batch):
    values and gradients w.r.t. search and template maps equal a per-sample grouped lax convolution, also as the
    body of a ``lax.scan``."""
    rng = np.random.default_rng(template_batch)
    search = jnp.asarray(rng.normal(size=(3, 11, 12, 5)), jnp.float32)
    template = jnp.asarray(rng.normal(size=(template_batch, 4, 4, 5)), jnp.float32)

    def reference(s, t):
        one = lambda si, ti: _lax(si[None], ti[:, :, None, :], 1, "VALID", groups=si.shape[-1])[0]  # noqa: E731
        return jax.vmap(one, in_axes=(0, 0 if t.shape[0] > 1 else None))(s, t if t.shape[0] > 1 else t[0])

    _close(jax.jit(xcorr_depthwise)(search, template), reference(search, template), "values")

    def scanned(f):
        grad = jax.grad(lambda s, t: jnp.sum(jnp.sin(f(s, t))), (0, 1))

        def step(c, _):
            s, t = c
            gs, gt = grad(s, t)
            return (s + 1e-3 * gs, t - 1e-3 * gt), (gs, gt)

        return jax.jit(lambda s, t: jax.lax.scan(step, (s, t), None, length=3)[1])

    got = scanned(xcorr_depthwise)(search, template)
    want = scanned(reference)(search, template)
    assert got[1].shape == (3, *template.shape)
    _close(got[0], want[0], "search gradients")
    _close(got[1], want[1], "template gradients")


def test_depthwise_shift_add_broadcasts_a_shared_kernel():
    """A kernel without batch axis ([kh, kw, C]) is one depthwise convolution for every sample."""
    x, w = _operands(0, 2, 9, 8, 4, 3, 4, groups=4)
    _close(depthwise_shift_add(x, w[:, :, 0, :], 1, ((1, 1), (1, 1))), _lax(x, w, 1, ((1, 1), (1, 1)), groups=4))


@pytest.mark.parametrize("groups, k", [(2, 3), (6, 9)], ids=["grouped", "depthwise_9x9"])
def test_other_grouped_convolutions_are_lax_with_its_own_gradient(groups, k):
    """Grouped (not depthwise) kernels and depthwise kernels above SHIFT_ADD_MAX_TAPS are XLA's convolution with
    JAX's gradient (the explicit-layout input gradient was slower there): results equal lax's bit for bit."""
    assert k * k > SHIFT_ADD_MAX_TAPS or groups != 6
    x, w = _operands(1, 2, 13, 12, 6, k, 6, groups=groups)

    def plain(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN,
                                            feature_group_count=groups)

    ours = _ours(1, ((1, 1), (1, 1)), 1, groups)
    np.testing.assert_array_equal(ours(x, w), plain(x, w))
    for a, b in zip(jax.grad(_loss(ours), (0, 1))(x, w), jax.grad(_loss(plain), (0, 1))(x, w)):
        np.testing.assert_array_equal(a, b)


def _conv_layouts(fn, *args):
    """(lhs_spec, rhs_spec, out_spec) of every convolution in the jaxpr of ``fn(*args)``, sub-jaxprs included."""
    found = []

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                dn = eqn.params["dimension_numbers"]
                found.append((tuple(dn.lhs_spec), tuple(dn.rhs_spec), tuple(dn.out_spec)))
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                visit(sub)

    visit(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def test_gradients_only_use_standard_layout_convolutions():
    """What makes the gradients loop-friendly: every convolution of the forward + backward pass is NHWC x HWIO ->
    NHWC (JAX's own rules are not, which the check must see)."""
    x, w = _operands(0, 2, 15, 16, 4, 3, 6)
    standard = ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    grad = jax.grad(_loss(_ours(2, ((0, 0), (0, 0)), 1)), (0, 1))
    layouts = _conv_layouts(grad, x, w)
    assert len(layouts) == 3 and set(layouts) == {standard}
    reference = _conv_layouts(jax.grad(_loss(_ref(2, ((0, 0), (0, 0)), 1)), (0, 1)), x, w)
    assert any(layout != standard for layout in reference)


def test_nn_conv_with_our_convolution_keeps_parameters_and_values():
    """``nn.Conv(conv_general_dilated=...)`` (how every network uses it): same parameter tree and outputs as the
    default ``nn.Conv``, gradients w.r.t. input and parameters equal within float tolerance."""
    kw = dict(features=5, kernel_size=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), kernel_dilation=(1, 1))
    ours, plain = nn.Conv(**kw, conv_general_dilated=conv_general_dilated), nn.Conv(**kw)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 11, 10, 4)), jnp.float32)
    variables = plain.init(jax.random.key(0), x)
    assert jax.tree_util.tree_structure(ours.init(jax.random.key(0), x)) == jax.tree_util.tree_structure(variables)
    np.testing.assert_array_equal(ours.apply(variables, x), plain.apply(variables, x))
    loss = lambda m: lambda v, x: jnp.sum(jnp.sin(m.apply(v, x)))  # noqa: E731
    got = jax.grad(loss(ours), (0, 1))(variables, x)
    want = jax.grad(loss(plain), (0, 1))(variables, x)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        _close(a, b)


def test_transposed_and_other_layout_convolutions_fall_back_to_lax():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(1, 4, 9, 9)), jnp.float32)  # NCHW
    w = jnp.asarray(rng.normal(size=(3, 4, 3, 3)), jnp.float32)  # OIHW
    nchw = ("NCHW", "OIHW", "NCHW")
    np.testing.assert_array_equal(conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=nchw),
                                  jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=nchw))
    xh = jnp.transpose(x, (0, 2, 3, 1))
    wh = jnp.transpose(w, (2, 3, 1, 0))
    np.testing.assert_array_equal(
        conv_general_dilated(xh, wh, (1, 1), ((1, 1), (1, 1)), lhs_dilation=(2, 2), dimension_numbers=DN),
        jax.lax.conv_general_dilated(xh, wh, (1, 1), ((1, 1), (1, 1)), lhs_dilation=(2, 2), dimension_numbers=DN))


def test_conv2d_nhwc_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="conv2d_nhwc expects"):
        conv2d_nhwc(jnp.zeros((1, 5, 5, 4)), jnp.zeros((3, 3, 3, 2)))
    with pytest.raises(ValueError, match="conv2d_nhwc expects"):
        conv2d_nhwc(jnp.zeros((1, 5, 5, 4)), jnp.zeros((3, 3, 2, 3)), groups=2)
