"""DuaLossDef U-Net and the plug-and-play ``defended(...)`` wrapper: shapes, identity at init, the same tracker
interface, gradients through the defense (adaptive attacks), checkpoints."""

from __future__ import annotations

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtrack import attacks, defense, tracking, weights
from jaxtrack.defense import DefendedTracker, apply_defense, defended
from jaxtrack.models.unet import DefenseUNet, pad_amounts, pad_to_multiple, unet_hparams

TINY = {"depth": 2, "width": 4, "groups": 2}


def _noisy_unet(unet: DefenseUNet, key=0, scale=0.05):
    """Variables of ``unet`` with a random, small, non-zero output layer (a non-identity defense)."""
    variables = unet.init_variables(jax.random.key(key))
    params = dict(variables["params"])
    rng = np.random.default_rng(key + 100)
    params["out"] = {k: jnp.asarray(scale * rng.normal(size=v.shape), jnp.float32) for k, v in params["out"].items()}
    return {"params": params}


def _frames(n=6, h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    frames = []
    for t in range(n):  # a bright square moving right over a noisy background
        f = base.copy()
        f[40:70, 30 + 4 * t : 60 + 4 * t] = (200, 220, 40)
        frames.append(f)
    return np.stack(frames)


# ------------------------------------------------------------------------------------------------ U-Net


SIZES = (127, 255, 287, 303, 33, (41, 58), (20, 9))


@pytest.mark.parametrize(
    "kw, size",
    [
        (TINY, 127),
        ({"depth": 3, "width": 4, "groups": 2, "down": "pool", "up": "transpose", "norm": "none", "pad_mode": "edge"}, 45),
        ({"depth": 1, "width": 3, "groups": 8, "activation": "silu", "pad_mode": "symmetric"}, (20, 9)),
    ],
)
def test_unet_keeps_the_crop_shape_and_pixel_range(kw, size):
    unet = DefenseUNet(zero_init_last=False, **kw)
    variables = unet.init_variables(jax.random.key(0))
    for s in SIZES:  # shapes of every crop size the trackers use, and odd ones (traced, not compiled)
        hw = (s, s) if isinstance(s, int) else s
        out = jax.eval_shape(unet.apply, variables, jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32))
        assert out.shape == (2, *hw, 3) and out.dtype == jnp.float32
    hw = (size, size) if isinstance(size, int) else size
    x = np.random.default_rng(0).uniform(0, 255, (1, *hw, 3)).astype(np.float32)
    y = np.asarray(jax.jit(unet.apply)(variables, x))
    assert y.shape == x.shape and y.min() >= 0.0 and y.max() <= 255.0
    assert np.abs(y - x).mean() > 1e-3  # not the identity: the output layer is random
    assert np.sum((y == 0) | (y == 255)) > np.sum((x == 0) | (x == 255))  # the clip is active somewhere


def test_fresh_unet_is_exactly_the_identity():
    unet = DefenseUNet()  # the defaults
    variables = unet.init_variables(jax.random.key(3))
    n_params = sum(np.size(v) for v in jax.tree_util.tree_leaves(variables))
    assert 2e5 < n_params < 1e6, n_params  # "a few hundred K"
    assert set(variables) == {"params"}  # no BatchNorm state
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (2, 127, 127, 3)).astype(np.float32)
    x[:, :3, :3] = 0.0
    x[:, -3:, -3:] = 255.0
    assert np.array_equal(np.asarray(jax.jit(unet.apply)(variables, x)), x)
    # its gradient is the identity too, including at the clip bounds (tiny network: cheap to compile)
    tiny = DefenseUNet(**TINY)
    tiny_vars = tiny.init_variables(jax.random.key(0))
    g = jax.jit(jax.grad(lambda xx: jnp.sum(tiny.apply(tiny_vars, xx) * 1.5)))(jnp.asarray(x[:1, :20, :20]))
    np.testing.assert_array_equal(np.asarray(g), 1.5)


def test_unet_rejects_bad_settings():
    with pytest.raises(ValueError, match="down must be one of"):
        DefenseUNet(down="stride").init_variables(jax.random.key(0))
    with pytest.raises(ValueError, match=r"NHWC crops \[B, H, W, 3\]"):
        DefenseUNet(**TINY).init(jax.random.key(0), jnp.zeros((8, 8, 3)))


