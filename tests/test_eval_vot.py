"""VOT: pysot's rasterised region overlap, the supervised restart protocol, accuracy/robustness and EAO.

Expected values are worked out by hand in the comments (pixel counts of region.c's inclusive rasterisation,
fragment tables of the EAO), not taken from the implementation.
"""

import hashlib
import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxtrack.data.sequence import Sequence
from jaxtrack.eval import vot
from jaxtrack.eval.region import polygon_area, polygon_iou_exact, rasterize_polygon, vot_overlap, vot_overlap_traj

# ------------------------------------------------------------------------------------------- region overlap


def test_boxes_are_pixel_inclusive():
    # [0,0,10,10] covers columns/rows 0..10 (11 x 11 = 121 px); shifted by 5 the overlap is 6 x 11 = 66 px
    # and the union 16 x 11 = 176 px: 0.375, not the continuous 1/3
    assert vot_overlap([0, 0, 10, 10], [5, 0, 10, 10]) == 66 / 176
    assert vot_overlap([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0


def test_touching_boxes_do_not_overlap():
    # their bounding boxes only touch (zero-area intersection): region.c returns 0 before rasterising,
    # although both masks would contain column 10
    assert vot_overlap([0, 0, 10, 10], [10, 0, 10, 10]) == 0.0
    assert vot_overlap([0, 0, 10, 10], [30, 30, 5, 5]) == 0.0


def test_bound_clips_both_regions():
    # x in [-5, 5] is clipped to columns 0..5 (6 px) by the (20, 20) bound: 66 of the other box's 121 px
    assert vot_overlap([-5, 0, 10, 10], [0, 0, 10, 10], (20, 20)) == pytest.approx(66 / 121, rel=1e-7)
    # without a bound the first box keeps its 11 columns: overlap 6 x 11 / (16 x 11)
    assert vot_overlap([-5, 0, 10, 10], [0, 0, 10, 10]) == 66 / 176
    # a box entirely outside the image overlaps nothing
    assert vot_overlap([30, 30, 10, 10], [32, 32, 10, 10], (20, 20)) == 0.0


def test_rotated_square_pixel_count():
    diamond = [10, 0, 20, 10, 10, 20, 0, 10]  # vertices on integer pixels, continuous area 200
    mask = rasterize_polygon(np.array(diamond, np.float32).reshape(-1, 2), 21, 21)
    # row y (1..9) holds 2y + 1 px; rows 0 and 20 touch a vertex only, which gives two equal nodes that the
    # C loop skips (0 px); row 10 runs from the left to the right vertex (21 px)
    expected_rows = [0] + [2 * y + 1 for y in range(1, 10)] + [21] + [2 * (20 - y) + 1 for y in range(11, 20)] + [0]
    np.testing.assert_array_equal(mask.sum(axis=1), expected_rows)
    assert mask.sum() == 219
    # inside the square [0, 0, 20, 20] (21 x 21 px): 219 / 441
    assert vot_overlap(diamond, [0, 0, 20, 20]) == pytest.approx(219 / 441, rel=1e-7)


def test_vot_records_give_nan_and_bad_regions_raise():
    assert math.isnan(vot_overlap([1], [0, 0, 5, 5]))
    assert math.isnan(vot_overlap([0, 0, 5, 5], [2]))
    with pytest.raises(ValueError, match="region has 1"):
        vot_overlap([0, 0, 5], [0, 0, 5, 5])
    traj = vot_overlap_traj([[1], [0, 0, 10, 10], [2], [0, 0, 10, 10]],
                            [[0, 0, 10, 10]] * 3 + [[5, 0, 10, 10]])
    assert math.isnan(traj[0]) and traj[1] == 1.0 and math.isnan(traj[2]) and traj[3] == 0.375


def test_exact_polygon_areas():
    square = [0, 0, 4, 4]
    diamond = [2, 0, 4, 2, 2, 4, 0, 2]  # area 8, inside the square (area 16)
    assert polygon_area(np.array(diamond, float).reshape(-1, 2)) == pytest.approx(8)
    assert polygon_iou_exact(diamond, square) == pytest.approx(8 / 16)
    # diamond centred on the square's right edge: the left half (area 4) is inside; union 16 + 8 - 4
    assert polygon_iou_exact([4, 0, 6, 2, 4, 4, 2, 2], square) == pytest.approx(4 / 20)
    # clipped by the bound: only the right half (area 4) of a diamond centred on x = 0 is in the image, and it
    # lies inside the 2 x 4 rectangle
    assert polygon_iou_exact([-2, 2, 0, 0, 2, 2, 0, 4], [0, 0, 2, 4], (10, 10)) == pytest.approx(4 / 8)
    # orientation does not matter
    rev = np.array(diamond, float).reshape(-1, 2)[::-1].ravel()
    assert polygon_iou_exact(rev, square) == pytest.approx(0.5)


def _rotated_rect(cx, cy, w, h, angle):
    c, s = math.cos(angle), math.sin(angle)
    pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2 @ np.array([[c, -s], [s, c]]).T + [cx, cy]
    return pts.ravel()


@settings(max_examples=40, deadline=None)
@given(st.tuples(st.floats(150, 250), st.floats(150, 250), st.floats(60, 150), st.floats(60, 150),
                 st.floats(0, math.pi)),
       st.tuples(st.floats(150, 250), st.floats(150, 250), st.floats(60, 150), st.floats(60, 150),
                 st.floats(0, math.pi)))
def test_rasterised_overlap_approaches_exact_iou_for_large_regions(a, b):
    p, q = _rotated_rect(*a), _rotated_rect(*b)
    assert vot_overlap(p, q, (400, 400)) == pytest.approx(polygon_iou_exact(p, q, (400, 400)), abs=0.03)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=8, max_size=8), st.lists(st.integers(0, 30), min_size=8, max_size=8))
