"""Model definitions: shapes, parameter-tree mirroring of the PyTorch references, numerical equivalence.

The PyTorch twins (jaxtrack/testing/torch_twins.py) restate pysot / video_analyst with their exact attribute names; their
state dicts are converted by a generic renaming (below) and must fit the Flax trees exactly.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxtrack.testing import torch_twins as tt  # noqa: E402
from jaxtrack.testing.torch_twins import torch_to_flax  # noqa: E402

from jaxtrack.models import (  # noqa: E402
    AlexNetBN,
    SiamFCppAlexNet,
    SiamRPNAlex,
    SiamRPNPP,
    densebox_centers,
    init_variables,
    max_pool2d,
    xcorr_depthwise,
)
from jaxtrack.models.layers import pool_output_size  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


# ---------------------------------------------------------------------------------------------------- helpers


def tree_signature(tree) -> dict:
    return {jax.tree_util.keystr(k): tuple(v.shape) for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def assert_mirrors(model, z_size, x_size, twin) -> dict:
    """Converted twin variables have exactly the paths and shapes of the Flax init tree."""
    converted = torch_to_flax(twin.state_dict())
    abstract = jax.eval_shape(lambda: init_variables(model, jax.random.key(0), z_size, x_size))
    want, got = tree_signature(abstract), tree_signature(converted)
    assert set(want) == set(got), (sorted(set(want) - set(got))[:10], sorted(set(got) - set(want))[:10])
    bad = {k: (want[k], got[k]) for k in want if want[k] != got[k]}
    assert not bad, bad
    return converted


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def to_nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().transpose(0, 2, 3, 1)


def assert_close(got, want, rtol=1e-4, name=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    scale = max(float(np.abs(want).max()), 1e-6)
    err = float(np.abs(got - want).max())
    assert err <= rtol * scale, f"{name}: max abs diff {err:.3g} vs scale {scale:.3g}"


def images(rng, b, size):
    return rng.uniform(0.0, 255.0, size=(b, size, size, 3)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- layers


@pytest.mark.parametrize(
    "n,k,s,p,ceil",
    [(18, 3, 2, 0, True), (18, 3, 2, 0, False), (60, 3, 2, 0, True), (19, 3, 2, 0, True), (16, 3, 2, 1, True),
     (17, 3, 2, 1, False), (31, 3, 2, 1, False), (10, 2, 3, 1, True)],
)
def test_max_pool2d_matches_torch(n, k, s, p, ceil):
    x = np.random.default_rng(n).normal(size=(2, n, n + 1, 3)).astype(np.float32)
    want = torch.nn.MaxPool2d(k, s, p, ceil_mode=ceil)(nchw(x))
    got = max_pool2d(jnp.asarray(x), k, s, p, ceil_mode=ceil)
    np.testing.assert_array_equal(np.asarray(got), to_nhwc(want))
    assert got.shape[1] == pool_output_size(n, k, s, p, ceil)


@pytest.mark.parametrize("n,k,s,p,ceil", [(18, 3, 2, 0, True), (19, 3, 2, 1, False), (10, 2, 3, 1, True),
                                         (9, 3, 1, 1, False)])
def test_max_pool2d_gradient_matches_torch_with_ties_inside_and_outside_loops(n, k, s, p, ceil):
    """The custom VJP (jaxtrack.models.pooling) against PyTorch's max_pool2d backward: each window's cotangent to
    its first maximum in row-major order, overlapping windows adding. Inputs with many ties (ReLU-like: small
    integers clipped at 0) and integer cotangents, so every sum is exact: bit-equal. The same gradient as the body
    of a lax.fori_loop, and, on ties-free normal inputs, equal to JAX's own select_and_scatter rule (float32
    rounding of the overlap sums: 1e-6)."""
    from jax import lax

    rng = np.random.default_rng(n)
    x = np.maximum(rng.integers(-2, 3, size=(2, n, n + 1, 3)), 0).astype(np.float32)
    xt = nchw(x).requires_grad_(True)
    yt = torch.nn.MaxPool2d(k, s, p, ceil_mode=ceil)(xt)
    g = np.round(rng.uniform(-4, 4, size=to_nhwc(yt.detach()).shape)).astype(np.float32)
    (want,) = torch.autograd.grad(yt, xt, nchw(g))

    def grad(x, g):
        return jax.vjp(lambda a: max_pool2d(a, k, s, p, ceil_mode=ceil), x)[1](g)[0]

    np.testing.assert_array_equal(np.asarray(jax.jit(grad)(x, g)), to_nhwc(want))
    looped = jax.jit(lambda x, g: lax.fori_loop(0, 2, lambda i, acc: acc + grad(x, g), jnp.zeros_like(x)))
    np.testing.assert_array_equal(np.asarray(looped(x, g)), 2 * to_nhwc(want))
    xn = rng.normal(size=x.shape).astype(np.float32)
    pads = [(0, 0)] + [(p, max(p, (pool_output_size(m, k, s, p, ceil) - 1) * s + k - m - p)) for m in (n, n + 1)]
    pads.append((0, 0))
    xla = jax.vjp(lambda a: lax.reduce_window(a, -jnp.inf, lax.max, (1, k, k, 1), (1, s, s, 1), pads), xn)[1]
    np.testing.assert_allclose(np.asarray(grad(xn, g)), np.asarray(xla(g)[0]), rtol=1e-6, atol=1e-6)


def test_ceil_mode_triggers():
    # 18 -> 9 with ceil, 8 without (the case the emulation exists for).
    x = jnp.ones((1, 18, 18, 1))
    assert max_pool2d(x, 3, 2, ceil_mode=True).shape[1:3] == (9, 9)
    assert max_pool2d(x, 3, 2, ceil_mode=False).shape[1:3] == (8, 8)


@pytest.mark.parametrize("kh, kw", [(4, 3), (9, 9)])  # shift-add path and grouped-conv path (> 64 taps)
def test_xcorr_depthwise_matches_torch(kh, kw):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 13, 11, 5)).astype(np.float32)
    k = rng.normal(size=(3, kh, kw, 5)).astype(np.float32)
    want = to_nhwc(tt.xcorr_depthwise(nchw(x), nchw(k)))
    got = xcorr_depthwise(jnp.asarray(x), jnp.asarray(k))
    assert got.shape == (3, 14 - kh, 12 - kw, 5)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=1e-5)
    # one template broadcast over a batch of searches
    got1 = xcorr_depthwise(jnp.asarray(x), jnp.asarray(k[:1]))
    want1 = to_nhwc(tt.xcorr_depthwise(nchw(x), nchw(np.repeat(k[:1], 3, 0))))
    np.testing.assert_allclose(np.asarray(got1), want1, atol=1e-5, rtol=1e-5)
    # a true correlation: an impulse kernel picks the shifted search value (no flip)
    imp = np.zeros((1, 3, 3, 5), np.float32)
    imp[0, 0, 2] = 1.0
    out = xcorr_depthwise(jnp.asarray(x[:1]), jnp.asarray(imp))
    np.testing.assert_allclose(np.asarray(out)[0], x[0, 0:11, 2:11], atol=1e-6)


def test_densebox_centers():
    c = np.asarray(densebox_centers(17, 303, 8))
    assert c.shape == (17, 17, 2)
    assert c[0, 0].tolist() == [87.0, 87.0]
    # (row i, col j) -> (x = 87 + 8 j, y = 87 + 8 i)
    assert c[2, 5].tolist() == [87.0 + 40.0, 87.0 + 16.0]


# ---------------------------------------------------------------------------------------------------- shapes


def _shapes(model, z_size, x_size, b=2):
    variables = jax.eval_shape(lambda: init_variables(model, jax.random.key(0), z_size, x_size))
    z = jax.ShapeDtypeStruct((b, z_size, z_size, 3), jnp.float32)
    x = jax.ShapeDtypeStruct((b, x_size, x_size, 3), jnp.float32)
    zf = jax.eval_shape(lambda v, z: model.apply(v, z, method=model.template), variables, z)
    out = jax.eval_shape(lambda v, zf, x: model.apply(v, zf, x, method=model.track), variables, zf, x)
    out2 = jax.eval_shape(lambda v, z, x: model.apply(v, z, x), variables, z, x)
    assert jax.tree.map(lambda a: a.shape, out) == jax.tree.map(lambda a: a.shape, out2)
    return jax.tree.map(lambda a: a.shape, zf), jax.tree.map(lambda a: a.shape, out)


def test_shapes_siamfcpp():
    zf, out = _shapes(SiamFCppAlexNet(), 127, 303)
    assert zf == ((2, 4, 4, 256), (2, 4, 4, 256))
    assert out == {"cls": (2, 17, 17), "ctr": (2, 17, 17), "box": (2, 17, 17, 4)}


@pytest.mark.parametrize("weighted", [True, False])
def test_shapes_siamrpnpp(weighted):
    zf, out = _shapes(SiamRPNPP(weighted=weighted), 127, 255)
    assert zf == ((2, 7, 7, 256),) * 3
    assert out == {"cls": (2, 25, 25, 10), "loc": (2, 25, 25, 20)}


def test_shapes_siamrpn_alex():
    zf, out = _shapes(SiamRPNAlex(), 127, 287)
    assert zf == (2, 6, 6, 256)
    assert out == {"cls": (2, 21, 21, 10), "loc": (2, 21, 21, 20)}


# ---------------------------------------------------------------------------------------------------- trees


def test_tree_mirrors_siamfcpp_schema():
    twin = tt.siamfcpp_alexnet()
    conv = assert_mirrors(SiamFCppAlexNet(), 127, 303, twin)
    p = conv["params"]
    assert p["head"]["si"].shape == () and p["head"]["bi"].shape == ()
    assert "bn" not in p["head"]["cls_p5_conv1"] and "bn" in p["head"]["cls_p5_conv3"]
    assert p["head"]["bbox_offsets_p5"]["bn"]["scale"].shape == (4,)


@pytest.mark.parametrize("weighted", [True, False])
def test_tree_mirrors_siamrpnpp_schema(weighted):
    twin = tt.siamrpn_r50_l234(weighted)
    keys = twin.state_dict().keys()
    assert ("rpn_head.cls_weight" in keys) == weighted
    for k, shape in [
        ("backbone.layer2.0.downsample.0.weight", (512, 256, 3, 3)),
        ("backbone.layer3.0.downsample.0.weight", (1024, 512, 3, 3)),
        ("backbone.layer4.0.downsample.0.weight", (2048, 1024, 3, 3)),
        ("neck.downsample4.downsample.0.weight", (256, 2048, 1, 1)),
        ("rpn_head.rpn2.cls.head.3.bias", (10,)),
        ("rpn_head.rpn4.loc.head.3.weight", (20, 256, 1, 1)),
    ]:
        assert tuple(twin.state_dict()[k].shape) == shape, k
    conv = assert_mirrors(SiamRPNPP(weighted=weighted), 127, 255, twin)
    assert conv["params"]["backbone"]["layer2"]["0"]["downsample"]["0"]["kernel"].shape == (3, 3, 256, 512)


def test_tree_mirrors_siamrpn_alex_schema():
    twin = tt.siamrpn_alex()
    assert "backbone.features.14.bias" in twin.state_dict()
    assert_mirrors(SiamRPNAlex(), 127, 287, twin)


# ---------------------------------------------------------------------------------------------------- numerics


def test_alexnet_bn_matches_torch_at_ceil_size():
    # 129: conv1 -> 60, ceil pool -> 30 (floor would give 29); conv2 -> 26, ceil pool -> 13 (floor 12).
    twin = tt.AlexNetBN()
    rng = np.random.default_rng(1)
    x = images(rng, 2, 129)
    tt.randomize_(twin, lambda m: m(nchw(x)), seed=1)
    variables = torch_to_flax(twin.state_dict())
    got = AlexNetBN().apply(variables, jnp.asarray(x))
    with torch.no_grad():
        want = to_nhwc(twin(nchw(x)))
    assert want.shape == (2, 7, 7, 256)
    assert_close(got, want, name="alexnet_bn@129")


def test_siamfcpp_matches_torch():
    rng = np.random.default_rng(2)
    z, x = images(rng, 2, 127), images(rng, 2, 303)
    twin = tt.siamfcpp_alexnet()
    tt.randomize_(twin, lambda m: m(nchw(z), nchw(x)), seed=2)
    model = SiamFCppAlexNet()
    variables = assert_mirrors(model, 127, 303, twin)
    with torch.no_grad():
        zf_t = twin.feature(nchw(z))
        cls_t, ctr_t, box_t = twin.track(nchw(x), *zf_t)

    zf = jax.jit(lambda v, z: model.apply(v, z, method=model.template))(variables, jnp.asarray(z))
    for a, b, n in zip(zf, zf_t, ("c_z_k", "r_z_k")):
        assert_close(a, to_nhwc(b), name=n)
    out = jax.jit(lambda v, zf, x: model.apply(v, zf, x, method=model.track))(variables, zf, jnp.asarray(x))
    assert_close(out["cls"], cls_t.numpy().reshape(2, 17, 17), name="cls")
    assert_close(out["ctr"], ctr_t.numpy().reshape(2, 17, 17), name="ctr")
    assert_close(out["box"], box_t.numpy().reshape(2, 17, 17, 4), name="box")
    # __call__ = track(template(z), x)
    out2 = model.apply(variables, jnp.asarray(z), jnp.asarray(x))
    assert_close(out2["box"], out["box"], rtol=1e-5, name="call")


def test_siamrpn_alex_matches_torch():
    rng = np.random.default_rng(3)
    z, x = images(rng, 2, 127), images(rng, 2, 287)
    twin = tt.siamrpn_alex()
    tt.randomize_(twin, lambda m: m(nchw(z), nchw(x)), seed=3)
    model = SiamRPNAlex()
    variables = assert_mirrors(model, 127, 287, twin)
    with torch.no_grad():
        zf_t = twin.template(nchw(z))
        out_t = twin.track(nchw(x))
    zf = model.apply(variables, jnp.asarray(z), method=model.template)
    assert_close(zf, to_nhwc(zf_t), name="zf")
    out = jax.jit(lambda v, zf, x: model.apply(v, zf, x, method=model.track))(variables, zf, jnp.asarray(x))
    assert_close(out["cls"], to_nhwc(out_t["cls"]), name="cls")
    assert_close(out["loc"], to_nhwc(out_t["loc"]), name="loc")


@pytest.mark.slow
def test_siamrpnpp_matches_torch_full_size():
    """Full ResNet-50 at 127 / 255 (template maps take the 7x7 centre-crop branch, search maps do not)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(4)
    z, x = images(rng, 1, 127), images(rng, 1, 255)
    twin = tt.siamrpn_r50_l234(weighted=True)
    tt.randomize_(twin, lambda m: m(nchw(z), nchw(x)), seed=4)
    model = SiamRPNPP(weighted=True)
    variables = assert_mirrors(model, 127, 255, twin)
    with torch.no_grad():
        zf_t = twin.template(nchw(z))
        out_t = twin.track(nchw(x))
    zf = jax.jit(lambda v, z: model.apply(v, z, method=model.template))(variables, jnp.asarray(z))
    for i, (a, b) in enumerate(zip(zf, zf_t)):
        assert a.shape == (1, 7, 7, 256)
        assert_close(a, to_nhwc(b), name=f"zf{i + 2}")
    out = jax.jit(lambda v, zf, x: model.apply(v, zf, x, method=model.track))(variables, zf, jnp.asarray(x))
    assert_close(out["cls"], to_nhwc(out_t["cls"]), name="cls")
    assert_close(out["loc"], to_nhwc(out_t["loc"]), name="loc")
    assert time.perf_counter() - t0 < 120


