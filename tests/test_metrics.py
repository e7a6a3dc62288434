"""OTB metrics against hand-worked values and against pysot-toolkit scores of OpenCV's TrackerNano."""

import json
import re

import numpy as np
import pytest

from jaxtrack.eval import metrics


def _read_gt(path):
    rows = [re.split(r"[,\s]+", line.strip()) for line in open(path) if line.strip()]
    gt = np.array(rows, dtype=np.float64)
    gt[:, :2] -= 1  # OTB files are 1-based
    return gt


def test_iou_hand_worked():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    b = np.array([[5, 0, 10, 10], [0, 0, 10, 10], [20, 20, 5, 5]])
    np.testing.assert_allclose(metrics.iou_xywh(a, b), [50 / 150, 1.0, 0.0])


def test_perfect_tracker_scores_20_of_21():
    gt = np.array([[10, 10, 20, 30]] * 7, dtype=float)
    assert metrics.success_auc(gt, gt) == pytest.approx(20 / 21)
    assert metrics.precision_at_20(gt, gt) == 1.0


def test_invalid_ground_truth_counts_as_failure():
    gt = np.array([[10, 10, 20, 30], [10, 10, 0, 30]], dtype=float)
    curve = metrics.success_curve(gt, gt)
    assert curve[0] == 0.5  # the w=0 frame fails even at threshold 0, denominator stays 2


def test_iou_exactly_at_threshold_is_not_a_success():
    gt = np.array([[0, 0, 10, 10]], dtype=float)
    pred = np.array([[5, 0, 10, 10]], dtype=float)  # IoU 1/3
    pred_half = np.array([[0, 0, 10, 5]], dtype=float)  # IoU exactly 0.5
    assert metrics.success_curve(gt, pred_half)[10] == 0.0  # threshold 0.5, strict >
    assert metrics.success_curve(gt, pred_half)[9] == 1.0
    assert metrics.success_curve(gt, pred)[6] == 1.0 and metrics.success_curve(gt, pred)[7] == 0.0


@pytest.mark.parametrize("name", ["Crossing", "Couple", "KiteSurf", "Jogging-2", "Football1", "David"])
def test_matches_pysot_toolkit_scores(data_dir, name):
    ref = json.loads((data_dir / "reference_results/OTB/nanotrackv2_opencv.json").read_text())["per_sequence"][name]
    gt = _read_gt(data_dir / f"sequences/OTB/{name}/groundtruth_rect.txt")
    pred = np.loadtxt(data_dir / f"reference_results/OTB/nanotrackv2_opencv/{name}.txt", delimiter=",")
    pred = pred[: len(gt)]  # Football1: 81 images, 74 annotated frames
    assert len(gt) == ref["frames_evaluated"]
    assert metrics.success_auc(gt, pred) == pytest.approx(ref["success_auc"], abs=1e-12)
    assert metrics.precision_at_20(gt, pred) == pytest.approx(ref["precision"], abs=1e-12)


def test_too_few_predictions_is_an_error():
    with pytest.raises(ValueError, match="2 predicted boxes for 3"):
        metrics.success_auc(np.ones((3, 4)), np.ones((2, 4)))


# ------------------------------------------------------------------------------ LaSOT / normalised precision


def _lasot_case():
    """5 annotated frames (+2 predictions beyond them, e.g. images past the annotated sub-range)."""
    nan = float("nan")
    gt = np.array([
        [0, 0, 10, 10],  # visible, perfect prediction: IoU 1, distance 0
        [0, 0, 10, 10],  # visible, prediction shifted by 5 px: IoU 1/3, distance 5, normalised 0.5
        [20, 20, 10, 10],  # invisible (perfect prediction, but not scored)
        [nan, nan, nan, nan],  # marked visible but NaN ground truth
        [3, 3, 0, 5],  # marked visible but zero-size ground truth
    ], dtype=float)
    pred = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 10, 10], [1, 1, 5, 5], [3, 3, 1, 5],
                     [9, 9, 9, 9], [9, 9, 9, 9]], dtype=float)
    visible = np.array([True, True, False, True, True])
    return gt, pred, visible


def test_lasot_success_hand_worked():
    gt, pred, visible = _lasot_case()
    curve = metrics.success_curve(gt, pred, visible)
    # frame 0 succeeds below threshold 1 (indices 0..19), frame 1 while t < 1/3 (indices 0..6); the other
    # three frames are failures that stay in the denominator of 5
    expected = np.array([(int(i <= 19) + int(i <= 6)) / 5 for i in range(21)])
    np.testing.assert_allclose(curve, expected)
    assert metrics.success_auc(gt, pred, visible) == pytest.approx((20 + 7) / (5 * 21))


