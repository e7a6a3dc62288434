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
