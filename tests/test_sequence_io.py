"""Sequence reading (OTB folders, videos, frames) on the real data and on crafted bad input."""

import cv2
import numpy as np
import pytest

from jaxtrack.data.sequence import (
    load_otb_folder,
    load_video,
    read_boxes,
    read_frame,
    validate_box,
    write_boxes,
)


def _raw_first_line(path):
    import re

    return [float(v) for v in re.split(r"[,\s]+", open(path).readline().strip())]


@pytest.mark.parametrize(
    "name, frames, first_file",
    [("Crossing", 120, "0001.jpg"), ("David", 471, "0300.jpg"), ("Football1", 74, "0001.jpg"),
     ("KiteSurf", 84, "0001.jpg"), ("Couple", 140, "0001.jpg"), ("Jogging-2", 307, "0001.jpg")],
)
def test_real_otb_folders(data_dir, name, frames, first_file):
    folder = data_dir / "sequences/OTB" / name
    seq = load_otb_folder(folder)
    assert seq.num_frames == frames == len(seq.ground_truth)
    assert seq.frame_paths[0].endswith(first_file)
    raw = _raw_first_line(folder / "groundtruth_rect.txt")  # 1-based in the file
    np.testing.assert_array_equal(seq.init_box, [raw[0] - 1, raw[1] - 1, raw[2], raw[3]])


def test_david_and_football1_subranges(data_dir):
    david = load_otb_folder(data_dir / "sequences/OTB/David")
    assert david.frame_paths[-1].endswith("0770.jpg")  # GT line 471 <-> image 0770
    football = load_otb_folder(data_dir / "sequences/OTB/Football1")
    assert football.frame_paths[-1].endswith("0074.jpg")  # 81 images, the 74 annotated ones are used


def test_crossing_tab_separated_values(data_dir):
    seq = load_otb_folder(data_dir / "sequences/OTB/Crossing")
    np.testing.assert_array_equal(seq.init_box, [204, 150, 17, 50])  # file line 1: "205\t151\t17\t50"


def test_chunks_equal_frames(data_dir):
    seq = load_otb_folder(data_dir / "sequences/OTB/KiteSurf")
    chunks = list(seq.iter_chunks(32))
    assert [len(c) for c in chunks] == [32, 32, 20]
    stacked = np.concatenate(chunks)
    for i in (0, 31, 32, 83):
        np.testing.assert_array_equal(stacked[i], cv2.imread(seq.frame_paths[i]))
        np.testing.assert_array_equal(seq.frame(i), stacked[i])


def test_video_reader_counts_frames(data_dir):
    seq = load_video(data_dir / "sequences/VOT2018/bag/bag.avi")
    assert seq.num_frames == 196 and seq.frame_size == (360, 480)
    first = next(seq.iter_chunks(5))
    cap = cv2.VideoCapture(str(data_dir / "sequences/VOT2018/bag/bag.avi"))
    ok, ref = cap.read()
    cap.release()
    assert ok and first.shape == (5, 360, 480, 3)
    np.testing.assert_array_equal(first[0], ref)


def _write_folder(root, frames, gt_text):
    (root / "img").mkdir(parents=True)
    for i, f in enumerate(frames, start=1):
        cv2.imwrite(str(root / "img" / f"{i:04d}.png"), f)
    if gt_text is not None:
        (root / "groundtruth_rect.txt").write_text(gt_text)
    return root


def test_folder_without_images(tmp_path):
    (tmp_path / "empty" / "img").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        load_otb_folder(tmp_path / "empty")


def test_first_gt_line_that_does_not_parse(tmp_path):
    frames = [np.zeros((20, 30, 3), np.uint8)] * 2
    folder = _write_folder(tmp_path / "bad", frames, "x1,2,3,4\n1,2,3,4\n")
    with pytest.raises(ValueError, match=r"groundtruth_rect.txt: line 1 .*'x1,2,3,4'"):
        load_otb_folder(folder)