@pytest.mark.parametrize("weighted", [True, False])
def test_neck_and_multirpn_match_torch_small(weighted):
    """AdjustAllLayer (incl. the 7x7 centre crop of narrow maps) + MultiRPN fusion, with few channels."""
    import flax.linen as nn

    from jaxtrack.models import AdjustAllLayer, MultiRPN

    cin, c = (16, 24, 32), 8

    class NeckHead(nn.Module):
        @nn.compact
        def __call__(self, zs, xs):
            neck = AdjustAllLayer((c, c, c), name="neck")
            head = MultiRPN(5, (c, c, c), weighted, name="rpn_head")
            zf = neck(zs)
            return zf, head(zf, neck(xs))

    class TwinNeckHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.neck = tt.AdjustAllLayer(list(cin), [c, c, c])
            self.rpn_head = tt.MultiRPN(5, [c, c, c], weighted)

        def forward(self, zs, xs):
            zf = self.neck(zs)
            return zf, self.rpn_head(zf, self.neck(xs))

    rng = np.random.default_rng(5)
    zs = [rng.normal(size=(2, 15, 15, n)).astype(np.float32) for n in cin]
    xs = [rng.normal(size=(2, 31, 31, n)).astype(np.float32) for n in cin]
    twin = TwinNeckHead()
    tt.randomize_(twin, lambda m: m([nchw(a) for a in zs], [nchw(a) for a in xs]), seed=5)
    variables = torch_to_flax(twin.state_dict())
    abstract = jax.eval_shape(NeckHead().init, jax.random.key(0), zs, xs)
    assert tree_signature(abstract) == tree_signature(variables)
    with torch.no_grad():
        zf_t, (cls_t, loc_t) = twin([nchw(a) for a in zs], [nchw(a) for a in xs])
    zf, (cls, loc) = NeckHead().apply(variables, zs, xs)
    for a, b in zip(zf, zf_t):
        assert a.shape == (2, 7, 7, c)
        assert_close(a, to_nhwc(b), name="zf")
    assert cls.shape == (2, 25, 25, 10) and loc.shape == (2, 25, 25, 20)
    assert_close(cls, to_nhwc(cls_t), name="cls")
    assert_close(loc, to_nhwc(loc_t), name="loc")


