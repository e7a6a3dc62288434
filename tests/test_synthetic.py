"""The synthetic sequence generator: determinism, exact ground truth, smooth motion, OTB round trip."""

import dataclasses

import cv2
import numpy as np
import pytest

from jaxtrack.data.sequence import load_otb_folder
from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset, generate_sequence, render_patch, write_otb_sequence


def test_same_seed_same_sequence_other_seed_other_sequence():
    cfg = SyntheticConfig(num_frames=12)
    f1, b1 = generate_sequence(cfg, seed=5)
    f2, b2 = generate_sequence(cfg, seed=5)
    f3, b3 = generate_sequence(cfg, seed=6)
    assert np.array_equal(f1, f2) and np.array_equal(b1, b2)
    assert not np.array_equal(b1, b3)


@pytest.mark.parametrize("seed", range(6))
def test_boxes_inside_frame_and_motion_is_smooth(seed):
    cfg = SyntheticConfig(num_frames=60)
    frames, boxes = generate_sequence(cfg, seed=seed)
    assert frames.shape == (60, cfg.height, cfg.width, 3) and frames.dtype == np.uint8
    assert np.all(boxes[:, 2:] >= cfg.min_target_size)
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
    assert np.all(boxes[:, 0] + boxes[:, 2] <= cfg.width) and np.all(boxes[:, 1] + boxes[:, 3] <= cfg.height)
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    step = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    # speed bound + size change + shake of 2 frames, with rounding: a few pixels per frame, never a jump
    assert step.max() <= cfg.max_speed + 2 * np.hypot(cfg.shake_strength, cfg.shake_strength) + 4
    assert step.mean() > 0.3  # it does move


def test_target_is_rendered_exactly_at_the_ground_truth():
    """With appearance effects off, the pixels inside the GT box are the resized target texture."""
    cfg = SyntheticConfig(num_frames=20).clean()
    frames, boxes, info = generate_sequence(cfg, seed=2, return_info=True)
    for t in (0, 10, 19):
        x, y, w, h = boxes[t].astype(int)
        expected = render_patch(info.target_texture, w, h).astype(np.float64)
        inside = frames[t, y : y + h, x : x + w].astype(np.float64)
        assert np.abs(inside - expected).mean() < 1.0
        # half a box to the right, the texture no longer matches (the check can fail)
        xs = min(x + w // 2, cfg.width - w)
        shifted = frames[t, y : y + h, xs : xs + w].astype(np.float64)
        assert np.abs(shifted - expected).mean() > 5.0


def test_effects_change_appearance_but_not_geometry_without_shake():
    cfg = SyntheticConfig(num_frames=15, camera_shake=False)
    frames, boxes = generate_sequence(cfg, seed=4)
    clean_frames, clean_boxes = generate_sequence(cfg.clean(), seed=4)
    np.testing.assert_array_equal(boxes, clean_boxes)
    assert np.abs(frames.astype(int) - clean_frames.astype(int)).mean() > 1.0


def test_written_otb_folder_reads_back(tmp_path):
    frames, boxes = generate_sequence(SyntheticConfig(num_frames=8), seed=1)
    folder = write_otb_sequence(tmp_path, "toy", frames, boxes)
    seq = load_otb_folder(folder)
    np.testing.assert_allclose(seq.ground_truth, boxes, atol=1e-6)
    read = np.concatenate(list(seq.iter_chunks(8)))
    for t in (0, 7):  # exactly the frame as JPEG (quality 95) encodes and decodes it
        ok, buf = cv2.imencode(".jpg", frames[t], [int(cv2.IMWRITE_JPEG_QUALITY), 95])
        np.testing.assert_array_equal(read[t], cv2.imdecode(buf, cv2.IMREAD_COLOR))
    assert cv2.imread(seq.frame_paths[0]).shape == frames.shape[1:]
    with pytest.raises(FileExistsError):
        write_otb_sequence(tmp_path, "toy", frames, boxes)


def test_generate_dataset_resumes(tmp_path):
    cfg = SyntheticConfig(num_frames=4, height=96, width=128, target_size_range=(16, 24))
    first = generate_dataset(tmp_path, 2, cfg, seed=0)
    stamp = (first[0] / "groundtruth_rect.txt").stat().st_mtime_ns
    more = generate_dataset(tmp_path, 3, cfg, seed=0)  # resumes: the first two are kept, one is added
    assert more[:2] == first and len(more) == 3
    assert (first[0] / "groundtruth_rect.txt").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, 3, cfg, seed=1)  # a different dataset in the same folder


def test_camera_shake_translates_the_whole_frame_and_the_boxes():
    cfg = SyntheticConfig(num_frames=20, noise_std=0.0, shake_probability=1.0)
    frames, boxes, info = generate_sequence(cfg, seed=7, return_info=True)
    still, still_boxes = generate_sequence(dataclasses.replace(cfg, camera_shake=False), seed=7)
    assert np.abs(info.shake).max() > 0 and np.abs(info.shake).max() <= cfg.shake_strength
    np.testing.assert_array_equal(boxes[:, :2], still_boxes[:, :2] - info.shake)
    np.testing.assert_array_equal(boxes[:, 2:], still_boxes[:, 2:])
    H, W = cfg.height, cfg.width
    for t in range(cfg.num_frames):  # frame pixel (u, v) shows what the still camera sees at (u + sx, v + sy)
        sx, sy = (int(v) for v in info.shake[t])
        a = frames[t, max(0, -sy):H - max(0, sy), max(0, -sx):W - max(0, sx)]
        b = still[t, max(0, sy):H + min(0, sy), max(0, sx):W + min(0, sx)]
        np.testing.assert_array_equal(a, b)


def test_motion_is_smooth_without_shake_and_sizes_change():
    cfg = SyntheticConfig(num_frames=60, camera_shake=False, scale_change=False)
    for seed in range(4):
        boxes = generate_sequence(cfg, seed=seed)[1]
        centres = boxes[:, :2] + boxes[:, 2:] / 2
        step = np.linalg.norm(np.diff(centres, axis=0), axis=1)
        assert step.max() <= cfg.max_speed + 1.5  # speed bound + integer rounding of both edges
        assert np.all(boxes[:, 2:] == boxes[0, 2:])
    boxes = generate_sequence(SyntheticConfig(num_frames=60), seed=0)[1]
    area = boxes[:, 2] * boxes[:, 3]
    aspect = boxes[:, 2] / boxes[:, 3]
    assert area.max() / area.min() > 1.2 and aspect.max() / aspect.min() > 1.1


def test_occlusion_is_partial_and_in_front_of_the_target():
    cfg = SyntheticConfig(num_frames=40)
    for seed in range(4):
        frames, boxes, info = generate_sequence(cfg, seed=seed, return_info=True)
        occluded = info.visible_fraction < 1.0
        assert occluded.any()
        assert info.visible_fraction.min() >= 1.0 - cfg.occlusion_strength - 1e-9
        assert np.all(np.isnan(info.occluder_boxes[~np.isfinite(info.occluder_boxes[:, 0])]))


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="target_size_range"):
        SyntheticConfig(target_size_range=(40, 20))
    with pytest.raises(ValueError, match="too small"):
        SyntheticConfig(height=16, width=16)
    with pytest.raises(ValueError, match="texture_kinds"):
        SyntheticConfig(texture_kinds=("marble",))