def _np_pad_split(n, m):
    padded = int(np.ceil(n / m) * m)
    total = padded - n
    return total // 2, total - total // 2


@pytest.mark.parametrize("mode", ["reflect", "edge", "symmetric"])
def test_padding_and_crop_match_numpy(mode):
    rng = np.random.default_rng(2)
    for (h, w), m in [((127, 127), 8), ((255, 287), 8), ((303, 33), 16), ((5, 9), 2)]:
        assert pad_amounts(h, m) == _np_pad_split(h, m) and pad_amounts(w, m) == _np_pad_split(w, m)
        x = rng.uniform(0, 255, (1, h, w, 3)).astype(np.float32)
        ref = np.pad(x, ((0, 0), _np_pad_split(h, m), _np_pad_split(w, m), (0, 0)), mode=mode)
        padded, (rows, cols) = pad_to_multiple(jnp.asarray(x), m, mode)
        np.testing.assert_array_equal(np.asarray(padded), ref)
        assert padded.shape[1] % m == 0 and padded.shape[2] % m == 0
        np.testing.assert_array_equal(np.asarray(padded)[:, rows, cols], x)


@pytest.mark.parametrize("mode", ["reflect"])
def test_unet_pads_and_crops_like_numpy(mode):
    """U(x) == crop(U(numpy_pad(x))): the network pads its input as NumPy does and crops the correction back (the
    NumPy-padded image is a multiple of 2**depth and needs no further padding)."""
    unet = DefenseUNet(depth=3, width=4, groups=2, pad_mode=mode, zero_init_last=False)
    variables = unet.init_variables(jax.random.key(1))
    apply = jax.jit(unet.apply)
    rng = np.random.default_rng(3)
    h, w = 45, 30
    x = rng.uniform(0, 255, (1, h, w, 3)).astype(np.float32)
    (t, b), (l, r) = _np_pad_split(h, 8), _np_pad_split(w, 8)
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), mode=mode)
    want = np.asarray(apply(variables, xp))[:, t : t + h, l : l + w]
    got = np.asarray(apply(variables, x))
    assert np.abs(got - x).mean() > 0.1
    np.testing.assert_allclose(got, want, atol=2e-3)


@pytest.mark.parametrize("kernel, stride, padding, size", [
    (3, 1, ((1, 1), (1, 1)), (16, 16)),  # the U-Net's block convolutions
    (3, 2, ((1, 1), (1, 1)), (16, 16)),  # its strided down-sampling
    (3, 2, ((1, 1), (1, 1)), (15, 18)),  # odd sizes: the input gradient's padding is asymmetric
    (1, 1, "SAME", (9, 7)),  # the 1x1 up / out convolutions
    (3, 1, "VALID", (11, 12)),
    (5, 3, ((2, 0), (1, 3)), (17, 14)),
])
def test_unet_convolution_matches_lax_in_value_and_gradients(kernel, stride, padding, size):
    """The U-Net's convolution (an explicit HWIO kernel in its input gradient, for XLA:CPU loops) gives the values
    and the input and kernel gradients of ``jax.lax.conv_general_dilated`` with JAX's own differentiation rule."""
    from jaxtrack.models.unet import conv_general_dilated

    rng = np.random.default_rng(kernel * 10 + stride)
    x = jnp.asarray(rng.normal(size=(2, *size, 5)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, 5, 7)), jnp.float32)
    dn = ("NHWC", "HWIO", "NHWC")

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w, (stride, stride), padding, dimension_numbers=dn)))

    np.testing.assert_allclose(
        conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=dn),
        jax.lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=dn), rtol=1e-5, atol=1e-4)
    got = jax.grad(loss(conv_general_dilated), (0, 1))(x, w)
    want = jax.grad(loss(jax.lax.conv_general_dilated), (0, 1))(x, w)
    for g, r, what in zip(got, want, ("input", "kernel")):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-3, err_msg=what)
    # inside a loop too (where XLA:CPU would otherwise run a slow layout), the same gradient
    looped = jax.jit(lambda x, w: jax.lax.fori_loop(0, 2, lambda i, c: c + jax.grad(loss(conv_general_dilated))(x, w),
                                                    jnp.zeros_like(x)))(x, w)
    np.testing.assert_allclose(looped, 2 * want[0], rtol=1e-4, atol=2e-3)