def test_more_gt_lines_than_images(tmp_path):
    folder = _write_folder(tmp_path / "s", [np.zeros((20, 30, 3), np.uint8)] * 2, "1,1,5,5\n1,1,5,5\n1,1,5,5\n")
    with pytest.raises(ValueError, match="3 ground-truth lines but .* only 2"):
        load_otb_folder(folder)


def test_missing_gt_allowed_only_when_asked(tmp_path):
    folder = _write_folder(tmp_path / "s", [np.zeros((20, 30, 3), np.uint8)] * 2, None)
    with pytest.raises(FileNotFoundError, match="groundtruth_rect.txt"):
        load_otb_folder(folder)
    seq = load_otb_folder(folder, require_gt=False)
    assert seq.ground_truth.shape == (0, 4) and seq.num_frames == 2


def test_frame_size_change_inside_a_sequence(tmp_path):
    frames = [np.zeros((20, 30, 3), np.uint8), np.zeros((20, 30, 3), np.uint8), np.zeros((22, 30, 3), np.uint8)]
    seq = load_otb_folder(_write_folder(tmp_path / "s", frames, "1,1,5,5\n1,1,5,5\n1,1,5,5\n"))
    with pytest.raises(ValueError, match=r"frame 2 .* 22x30 .* 20x30"):
        list(seq.iter_chunks(2))