def test_lasot_precision_hand_worked():
    gt, pred, visible = _lasot_case()
    curve = metrics.precision_curve(gt, pred, visible)
    np.testing.assert_allclose(curve, [(1 + int(t >= 5)) / 5 for t in range(51)])
    assert metrics.precision_at_20(gt, pred, visible) == pytest.approx(0.4)
    norm = metrics.norm_precision_curve(gt, pred, visible)
    # frame 1: centre error 5 px on a 10 px wide target = 0.5 normalised, so only frame 0 hits below 0.5
    assert norm[20] == pytest.approx(1 / 5) and norm[49] == pytest.approx(1 / 5)
    assert metrics.norm_precision_at_020(gt, pred, visible) == pytest.approx(0.2)


def test_without_visibility_pysot_otb_quirks_stay():
    gt, pred, _ = _lasot_case()
    # OTB convention: frame 2 is scored (IoU 1); NaN / zero-size ground truth fail in success...
    assert metrics.success_curve(gt, pred)[0] == pytest.approx(3 / 5)
    # ...but pysot's precision counts the NaN-centre frame as a hit (distance -1); the zero-size frame has a
    # positive centre (2.5, 5), 0.5 px from the prediction's (3, 5)
    curve = metrics.precision_curve(gt, pred)
    assert curve[0] == pytest.approx(3 / 5) and curve[1] == pytest.approx(4 / 5) and curve[5] == 1.0


def test_norm_precision_divides_by_ground_truth_size_per_axis():
    gt = np.array([[0, 0, 100, 10]], dtype=float)
    pred = np.array([[15, 1, 100, 10]], dtype=float)  # 15 px / 100 = 0.15 in x, 1 px / 10 = 0.1 in y
    d = np.hypot(0.15, 0.1)  # 0.180
    curve = metrics.norm_precision_curve(gt, pred)
    assert curve[18] == 0.0 and curve[19] == 1.0
    assert metrics.precision_curve(gt, pred)[15] == 0.0 and metrics.precision_curve(gt, pred)[16] == 1.0
    assert d < 0.19


def test_visibility_must_match_ground_truth_length():
    gt, pred, _ = _lasot_case()
    with pytest.raises(ValueError, match="visible must be"):
        metrics.success_curve(gt, pred, [True, False])


@pytest.mark.parametrize("name", ["Crossing", "Couple", "KiteSurf", "Jogging-2", "Football1", "David"])
def test_norm_precision_matches_pysot_toolkit(data_dir, name):
    ref = json.loads((data_dir / "reference_results/OTB/nanotrackv2_opencv.json").read_text())["per_sequence"][name]
    gt = _read_gt(data_dir / f"sequences/OTB/{name}/groundtruth_rect.txt")
    pred = np.loadtxt(data_dir / f"reference_results/OTB/nanotrackv2_opencv/{name}.txt", delimiter=",")
    assert metrics.norm_precision_at_020(gt, pred) == pytest.approx(ref["norm_precision_0.20"], abs=1e-12)
    # every frame visible: the LaSOT path gives the same numbers
    vis = np.ones(len(gt), bool)
    assert metrics.norm_precision_at_020(gt, pred, vis) == pytest.approx(ref["norm_precision_0.20"], abs=1e-12)
    assert metrics.success_auc(gt, pred, vis) == pytest.approx(ref["success_auc"], abs=1e-12)


def test_dataset_scores_and_attribute_breakdown():
    gt = np.array([[0, 0, 10, 10]] * 4, dtype=float)
    good = metrics.sequence_curves(gt, gt)
    half = metrics.sequence_curves(gt, np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 5, 5], [50, 50, 5, 5]]))
    curves = {"a": good, "b": half, "c": good}
    scores = metrics.dataset_scores(curves)
    assert scores["success_auc"] == pytest.approx((20 / 21 + 10 / 21 + 20 / 21) / 3)
    assert scores["precision"] == pytest.approx((1 + 0.5 + 1) / 3)
    np.testing.assert_allclose(scores["success_curve"], np.mean([good["success"], half["success"], good["success"]], 0))
    attrs = {"a": ("OCC", "SV"), "b": ("OCC",), "c": ("SV",), "unscored": ("IV",)}
    by_attr = metrics.attribute_breakdown(curves, attrs)
    assert list(by_attr) == ["OCC", "SV"]  # "IV" only on a sequence without results
    assert by_attr["OCC"]["num_sequences"] == 2
    assert by_attr["OCC"]["success_auc"] == pytest.approx((20 / 21 + 10 / 21) / 2)
    assert by_attr["SV"]["precision"] == pytest.approx(1.0)