def test_unet_convolution_falls_back_to_lax_for_other_convolutions():
    from jaxtrack.models.unet import conv_general_dilated

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(1, 9, 9, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32)  # grouped: 2 groups of 2 channels
    kw = dict(dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2)
    got = jax.grad(lambda x: jnp.sum(conv_general_dilated(x, w, (1, 1), "SAME", **kw) ** 2))(x)
    want = jax.grad(lambda x: jnp.sum(jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", **kw) ** 2))(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------------------------------------ the wrapper


@pytest.fixture(scope="module")
def nano(data_dir):
    from jaxtrack.weights import load_path, shared_path

    path = shared_path("nanotrack_v2")
    if path is None:
        pytest.skip("NanoTrack v2 checkpoint not in the shared data")
    tracker = tracking.create("nanotrack_v2")
    loaded = load_path(tracker, path)
    variables = loaded.variables
    assert not loaded.is_random
    return tracker, variables


@pytest.fixture(scope="module")
def crossing(data_dir):
    from jaxtrack.data.sequence import load_otb_folder

    folder = data_dir / "sequences/OTB/Crossing"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    seq = load_otb_folder(folder)
    frames = np.stack([seq.frame(i) for i in range(6)])
    return frames, np.asarray(seq.ground_truth[0], np.float32)


def test_identity_defense_leaves_nanotrack_unchanged_on_otb(nano, crossing):
    """Real NanoTrack v2 weights, OTB Crossing frames 0-5: the identity-initialised defense on both branches gives
    the undefended boxes (to float32 rounding: the two programs are compiled separately, so XLA may fuse them
    differently; measured ≤ 2e-5 px)."""
    tracker, variables = nano
    frames, box0 = crossing
    unet = DefenseUNet(**TINY)
    d = defended(tracker, where="both", unet=unet)
    dvars = defense.defended_variables(variables, unet.init_variables(jax.random.key(0)))
    ref_boxes, ref_scores = tracker.track_sequence(variables, frames, box0)
    boxes, scores = d.track_sequence(dvars, frames, box0)
    np.testing.assert_allclose(np.asarray(boxes), np.asarray(ref_boxes), atol=1e-3)
    np.testing.assert_allclose(np.asarray(scores), np.asarray(ref_scores), atol=1e-5)
    assert float(np.asarray(scores)[1:].min()) > 0.9  # the real tracker is on the target


def _same_shapes(a, b) -> bool:
    return jax.tree_util.tree_map(jnp.shape, a) == jax.tree_util.tree_map(jnp.shape, b)


def _defended_noisy(tracker, variables, unet_kw):
    """(defended tracker, its variables) with a non-identity U-Net on both branches."""
    unet = DefenseUNet(**unet_kw)
    uv = _noisy_unet(unet, scale=0.3)
    d = defended(tracker, where="both", unet=unet)
    assert isinstance(d, DefendedTracker) and isinstance(d, tracking.Tracker)
    assert d.name == f"{tracker.name}_unet-both" == d.config.name
    assert d.config.family == tracker.config.family and d.model is tracker.model
    assert d.base is tracker and d == defended(tracker, where="both", unet=DefenseUNet(**unet_kw))  # by value
    dvars = defense.defended_variables(variables, uv)
    assert d.split_variables(dvars) == (variables, uv)
    with pytest.raises(ValueError, match=r"takes variables \{'tracker'.*got \['batch_stats', 'params'\]"):
        d.split_variables(variables)  # the tracker's own variables are not the defended tracker's
    return d, dvars


def _check_pieces(d, dvars, tracker, variables, frames, box0):
    """Every piece of the defended tracker has the shapes of the undefended one's (traced, not compiled)."""

    def pieces(t, v):
        state = t.init_pure(v, frames[0], box0)
        z = t.template_crop(frames[0], state.center, state.size, state.channel_avg)
        x, scale = t.search_crop(frames[1], state.center, state.size, state.channel_avg)
        raw = t.head(v, t.embed_template(v, z), x)
        return state, z, x, scale, raw, t.dense_predictions(raw), t.step_pure(v, state, frames[1])

    assert _same_shapes(jax.eval_shape(lambda: pieces(d, dvars)), jax.eval_shape(lambda: pieces(tracker, variables)))


def _check_batch(d, variables, frames, box0, n_short=3):
    """track_batch (vmap of the scan) on the same sequence at two lengths: the short one is the long one's prefix,
    then NaN. Returns the boxes of the full sequence."""
    bb, bs = d.track_batch(variables, np.stack([frames, frames]), np.stack([box0, box0]), [len(frames), n_short])
    bb, bs = np.asarray(bb), np.asarray(bs)
    assert bb.shape == (2, len(frames), 4) and bs.shape == (2, len(frames))
    np.testing.assert_allclose(bb[1, :n_short], bb[0, :n_short], atol=1e-3)
    assert np.all(np.isnan(bb[1, n_short:])) and np.all(np.isnan(bs[1, n_short:]))
    assert np.all(np.isfinite(bb[0])) and np.all(np.isfinite(bs[0]))
    return bb[0], bs[0]


def test_defended_nanotrack_keeps_the_interface(nano, crossing):
    """NanoTrack v2 (real weights, OTB Crossing), a non-identity defense on both branches: same shapes, init / step
    lower under jit, track_batch runs (vmap over a lax.scan) and the defense changes the track."""
    tracker, variables = nano
    frames, box0 = crossing
    d, dvars = _defended_noisy(tracker, variables, TINY)
    _check_pieces(d, dvars, tracker, variables, frames, box0)
    state = jax.eval_shape(d.init_pure, dvars, frames[0], box0)
    jax.jit(d.init_pure).lower(dvars, frames[0], box0)  # traced and lowered under jit (compiled in the SiamFC++ test)
    jax.jit(d.step_pure).lower(dvars, state, frames[1])
    boxes, _ = _check_batch(d, dvars, frames, box0)
    undefended, _ = tracker.track_sequence(variables, frames, box0)  # compiled once for the module
    assert np.abs(boxes - np.asarray(undefended)).max() > 1e-2  # the defense is in the path


@pytest.fixture(scope="module")
def siamfcpp():
    tracker = tracking.create("siamfcpp_alexnet", instance_size=207)  # small search crop: cheap compile
    return tracker, tracker.init_variables(jax.random.key(1))


def test_defended_siamfcpp_keeps_the_interface(siamfcpp):
    """SiamFC++ (random weights), a non-identity defense: same shapes; init / step (jitted) == the scan in
    track_batch (vmapped)."""
    tracker, variables = siamfcpp
    frames = _frames(n=5)
    box0 = np.array([30, 40, 30, 30], np.float32)
    d, dvars = _defended_noisy(tracker, variables, {"depth": 3, "width": 4, "groups": 2, "down": "pool"})
    _check_pieces(d, dvars, tracker, variables, frames, box0)
    boxes, scores = _check_batch(d, dvars, frames, box0)
    state = d.init(dvars, frames[0], box0)
    loop, loop_scores = [box0], [1.0]
    for frame in frames[1:]:
        state, box, score = d.step(dvars, state, frame)
        loop.append(np.asarray(box))
        loop_scores.append(float(score))
    np.testing.assert_allclose(boxes, np.stack(loop), atol=1e-3)
    np.testing.assert_allclose(scores, np.array(loop_scores), atol=1e-5)


# A cheap smooth tracker (no CNN): exact gradients in float64 and branch checks without compiling a network.


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    name: str = "toy"
    exemplar_size: int = 16
    instance_size: int = 24
    family = "toy"


@dataclasses.dataclass(frozen=True, eq=False)
class ToyTracker(tracking.Tracker):
    """embed_template / head are smooth functions of the crops; 3x3 = 9 positions."""

    def embed_template(self, variables, z):
        z = z[None] if z.ndim == 3 else z
        return {"k": jnp.tanh(jnp.mean(z, axis=(1, 2)) / 128.0 - 1.0) * variables["w"]}  # [B, 3]

    def head(self, variables, template, x):
        x = x[None] if x.ndim == 3 else x
        cells = x.reshape(x.shape[0], 3, 8, 3, 8, 3).mean(axis=(2, 4)).reshape(x.shape[0], 9, 3) / 255.0
        logits = jnp.sum(jnp.sin(3 * cells) * template["k"][:, None, :], axis=-1) + variables["b"]
        shift = jnp.tanh(2 * (cells[..., :2] - cells[..., 1:])) * 8.0
        return {"logits": logits, "shift": shift, "size": 6.0 * jnp.exp(cells.mean(-1, keepdims=True) - 0.5)}

    def dense_predictions_single(self, raw):
        grid = jnp.stack(jnp.meshgrid(jnp.arange(3.0), jnp.arange(3.0)), -1).reshape(9, 2) * 8 - 8
        wh = jnp.concatenate([raw["size"], raw["size"] * 1.2], axis=-1)
        return jax.nn.sigmoid(raw["logits"]), jnp.concatenate([grid + raw["shift"], wh], axis=-1)


TOY = ToyTracker(config=ToyConfig(), model=None)
TOY_VARS = {"w": jnp.array([1.5, -2.0, 0.7]), "b": jnp.float32(0.3)}


def _assert_trees_close(a, b, atol):
    jax.tree_util.tree_map(lambda p, q: np.testing.assert_allclose(np.asarray(p), np.asarray(q), atol=atol), a, b)


def test_where_selects_the_branch():
    unet = DefenseUNet(depth=1, width=4, groups=2)
    uv = _noisy_unet(unet, scale=0.3)
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.uniform(0, 255, (16, 16, 3)), jnp.float32)
    x = jnp.asarray(rng.uniform(0, 255, (24, 24, 3)), jnp.float32)
    defend = jax.jit(functools.partial(apply_defense, unet))  # [H, W, 3] -> [H, W, 3]
    uz, ux = defend(uv, z), defend(uv, x)
    assert uz.shape == z.shape and ux.shape == x.shape
    np.testing.assert_allclose(np.asarray(defend(uv, x[None])[0]), np.asarray(ux), atol=1e-4)
    assert float(jnp.abs(uz - z).max()) > 1.0 and float(jnp.abs(ux - x).max()) > 1.0
    emb = TOY.embed_template(TOY_VARS, z)
    dv = defense.defended_variables(TOY_VARS, uv)
    for where in defense.WHERE:
        d = defended(TOY, where=where, unet=unet)
        assert d.name == f"toy_unet-{where}"
        want_z = z if where == "search" else uz
        want_x = x if where == "template" else ux
        got = jax.jit(lambda z, x, d=d: (d.embed_template(dv, z), d.head(dv, emb, x), d.head(dv, emb, x[None])))
        want = (TOY.embed_template(TOY_VARS, want_z), TOY.head(TOY_VARS, emb, want_x), TOY.head(TOY_VARS, emb, want_x[None]))
        _assert_trees_close(got(z, x), want, 1e-5)
    with pytest.raises(ValueError, match="where must be one of"):
        defended(TOY, where="frame", unet=unet)
    with pytest.raises(TypeError, match="wraps a jaxtrack Tracker"):
        defended(object(), unet=unet)


def test_adaptive_gradient_flows_through_the_unet_and_matches_finite_differences():
    """d/dx of a loss on ``dense_predictions(head(template, x))`` of the defended tracker (non-identity U-Net),
    float64: the analytic directional derivative equals central finite differences, and it is not the gradient of
    the undefended tracker at U(x) passed straight through (the U-Net's Jacobian is differentiated)."""
    unet = DefenseUNet(depth=2, width=4, groups=2, activation="silu")
    uv32 = _noisy_unet(unet, key=1, scale=0.1)
    rng = np.random.default_rng(5)
    z = rng.uniform(0, 255, (16, 16, 3))
    x = rng.uniform(20, 235, (24, 24, 3))
    direction = rng.choice([-1.0, 1.0], size=x.shape)
    w_score, w_box = rng.normal(size=9), rng.normal(size=(9, 4)) * 0.1
    with jax.enable_x64(True):
        f64 = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), t)
        variables, uv = f64(TOY_VARS), f64(uv32)
        d = defended(TOY, where="both", unet=unet)
        dv = defense.defended_variables(variables, uv)
        template = jax.jit(d.embed_template)(dv, jnp.asarray(z))

        def loss(t, xx):
            v = dv if t is d else variables
            scores, boxes = t.dense_predictions(t.head(v, template, xx))
            return jnp.sum(scores[0] * w_score) + jnp.sum(boxes[0] * w_box)

        value_and_grad = jax.jit(jax.value_and_grad(lambda xx: loss(d, xx)))
        _, grad = value_and_grad(jnp.asarray(x))
        assert grad.dtype == jnp.float64
        h = 1e-4
        plus, _ = value_and_grad(jnp.asarray(x + h * direction))
        minus, _ = value_and_grad(jnp.asarray(x - h * direction))
        fd = (float(plus) - float(minus)) / (2 * h)
        analytic = float(jnp.sum(grad * direction))
        assert abs(analytic) > 1e-3
        assert abs(analytic - fd) <= 1e-6 * max(1.0, abs(analytic)), (analytic, fd)
        # straight-through (the undefended gradient at U(x)) would be another number
        ux = jax.jit(d.defend)(dv, jnp.asarray(x))
        straight = float(jnp.sum(jax.jit(jax.grad(lambda xx: loss(TOY, xx)))(ux) * direction))
        assert abs(straight - analytic) > 1e-2 * abs(analytic), (straight, analytic)