def test_grayscale_and_rgba_frames_are_converted(tmp_path):
    gray = np.arange(600, dtype=np.uint8).reshape(20, 30)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    out = read_frame(tmp_path / "g.png")
    assert out.shape == (20, 30, 3) and np.all(out == gray[..., None])
    rgba = np.dstack([np.full((20, 30, 3), 7, np.uint8), np.full((20, 30), 99, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    out = read_frame(tmp_path / "a.png")
    assert out.shape == (20, 30, 3) and np.all(out == 7)
    cv2.imwrite(str(tmp_path / "d.png"), np.zeros((4, 4), np.uint16))
    with pytest.raises(ValueError, match="16-bit"):
        read_frame(tmp_path / "d.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        read_frame(tmp_path / "broken.jpg")


@pytest.mark.parametrize(
    "box, message",
    [([1, 1, 0, 5], "non-positive"), ([1, 1, 5, -1], "non-positive"), ([40, 1, 5, 5], "entirely outside"),
     ([1, -9, 5, 5], "entirely outside"), ([1, np.nan, 5, 5], "NaN"), ([1, 2, 3], "4 numbers")],
)
def test_validate_box(box, message):
    with pytest.raises(ValueError, match=f"frame 3 of toy.*{message}"):
        validate_box(box, (20, 30), "frame 3 of toy")
    validate_box([-2, -2, 5, 5], (20, 30), "partly outside is fine")


def test_write_boxes_round_trip(tmp_path):
    boxes = np.array([[1.5, 2.25, 30, 40], [np.nan, np.nan, np.nan, np.nan]])
    write_boxes(tmp_path / "sub" / "out.txt", boxes)
    text = (tmp_path / "sub" / "out.txt").read_text().splitlines()
    assert text[0] == "1.5000,2.2500,30.0000,40.0000"
    np.testing.assert_array_equal(read_boxes(tmp_path / "sub" / "out.txt"), boxes)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out.txt"]  # no temporary file left


def test_size_change_is_caught_by_frame_too(tmp_path):
    frames = [np.zeros((20, 30, 3), np.uint8), np.zeros((20, 31, 3), np.uint8)]
    seq = load_otb_folder(_write_folder(tmp_path / "s", frames, "1,1,5,5\n1,1,5,5\n"), name="toy")
    seq.frame(0)
    with pytest.raises(ValueError, match=r"'toy': frame 1 .* 20x31 .* 20x30"):
        seq.frame(1)


def test_gaps_in_image_numbers_are_refused(tmp_path):
    folder = _write_folder(tmp_path / "s", [np.zeros((20, 30, 3), np.uint8)] * 3, "1,1,5,5\n" * 2)
    (folder / "img" / "0002.png").unlink()
    with pytest.raises(ValueError, match="missing \\[2\\]"):
        load_otb_folder(folder)


def test_gt_line_with_wrong_number_of_values(tmp_path):
    folder = _write_folder(tmp_path / "s", [np.zeros((20, 30, 3), np.uint8)] * 2, "1,1,5,5\n1;1;5;5\n")
    with pytest.raises(ValueError, match=r"line 2 .*found 1"):
        load_otb_folder(folder)


def test_grayscale_and_rgba_frames_in_a_folder(tmp_path):
    (tmp_path / "s" / "img").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "s/img/0001.png"), np.full((20, 30), 50, np.uint8))
    cv2.imwrite(str(tmp_path / "s/img/0002.png"), np.full((20, 30, 4), 60, np.uint8))
    (tmp_path / "s/groundtruth_rect.txt").write_text("1\t1\t5\t5\n2 2 5 5\n")
    seq = load_otb_folder(tmp_path / "s")
    chunk = next(seq.iter_chunks(4))
    assert chunk.shape == (2, 20, 30, 3) and np.all(chunk[0] == 50) and np.all(chunk[1] == 60)
    np.testing.assert_array_equal(seq.ground_truth, [[0, 0, 5, 5], [1, 1, 5, 5]])


def test_video_with_box_files(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(9, 32, 48, 3), dtype=np.uint8)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    (tmp_path / "boxes.txt").write_text("3,4,10,12\n" * 7)  # other box files: 0-based
    (tmp_path / "groundtruth_rect.txt").write_text("3,4,10,12\n" * 9)  # OTB name: 1-based
    seq = load_video(path, tmp_path / "boxes.txt")
    assert seq.num_frames == 7 and seq.frame_size == (32, 48)  # annotated frames only
    np.testing.assert_array_equal(seq.init_box, [3, 4, 10, 12])
    np.testing.assert_array_equal(load_video(path, tmp_path / "groundtruth_rect.txt").init_box, [2, 3, 10, 12])
    np.testing.assert_array_equal(load_video(path, tmp_path / "boxes.txt", one_based=True).init_box, [2, 3, 10, 12])
    full = load_video(path)
    assert full.num_frames == 9 and full.ground_truth.shape == (0, 4)
    stacked = np.concatenate(list(full.iter_chunks(4)))
    assert stacked.shape == (9, 32, 48, 3)
    for i in (0, 5, 8):
        np.testing.assert_array_equal(full.frame(i), stacked[i])
    (tmp_path / "long.txt").write_text("3,4,10,12\n" * 12)
    with pytest.raises(ValueError, match="12 box lines but .* 9 frames"):
        load_video(path, tmp_path / "long.txt")
    with pytest.raises(FileNotFoundError, match="nothing.avi"):
        load_video(tmp_path / "nothing.avi")


def test_head_cuts_every_per_frame_field(data_dir):
    from jaxtrack.data.datasets import load_dataset

    bag = load_dataset("vot2018", data_dir / "sequences/VOT2018", sequences=["bag"])[0]
    h = bag.head(10)
    assert h.num_frames == 10 and h.frame_paths == bag.frame_paths[:10]
    np.testing.assert_array_equal(h.ground_truth, bag.ground_truth[:10])
    np.testing.assert_array_equal(h.polygons, bag.polygons[:10])
    assert set(h.tags) == set(bag.tags) and all(np.array_equal(h.tags[k], bag.tags[k][:10]) for k in bag.tags)
    np.testing.assert_array_equal(h.frame(9), bag.frame(9))
    assert bag.head(10_000) is bag
    with pytest.raises(ValueError, match="'bag': head needs n >= 1"):
        bag.head(0)