def test_alexnet_bn_train_mode_matches_torch():
    """Train-mode BN: batch statistics for the output and torch-style (momentum 0.1) running-mean update."""
    twin = tt.AlexNetBN()
    rng = np.random.default_rng(6)
    x = images(rng, 4, 127)
    tt.randomize_(twin, lambda m: m(nchw(x)), seed=6)
    variables = torch_to_flax(twin.state_dict())
    out, updates = AlexNetBN().apply(variables, jnp.asarray(x), train=True, mutable=["batch_stats"])
    twin.train()
    with torch.no_grad():
        want = to_nhwc(twin(nchw(x)))
    twin.eval()
    assert_close(out, want, name="train-mode output")
    new = torch_to_flax(twin.state_dict())["batch_stats"]
    for name in ("conv1", "conv5"):
        assert_close(updates["batch_stats"][name]["bn"]["mean"], new[name]["bn"]["mean"], name=f"{name} mean")


# ---------------------------------------------------------------------------------------------------- twins for
# the attack-speed benchmark: siamfcpp_tiny, Flax -> torch weights, dense predictions and the Dua-Loss


def test_siamfcpp_tiny_matches_torch():
    """``siamfcpp_alexnet(width_mult=0.25)`` is the ``siamfcpp_tiny`` network (quarter widths, 255 search crop)."""
    rng = np.random.default_rng(7)
    z, x = images(rng, 2, 127), images(rng, 2, 255)
    twin = tt.siamfcpp_alexnet(width_mult=0.25)
    tt.randomize_(twin, lambda m: m(nchw(z), nchw(x)), seed=7)
    model = SiamFCppAlexNet(width_mult=0.25)
    variables = assert_mirrors(model, 127, 255, twin)
    with torch.no_grad():
        cls_t, ctr_t, box_t = twin(nchw(z), nchw(x))
    out = jax.jit(model.apply)(variables, jnp.asarray(z), jnp.asarray(x))
    assert out["box"].shape == (2, 11, 11, 4)
    assert_close(out["cls"], cls_t.numpy().reshape(2, 11, 11), name="cls")
    assert_close(out["ctr"], ctr_t.numpy().reshape(2, 11, 11), name="ctr")
    assert_close(out["box"], box_t.numpy().reshape(2, 11, 11, 4), name="box")


