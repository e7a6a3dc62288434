"""jaxtrack.attacks.iou: the black-box IoU attack -- its IoU score against the NumPy metric, its L∞ budget (exact, as
:func:`jaxtrack.attacks.project` guarantees), that it never differentiates (the tracker it attacks is behind
``jax.pure_callback``, which has no derivative), that it lowers the IoU score of a toy tracker whose boxes it can
move, and that it lowers NanoTrack's (real weights) overlap with its clean boxes on a real sequence.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtrack import attacks
from jaxtrack.attacks.iou import IoUAttackConfig, iou_attack, iou_score
from jaxtrack.eval.metrics import iou_xywh as numpy_iou

SIDE = 48


@pytest.fixture(scope="module")
def nanotrack_variables(data_dir):
    from jaxtrack import tracking
    from jaxtrack.weights import load_path, shared_path

    path = shared_path("nanotrack_v2")
    if path is None:
        pytest.skip("NanoTrack weights not in the shared data")
    return load_path(tracking.create("nanotrack_v2"), path).variables


@pytest.fixture(scope="module")
def otb_root(data_dir):
    return data_dir / "sequences/OTB"


def test_iou_matches_the_numpy_metric():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 50, (200, 4)).astype(np.float32)
    b = np.concatenate([a[:50] + rng.normal(0, 3, (50, 4)), rng.uniform(0, 50, (150, 4))]).astype(np.float32)
    b[:, 2:] = np.abs(b[:, 2:])
    # float32 against the metric's float64: a few ulps of areas up to 2,500 (measured 3.3e-6 relative)
    spatial_only = iou_score(jnp.asarray(a), jnp.asarray(b), jnp.zeros(4), 0.0)  # w_t = 0: the IoU itself
    np.testing.assert_allclose(np.asarray(spatial_only), numpy_iou(a, b), rtol=2e-5, atol=1e-6)
    # hand-worked: two 2x2 boxes overlapping on 1x2 -> 2 / 6; the score weighs spatial 0.9, temporal 0.1
    one = jnp.array([0.0, 0.0, 2.0, 2.0])
    assert float(iou_score(one, jnp.array([1.0, 0.0, 2.0, 2.0]), one, 0.0)) == pytest.approx(1 / 3)
    assert float(iou_score(one, one, jnp.array([1.0, 0.0, 2.0, 2.0]), 0.1)) == pytest.approx(0.9 + 0.1 / 3)


def _threshold_box(crops: np.ndarray) -> np.ndarray:
    """A toy tracker in NumPy: the bounding box (x, y, w, h) of the pixels whose mean over channels exceeds 128."""
    out = []
    for c in np.asarray(crops):
        ys, xs = np.nonzero(c.mean(-1) > 128)
        if len(xs) == 0:
            out.append([0, 0, 0, 0])
        else:
            out.append([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1])
    return np.asarray(out, np.float32)


def black_box_query(crops):
    """The toy tracker behind ``jax.pure_callback``: any derivative of it raises."""
    shape = jax.ShapeDtypeStruct((crops.shape[0], 4), jnp.float32)
    return jax.pure_callback(_threshold_box, shape, crops, vmap_method="sequential")


def test_iou_attack_reads_only_boxes_respects_its_budget_and_lowers_the_score():
    """A dark crop (grey 100) with a bright square: pixels pushed above 128 by the perturbation grow the toy
    tracker's box. The attack (jitted) must run without differentiating the query, stay inside the ε-ball and the
    pixel box exactly, and end with an IoU score no higher than its start -- here strictly lower."""
    x = np.full((SIDE, SIDE, 3), 100.0, np.float32)
    x[18:30, 18:30] = 220.0
    with pytest.raises(Exception, match="(?i)pure_callback|jvp|differentiat"):  # the query has no derivative
        jax.grad(lambda c: jnp.sum(black_box_query(c)))(jnp.asarray(x)[None])
    config = IoUAttackConfig(eps=40.0, steps=12, candidates=6)
    previous = jnp.array([18.0, 18.0, 12.0, 12.0])
    run = jax.jit(lambda x, key: iou_attack(black_box_query, x, previous, key, config))
    x_adv, score, start = jax.device_get(run(jnp.asarray(x), jax.random.key(0)))
    assert np.max(np.abs(x_adv - x)) <= config.eps and x_adv.min() >= 0 and x_adv.max() <= 255
    assert start == pytest.approx(1.0)  # nothing carried: the start is the clean crop
    assert score < 0.9, score
    box = _threshold_box(x_adv[None])
    clean = _threshold_box(x[None])
    assert float(iou_score(jnp.asarray(box), jnp.asarray(clean[0]), previous, 0.1)[0]) == pytest.approx(score)
    assert config.queries_per_frame == 3 + 12 * 7


def test_online_iou_attack_config_and_errors():
    cfg = attacks.attack_config("iou", 8.0, 20)
    assert cfg == IoUAttackConfig(eps=8.0, steps=20)
    with pytest.raises(ValueError, match="only eps and steps"):
        attacks.attack_config("iou", 8.0, 10, step_size=2.0)
    with pytest.raises(ValueError, match="search crops only"):
        attacks.OnlineAttack(cfg, target="both")
    assert attacks.OnlineAttack(cfg).describe() == "iou20x8-search-eps8"
    with pytest.raises(ValueError, match="eps must be > 0"):
        IoUAttackConfig(eps=0.0)


@pytest.mark.slow
def test_iou_attack_lowers_nanotrack_overlap_on_a_real_sequence(nanotrack_variables, otb_root):
    """NanoTrack v2 (real weights) on the first 12 frames of the held-out OTB sequence Crossing: under the IoU
    attack (ε 8, 10 iterations of 8 candidates) its boxes overlap its clean boxes less, and the ground truth less,
    than clean tracking does. (The budget is the toy test's: the same projection.)"""
    from jaxtrack import tracking
    from jaxtrack.data.sequence import load_otb_folder

    tracker = tracking.create("nanotrack_v2")
    seq = load_otb_folder(otb_root / "Crossing")
    frames = np.stack([seq.frame(i) for i in range(12)])
    gt = np.asarray(seq.ground_truth[:12])
    clean, _ = tracker.track_sequence(nanotrack_variables, frames, seq.init_box)
    attacked = attacks.attacked(tracker, IoUAttackConfig(eps=8.0, steps=10, candidates=8))
    boxes, _ = attacked.track_sequence(nanotrack_variables, frames, seq.init_box)
    clean, boxes = np.asarray(clean), np.asarray(boxes)
    to_clean, to_gt, clean_to_gt = (numpy_iou(boxes, clean)[1:].mean(), numpy_iou(boxes, gt).mean(),
                                    numpy_iou(clean, gt).mean())
    # measured: 0.883 / 0.733 against 0.758 clean (deterministic: fixed keys, one CPU program)
    assert to_clean < 0.95 and to_gt < clean_to_gt, (to_clean, to_gt, clean_to_gt)