def test_attacks_run_through_the_defense():
    """attacks.attack_crops (jitted, the tracker a static argument) on a defended tracker, both crops: the
    adaptive attack differentiates through the U-Net, and differs from the attack on the undefended tracker."""
    unet = DefenseUNet(depth=1, width=4, groups=2)
    d = defended(TOY, where="both", unet=unet)
    dv = defense.defended_variables(TOY_VARS, _noisy_unet(unet, scale=0.2))
    rng = np.random.default_rng(0)
    z = rng.uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    x = rng.uniform(0, 255, (2, 24, 24, 3)).astype(np.float32)
    ref = np.array([[0.0, 0.0, 6.0, 7.0]] * 2, np.float32)
    config = attacks.bim(8.0, steps=3, step_size=2.0)
    adv = {}
    for t, v in ((d, dv), (TOY, TOY_VARS)):
        z_adv, x_adv, losses = attacks.attack_crops(
            t, v, z, x, ref, attacks.dua_loss, config, target="both", return_losses=True
        )
        for a, clean in ((z_adv, z), (x_adv, x)):
            change = np.abs(np.asarray(a) - clean).max()
            assert 0 < change <= 8.0 + 1e-3
        assert np.all(np.asarray(losses)[:, -1] >= np.asarray(losses)[:, 0])  # the attack raises its loss
        adv[t.name] = np.asarray(x_adv)
    assert np.abs(adv[d.name] - adv["toy"]).max() > 1.0
    # online: the non-adaptive attacker (the undefended surrogate) is handed the tracker's part of the variables,
    # one level per defense it lacks; the adaptive one gets them all
    assert attacks.attacked(d, config, surrogate=TOY).attacker_variables(dv) is TOY_VARS
    assert attacks.attacked(d, config).attacker_variables(dv) is dv
    nested, nested_vars = defended(d, where="template", unet=unet), defense.defended_variables(dv, {"params": 0})
    assert attacks.attacked(nested, config, surrogate=d).attacker_variables(nested_vars) is dv
    assert attacks.attacked(nested, config, surrogate=TOY).attacker_variables(nested_vars) is TOY_VARS


