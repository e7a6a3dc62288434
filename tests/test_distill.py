"""Distillation from NanoTrack into SiamFC++ (jaxtrack.losses.distill, the teacher in the train step, the recipe).

References are independent of the code under test: grid coordinates worked out by hand from the two trackers'
published conventions (and cross-checked against the trackers' own point/centre functions), SciPy's
``map_coordinates`` for bilinear resampling, maps that are affine functions of position (which bilinear
interpolation must reproduce exactly), and NumPy float64 restatements of the KL / IoU terms.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxtrack import tracking
from jaxtrack.losses import distill as D
from jaxtrack.losses import siamfcpp as LF
from jaxtrack.train import config as C
from jaxtrack.train.state import path_str

TINY = tracking.create("siamfcpp_tiny").config  # z 127 / x 255, score 11, stride 8
NANO = tracking.create("nanotrack_v2").config  # z 127 / x 255, score 16, stride 16


# ----------------------------------------------------------------------------------------------- grids
def test_points_map_to_the_right_crop_pixels():
    # student: (255 - 1 - 10 * 8) // 2 = 87, then every 8 px; the cell the tracker reads as the crop centre is 127
    np.testing.assert_array_equal(D.student_axis(TINY), 87 + 8 * np.arange(11))
    from jaxtrack.models.heads import densebox_centers

    centres = np.asarray(densebox_centers(TINY.score_size, TINY.instance_size, TINY.total_stride))
    np.testing.assert_array_equal(D.student_axis(TINY), centres[0, :, 0])
    # teacher: 255 // 2 + (-(16 // 2) * 16 + 16 d) = -1, 15, ..., 239 (NanoTrack's points around the crop centre 127)
    np.testing.assert_array_equal(D.teacher_axis(TINY, NANO), -1 + 16 * np.arange(16))
    points = tracking.create("nanotrack_v2").points  # [256, 2] (x, y) relative to the crop centre, row-major
    np.testing.assert_array_equal(D.teacher_axis(TINY, NANO), points[:16, 0] + 127)
    # the student's cells sit at teacher-grid positions 5.5, 6.0, ..., 10.5
    pos = (D.student_axis(TINY) - D.teacher_axis(TINY, NANO)[0]) / 16
    np.testing.assert_array_equal(pos, 5.5 + 0.5 * np.arange(11))

    # the 303 crop of siamfcpp_alexnet holds NanoTrack's 255 crop as its centred window from pixel 24
    alex = tracking.create("siamfcpp_alexnet").config
    assert D.search_window_offset(alex, NANO) == 24
    np.testing.assert_array_equal(D.teacher_axis(alex, NANO), 23 + 16 * np.arange(16))
    np.testing.assert_array_equal(D.student_axis(alex), 87 + 8 * np.arange(17))
    x = jnp.arange(2 * 303 * 303 * 3, dtype=jnp.float32).reshape(2, 303, 303, 3)
    window = D.teacher_search_window(x, alex, NANO)
    assert window.shape == (2, 255, 255, 3)
    np.testing.assert_array_equal(window[:, 0, 0], x[:, 24, 24])
    np.testing.assert_array_equal(window[:, 127, 127], x[:, 151, 151])  # both crop centres


def test_incompatible_pairs_are_refused_with_the_reason():
    small = tracking.create("siamfcpp_tiny", instance_size=191).config
    with pytest.raises(ValueError, match=r"search crop \(255 px\) must fit centred inside the student's"):
        D.check_compatible(small, NANO)
    with pytest.raises(ValueError, match="even difference"):
        D.search_window_offset(tracking.create("siamfcpp_tiny", instance_size=256).config, NANO)
    with pytest.raises(ValueError, match="exemplar_size 127 differs"):
        D.check_compatible(tracking.create("siamfcpp_tiny", exemplar_size=111).config, NANO)
    with pytest.raises(ValueError, match="emulates OpenCV"):
        D.check_compatible(TINY, tracking.create("nanotrack_v2_opencv").config)
    with pytest.raises(ValueError, match="SiamFC\\+\\+ student.*'siamrpn'"):
        D.check_compatible(tracking.create("siamrpn_alex").config, NANO)
    with pytest.raises(ValueError, match="must be a NanoTrack tracker"):
        D.check_compatible(TINY, tracking.create("siamfcpp_tiny").config)


# ----------------------------------------------------------------------------------------------- resampling
def _affine_maps(axis, coef):
    """``[1, T, T, C]``: channel c = a_c x + b_c y + d_c at the points (x = axis[col], y = axis[row])."""
    xx, yy = np.meshgrid(axis, axis)  # [row, col]
    return np.stack([a * xx + b * yy + d for a, b, d in coef], axis=-1)[None].astype(np.float32)


def test_resampling_reproduces_affine_maps_exactly():
    coef = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.37, -1.25, 40.0), (-2.0, 0.5, -3.0)]
    t_axis, s_axis = D.teacher_axis(TINY, NANO), D.student_axis(TINY)
    w = D.interp_matrix(s_axis, t_axis)
    assert w.shape == (11, 16)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-7)
    assert ((w > 0).sum(1) <= 2).all()
    out = np.asarray(D.resample(_affine_maps(t_axis, coef), w, w))
    want = _affine_maps(s_axis, coef)
    np.testing.assert_allclose(out, want, rtol=0, atol=2e-4)  # values up to ~250: float32 rounding only
    # channel 0 / 1 are the x / y coordinates themselves: the cells land on their own crop pixels
    np.testing.assert_allclose(out[0, 4, 7, :2], [87 + 8 * 7, 87 + 8 * 4], atol=1e-4)


def test_resampling_matches_scipy_bilinear_with_edge_clamping():
    rng = np.random.default_rng(0)
    axis = 10.0 + 4.0 * np.arange(6)  # source grid 10, 14, ..., 30
    maps = rng.normal(size=(3, 6, 6)).astype(np.float32)
    qy = np.array([8.0, 10.0, 11.5, 17.0, 29.9, 33.0])  # includes points outside the grid (clamped)
    qx = np.array([10.0, 12.0, 20.2, 27.0, 30.0])
    out = np.asarray(D.resample(maps, D.interp_matrix(qy, axis), D.interp_matrix(qx, axis)))
    ry = np.clip((qy - 10.0) / 4.0, 0, 5)
    rx = np.clip((qx - 10.0) / 4.0, 0, 5)
    gy, gx = np.meshgrid(ry, rx, indexing="ij")
    for b in range(3):
        want = ndimage.map_coordinates(maps[b].astype(np.float64), [gy, gx], order=1, mode="nearest")
        np.testing.assert_allclose(out[b], want, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="evenly spaced"):
        D.interp_matrix(qx, np.array([0.0, 1.0, 3.0]))


def test_teacher_boxes_follow_the_trackers_decode_and_resample_to_one_box():
    rng = np.random.default_rng(1)
    raw = {"cls": rng.normal(size=(2, 16, 16, 2)).astype(np.float32),
           "loc": rng.uniform(5, 60, size=(2, 16, 16, 4)).astype(np.float32)}
    prob, box = D.teacher_dense(NANO, raw)
    # the tracker's own decode: softmax score and (cx, cy, w, h) relative to the crop centre 127
    teacher = tracking.create("nanotrack_v2")
    for b in range(2):
        score, cxywh = teacher.dense_predictions_single({"cls": raw["cls"][b], "loc": raw["loc"][b]})
        cxywh = np.asarray(cxywh)
        corners = np.concatenate([cxywh[:, :2] - cxywh[:, 2:] / 2, cxywh[:, :2] + cxywh[:, 2:] / 2], -1) + 127
        np.testing.assert_allclose(np.asarray(prob[b]).reshape(-1), score, atol=1e-6)
        np.testing.assert_allclose(np.asarray(box[b]).reshape(-1, 4), corners, atol=1e-4)

    # every point predicts the same box (ltrb = distances from the point to its sides): every student cell gets it
    target = np.array([101.0, 93.0, 160.5, 181.25])
    px, py = np.meshgrid(D.teacher_axis(TINY, NANO), D.teacher_axis(TINY, NANO))
    loc = np.stack([px - target[0], py - target[1], target[2] - px, target[3] - py], -1)[None].astype(np.float32)
    logits = np.zeros((1, 16, 16, 2), np.float32)
    logits[..., 1] = np.log(3.0)  # foreground probability 3 / 4 everywhere
    soft = D.teacher_targets(TINY, NANO, {"cls": logits, "loc": loc})
    assert soft["prob"].shape == (1, 11, 11) and soft["box"].shape == (1, 11, 11, 4)
    np.testing.assert_allclose(np.asarray(soft["prob"]), 0.75, atol=1e-6)
    np.testing.assert_allclose(np.asarray(soft["box"]).reshape(-1, 4), np.tile(target, (121, 1)), atol=1e-4)


# ----------------------------------------------------------------------------------------------- the loss
def _np_kl(logits, p):
    q = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log(p / q), 0.0)
        b = np.where(p < 1, (1 - p) * np.log((1 - p) / (1 - q)), 0.0)
    return a + b


def _np_iou_plus_one(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    area = lambda x: np.abs(x[..., 2] - x[..., 0] + 1) * np.abs(x[..., 3] - x[..., 1] + 1)  # noqa: E731
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None)
    inter = iw * ih
    return inter / (area(a) + area(b) - inter)


def _random_case(seed, shape=(3, 5, 5)):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, shape).astype(np.float32)
    p.flat[:3] = [0.0, 1.0, 0.5]
    c = rng.uniform(40, 200, shape + (2,))
    wh = rng.uniform(10, 60, shape + (2,))
    t_box = np.concatenate([c - wh / 2, c + wh / 2], -1).astype(np.float32)
    s_box = (t_box + rng.normal(0, 6, t_box.shape)).astype(np.float32)
    return p, t_box, s_box


def test_kl_term_is_zero_when_the_student_matches_the_teacher_and_grows_otherwise():
    p, t_box, _ = _random_case(0)
    targets = {"prob": jnp.asarray(p), "box": jnp.asarray(t_box)}
    matched = np.log(np.clip(p, 1e-7, 1 - 1e-7)) - np.log1p(-np.clip(p, 1e-7, 1 - 1e-7))  # logit(p)
    _, m = D.loss({"cls": matched, "box": t_box}, targets)
    assert abs(float(m["distill_cls"])) < 2e-6 and abs(float(m["distill_reg"])) < 1e-5

    rng = np.random.default_rng(5)
    prev = 0.0
    for scale in (0.3, 1.0, 3.0):
        logits = (matched + scale * rng.normal(size=p.shape)).astype(np.float32)
        _, m = D.loss({"cls": logits, "box": t_box}, targets)
        want = _np_kl(logits, p).mean()
        np.testing.assert_allclose(float(m["distill_cls"]), want, rtol=2e-5)
        assert float(m["distill_cls"]) > prev
        prev = float(m["distill_cls"])
    # gradient of the mean KL w.r.t. a logit: (sigmoid(x) - p) / N
    g = jax.grad(lambda x: D.loss({"cls": x, "box": t_box}, targets)[0])(jnp.asarray(logits))
    np.testing.assert_allclose(np.asarray(g), (1 / (1 + np.exp(-logits.astype(np.float64))) - p) / p.size,
                               rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("min_prob", [0.0, 0.5, 0.9])
def test_box_term_against_numpy_weighted_iou_loss(min_prob):
    p, t_box, s_box = _random_case(2)
    logits = np.random.default_rng(3).normal(size=p.shape).astype(np.float32)
    weights = D.DistillWeights(cls=0.7, reg=2.5, reg_min_prob=min_prob)
    total, m = D.loss({"cls": logits, "box": s_box}, {"prob": p, "box": t_box}, weights)
    w = np.where(p >= min_prob, p, 0.0).astype(np.float64)
    iou = np.maximum(_np_iou_plus_one(s_box, t_box), np.finfo(np.float32).tiny)  # video_analyst's SafeLog
    want_reg = np.sum(-np.log(iou) * w) / max(w.sum(), 1.0)
    np.testing.assert_allclose(float(m["distill_reg"]), want_reg, rtol=1e-5)
    np.testing.assert_allclose(float(total), 0.7 * _np_kl(logits, p).mean() + 2.5 * want_reg, rtol=1e-5)
    np.testing.assert_allclose(float(m["teacher_weight"]), w.sum() / 3, rtol=1e-6)
    np.testing.assert_allclose(float(m["teacher_prob"]), p.reshape(3, -1).max(1).mean(), rtol=1e-6)
    # no gradient reaches the boxes of cells below the threshold; finite everywhere
    g = jax.grad(lambda b: D.loss({"cls": logits, "box": b}, {"prob": p, "box": t_box}, weights)[0])(jnp.asarray(s_box))
    g = np.asarray(g)
    assert np.isfinite(g).all() and not g[w == 0].any() and g[w > 0].any()


def test_teacher_iou_diagnostic_against_the_ground_truth_targets():
    p, t_box, s_box = _random_case(4, shape=(2, 11, 11))
    boxes = np.array([[100.0, 90.0, 160.0, 150.0], [60.0, 70.0, 120.0, 200.0]], np.float32)
    gt = LF.make_targets(TINY, boxes, np.array([False, True]))
    _, m = D.loss({"cls": np.zeros(p.shape, np.float32), "box": s_box}, {"prob": p, "box": t_box}, gt_targets=gt)
    pos = np.asarray(gt["cls"]) == 1
    assert pos.any()
    want = _np_iou_plus_one(t_box[pos], np.asarray(gt["box"])[pos]).mean()
    np.testing.assert_allclose(float(m["teacher_iou"]), want, rtol=1e-5)


# ----------------------------------------------------------------------------------------------- the train step
def _numpy_variables(tracker, seed):
    """Initial variables without compiling ``init`` (scaled normal kernels, zero biases, BN 1 / 0)."""
    abstract = jax.eval_shape(tracker.init_variables, jax.random.key(0))
    rng = np.random.default_rng(seed)

    def init(path, leaf):
        name = path_str(path).split("/")[-1]
        if name == "kernel":
            return (rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))).astype(leaf.dtype)
        if name in ("scale", "var", "si"):
            return np.ones(leaf.shape, leaf.dtype)
        return np.zeros(leaf.shape, leaf.dtype)

    return jax.tree_util.tree_map_with_path(init, abstract)


def test_train_step_with_a_silent_teacher_equals_the_step_without_one():
    """Off (default config) = the very program of ``make_train_step`` without a teacher; a teacher with zero
    weights runs (its terms are logged) and leaves the loss and the update as they were, up to XLA's freedom to
    fuse the larger program differently (measured equal here; tolerance 1e-6 relative)."""
    from jaxtrack.train import state as S
    from jaxtrack.train.distill import Teacher
    from jaxtrack.train.loop import loop_train_step

    student = tracking.create("siamfcpp_tiny", instance_size=191, width_mult=0.125)  # score 3x3
    teacher = tracking.create("nanotrack_v2", instance_size=191, score_size=12)
    sv, tv = _numpy_variables(student, 0), _numpy_variables(teacher, 1)
    optim = C.OptimConfig(name="adamw", lr=1e-3, warmup_steps=0, backbone_lr_mult=1.0)
    rng = np.random.default_rng(0)
    batch = {"template": rng.integers(0, 256, (4, 127, 127, 3), dtype=np.uint8),
             "search": rng.integers(0, 256, (4, 191, 191, 3), dtype=np.uint8),
             "box": np.array([[70, 60, 120, 130]] * 4, np.float32) + rng.uniform(-9, 9, (4, 4)).astype(np.float32),
             "negative": np.array([False, False, True, False])}

    # distill off: the step built for the default configuration is the one built without a teacher
    run = C.TrainConfig(name="t", tracker="siamfcpp_tiny", steps=10, batch_size=4, optim=optim)
    assert not run.distill.enabled
    off = loop_train_step(run, student, None)
    plain = S.make_train_step(student, optim, 10)
    tx, _ = S.make_optimizer(optim, 10, sv["params"])
    state = S.create_train_state(sv, tx, jax.random.key(0))
    key = jax.random.key(3)
    assert off.lower(state, batch, key).as_text() == plain.lower(state, batch, key).as_text()

    silent = S.make_train_step(student, optim, 10, donate=False,
                               teacher=Teacher(teacher, tv, D.DistillWeights(cls=0.0, reg=0.0), "test"))
    plain = S.make_train_step(student, optim, 10, donate=False)
    s_plain, m_plain = plain(state, batch, key)
    s_silent, m_silent = silent(state, batch, key)
    assert set(m_plain) < set(m_silent)
    for k in ("distill_cls", "distill_reg", "teacher_prob", "teacher_iou", "gt_total"):
        assert np.isfinite(float(m_silent[k])), k
    assert float(m_silent["distill_cls"]) > 0
    for k in m_plain:
        np.testing.assert_allclose(float(m_silent[k]), float(m_plain[k]), rtol=1e-6, err_msg=k)
    diff = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0.0)),
                                  s_silent.params, s_plain.params)
    assert max(jax.tree_util.tree_leaves(diff)) <= 1e-6


# ----------------------------------------------------------------------------------------------- the recipe
def test_distill_recipe_registers_round_trips_and_old_records_load():
    cfg = C.get_config("siamfcpp_tiny_real_distill")
    base = C.get_config("siamfcpp_tiny_real")
    assert cfg.distill == C.DistillConfig(teacher="nanotrack_v2", cls_weight=1.0, reg_weight=0.0, reg_min_prob=0.5)
    assert cfg.distill.enabled and not base.distill.enabled
    import dataclasses

    assert dataclasses.replace(cfg, name=base.name, distill=base.distill) == base  # everything else is the same
    assert C.config_from_dict(json.loads(json.dumps(C.config_to_dict(cfg)))) == cfg
    # a configuration without a teacher records no distill group (its config.json is the one written before the
    # group existed) and such a record loads with the teacher off
    record = C.config_to_dict(base)
    assert "distill" not in record and C.config_from_dict(record) == base
    # overrides and their errors
    on = C.get_config("siamfcpp_tiny_real", ["distill.teacher=nanotrack_v2", "distill.reg_weight=0.5"])
    assert on.distill.enabled and on.distill.reg_weight == 0.5 and C.config_to_dict(on)["distill"]["reg_weight"] == 0.5
    for override, match in [("distill.cls_weight=-1", "distill.cls_weight must be >= 0"),
                            ("distill.reg_min_prob=1.5", r"distill.reg_min_prob must be in \[0, 1\]"),
                            ("distill.teacher_weights=/x.pth", "distill.teacher is empty"),
                            ("distill.tacher=nanotrack_v2", "did you mean distill.teacher")]:
        with pytest.raises(C.ConfigError, match=match):
            C.get_config("siamfcpp_tiny_real", [override])


def test_load_teacher_errors_name_the_key(tmp_path, monkeypatch):
    from jaxtrack.train.distill import load_teacher

    tiny = tracking.create("siamfcpp_tiny")
    assert load_teacher(C.DistillConfig(), tiny) is None
    with pytest.raises(C.ConfigError, match=r"distill.teacher='nanotrack_v9' is not a tracker.*nanotrack_v2"):
        load_teacher(C.DistillConfig(teacher="nanotrack_v9"), tiny)
    monkeypatch.setenv("JAXTRACK_DATA", str(tmp_path))
    missing = r"distill.teacher='nanotrack_v2': .*nanotrackv2.pth is missing.*JAXTRACK_DATA"
    with pytest.raises(ValueError, match=missing):
        load_teacher(C.DistillConfig(teacher="nanotrack_v2"), tiny)
    with pytest.raises(ValueError, match=r"distill.teacher_weights='shared:none.pth': .* does not exist"):
        load_teacher(C.DistillConfig(teacher="nanotrack_v2", teacher_weights="shared:none.pth"), tiny)
    with pytest.raises(ValueError, match="search crop"):
        load_teacher(C.DistillConfig(teacher="nanotrack_v2"), tracking.create("siamfcpp_tiny", instance_size=191))


def test_the_recipe_loads_the_real_nanotrack_teacher(data_dir):
    from jaxtrack.weights import shared_path
    from jaxtrack.train.distill import load_teacher

    if shared_path("nanotrack_v2") is None:
        pytest.skip("the real NanoTrack v2 checkpoint is not in the shared data folder")
    cfg = C.get_config("siamfcpp_tiny_real_distill")
    teacher = load_teacher(cfg.distill, tracking.create(cfg.tracker))
    assert teacher.tracker.name == "nanotrack_v2" and teacher.source == str(shared_path("nanotrack_v2"))
    assert teacher.weights == D.DistillWeights(cls=1.0, reg=0.0, reg_min_prob=0.5)
    abstract = jax.eval_shape(teacher.tracker.init_variables, jax.random.key(0))
    shapes = jax.tree_util.tree_map(lambda a: tuple(a.shape), teacher.variables)
    assert shapes == jax.tree_util.tree_map(lambda a: tuple(a.shape), abstract)