@pytest.mark.parametrize("build", [lambda: tt.siamfcpp_alexnet(0.25), tt.siamrpn_alex])
def test_load_flax_variables_inverts_torch_to_flax(build):
    src = tt.randomize_(build(), seed=8)
    variables = torch_to_flax(src.state_dict())
    dst = tt.load_flax_variables_(build(), variables)
    for key, value in src.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(dst.state_dict()[key].numpy(), value.numpy(), err_msg=key)


def _twin_dua(name, twin, tracker, z, x, ref, clean_boxes):
    """Dua-Loss and its gradient w.r.t. the search crop, on the twin (as benchmarks/attack_speed.py runs it)."""
    xt = nchw(x[None]).requires_grad_(True)
    with torch.no_grad():
        zf = twin.feature(nchw(z[None])) if name.startswith("siamfcpp") else twin.template(nchw(z[None]))
    if name.startswith("siamfcpp"):
        scores, boxes = tt.siamfcpp_dense(*twin.track(xt, *zf), tracker.config.instance_size)
    else:
        out = twin.track(xt)
        scores, boxes = tt.siamrpn_dense(out["cls"], out["loc"], tracker.anchors)
    loss = tt.dua_loss(scores, boxes, torch.from_numpy(np.asarray(ref)), torch.from_numpy(np.asarray(clean_boxes)))
    (grad,) = torch.autograd.grad(loss, xt)
    return float(loss), to_nhwc(grad)[0], scores.detach().numpy(), boxes.detach().numpy()