def test_delegation_to_the_family_including_opencv_nanotrack():
    base = tracking.create("nanotrack_v2_opencv")
    unet = DefenseUNet(**TINY)
    uv = unet.init_variables(jax.random.key(0))
    d = defended(base, where="search", unet=unet)
    np.testing.assert_array_equal(d.window, base.window)  # OpenCV's sqrt Hanning window, not pysot's
    np.testing.assert_array_equal(d.grid, base.grid)
    np.testing.assert_array_equal(d.points, base.points)
    box = jnp.asarray([10.7, 20.2, 30.9, 40.5])
    for a, b in zip(d.box_to_center_size(box), base.box_to_center_size(box)):  # OpenCV's integer init box
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    rng = np.random.default_rng(0)
    s = base.config.score_size
    raw = {"cls": jnp.asarray(rng.normal(size=(1, s, s, 2)), jnp.float32),
           "loc": jnp.asarray(rng.uniform(5, 40, (1, s, s, 4)), jnp.float32)}
    args = (jnp.asarray([100.0, 80.0]), jnp.asarray([30.0, 40.0]), 0.8, (240, 360))
    pysot_decode = tracking.NanoTrackTracker.decode
    got, want, pysot = jax.jit(
        lambda raw: (d.decode(raw, *args), base.decode(raw, *args), pysot_decode(base, raw, *args))
    )(raw)
    for a, b in zip(got, want):  # OpenCV's decode (centre-based penalty), not pysot's
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(got[2]), np.asarray(pysot[2]))
    with pytest.raises(ValueError, match=r"nanotrack_v2_opencv_unet-search: head output"):
        d._check_score_size(jnp.zeros((1, 5, 5, 2)))  # a family method runs on the wrapper
    with pytest.raises(AttributeError):
        d.no_such_attribute  # noqa: B018
    assert d != base and {d: 1}[defended(base, where="search", unet=DefenseUNet(**TINY))] == 1  # hashable by value
    assert d != defended(base, where="both", unet=unet) and d != defended(base, where="search", unet=DefenseUNet())
    anchors = defended(tracking.create("siamrpn_alex"), unet=unet)
    np.testing.assert_array_equal(anchors.anchors, tracking.create("siamrpn_alex").anchors)
    assert dataclasses.replace(d, where="both").config.name == "nanotrack_v2_opencv_unet-both"
    nested = defended(d, where="template", unet=unet)
    assert nested.name == "nanotrack_v2_opencv_unet-search_unet-template"
    np.testing.assert_array_equal(nested.grid, base.grid)