def test_overlap_is_the_iou_of_the_rasterised_masks(a, b):
    """For regions inside the bound, the overlap equals the IoU of the two masks on the shared grid (the
    counting of pixel runs agrees with painting them)."""
    pa, pb = np.array(a, np.float32).reshape(-1, 2), np.array(b, np.float32).reshape(-1, 2)
    ov = vot_overlap(a, b)
    lo = np.floor(np.minimum(pa.min(0), pb.min(0)))
    size = (np.ceil(np.maximum(pa.max(0), pb.max(0))) - lo + 1).astype(int)
    ma = rasterize_polygon(pa - lo, size[0], size[1])
    mb = rasterize_polygon(pb - lo, size[0], size[1])
    a_box = np.ptp(pa, axis=0).prod()
    b_box = np.ptp(pb, axis=0).prod()
    if a_box == 0 or b_box == 0 or ov == 0:  # region.c's early exits (degenerate or disjoint bounding boxes)
        return
    union = (ma | mb).sum()
    assert ov == pytest.approx((ma & mb).sum() / union, rel=1e-6)


# ------------------------------------------------------------------------------------------- the protocol


class ScriptedTracker:
    """``init`` / ``step`` of the tracker interface; the box for frame t is ``script(t)``. The frame index is
    read from pixel (0, 0) (the test frames carry it), so the tracker knows which frame it is shown."""

    def __init__(self, script):
        self.script = script
        self.calls = []

    @staticmethod
    def index(frame):
        return int(frame[0, 0, 0]) + 256 * int(frame[0, 0, 1])

    def init(self, variables, frame, box):
        self.calls.append(("init", self.index(frame), [float(v) for v in box]))
        return {"t": self.index(frame)}

    def step(self, variables, state, frame):
        t = self.index(frame)
        self.calls.append(("step", t))
        return state, np.asarray(self.script(t), np.float32), np.float32(1.0)