@pytest.mark.parametrize("name,build", [("siamfcpp_tiny", lambda: tt.siamfcpp_alexnet(0.25)),
                                        ("siamrpn_alex", tt.siamrpn_alex)])
def test_torch_dua_loss_matches_jax(name, build):
    """The twin's dense decoding and Dua-Loss equal the tracker's ``dense_predictions`` + ``attacks.dua_loss``
    (value and gradient w.r.t. the search crop), labels from the clean prediction of a perturbed crop."""
    from jaxtrack import attacks, tracking

    tracker = tracking.create(name)
    c = tracker.config
    rng = np.random.default_rng(9)
    z, x = images(rng, 1, c.exemplar_size)[0], images(rng, 1, c.instance_size)[0]
    twin = tt.randomize_(build(), lambda m: m(nchw(z[None]), nchw(x[None])), seed=9)
    variables = torch_to_flax(twin.state_dict())

    @jax.jit  # one program (op by op, every layer compiles its own)
    def embed_and_predict(variables, z, x):
        template = tracker.embed_template(variables, z)
        return template, tuple(a[0] for a in tracker.dense_predictions(tracker.head(variables, template, x)))

    template, clean = embed_and_predict(variables, jnp.asarray(z), jnp.asarray(x))
    ref = attacks.best_box(*clean)
    x_adv = np.clip(x + rng.uniform(-8, 8, x.shape), 0, 255).astype(np.float32)

    def loss(xx):
        s, b = tracker.dense_predictions(tracker.head(variables, template, xx))
        return attacks.dua_loss(s[0], b[0], ref, clean)

    value, grad = jax.jit(jax.value_and_grad(loss))(jnp.asarray(x_adv))
    t_value, t_grad, t_scores, t_boxes = _twin_dua(name, twin, tracker, z, x_adv, ref, clean[1])
    _, (s, b) = embed_and_predict(variables, jnp.asarray(z), jnp.asarray(x_adv))
    assert_close(t_scores, s, name="scores")
    assert_close(t_boxes, b, name="boxes")
    np.testing.assert_allclose(t_value, float(value), rtol=1e-4)
    assert_close(t_grad, grad, rtol=1e-3, name="grad")