# ------------------------------------------------------------------------------------------------ checkpoints


def test_defense_checkpoint_round_trip(tmp_path):
    tracker = tracking.create("nanotrack_v2")
    unet = DefenseUNet(depth=2, width=4, groups=2, up="transpose")
    uv = _noisy_unet(unet)
    meta = defense.defense_meta(unet, tracker, "both", info={"loss": "dua", "eps": 8})
    assert meta["crop_sizes"] == {"template": 127, "search": 255} and meta["family"] == "nanotrack"
    nested = defended(defended(tracker, "search", unet), "template", unet)
    assert defense.defense_meta(unet, nested, "search")["tracker"] == "nanotrack_v2"  # the tracker underneath
    path = defense.save_defense(tmp_path / "def", uv, meta)
    card = json.loads((path / "card.json").read_text())
    assert card["unet"] == unet_hparams(unet) and card["tracker"] == "nanotrack_v2" and card["where"] == "both"
    assert card["info"] == {"loss": "dua", "eps": 8} and card["num_parameters"] > 0
    # the package's one weights format, read by the weights layer too
    assert (card["format"], card["what"]) == ("jaxtrack-weights", "defense")
    assert weights.read_card(path)["what"] == "defense"
    loaded_unet, loaded, card2 = defense.load_defense(path)
    assert loaded_unet == unet and card2 == card
    for a, b in zip(jax.tree_util.tree_leaves(uv), jax.tree_util.tree_leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert jax.tree_util.tree_structure(uv) == jax.tree_util.tree_structure(loaded)

    tv = {"params": {"w": np.ones(2, np.float32)}}  # stands for the tracker's variables: passed through as given
    d, dv = defense.defended_from_checkpoint(tracker, tv, path)
    assert d.where == "both" and d.unet == unet and d.name == "nanotrack_v2_unet-both-def"
    assert dv["tracker"] is tv and set(dv) == {"tracker", "defense"}
    for a, b in zip(jax.tree_util.tree_leaves(uv), jax.tree_util.tree_leaves(dv["defense"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert defense.defended_from_checkpoint(tracker, tv, path, where="search")[0].where == "search"
    # same family and crop sizes, another tracker of it: allowed
    assert defense.defended_from_checkpoint(tracking.create("nanotrack_v3"), tv, path)[0].base.name == "nanotrack_v3"

    with pytest.raises(FileExistsError, match="already exists"):
        defense.save_defense(path, uv, meta)
    defense.save_defense(path, unet.init_variables(jax.random.key(0)), meta, overwrite=True)
    assert float(jnp.abs(defense.load_defense(path).variables["params"]["out"]["kernel"]).max()) == 0.0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a defense checkpoint folder"):
        defense.save_defense(tmp_path / "other", uv, meta, overwrite=True)
    assert (tmp_path / "other" / "x.txt").read_text() == "keep me"


def test_defense_folders_of_earlier_releases_still_load(tmp_path):
    """A defense folder with the defense's own card of earlier releases (format "jaxtrack-defense", a "kind"
    string, no "what") loads with the same U-Net and variables; a card of a tracker's weights is refused."""
    tracker = tracking.create("nanotrack_v2")
    unet = DefenseUNet(depth=2, width=4, groups=2)
    uv = _noisy_unet(unet)
    path = defense.save_defense(tmp_path / "def", uv, defense.defense_meta(unet, tracker, "search"))
    card = json.loads((path / "card.json").read_text())
    legacy = {"format": "jaxtrack-defense", "format_version": 1, "kind": "DuaLossDef U-Net pre-processor",
              **{k: card[k] for k in ("unet", "family", "tracker", "where", "crop_sizes", "info", "num_parameters")}}
    (path / "card.json").write_text(json.dumps(legacy))
    assert weights.read_card(path)["what"] == "defense"  # the weights layer reads the old card too
    loaded_unet, loaded, _ = defense.load_defense(path)
    assert loaded_unet == unet
    for a, b in zip(jax.tree_util.tree_leaves(uv), jax.tree_util.tree_leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert defense.defended_from_checkpoint(tracker, {}, path)[0].where == "search"
    (path / "card.json").write_text(json.dumps({**card, "what": "tracker"}))
    with pytest.raises(ValueError, match="not a defense card"):
        defense.load_defense(path)
    (path / "card.json").write_text(json.dumps({**card, "format_version": 99}))
    with pytest.raises(ValueError, match=r"card.json: card format version 99 is newer"):
        defense.load_defense(path)


def test_defense_checkpoint_mismatches_are_refused(tmp_path):
    unet = DefenseUNet(**TINY)
    uv = unet.init_variables(jax.random.key(0))
    nano = tracking.create("nanotrack_v2")
    path = defense.save_defense(tmp_path / "nano_tmpl", uv, defense.defense_meta(unet, nano, "template"))
    card = str(path / "card.json")

    # another family
    with pytest.raises(ValueError, match="family 'nanotrack'.*'siamfcpp_alexnet' is family 'siamfcpp'") as err:
        defense.defended_from_checkpoint(tracking.create("siamfcpp_alexnet"), {}, path)
    assert card in str(err.value) and "allow_transfer=True" in str(err.value)
    # another crop size
    with pytest.raises(ValueError, match="template crop size: trained on 127x127, tracker 'nanotrack_v2' uses 135x135"):
        defense.defended_from_checkpoint(tracking.create("nanotrack_v2", exemplar_size=135), {}, path)
    # a branch it was not trained on
    with pytest.raises(ValueError, match="trained on template crops only, not on search crops"):
        defense.defended_from_checkpoint(nano, {}, path, where="both")
    # transfer experiments deploy it anyway
    d, _ = defense.defended_from_checkpoint(tracking.create("siamfcpp_alexnet"), {}, path, where="both",
                                            allow_transfer=True)
    assert d.name == "siamfcpp_alexnet_unet-both-nano_tmpl-from-nanotrack_v2"

    # a card whose U-Net hyper-parameters do not match the stored tree
    edited = json.loads((path / "card.json").read_text())
    edited["unet"]["width"] = 6
    (path / "card.json").write_text(json.dumps(edited))
    with pytest.raises(ValueError, match=r"do not match the hyper-parameters in .*card\.json \(depth=2, width=6") as err:
        defense.load_defense(path)
    assert "mis-shaped keys" in str(err.value) and "enc0_conv0/kernel" in str(err.value)
    # variables that do not fit the meta are not saved; neither is a card for a missing branch size
    with pytest.raises(ValueError, match="do not match the hyper-parameters"):
        defense.save_defense(tmp_path / "bad", uv, defense.defense_meta(DefenseUNet(depth=2, width=8), nano, "both"))
    with pytest.raises(ValueError, match="crop_sizes must give"):
        defense.save_defense(tmp_path / "bad", uv, {**defense.defense_meta(unet, nano, "template"), "where": "both"})
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="is not a defense checkpoint"):
        defense.load_defense(tmp_path)