def _frames_sequence(tmp_path, name, polygons, size=(64, 64), tags=None):
    """A real :class:`Sequence` of PNG frames (lossless, so the frame index survives) with VOT polygons."""
    folder = tmp_path / name
    folder.mkdir()
    paths = []
    for t in range(len(polygons)):
        img = np.full((size[1], size[0], 3), 90, np.uint8)
        img[0, 0, 0], img[0, 0, 1] = t % 256, t // 256
        p = folder / f"{t:08d}.png"
        cv2.imwrite(str(p), img)
        paths.append(str(p))
    polys = np.asarray(polygons, float)
    xs, ys = polys[:, 0::2], polys[:, 1::2]
    gt = np.stack([xs.min(1), ys.min(1), xs.max(1) - xs.min(1), ys.max(1) - ys.min(1)], axis=1)
    return Sequence(name, tuple(paths), None, gt, polygons=polys, tags=tags or {})


SQUARE = [10, 10, 30, 10, 30, 30, 10, 30]  # target polygon (corners 10..30), 21 x 21 px
GOOD = [10, 10, 20, 20]  # the same region as a box: overlap 1
HALF = [10, 10, 20, 10]  # rows 10..20 of the 21: 231 / 441 px
LOST = [45, 45, 5, 5]  # no overlap


def test_restart_protocol_records_and_calls(tmp_path):
    n = 60
    fail_at = {14, 30}
    seq = _frames_sequence(tmp_path, "toy", [SQUARE] * n)
    trk = ScriptedTracker(lambda t: LOST if t in fail_at else (HALF if 10 <= t <= 13 else GOOD))
    run = vot.run_vot_sequence(trk, None, seq, chunk_size=7)
    kinds = ["1" if r == [1] else "2" if r == [2] else "0" if r == [0] else "box" for r in run.records]
    # init at 0; failure at 14 -> frames 15..18 skipped, re-init at 19 = 14 + 5; failure at 30 -> re-init at 35
    expected = (["1"] + ["box"] * 13 + ["2"] + ["0"] * 4 + ["1"] + ["box"] * 10 + ["2"] + ["0"] * 4 + ["1"]
                + ["box"] * 24)
    assert kinds == expected
    assert run.lost == 2
    assert [c[1] for c in trk.calls if c[0] == "init"] == [0, 19, 35]
    stepped = [c[1] for c in trk.calls if c[0] == "step"]
    assert stepped == list(range(1, 15)) + list(range(20, 31)) + list(range(36, 60))  # skipped frames: no call
    assert run.tracker_calls == len(trk.calls) == 3 + 14 + 11 + 24
    # pysot's area-preserving init box of the square polygon: s = 1, w = h = 20 + 1, centre 20
    np.testing.assert_allclose(trk.calls[0][2], [10, 10, 21, 21])
    assert run.records[1] == pytest.approx(GOOD)


def test_restart_near_the_end_skips_the_rest(tmp_path):
    seq = _frames_sequence(tmp_path, "short", [SQUARE] * 8)
    trk = ScriptedTracker(lambda t: LOST if t == 5 else GOOD)
    run = vot.run_vot_sequence(trk, None, seq)
    assert run.records[5:] == [[2], [0], [0]]  # re-init would be at frame 10, past the end
    assert [vot.format_record(r) for r in run.records[:2]] == ["1", "10.0000,10.0000,20.0000,20.0000"]


def test_burn_in_and_accuracy_robustness(tmp_path):
    n = 60
    seq = _frames_sequence(tmp_path, "toy", [SQUARE] * n)
    trk = ScriptedTracker(lambda t: LOST if t in (14, 30) else (HALF if 10 <= t <= 13 else GOOD))
    run = vot.run_vot_sequence(trk, None, seq)
    gt = vot.vot_ground_truth(seq)
    assert (gt.width, gt.height) == (64, 64)
    ov = np.array(vot.burnin_overlaps(run.records, gt.regions, (gt.width, gt.height), burnin=10))
    # burn-in: the init frames 0, 19, 35 and the 9 frames after each are unknown; failures/skips too
    scored = [t for t in range(n) if not np.isnan(ov[t])]
    assert scored == [10, 11, 12, 13, 29] + list(range(45, 60))
    half = np.float32(231) / np.float32(441)
    np.testing.assert_allclose(ov[[10, 11, 12, 13]], half)
    np.testing.assert_allclose(ov[[29] + list(range(45, 60))], 1.0)
    ar = vot.accuracy_robustness({"toy": run.records}, {"toy": gt})
    assert ar["accuracy"] == pytest.approx((4 * float(half) + 16) / 20)
    assert ar["lost"] == 2
    assert ar["robustness"] == pytest.approx(2 / 60 * 100)
    assert ar["per_sequence"]["toy"]["lost"] == 2


