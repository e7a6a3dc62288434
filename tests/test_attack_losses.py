"""Tracker losses of jaxtrack.attacks.losses on hand-built dense predictions: formulas, labels, gradient
directions, fixed clean labels, robustness to the wild outputs of untrained networks, crop coordinates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxtrack import attacks, tracking
from jaxtrack.attacks import losses as L

REF = jnp.array([0.0, 0.0, 10.0, 10.0])


def _toy():
    """Five positions around REF: identical, shifted by 1 (IoU 0.818), shifted by 5 (IoU 1/3), two far away."""
    boxes = jnp.array([[0, 0, 10, 10], [1, 0, 10, 10], [5, 0, 10, 10], [40, 40, 10, 10], [-40, 30, 8, 12]], jnp.float32)
    scores = jnp.array([0.9, 0.6, 0.5, 0.2, 0.1], jnp.float32)
    return scores, boxes


def test_box_iou_values():
    assert float(L.box_iou(REF, REF)) == pytest.approx(1.0)
    assert float(L.box_iou(jnp.array([0.0, 0, 2, 2]), jnp.array([1.0, 0, 2, 2]))) == pytest.approx(1 / 3)
    assert float(L.box_iou(REF, jnp.array([100.0, 0, 10, 10]))) == 0.0
    assert float(L.box_iou(REF, jnp.array([0.0, 0, 0, 0]))) == 0.0  # empty box: no NaN


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.lists(st.floats(-50, 50), min_size=8, max_size=8))
def test_box_iou_is_symmetric_and_in_unit_interval(v):
    a = jnp.array([v[0], v[1], abs(v[2]) + 0.1, abs(v[3]) + 0.1])
    b = jnp.array([v[4], v[5], abs(v[6]) + 0.1, abs(v[7]) + 0.1])
    iou = float(L.box_iou(a, b))
    assert 0.0 <= iou <= 1.0 + 1e-6
    assert iou == pytest.approx(float(L.box_iou(b, a)), abs=1e-6)


def test_iou_labels_rule():
    _, boxes = _toy()
    np.testing.assert_array_equal(np.asarray(L.iou_labels(boxes, REF)), [1, 1, -1, 0, 0])
    # Nothing overlaps: the nearest centre becomes the only positive, the rest are negatives.
    far = boxes + jnp.array([200.0, 0, 0, 0])
    far = far.at[3].set(jnp.array([150.0, 0, 5, 5]))
    np.testing.assert_array_equal(np.asarray(L.iou_labels(far, REF)), [0, 0, 0, 1, 0])
    # Overlaps below 0.6 only (IoU 0.25, 0.11, 0.33): the best-overlapping position is positive.
    weak = boxes.at[0].set(jnp.array([6.0, 0, 10, 10])).at[1].set(jnp.array([8.0, 0, 10, 10]))
    np.testing.assert_array_equal(np.asarray(L.iou_labels(weak, REF)), [0, 0, 1, 0, 0])


def test_cls_and_reg_terms_by_hand():
    scores, boxes = _toy()
    labels = L.iou_labels(boxes, REF)
    d = 1e-6
    want = 0.5 * np.mean([-np.log(0.9 + d), -np.log(0.6 + d)]) + 0.5 * np.mean([-np.log(0.8 + d), -np.log(0.9 + d)])
    assert float(L.cls_loss(scores, labels)) == pytest.approx(want, rel=1e-5)
    iou1 = 90 / 110
    assert float(L.reg_loss(boxes, REF, labels, "iou")) == pytest.approx((0 + 1 - iou1) / 2, rel=1e-5)
    # smooth-L1 of the normalised deltas: only the x-offset of position 1, 0.1 -> 0.5 * 0.01
    assert float(L.reg_loss(boxes, REF, labels, "smooth_l1")) == pytest.approx(0.005 / 2, rel=1e-4)
    with pytest.raises(ValueError, match="regression kind"):
        L.reg_loss(boxes, REF, labels, "l2")


def test_tracking_loss_and_dua_loss():
    scores, boxes = _toy()
    perfect_scores = jnp.array([1.0, 1.0, 0.5, 0.0, 0.0])
    perfect_boxes = boxes.at[1].set(REF)
    clean = (scores, boxes)
    assert float(L.tracking_loss(perfect_scores, perfect_boxes, REF, clean)) == pytest.approx(0.0, abs=1e-5)
    t = float(L.tracking_loss(scores, boxes, REF))
    assert t > 0.1
    assert float(L.dua_loss(scores, boxes, REF)) == pytest.approx(t)  # same loss by default
    labels = L.iou_labels(boxes, REF)
    lam3 = float(L.cls_loss(scores, labels) + 3 * L.reg_loss(boxes, REF, labels, "smooth_l1"))
    assert float(L.dua_loss(scores, boxes, REF, lam=3.0, reg="smooth_l1")) == pytest.approx(lam3, rel=1e-6)
    # Gradient directions: the Dua-Loss (maximised) grows when target scores fall and background scores rise.
    g = np.asarray(jax.grad(L.dua_loss)(scores, boxes, REF))
    assert g[0] < 0 and g[1] < 0 and g[3] > 0 and g[4] > 0 and g[2] == 0


def test_clean_labels_stay_fixed_when_predictions_move():
    scores, boxes = _toy()
    moved = boxes.at[1].set(jnp.array([6.0, 0, 10, 10]))  # position 1 no longer overlaps enough
    fixed = L.dua_loss(scores, moved, REF, clean=(scores, boxes))
    relabelled = L.dua_loss(scores, moved, REF)
    labels = L.iou_labels(boxes, REF)
    want = L.cls_loss(scores, labels) + L.reg_loss(moved, REF, labels)
    assert float(fixed) == pytest.approx(float(want))
    assert float(fixed) != pytest.approx(float(relabelled))


def test_csa_loss_formula_margins_and_mask():
    scores, boxes = _toy()
    clean_scores = jnp.array([0.95, 0.8, 0.1, 0.1, 0.1])  # CSA mask: positions 0 and 1
    clean = (clean_scores, boxes)
    d = 1e-6

    def logit(s):
        return np.log(s + d) - np.log(1 - s + d)

    cooling = np.mean([logit(0.9), logit(0.6)])
    shrinking = 0.0 + 0.0  # masked boxes have the reference's size
    assert float(L.csa_loss(scores, boxes, REF, clean)) == pytest.approx(-(0.1 * cooling + shrinking), rel=1e-5)
    g_s, g_b = jax.grad(L.csa_loss, argnums=(0, 1))(scores, boxes, REF, clean)
    g_s, g_b = np.asarray(g_s), np.asarray(g_b)
    assert g_s[0] < 0 and g_s[1] < 0 and np.all(g_s[2:] == 0)  # cool the masked positions only
    assert np.all(g_b[:2, 2:] < 0) and np.all(g_b[2:] == 0) and np.all(g_b[:, :2] == 0)  # shrink them
    # Past the margins (logit < -5, log-size < -5) CSA is satisfied: constant value, no gradient.
    done_scores = scores.at[:2].set(1e-3)
    done_boxes = boxes.at[:2, 2:].set(10 * np.exp(-6))
    v = float(L.csa_loss(done_scores, done_boxes, REF, clean))
    assert v == pytest.approx(-(0.1 * -5 + 2 * -5), rel=1e-6)
    g_s, g_b = jax.grad(L.csa_loss, argnums=(0, 1))(done_scores, done_boxes, REF, clean)
    assert not np.any(np.asarray(g_s)) and not np.any(np.asarray(g_b))
    # No clean score above 0.7: the clean arg-max alone is attacked.
    mask = L.score_mask(jnp.array([0.1, 0.3, 0.2]))
    np.testing.assert_array_equal(np.asarray(mask), [False, True, False])


def test_rtaa_pseudo_box_and_loss():
    np.testing.assert_allclose(np.asarray(L.rtaa_pseudo_box(jnp.array([1.0, 2, 10, 20]))), [-3, -6, 8, 16], rtol=1e-6)
    for seed in range(5):
        p = np.asarray(L.rtaa_pseudo_box(jnp.array([0.0, 0, 10, 20]), jax.random.key(seed)))
        assert -5 <= p[0] <= -3 and -10 <= p[1] <= -6 and 7 <= p[2] <= 9 and p[3] == pytest.approx(2 * p[2])
    scores, boxes = _toy()
    labels = np.asarray(L.iou_labels(boxes, REF))
    pseudo = L.rtaa_pseudo_box(REF)
    used = labels >= 0
    y = (labels == 1).astype(np.float32)
    s = np.asarray(scores)

    def bce(t):
        return -(t * np.log(s + 1e-6) + (1 - t) * np.log(1 - s + 1e-6))

    def reg(target):
        d = np.asarray(L.box_deltas(boxes, target, norm_size=REF[2:]))
        return float(np.sum(np.asarray(L.smooth_l1(d)).sum(-1) * (labels == 1)))

    want = bce(y)[used].mean() - bce(1 - y)[used].mean() + 5 * (reg(REF) - reg(pseudo))
    assert float(L.rtaa_loss(scores, boxes, REF)) == pytest.approx(want, rel=1e-5)
    g = np.asarray(jax.grad(L.rtaa_loss)(scores, boxes, REF))
    assert g[0] < 0 and g[3] > 0  # maximising lowers the target score and raises the background
    # The regression part pulls the positives' boxes towards the pseudo box (up-left, smaller).
    gb = np.asarray(jax.grad(L.rtaa_loss, argnums=1)(scores, boxes, REF))
    assert gb[0, 0] < 0 and gb[0, 1] < 0 and gb[0, 2] < 0 and gb[0, 3] < 0


def test_score_margin_loss():
    scores, boxes = _toy()
    assert float(L.score_margin_loss(scores, boxes, REF)) == pytest.approx(0.2 - 0.9)


def test_losses_finite_on_wild_predictions():
    """Untrained networks give scores of exactly 0 or 1 and boxes of 1e20 pixels or of size 0."""
    scores = jnp.array([0.0, 1.0, 1.0, 0.0, 0.5])
    boxes = jnp.array([[1e20, -1e19, 1e21, 1e20], [0, 0, 0, 0], [3, 4, 1e-9, 5], [0, 0, 10, 10], [-5, 5, 7, 3]])

    @jax.jit
    def values_and_grads(scores, boxes, ref):
        return {
            name: jax.value_and_grad(loss, argnums=(0, 1))(scores, boxes, ref, (scores, boxes))
            for name, loss in L.LOSSES.items()
        }

    for ref in (REF, boxes[0], jnp.array([0.0, 0, 1e-4, 1e-4])):
        for name, (value, (gs, gb)) in values_and_grads(scores, boxes, ref).items():
            assert np.isfinite(float(value)), (name, ref)
            assert np.all(np.isfinite(np.asarray(gs))) and np.all(np.isfinite(np.asarray(gb))), (name, ref)


def test_losses_vmap_over_a_batch():
    scores, boxes = _toy()
    sb = jnp.stack([scores, scores[::-1]])
    bb = jnp.stack([boxes, boxes + 1])
    refs = jnp.stack([REF, REF * 2])
    got = jax.jit(jax.vmap(L.dua_loss))(sb, bb, refs)
    one = jax.jit(L.dua_loss)
    np.testing.assert_allclose(np.asarray(got), [float(one(sb[i], bb[i], refs[i])) for i in range(2)], rtol=1e-6)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.lists(st.floats(-300, 300), min_size=4, max_size=4), st.floats(0.1, 4), st.floats(1, 200), st.floats(1, 200))
def test_box_in_crop_round_trip(c, scale, w, h):
    frame_box = jnp.array([c[0], c[1], w, h])
    center = jnp.array([c[2], c[3]])
    crop = L.box_in_crop(frame_box, center, scale)
    np.testing.assert_allclose(np.asarray(crop[2:]), [w * scale, h * scale], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(L.box_from_crop(crop, center, scale)), np.asarray(frame_box), atol=2e-3)


@pytest.mark.parametrize("name", ["siamrpn_alex", "siamfcpp_alexnet"])
def test_init_box_is_centred_in_the_crop(name):
    """The box a tracker is initialised with sits at the crop centre with its size times the crop scale."""
    tracker = tracking.create(name)
    box = jnp.array([31.0, 40.0, 27.0, 33.0])
    center, _ = tracker.box_to_center_size(box)
    scale = 1.7
    np.testing.assert_allclose(np.asarray(L.box_in_crop(box, center, scale)), [0, 0, 27 * 1.7, 33 * 1.7], rtol=1e-6)


def test_best_box_has_no_gradient():
    scores, boxes = _toy()
    g = jax.grad(lambda b: jnp.sum(attacks.best_box(scores, b)))(boxes)
    assert not np.any(np.asarray(g))
    np.testing.assert_array_equal(np.asarray(attacks.best_box(scores, boxes)), np.asarray(boxes[0]))
