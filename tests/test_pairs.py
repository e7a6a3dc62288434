"""Pair sampler and augmentation: geometry against an independent NumPy/OpenCV restatement of pysot's crops,
augmentation bounds, negative rate, determinism, corrupt frames."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from jaxtrack.data.augment import AugmentParams, apply_blur_kernel, augment, blur_kernel, precrop
from jaxtrack.data.datasets import load_dataset
from jaxtrack.data.pairs import (
    CorruptFrameError,
    CorruptFrameWarning,
    PairConfig,
    PairSampler,
    valid_frame_mask,
)
from jaxtrack.data.sequence import Sequence
from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset

# small sizes keep the tests fast: template 31, search 63, pre-crop 127 (pysot: 127 / 255 / 511)
Z, X, C = 31, 63, 127
SMALL = dict(exemplar_size=Z, instance_size=X, crop_size=C)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    cfg = SyntheticConfig(num_frames=10, height=96, width=128, target_size_range=(14.0, 28.0))
    generate_dataset(root, 4, cfg, seed=3)
    return root


@pytest.fixture(scope="module")
def seqs(synth_root):
    return load_dataset("synthetic", synth_root)


# --------------------------------------------------------------------- independent restatement of pysot


def pysot_crop_hwc(image, bbox, out_sz, padding):
    """pysot training_dataset/*/par_crop.py crop_hwc."""
    a = (out_sz - 1) / (bbox[2] - bbox[0])
    b = (out_sz - 1) / (bbox[3] - bbox[1])
    c = -a * bbox[0]
    d = -b * bbox[1]
    mapping = np.array([[a, 0, c], [0, b, d]], dtype=np.float64)
    return cv2.warpAffine(image, mapping, (out_sz, out_sz), borderMode=cv2.BORDER_CONSTANT, borderValue=padding)


def pysot_search_extent(w, h, exemplar, crop, context=0.5):
    """crop_like_SiamFC: s_z, scale_z, s_x."""
    wc_z = w + context * (w + h)
    hc_z = h + context * (w + h)
    s_z = np.sqrt(wc_z * hc_z)
    scale_z = exemplar / s_z
    pad = (crop - exemplar) / 2 / scale_z
    return s_z, scale_z, s_z + 2 * pad


def direct_crop(frame, box_xywh, out, exemplar, crop):
    """Crop the ``out``-pixel centre of the pre-crop straight from the frame with one cv2.warpAffine."""
    x, y, w, h = box_xywh
    cx, cy = x + (w - 1) / 2, y + (h - 1) / 2
    _, _, s_x = pysot_search_extent(w, h, exemplar, crop)
    a = (crop - 1) / s_x
    off = (crop - 1) / 2 - (out - 1) / 2  # the final crop is the pre-crop's centre window
    m = np.array([[a, 0, -a * (cx - s_x / 2) - off], [0, a, -a * (cy - s_x / 2) - off]])
    avg = tuple(np.mean(frame, axis=(0, 1)).tolist())
    return cv2.warpAffine(frame, m, (out, out), borderMode=cv2.BORDER_CONSTANT, borderValue=avg)


# ------------------------------------------------------------------------------------------ geometry


@pytest.mark.parametrize("box", [(40.0, 30.0, 24.0, 16.0), (2.0, 70.0, 30.0, 20.0), (100.0, 5.0, 11.0, 33.0)])
def test_precrop_matches_pysot_par_crop(box):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    crop, cbox, pad = precrop(frame, box, crop_size=C, exemplar_size=Z)
    x, y, w, h = box
    cx, cy = x + (w - 1) / 2, y + (h - 1) / 2
    _, scale_z, s_x = pysot_search_extent(w, h, Z, C)
    avg = np.mean(frame, axis=(0, 1))
    ref = pysot_crop_hwc(frame, [cx - s_x / 2, cy - s_x / 2, cx + s_x / 2, cy + s_x / 2], C, tuple(avg.tolist()))
    np.testing.assert_array_equal(crop, ref)
    np.testing.assert_allclose(pad, avg, rtol=1e-6)
    # the target is centred and has the exact mapped size; pysot's _get_bbox rule (w * scale_z) is 1/(C-1) larger
    c = (C - 1) / 2
    np.testing.assert_allclose([(cbox[0] + cbox[2]) / 2, (cbox[1] + cbox[3]) / 2], [c, c], atol=1e-4)
    a = (C - 1) / s_x
    np.testing.assert_allclose([cbox[2] - cbox[0], cbox[3] - cbox[1]], [w * a, h * a], rtol=1e-5)
    np.testing.assert_allclose([cbox[2] - cbox[0], cbox[3] - cbox[1]], [w * scale_z, h * scale_z], rtol=1.0 / (C - 1) + 1e-5)


def test_unaugmented_pair_matches_direct_crop(seqs):
    cfg = PairConfig.no_augmentation(max_gap=3, **SMALL)
    sampler = PairSampler(seqs, cfg, seed=0)
    for i in range(6):
        ex = sampler.sample(i, info=True)
        assert not ex["negative"]
        assert ex["template"].shape == (Z, Z, 3) and ex["template"].dtype == np.uint8
        assert ex["search"].shape == (X, X, 3) and ex["search"].dtype == np.uint8
        assert ex["box"].shape == (4,) and ex["box"].dtype == np.float32
        assert ex["template_video"] == ex["search_video"]
        assert abs(ex["template_frame"] - ex["search_frame"]) <= 3
        seq = seqs[ex["search_video"]]
        box = seq.ground_truth[ex["search_frame"]]
        frame = cv2.imread(seq.frame_paths[ex["search_frame"]])
        direct = direct_crop(frame, box, X, Z, C)
        assert np.abs(direct.astype(int) - ex["search"]).max() <= 1
        tseq = seqs[ex["template_video"]]
        tframe = cv2.imread(tseq.frame_paths[ex["template_frame"]])
        tdirect = direct_crop(tframe, tseq.ground_truth[ex["template_frame"]], Z, Z, C)
        assert np.abs(tdirect.astype(int) - ex["template"]).max() <= 1
        # box centred in the search crop with pysot's size (up to the (C-1)/C of the exact mapping)
        w, h = box[2], box[3]
        _, scale_z, s_x = pysot_search_extent(w, h, Z, C)
        b = ex["box"]
        np.testing.assert_allclose([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2], [(X - 1) / 2] * 2, atol=1e-3)
        np.testing.assert_allclose([b[2] - b[0], b[3] - b[1]], np.array([w, h]) * (C - 1) / s_x, rtol=1e-5)
        np.testing.assert_allclose([b[2] - b[0], b[3] - b[1]], np.array([w, h]) * scale_z, rtol=0.01)


# -------------------------------------------------------------------------------------- augmentation


def _target_image():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (C, C, 3), dtype=np.uint8)
    c = (C - 1) / 2
    box = np.array([c - 10, c - 6, c + 10, c + 6], np.float32)
    return img, box


def test_pysot_shift_scale_within_bounds():
    img, box = _target_image()
    shift, scale = 12.0, 0.18
    params = AugmentParams(shift=shift, scale=scale)
    offsets, ratios = [], []
    for seed in range(300):
        crop, b = augment(img, box, X, params, np.random.default_rng(seed))
        assert crop.shape == (X, X, 3)
        offsets.append([(b[0] + b[2]) / 2 - (X - 1) / 2, (b[1] + b[3]) / 2 - (X - 1) / 2])
        ratios.append([(b[2] - b[0]) / (box[2] - box[0]), (b[3] - b[1]) / (box[3] - box[1])])
    offsets, ratios = np.abs(np.array(offsets)), np.array(ratios)
    # the window moves by at most `shift` pre-crop pixels and scales by 1 +- scale per axis
    assert offsets.max() <= shift / (1 - scale) + 1e-3
    assert ratios.min() >= 1 / (1 + scale) - 1e-5 and ratios.max() <= 1 / (1 - scale) + 1e-5
    # and the draws really spread over the range
    assert offsets.max() > 0.8 * shift and ratios.min() < 1 / (1 + 0.8 * scale) and ratios.max() > 1 / (1 - 0.8 * scale)
    # x and y scales are independent (pysot draws one per axis)
    assert np.abs(ratios[:, 0] - ratios[:, 1]).max() > 0.05


def test_siamfcpp_style_keeps_the_box_inside():
    img, box = _target_image()
    params = AugmentParams(shift=0.4, scale=0.3)
    ratios = []
    for seed in range(200):
        _, b = augment(img, box, X, params, np.random.default_rng(seed), style="siamfcpp")
        assert np.all(b >= -1e-4) and np.all(b <= X - 1 + 1e-4)
        ratios.append((b[2] - b[0]) / (box[2] - box[0]))
        assert math.isclose((b[2] - b[0]) / (box[2] - box[0]), (b[3] - b[1]) / (box[3] - box[1]), rel_tol=1e-4)
    ratios = np.array(ratios)
    assert ratios.min() >= 1 / 1.3 - 1e-5 and ratios.max() <= 1.3 + 1e-5


def test_flip_mirrors_crop_and_box():
    img, box = _target_image()
    for seed in range(5):
        base = AugmentParams(shift=8.0, scale=0.1, color=1.0)
        crop, b = augment(img, box, X, base, np.random.default_rng(seed))
        fcrop, fb = augment(img, box, X, AugmentParams(shift=8.0, scale=0.1, color=1.0, flip=1.0),
                            np.random.default_rng(seed))
        np.testing.assert_array_equal(fcrop, crop[:, ::-1])
        np.testing.assert_allclose(fb, [X - 1 - b[2], b[1], X - 1 - b[0], b[3]], atol=1e-4)


def test_blur_as_two_box_filters_equals_filter2d():
    img = np.random.default_rng(2).uniform(0, 255, (40, 50, 3)).astype(np.float32)
    for seed in range(6):
        k = blur_kernel(np.random.default_rng(seed))
        assert k.shape[0] % 2 == 1 and 5 <= k.shape[0] <= 45 and math.isclose(k.sum(), 1.0, rel_tol=1e-5)
        np.testing.assert_allclose(apply_blur_kernel(img, k), cv2.filter2D(img, -1, k), atol=1e-3)


def test_colour_blur_gray():
    img, box = _target_image()
    plain, _ = augment(img, box, X, AugmentParams(), np.random.default_rng(0))
    blurred, _ = augment(img, box, X, AugmentParams(blur=1.0), np.random.default_rng(0))
    coloured, _ = augment(img, box, X, AugmentParams(color=1.0), np.random.default_rng(0))
    gray, _ = augment(img, box, X, AugmentParams(), np.random.default_rng(0), gray=True)
    assert blurred.std() < plain.std() * 0.9  # a motion blur kernel smooths the noise
    diff = coloured.astype(float) - plain
    assert 0 < np.abs(diff).mean() < 30  # a per-channel offset of a few grey levels
    per_channel = diff.reshape(-1, 3)[(plain.reshape(-1, 3) > 30).all(1) & (plain.reshape(-1, 3) < 225).all(1)]
    assert np.ptp(per_channel, axis=0).max() <= 1.0  # the same offset on every pixel (rounding aside)
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])


# ------------------------------------------------------------------------------------------ sampling


def test_negative_rate_and_pair_rules(seqs):
    cfg = PairConfig(negative_rate=0.2, max_gap=2, pairs_per_epoch=1000, **SMALL)
    sampler = PairSampler(seqs, cfg, seed=7)
    n = 1000
    neg = 0
    for i in range(n):
        ex = sampler.sample(i, info=True)
        if ex["negative"]:
            neg += 1
            assert ex["search_video"] != ex["template_video"]
        else:
            assert ex["search_video"] == ex["template_video"]
            assert abs(ex["search_frame"] - ex["template_frame"]) <= 2
    # binomial(1000, 0.2): sd 0.0126
    assert abs(neg / n - 0.2) < 0.045


def test_epoch_uses_every_video_equally(seqs):
    sampler = PairSampler(seqs, PairConfig(pairs_per_epoch=8, **SMALL), seed=0)
    assert len(sampler) == 8
    first = [sampler.video_for_index(i) for i in range(8)]
    assert sorted(first) == [0, 0, 1, 1, 2, 2, 3, 3]
    second = [sampler.video_for_index(i) for i in range(8, 16)]
    assert sorted(second) == sorted(first) and second != first  # re-permuted each epoch
    assert len(PairSampler(seqs, PairConfig(**SMALL))) == len(seqs)


def test_determinism(seqs):
    cfg = PairConfig(**SMALL, gray=0.3, flip=0.5)
    a, b = PairSampler(seqs, cfg, seed=0), PairSampler(seqs, cfg, seed=0)
    for i in (0, 3, 17, 10**12):
        x, y = a.sample(i), b.sample(i)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    other = PairSampler(seqs, cfg, seed=1)
    assert any(not np.array_equal(a.sample(i)["search"], other.sample(i)["search"]) for i in range(4))
    x, y = a.sample(np.random.default_rng(5)), a.sample(np.random.default_rng(5))
    np.testing.assert_array_equal(x["search"], y["search"])
    # order does not matter: a sample is a function of (seed, index) only
    fwd = [a.sample(i)["box"] for i in range(5)]
    bwd = [b.sample(i)["box"] for i in reversed(range(5))][::-1]
    np.testing.assert_array_equal(np.array(fwd), np.array(bwd))


def test_invalid_frames_are_never_drawn(seqs):
    s = seqs[0]
    gt = s.ground_truth.copy()
    gt[1] = np.nan
    visible = np.ones(s.num_frames, bool)
    visible[[0, 2, 3]] = False
    seq = Sequence("masked", s.frame_paths, None, gt, visible=visible)
    assert valid_frame_mask(seq).tolist() == [False] * 4 + [True] * (s.num_frames - 4)
    with pytest.warns(UserWarning, match="at least two videos"):
        sampler = PairSampler([seq], PairConfig(max_gap=1, **SMALL), seed=0)
    with pytest.warns(UserWarning, match="without a valid frame"):
        PairSampler([seq, seqs[1], Sequence("empty", s.frame_paths[:1], None, np.full((1, 4), np.nan))],
                    PairConfig(**SMALL))
    for i in range(40):
        ex = sampler.sample(i, info=True)
        assert ex["template_frame"] >= 4 and ex["search_frame"] >= 4
        assert not ex["negative"]  # one video: negatives are switched off


def _write_otb_folder(folder, rows, size=(96, 128), seed=0):
    """An OTB-layout sequence written by hand: ``img/0001.jpg ...`` and ``groundtruth_rect.txt`` with ``rows`` as
    given (1-based, comma separated, ``NaN`` rows kept verbatim)."""
    (folder / "img").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(len(rows)):
        cv2.imwrite(str(folder / "img" / f"{i + 1:04d}.jpg"), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    (folder / "groundtruth_rect.txt").write_text("".join(r + "\n" for r in rows))


NAN = "NaN,NaN,NaN,NaN"


def test_nan_rows_of_an_otb_folder_are_never_drawn(tmp_path):
    """Rows ``NaN,NaN,NaN,NaN`` (target out of view, as in sequences/train) read through ``otb-folder``: no such frame
    is ever the template or the search frame of a positive pair, nor the search frame of a negative one. The
    admissible (template, search) pairs are worked out by hand."""
    # video A, 0-based frames: 0 1 valid, 2 3 NaN, 4 5 valid, 6 NaN (lower case), 7 valid -> valid {0, 1, 4, 5, 7}
    _write_otb_folder(tmp_path / "A", ["41,31,20,16", "43,32,20,16", NAN, NAN, "50,40,22,18", "52,41,22,18",
                                       "nan,nan,nan,nan", "55,44,20,16"])
    # video B: 0 NaN is impossible (the initial box); 1 NaN, 2 valid, 3 NaN -> valid {0, 2}
    _write_otb_folder(tmp_path / "B", ["30,30,24,20", NAN, "33,31,24,20", NAN], seed=1)
    seqs = load_dataset("otb-folder", tmp_path)
    assert [s.name for s in seqs] == ["A", "B"]
    a = seqs[0]
    np.testing.assert_array_equal(a.ground_truth[0], [40, 30, 20, 16])  # 1-based file -> 0-based
    assert np.isnan(a.ground_truth[[2, 3, 6]]).all() and np.isfinite(a.ground_truth[[0, 1, 4, 5, 7]]).all()
    assert valid_frame_mask(a).tolist() == [True, True, False, False, True, True, False, True]
    assert valid_frame_mask(seqs[1]).tolist() == [True, False, True, False]

    # positives, max_gap 2: every pair |t - s| <= 2 with both frames valid, worked out by hand
    expected = {(0, 0), (0, 1), (1, 0), (1, 1),  # 2, 3 are NaN
                (4, 4), (4, 5), (5, 4), (5, 5), (5, 7),  # 6 is NaN, 3 is NaN
                (7, 5), (7, 7)}
    sampler = PairSampler([a], PairConfig.no_augmentation(max_gap=2, pairs_per_epoch=400, **SMALL), seed=0)
    drawn = set()
    for i in range(400):
        ex = sampler.sample(i, info=True)
        t, s = ex["template_frame"], ex["search_frame"]
        drawn.add((t, s))
        # the search box is the search frame's own target: centred, its size scaled as the pre-crop says
        w, h = a.ground_truth[s, 2:]
        _, scale_z, _ = pysot_search_extent(w, h, Z, C)
        b = ex["box"]
        np.testing.assert_allclose([b[2] - b[0], b[3] - b[1]], np.array([w, h]) * scale_z, rtol=0.01)
    assert drawn == expected  # nothing else, and every admissible pair is reachable

    # negatives: template from A's valid frames, search from B's valid frames only
    neg = PairSampler(seqs, PairConfig.no_augmentation(max_gap=2, negative_rate=1.0, pairs_per_epoch=200, **SMALL),
                      seed=1)
    samples = [neg.sample(i, info=True) for i in range(200)]
    assert all(ex["negative"] for ex in samples)
    pairs = {(ex["template_video"], ex["template_frame"], ex["search_video"], ex["search_frame"]) for ex in samples}
    assert {(v, f) for v, f, _, _ in pairs} == {(0, f) for f in (0, 1, 4, 5, 7)} | {(1, 0), (1, 2)}
    assert {(u, s) for _, _, u, s in pairs} == {(1, 0), (1, 2)} | {(0, f) for f in (0, 1, 4, 5, 7)}
    assert all(v != u for v, _, u, _ in pairs)


def test_nan_initial_row_is_refused_with_the_file(tmp_path):
    """A training folder whose first row is NaN cannot start a track: the error names the sequence and its file."""
    _write_otb_folder(tmp_path / "C", [NAN, "30,30,24,20"])
    with pytest.raises(ValueError, match=r"sequence 'C'.*C/groundtruth_rect\.txt.*initial box"):
        load_dataset("otb-folder", tmp_path)


def test_config_validation():
    with pytest.raises(ValueError, match="negative_rate"):
        PairConfig(negative_rate=1.5)
    with pytest.raises(ValueError, match="style"):
        PairConfig(style="other")
    with pytest.raises(ValueError, match="on_corrupt"):
        PairConfig(on_corrupt="ignore")
    with pytest.raises(ValueError, match="probability"):
        PairConfig(blur=2.0)
    assert PairConfig.siamfcpp().instance_size == 303
    assert PairConfig.siamfcpp().search_aug == AugmentParams(shift=0.4, scale=0.3)


# ------------------------------------------------------------------------------------------- corrupt


@pytest.fixture()
def corrupt_seqs(tmp_path):
    generate_dataset(tmp_path, 2, SyntheticConfig(num_frames=4, height=96, width=128,
                                                   target_size_range=(14.0, 28.0)), seed=1)
    seqs = load_dataset("synthetic", tmp_path)
    bad = seqs[0].frame_paths[2]
    with open(bad, "wb") as f:
        f.write(b"\x00garbage, not a jpeg" * 10)
    return seqs, bad


def test_corrupt_frame_raise(corrupt_seqs):
    seqs, bad = corrupt_seqs
    sampler = PairSampler(seqs, PairConfig(on_corrupt="raise", negative_rate=0.0, **SMALL), seed=0)
    with pytest.raises(CorruptFrameError) as info:
        for i in range(200):
            sampler.sample(i)
    err = info.value
    assert err.path == bad and err.sequence == seqs[0].name and err.frame_index == 2
    assert bad in str(err) and "frame 2" in str(err)


def test_corrupt_frame_skip_is_deterministic(corrupt_seqs):
    seqs, bad = corrupt_seqs
    cfg = PairConfig(on_corrupt="skip", negative_rate=0.0, **SMALL)
    sampler = PairSampler(seqs, cfg, seed=0)
    with pytest.warns(CorruptFrameWarning, match=bad.replace("\\", "\\\\")):
        first = [sampler.sample(i, info=True) for i in range(60)]
    assert all(not (e["template_video"] == 0 and 2 in (e["template_frame"], e["search_frame"])) for e in first)
    again = PairSampler(seqs, cfg, seed=0)
    for i, e in enumerate(first):
        np.testing.assert_array_equal(again.sample(i)["search"], e["search"])