def _ground_truth(name, n, tags=None, size=(64, 64)):
    tags = {k: np.asarray(v, bool) for k, v in (tags or {}).items()}
    polys = np.array([SQUARE] * n, float)
    all_tags = {"all": np.ones(n, bool), **tags}
    others = [v for k, v in tags.items()]
    all_tags["empty"] = ~np.logical_or.reduce(others) if others else np.ones(n, bool)
    return vot.VOTGroundTruth(name, tuple(polys), polys, size[0], size[1], all_tags)


def test_accuracy_robustness_pool_frames_over_sequences():
    # A: 12 frames, init + 11 boxes (burn-in hides frames 0..9, leaving 10, 11 with overlap 1)
    # B: 20 frames, one failure at 12 (re-init at 17): scored frames 10, 11 (HALF)
    a = [[1]] + [GOOD] * 11
    b = [[1]] + [GOOD] * 9 + [HALF] * 2 + [[2]] + [[0]] * 4 + [[1]] + [GOOD] * 2
    occ_b = np.zeros(20, bool)
    occ_b[11:13] = True  # frames 11 (HALF, scored) and 12 (the failure)
    gts = {"A": _ground_truth("A", 12), "B": _ground_truth("B", 20, {"occlusion": occ_b})}
    ar = vot.accuracy_robustness({"A": a, "B": b}, gts)
    half = float(np.float32(231) / np.float32(441))
    # pysot pools the frames: (1 + 1 + half + half) / 4, not the mean of per-sequence means
    assert ar["accuracy"] == pytest.approx((2 + 2 * half) / 4)
    assert ar["per_sequence"]["A"]["accuracy"] == 1.0
    assert ar["per_sequence"]["B"]["accuracy"] == pytest.approx(half)
    assert ar["lost"] == 1 and ar["length"] == 32
    assert ar["robustness"] == pytest.approx(1 / 32 * 100)  # failures per 100 frames, all frames pooled
    occ = ar["per_tag"]["occlusion"]
    assert occ["frames"] == 2 and occ["lost"] == 1
    assert occ["accuracy"] == pytest.approx(half)  # frame 11 only; frame 12 is a failure (NaN)
    assert occ["robustness"] == pytest.approx(1 / 2 * 100)
    assert ar["per_tag"]["empty"]["frames"] == 30
    # several runs: overlaps averaged per frame, failures averaged over runs
    ar2 = vot.accuracy_robustness({"A": [a, a], "B": [b, a + [GOOD] * 8]}, gts)
    assert ar2["lost"] == 0.5


# ---------------------------------------------------------------------------------------------------- EAO

ONE = [10, 10, 20, 20]  # overlap 1 with the square; the EAO bound is (W - 1, H - 1) = (63, 63)
HALF_EAO = [10, 10, 20, 10]


def test_eao_hand_worked():
    # A: 6 frames, no failure: overlaps [nan, 1, 1, h, 1, 1]   (h = 231/441, the init frame is NaN)
    # B: 8 frames, failure at 2, re-init at 7 = 2 + 5 (<= 8, kept): fragments
    #    B0 = overlaps[0:8] with NaN -> 0 = [0, 1, 0, 0, 0, 0, 0, 0] (zero-padded: it ended in a failure)
    #    B1 = overlaps[7:] = [0], NaN-padded
    # weights (tag "all"): A 6/6, B0 8/(7 - 0 + 1), B1 1/(8 - 7) -> all 1
    a = [[1], ONE, ONE, HALF_EAO, ONE, ONE]
    b = [[1], ONE, [2], [0], [0], [0], [0], [1]]
    gts = {"A": _ground_truth("A", 6), "B": _ground_truth("B", 8)}
    eao, curves = vot.expected_average_overlap({"A": a, "B": b}, gts, low=2, high=5, return_curves=True)
    h = float(np.float32(231) / np.float32(441))
    phi = [1.0,
           (1 + 1) / 2,  # i=1: A mean(1) = 1, B0 mean(1) = 1 (B1 is NaN at 1)
           (1 + 0.5) / 2,  # i=2: A (1+1)/2, B0 (1+0)/2
           ((2 + h) / 3 + 1 / 3) / 2,
           ((3 + h) / 4 + 1 / 4) / 2,
           ((4 + h) / 5 + 1 / 5) / 2,
           1 / 6,  # i=6: A has ended (NaN), only B0
           1 / 7]
    np.testing.assert_allclose(curves["all"], phi, rtol=1e-6)
    # EAO = mean of phi over indices low-1 .. high-1 = 1 .. 4
    assert eao["all"] == pytest.approx(np.mean(np.float32(phi)[1:5]), rel=1e-6)


