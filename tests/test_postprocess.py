"""Post-processing against NumPy (float64) re-statements of pysot ``SiamRPNTracker`` and video_analyst
``SiamFCppTracker``, written line by line after the reference code."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxtrack.tracking import postprocess as pp
from reference_impls import ref_pysot_anchor, ref_pysot_track, ref_siamfcpp_track

RATIOS = [0.33, 0.5, 1, 2, 3]
SCALES = [8]

# ------------------------------------------------------------------------------ reference re-statements


# ------------------------------------------------------------------------------------------------ tests


def test_anchors_hand_worked():
    a = pp.pysot_anchors(8, RATIOS, SCALES, 25)
    assert a.shape == (5 * 25 * 25, 4) and a.dtype == np.float32
    per_anchor = a.reshape(5, 25 * 25, 4)
    expected_wh = [(104, 32), (88, 40), (64, 64), (40, 80), (32, 96)]
    for k, wh in enumerate(expected_wh):
        np.testing.assert_array_equal(per_anchor[k, :, 2:], np.broadcast_to(wh, (625, 2)))
        np.testing.assert_array_equal(per_anchor[k, 0, :2], [-96, -96])  # (y, x) = (0, 0)
        np.testing.assert_array_equal(per_anchor[k, -1, :2], [96, 96])  # (24, 24)
        np.testing.assert_array_equal(per_anchor[k, 1, :2], [-88, -96])  # x moves fastest
        np.testing.assert_array_equal(per_anchor[k, 25, :2], [-96, -88])
    np.testing.assert_array_equal(a, ref_pysot_anchor(8, RATIOS, SCALES, 25))
    np.testing.assert_array_equal(pp.pysot_anchors(8, RATIOS, SCALES, 21), ref_pysot_anchor(8, RATIOS, SCALES, 21))
    assert pp.pysot_anchors(8, RATIOS, SCALES, 21)[0, 0] == -80


def test_hanning_window():
    w = pp.hanning_window(25, 5)
    assert w.shape == (5 * 625,) and w.dtype == np.float32
    ref = np.tile(np.outer(np.hanning(25), np.hanning(25)).flatten(), 5)
    np.testing.assert_allclose(w, ref, atol=1e-7)
    assert np.argmax(w[:625]) == 12 * 25 + 12
    np.testing.assert_allclose(pp.hanning_window(17), np.outer(np.hanning(17), np.hanning(17)).ravel(), atol=1e-7)


def test_siamrpn_decode_hand_built_peak():
    s, k = 25, 5
    anchors = pp.pysot_anchors(8, RATIOS, SCALES, s)
    cls = np.zeros((s, s, 2 * k), np.float32)
    loc = np.zeros((s, s, 4 * k), np.float32)
    ka, y, x = 3, 7, 19  # anchor (40, 80) at row 7, column 19
    cls[y, x, k + ka] = 6.0  # foreground logit of anchor 3
    cls[y, x, ka] = -6.0  # its background logit
    cls[2, 2, 1] = 9.0  # a strong *background* elsewhere must not score
    loc[y, x, ka] = 0.25  # dx
    loc[y, x, k + ka] = -0.5  # dy
    loc[y, x, 2 * k + ka] = np.log(2.0)  # dw
    loc[y, x, 3 * k + ka] = np.log(0.5)  # dh
    score, boxes = pp.siamrpn_decode(cls, loc, anchors)
    idx = ka * s * s + y * s + x
    assert int(jnp.argmax(score)) == idx
    np.testing.assert_allclose(score[idx], 1 / (1 + np.exp(-12.0)), rtol=1e-6)
    np.testing.assert_allclose(score[2 * s + 2 + s * s], 1 / (1 + np.exp(9.0)), rtol=1e-5)
    acx, acy = -96 + 8 * x, -96 + 8 * y
    np.testing.assert_allclose(boxes[idx], [acx + 0.25 * 40, acy - 0.5 * 80, 80, 40], rtol=1e-6)
    # everywhere else: zero deltas decode to the anchors themselves
    np.testing.assert_allclose(boxes[idx + 1], anchors[idx + 1], rtol=1e-6)


def test_siamfcpp_score_row_major():
    rng = np.random.default_rng(0)
    cls, ctr = rng.normal(size=(17, 17, 1)), rng.normal(size=(17, 17, 1))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    np.testing.assert_allclose(pp.siamfcpp_score(cls, ctr), (sig(cls) * sig(ctr))[..., 0].reshape(-1), rtol=1e-6)
    assert pp.siamfcpp_score(cls[..., 0], ctr[..., 0]).shape == (289,)


def test_penalty_formula():
    rng = np.random.default_rng(1)
    pw, ph = rng.uniform(5, 200, 100), rng.uniform(5, 200, 100)
    tw, th, k = 37.0, 81.0, 0.24

    def sz(w, h):
        p = (w + h) / 2
        return np.sqrt((w + p) * (h + p))

    s_c = np.maximum(sz(pw, ph) / sz(tw, th), sz(tw, th) / sz(pw, ph))
    r = (tw / th) / (pw / ph)
    ref = np.exp(-(np.maximum(r, 1 / r) * s_c - 1) * k)
    np.testing.assert_allclose(pp.penalty(pw, ph, tw, th, k), ref, rtol=1e-5)
    np.testing.assert_allclose(pp.penalty(tw, th, tw, th, k), 1.0, rtol=1e-6)


def _agree(ours_idx, ref, what):
    """Same best index — or, in float32 vs float64, a near tie of the penalised scores."""
    i = int(ours_idx)
    if i != int(ref["best_idx"]):
        gap = ref["pscore"][ref["best_idx"]] - ref["pscore"][i]
        assert gap < 1e-5, f"{what}: best index {i} vs {ref['best_idx']} (pscore gap {gap})"
        return False
    return True


def test_pysot_track_matches_reference():
    s, k = 25, 5
    anchors = pp.pysot_anchors(8, RATIOS, SCALES, s)
    window = pp.hanning_window(s, k)

    @jax.jit
    def step(cls, loc, center, size, scale_z, frame_hw, kp, wi, lr):
        score, boxes = pp.siamrpn_decode(cls, loc, anchors)
        c, sz, best_score, best = pp.select_and_update_pysot(
            score, boxes, window, center, size, scale_z, frame_hw, penalty_k=kp, window_influence=wi, lr=lr)
        return c, sz, best_score, best, pp.cxywh_to_xywh_pysot(c, sz)

    rng = np.random.default_rng(2)
    compared = 0
    for trial in range(60):
        cls = rng.normal(scale=2.0, size=(1, 2 * k, s, s)).astype(np.float32)
        loc = rng.normal(scale=0.3, size=(1, 4 * k, s, s)).astype(np.float32)
        img_hw = (int(rng.integers(100, 800)), int(rng.integers(100, 800)))
        # also centres near / outside the border and tiny targets, so that the clip is exercised
        center = rng.uniform(-20, 1.1 * np.array(img_hw[::-1]))
        size = rng.uniform(4, 300, 2)
        kp, wi, lr = rng.uniform(0.0, 0.3), rng.uniform(0.1, 0.6), rng.uniform(0.2, 0.6)
        ref = ref_pysot_track(cls, loc, anchors, window.astype(np.float64), center, size, img_hw, kp, wi, lr)
        c, sz, best_score, best, box = step(
            cls[0].transpose(1, 2, 0), loc[0].transpose(1, 2, 0), center, size, ref["scale_z"],
            jnp.array(img_hw), kp, wi, lr)
        if not _agree(best, ref, f"trial {trial}"):
            continue
        compared += 1
        np.testing.assert_allclose(c, ref["center"], atol=1e-3, err_msg=f"trial {trial}")
        np.testing.assert_allclose(sz, ref["size"], atol=1e-3, err_msg=f"trial {trial}")
        np.testing.assert_allclose(box, ref["bbox"], atol=1e-3, err_msg=f"trial {trial}")
        np.testing.assert_allclose(best_score, ref["best_score"], atol=1e-6)
    assert compared >= 55


def test_siamfcpp_track_matches_reference():
    s, x_size = 17, 303
    window = pp.hanning_window(s)

    @jax.jit
    def step(score, box, center, size, scale_x, frame_hw, kp, wi, lr):
        c, sz, best_score, best = pp.select_and_update_siamfcpp(
            score, box, window, center, size, scale_x, x_size, frame_hw, penalty_k=kp, window_influence=wi, lr=lr)
        return c, sz, best_score, best, pp.cxywh_to_xywh_va(c, sz)

    rng = np.random.default_rng(3)
    compared = 0
    for trial in range(60):
        n = s * s
        score = rng.uniform(0, 1, n).astype(np.float32)
        ctr = rng.uniform(40, 260, (n, 2))
        wh = rng.uniform(8, 250, (n, 2))
        box = np.concatenate([ctr - wh / 2, ctr + wh / 2], axis=1).astype(np.float32)
        img_hw = (int(rng.integers(100, 800)), int(rng.integers(100, 800)))
        center = rng.uniform(-20, 1.1 * np.array(img_hw[::-1])).astype(np.float32)
        size = rng.uniform(4, 300, 2).astype(np.float32)
        wc = size[0] + 0.5 * size.sum()
        hc = size[1] + 0.5 * size.sum()
        scale_x = 127 / np.sqrt(wc * hc)
        kp, wi, lr = rng.uniform(0.0, 0.1), rng.uniform(0.1, 0.4), rng.uniform(0.3, 0.6)
        ref = ref_siamfcpp_track(score, box, window.astype(np.float64), center, size, scale_x, x_size, img_hw,
                                 kp, wi, lr)
        c, sz, best_score, best, rect = step(score, box, center, size, scale_x, jnp.array(img_hw), kp, wi, lr)
        if not _agree(best, ref, f"trial {trial}"):
            continue
        compared += 1
        np.testing.assert_allclose(c, ref["center"], atol=1e-3, err_msg=f"trial {trial}")
        np.testing.assert_allclose(sz, ref["size"], atol=1e-3, err_msg=f"trial {trial}")
        np.testing.assert_allclose(rect, ref["bbox"], atol=1e-3, err_msg=f"trial {trial}")
        np.testing.assert_allclose(best_score, ref["best_score"], atol=1e-6)
    assert compared >= 55


def test_clip_bounds():
    """Centre clipped to [0, W] x [0, H] (not W - 1), size to [10, W] x [10, H]."""
    n = 9
    score = np.zeros(n, np.float32)
    score[4] = 1.0
    window = np.zeros(n, np.float32)
    far = np.tile([[5000.0, 5000.0, 2.0, 3.0]], (n, 1)).astype(np.float32)
    c, sz, _, best = pp.select_and_update_pysot(
        score, far, window, [50.0, 40.0], [3.0, 4.0], 1.0, (120, 160), penalty_k=0.0, window_influence=0.0, lr=1.0)
    assert int(best) == 4
    np.testing.assert_allclose(c, [160.0, 120.0])
    np.testing.assert_allclose(sz, [10.0, 10.0])
    xyxy = np.tile([[-9000.0, -9000.0, 9000.0, 9000.0]], (n, 1)).astype(np.float32)
    c, sz, _, _ = pp.select_and_update_siamfcpp(
        score, xyxy, window, [50.0, 40.0], [30.0, 40.0], 1.0, 303, (120, 160),
        penalty_k=0.0, window_influence=0.0, lr=1.0)
    np.testing.assert_allclose(c, [0.0, 0.0])
    np.testing.assert_allclose(sz, [160.0, 120.0])


def test_non_finite_network_outputs_keep_the_previous_state():
    """A score or box map that overflowed (NaN, inf) never reaches the state: where the update is not finite the
    previous centre / size stay (hand-worked), finite parts still update and clip, and the score says NaN."""
    n = 4
    window = np.zeros(n, np.float32)
    nan_scores = np.full(n, np.nan, np.float32)
    boxes = np.tile([[2.0, -1.0, 20.0, 30.0]], (n, 1)).astype(np.float32)
    c, sz, score, _ = pp.select_and_update_pysot(
        nan_scores, boxes, window, [50.0, 40.0], [12.0, 14.0], 1.0, (120, 160),
        penalty_k=0.1, window_influence=0.2, lr=0.5)
    # the box is finite but the learning rate (penalty * NaN score * lr) is NaN: the size keeps (12, 14); the
    # centre moves by the chosen box's offset, which does not depend on the score (as in pysot)
    np.testing.assert_array_equal(np.asarray(c), [52.0, 39.0])
    np.testing.assert_array_equal(np.asarray(sz), [12.0, 14.0])
    assert np.isnan(float(score))
    nan_boxes = np.full((n, 4), np.nan, np.float32)
    ok_scores = np.float32([0.1, 0.9, 0.2, 0.3])
    c, sz, score, best = pp.select_and_update_pysot(
        ok_scores, nan_boxes, window, [50.0, 40.0], [12.0, 14.0], 1.0, (120, 160),
        penalty_k=0.1, window_influence=0.2, lr=0.5)
    np.testing.assert_array_equal(np.asarray(c), [50.0, 40.0])
    np.testing.assert_array_equal(np.asarray(sz), [12.0, 14.0])
    inf_xyxy = np.tile([[0.0, 0.0, np.inf, np.inf]], (n, 1)).astype(np.float32)
    c, sz, _, _ = pp.select_and_update_siamfcpp(
        ok_scores, inf_xyxy, window, [50.0, 40.0], [30.0, 40.0], 1.0, 303, (120, 160),
        penalty_k=0.0, window_influence=0.0, lr=1.0)
    assert np.isfinite(np.asarray(c)).all() and np.isfinite(np.asarray(sz)).all()
    assert (np.asarray(c) <= [160.0, 120.0]).all() and (np.asarray(sz) <= [160.0, 120.0]).all()


def test_box_conventions_video_analyst_cases():
    # cases of video_analyst bbox.py's own unit test: xyxy / xywh / cxywh
    cases = [((10, 20, 50, 40), (10, 20, 41, 21), (30, 30, 41, 21)),
             ((40, 60, 45, 75), (40, 60, 6, 16), (42.5, 67.5, 6, 16)),
             ((40, 60, 40, 60), (40, 60, 1, 1), (40, 60, 1, 1))]
    for _, xywh, cxywh in cases:
        c, s = pp.xywh_to_cxywh_va(jnp.array(xywh, jnp.float32))
        np.testing.assert_allclose(jnp.concatenate([c, s]), cxywh)
        np.testing.assert_allclose(pp.cxywh_to_xywh_va(cxywh[:2], cxywh[2:]), xywh)


def test_box_conventions_pysot():
    c, s = pp.xywh_to_cxywh_pysot(jnp.array([10.0, 20.0, 41.0, 21.0]))
    np.testing.assert_allclose(c, [30.0, 30.0])
    np.testing.assert_allclose(pp.cxywh_to_xywh_pysot(c, s), [9.5, 19.5, 41.0, 21.0])  # pysot's half-pixel shift


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, width=32), min_size=2, max_size=2),
       st.lists(st.floats(1.0, 1e3, width=32), min_size=2, max_size=2))
def test_box_conventions_batched_roundtrip(xy, wh):
    box = jnp.array([xy + wh, [0.0, 0.0, 1.0, 1.0]], jnp.float32)
    c, s = pp.xywh_to_cxywh_va(box)
    np.testing.assert_allclose(pp.cxywh_to_xywh_va(c, s), box, atol=1e-3)
    c, s = pp.xywh_to_cxywh_pysot(box)
    shifted = box.at[:, :2].add(-0.5)
    np.testing.assert_allclose(pp.cxywh_to_xywh_pysot(c, s), shifted, atol=1e-3)