def test_eao_tag_weights_and_late_failures():
    a = [[1], ONE, ONE, HALF_EAO, ONE, ONE]
    b = [[1], ONE, [2], [0], [0], [0], [0], [1]]
    occ_b = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    gts = {"A": _ground_truth("A", 6, {"occlusion": np.zeros(6, bool)}),
           "B": _ground_truth("B", 8, {"occlusion": occ_b})}
    # weights: A 0/6, B0 4/8, B1 0/1 -> only B0 counts where it is defined: phi = 1, 1/2, 1/3, 1/4 at 1..4
    eao = vot.expected_average_overlap({"A": a, "B": b}, gts, low=2, high=5, tags=("all", "occlusion"))
    assert eao["occlusion"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4, rel=1e-6)
    # a failure whose restart (3 + 5 = 8) lies past the end (5 frames) does not cut a fragment: the single
    # fragment [0, 1, 1, 0, 0] is NaN- (not zero-) padded, so lengths 5.. see only the other sequence
    c = [[1], ONE, ONE, [2], [0]]
    gts2 = {"A": _ground_truth("A", 6), "C": _ground_truth("C", 5)}
    _, curves = vot.expected_average_overlap({"A": a, "C": c}, gts2, low=2, high=5, return_curves=True)
    h = float(np.float32(231) / np.float32(441))
    assert curves["all"][4] == pytest.approx(((3 + h) / 4 + 2 / 4) / 2, rel=1e-6)
    assert curves["all"][5] == pytest.approx((4 + h) / 5, rel=1e-6)


def test_evaluate_vot_on_the_real_bag_sequence(data_dir):
    from jaxtrack.data.datasets import load_dataset
    from jaxtrack.data.vot import vot_init_box

    seq = load_dataset("vot2018", data_dir / "sequences/VOT2018")[0]
    index = {hashlib.md5(f.tobytes()).hexdigest(): t for t, f in enumerate(seq.iter_frames())}

    class FollowGT:  # reports pysot's init box of the ground-truth polygon, except a miss at frame 50
        def init(self, variables, frame, box):
            return None

        def step(self, variables, state, frame):
            t = index[hashlib.md5(np.asarray(frame).tobytes()).hexdigest()]
            return state, np.float32([0, 0, 3, 3] if t == 50 else vot_init_box(seq.polygons[t])), 1.0

    run = vot.run_vot_sequence(FollowGT(), None, seq, chunk_size=64)
    assert run.lost == 1 and run.records[50] == [2] and run.records[51:55] == [[0]] * 4 and run.records[55] == [1]
    gts = {seq.name: vot.vot_ground_truth(seq)}
    assert (gts[seq.name].width, gts[seq.name].height) == (480, 360)
    res = vot.evaluate_vot({seq.name: run.records}, gts, "VOT2018")
    assert res["lost"] == 1 and res["robustness"] == pytest.approx(100 / seq.num_frames)
    assert len(res["eao_curve"]) == seq.num_frames
    assert 0.5 < res["accuracy"] < 1 and 0 < res["eao"] < 1
    assert set(res["per_tag"]) >= {"all", "camera_motion", "occlusion", "empty"}
