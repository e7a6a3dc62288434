"""Dataset readers (jaxtrack.data.datasets / vot): real OTB + VOT2018 data, and every layout written here."""

import json
import math
import pickle
import re

import cv2
import numpy as np
import pytest

from jaxtrack.data import Sequence
from jaxtrack.data.datasets import (
    DATASET_NAMES,
    OTB_SUBRANGES,
    UAV123_SUBSEQUENCES,
    load_dataset,
    read_pysot_json,
)
from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset, generate_sequence
from jaxtrack.data.vot import (
    VOT_TAGS,
    get_axis_aligned_bbox,
    load_vot_folder,
    polygon_to_aabb,
    rect_to_polygon,
    vot_init_box,
)

TINY = np.full((8, 8, 3), 127, np.uint8)


def _touch_frames(folder, numbers, digits, real=False):
    """Frame files: empty placeholders (readers never decode at load time) or tiny real JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in numbers:
        p = folder / f"{k:0{digits}d}.jpg"
        if real:
            cv2.imwrite(str(p), TINY)
        else:
            p.touch()


def _write_boxes(path, boxes, sep=","):
    path.write_text("".join(sep.join(_fmt(v) for v in b) + "\n" for b in boxes))


def _fmt(v):
    return "NaN" if isinstance(v, float) and math.isnan(v) else f"{v:g}"


def _boxes(n, x0=10.0):
    return [[x0 + i, 20.0 + i, 30.0, 40.0] for i in range(n)]


def _raw_rows(path):
    return [[float(v) for v in re.split(r"[,\s]+", ln.strip())] for ln in open(path) if ln.strip()]


# ------------------------------------------------------------------------------------- real OTB / VOT


def test_real_otb_folder_as_otb100(data_dir):
    root = data_dir / "sequences/OTB"
    seqs = {s.name: s for s in load_dataset("otb100", root, progress=True)}
    assert set(seqs) == {"Couple", "Crossing", "David", "Football1", "Jogging-2", "KiteSurf"}
    for s in seqs.values():
        assert s.meta["dataset"] == "otb100" and s.polygons is None and s.visible is None and not s.tags
    # Crossing: tab separated, 1-based in the file
    raw = _raw_rows(root / "Crossing/groundtruth_rect.txt")
    assert "\t" in open(root / "Crossing/groundtruth_rect.txt").readline()
    np.testing.assert_array_equal(seqs["Crossing"].ground_truth[:, :2], np.array(raw)[:, :2] - 1)
    np.testing.assert_array_equal(seqs["Crossing"].ground_truth[:, 2:], np.array(raw)[:, 2:])
    # David: images 0300..0770 <-> GT lines 1..471
    david = seqs["David"]
    assert david.num_frames == 471 and david.frame_paths[0].endswith("0300.jpg")
    assert david.frame_paths[-1].endswith("0770.jpg")
    # Football1: 74 of the 81 images
    assert seqs["Football1"].num_frames == 74 and seqs["Football1"].frame_paths[-1].endswith("0074.jpg")
    assert seqs["Jogging-2"].num_frames == 307
    # nothing decoded, but the frames are real
    assert seqs["Crossing"].frame(0).shape == (240, 360, 3)


def test_real_otb_selection_and_unknown_name(data_dir):
    root = data_dir / "sequences/OTB"
    seqs = load_dataset("otb100", root, sequences=["David", "Crossing"])
    assert [s.name for s in seqs] == ["David", "Crossing"]
    with pytest.raises(ValueError, match=r"unknown sequence name\(s\) \['Basketball'\].*Couple.*Crossing"):
        load_dataset("otb100", root, sequences=["Crossing", "Basketball"])
    # otb-folder: the same root, and a single sequence folder as the root
    assert len(load_dataset("otb-folder", root)) == 6
    (one,) = load_dataset("otb-folder", root / "Football1")
    assert one.name == "Football1" and one.num_frames == 74


def test_real_vot2018_bag_folder_vs_json(data_dir):
    root = data_dir / "sequences/VOT2018"
    ann = data_dir / "annotations/VOT2018.json"
    (bag,) = load_dataset("vot2018", root)
    assert bag.name == "bag" and bag.num_frames == 196 and bag.frame_paths[0].endswith("color/00000001.jpg")
    assert bag.polygons.shape == (196, 8)
    np.testing.assert_allclose(bag.ground_truth, polygon_to_aabb(bag.polygons))
    raw = np.array(_raw_rows(root / "bag/groundtruth.txt"))
    np.testing.assert_array_equal(bag.polygons, raw)  # VOT coordinates used as written
    # a root holding only bag + the full JSON -> just bag, same frames, same regions and tags
    (jbag,) = load_dataset("vot2018", root, annotations=ann)
    assert jbag.frame_paths == bag.frame_paths
    np.testing.assert_allclose(jbag.polygons, bag.polygons, atol=0.0051)  # the .txt has 2 decimals
    entry = json.load(open(ann))["bag"]
    assert set(bag.tags) == set(jbag.tags) == set(VOT_TAGS)
    for t in VOT_TAGS:
        np.testing.assert_array_equal(bag.tags[t], np.array(entry[t], bool))
        np.testing.assert_array_equal(jbag.tags[t], np.array(entry[t], bool))
    assert jbag.meta["width"] == 480 and jbag.meta["height"] == 360
    with pytest.raises(ValueError, match="unknown sequence.*'ants1'.*available: bag"):
        load_dataset("vot2018", root, sequences=["ants1"], annotations=ann)


def test_vot2018_json_all_sequences(data_dir):
    seqs = read_pysot_json(data_dir / "annotations/VOT2018.json", dataset="vot2018")
    assert len(seqs) == 60 and sum(s.num_frames for s in seqs) == 21356
    by = {s.name: s for s in seqs}
    # ball1 / car1 have an empty occlusion list in the JSON -> all False, full length
    for name in ("ball1", "car1"):
        occ = by[name].tags["occlusion"]
        assert occ.shape == (by[name].num_frames,) and not occ.any()
    assert by["ball1"].tags["motion_change"].all()
    # conduction1 is annotated with rectangles: pysot's polygon, init box = the rectangle
    c = by["conduction1"]
    np.testing.assert_array_equal(c.ground_truth[0], [712, 231, 22, 24])
    np.testing.assert_array_equal(c.polygons[0], [712, 231, 712, 254, 733, 254, 733, 231])
    np.testing.assert_allclose(vot_init_box(c.polygons[0]), [712, 231, 22, 24])


# ------------------------------------------------------------------------------------ region helpers


def test_get_axis_aligned_bbox_square_and_rotated():
    square = [10, 20, 50, 20, 50, 60, 10, 60]  # axis-aligned 40x40
    assert get_axis_aligned_bbox(np.array(square)) == (30.0, 40.0, 41.0, 41.0)
    np.testing.assert_allclose(vot_init_box(square), [10, 20, 41, 41])
    np.testing.assert_array_equal(polygon_to_aabb(square), [10, 20, 40, 40])
    # square of side 20*sqrt(2) rotated by 45 degrees: area 800 in a 40x40 bounding box -> s = sqrt(1/2)
    diamond = [100, 80, 120, 100, 100, 120, 80, 100]
    cx, cy, w, h = get_axis_aligned_bbox(diamond)
    assert (cx, cy) == (100.0, 100.0)
    assert w == pytest.approx(40 / math.sqrt(2) + 1) and h == pytest.approx(40 / math.sqrt(2) + 1)
    np.testing.assert_allclose(vot_init_box(diamond), [100 - (w - 1) / 2, 100 - (h - 1) / 2, w, h])
    assert (w - 1) * (h - 1) == pytest.approx(800)  # area preserved (before the +1)
    # the 4-value branch: centre x + w/2
    assert get_axis_aligned_bbox([10, 20, 30, 40]) == (25.0, 40.0, 30.0, 40.0)
    np.testing.assert_allclose(vot_init_box(rect_to_polygon([10, 20, 30, 40])), [10, 20, 30, 40])
    with pytest.raises(ValueError, match="degenerate"):
        get_axis_aligned_bbox([1, 1, 1, 1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="8 .* or 4"):
        get_axis_aligned_bbox([1, 2, 3])


# ---------------------------------------------------------------------------------- layouts in tmp


def test_otb_two_target_form_separators_and_json(tmp_path):
    root = tmp_path / "OTB100"
    _touch_frames(root / "Jogging/img", range(1, 6), 4)
    _write_boxes(root / "Jogging/groundtruth_rect.1.txt", _boxes(5, 10.0), sep=",")
    (root / "Jogging/groundtruth_rect.2.txt").write_text("50\t60\t7\t8\n51 61 7 8\n52,62,7,8\n53\t62\t7\t8\n"
                                                          "54 , 63 , 7 , 8\n")
    _touch_frames(root / "Human4/img", range(1, 4), 4)
    (root / "Human4/groundtruth_rect.1.txt").write_text("\n")  # empty, as in OTB
    _write_boxes(root / "Human4/groundtruth_rect.2.txt", _boxes(3))
    seqs = {s.name: s for s in load_dataset("otb100", root)}
    assert set(seqs) == {"Jogging-1", "Jogging-2", "Human4-2"}
    j1, j2 = seqs["Jogging-1"], seqs["Jogging-2"]
    assert j1.frame_paths == j2.frame_paths and j1.num_frames == 5
    np.testing.assert_array_equal(j1.init_box, [9, 19, 30, 40])
    np.testing.assert_array_equal(j2.ground_truth[:, 0], [49, 50, 51, 52, 53])
    # a folder named per target next to the official form -> defined twice
    _touch_frames(root / "Jogging-2/img", range(1, 6), 4)
    _write_boxes(root / "Jogging-2/groundtruth_rect.txt", _boxes(5))
    with pytest.raises(ValueError, match="'Jogging-2' is defined twice"):
        load_dataset("otb100", root)

    # pysot's OTB100.json: img_names relative to root, 1-based gt_rect, attr; absent sequences skipped
    ann = {
        "Jogging-1": {"video_dir": "Jogging", "init_rect": [11, 21, 30, 40],
                      "img_names": [f"Jogging/img/{k:04d}.jpg" for k in range(1, 6)],
                      "gt_rect": _boxes(5, 11.0), "attr": ["OCC", "DEF", "OPR"]},
        "Basketball": {"video_dir": "Basketball", "init_rect": [1, 1, 2, 2],
                       "img_names": ["Basketball/img/0001.jpg"], "gt_rect": [[1, 1, 2, 2]], "attr": ["IV"]},
    }
    (tmp_path / "OTB100.json").write_text(json.dumps(ann))
    (seq,) = load_dataset("otb100", root, annotations=tmp_path / "OTB100.json")
    assert seq.name == "Jogging-1" and seq.attributes == ("OCC", "DEF", "OPR")
    np.testing.assert_array_equal(seq.init_box, [10, 19, 30, 40])  # 1-based [11, 20, ...] minus 1
    assert seq.frame_paths[0] == str(root / "Jogging/img/0001.jpg")


def test_otb_subrange_table(tmp_path):
    assert OTB_SUBRANGES["tiger1"] == (6, 354) and OTB_SUBRANGES["david"] == (300, 770)
    root = tmp_path / "OTB"
    # official David: 770 images, 471 lines -> files 0300..0770
    _touch_frames(root / "David/img", range(1, 771), 4)
    _write_boxes(root / "David/groundtruth_rect.txt", _boxes(471))
    # Tiger1: 354 images, 354 lines, evaluated on frames 6..354 with lines 6..354
    _touch_frames(root / "Tiger1/img", range(1, 355), 4)
    _write_boxes(root / "Tiger1/groundtruth_rect.txt", _boxes(354))
    # BlurCar3: the folder starts at 0003 (357 images, 357 lines)
    _touch_frames(root / "BlurCar3/img", range(3, 360), 4)
    _write_boxes(root / "BlurCar3/groundtruth_rect.txt", _boxes(357))
    # Freeman4: 297 images, 283 lines -> the first 283
    _touch_frames(root / "Freeman4/img", range(1, 298), 4)
    _write_boxes(root / "Freeman4/groundtruth_rect.txt", _boxes(283))
    s = {q.name: q for q in load_dataset("otb100", root)}
    assert s["David"].num_frames == 471 and s["David"].frame_paths[0].endswith("0300.jpg")
    t = s["Tiger1"]
    assert t.num_frames == 349 and t.frame_paths[0].endswith("0006.jpg") and t.frame_paths[-1].endswith("0354.jpg")
    np.testing.assert_array_equal(t.init_box, [10 + 5 - 1, 20 + 5 - 1, 30, 40])  # GT line 6
    assert s["BlurCar3"].num_frames == 357 and s["BlurCar3"].frame_paths[0].endswith("0003.jpg")
    assert s["Freeman4"].num_frames == 283
    # a line count that fits neither reading -> error naming the file
    _write_boxes(root / "Tiger1/groundtruth_rect.txt", _boxes(350))
    with pytest.raises(ValueError, match=r"Tiger1/groundtruth_rect\.txt has 350 lines.*6\.\.354"):
        load_dataset("otb100", root, sequences=["Tiger1"])


def test_otb_wrong_line_count_strict_vs_lenient(tmp_path):
    root = tmp_path / "otb"
    _touch_frames(root / "Car/img", range(1, 11), 4)
    _write_boxes(root / "Car/groundtruth_rect.txt", _boxes(8))
    with pytest.raises(ValueError, match=r"Car/groundtruth_rect\.txt has 8 lines .* 10 images"):
        load_dataset("otb100", root)
    (seq,) = load_dataset("otb-folder", root)  # lenient: the annotated first frames
    assert seq.num_frames == 8
    _write_boxes(root / "Car/groundtruth_rect.txt", _boxes(12))
    with pytest.raises(ValueError, match=r"Car/groundtruth_rect\.txt has 12 lines"):
        load_dataset("otb-folder", root)
    (root / "Car/groundtruth_rect.txt").write_text("1,2,3\n")
    with pytest.raises(ValueError, match=r"groundtruth_rect\.txt: line 1 does not parse"):
        load_dataset("otb-folder", root)
    (root / "Car/groundtruth_rect.txt").unlink()  # frames without ground truth: reported, not skipped
    with pytest.raises(FileNotFoundError, match=r"Car/groundtruth_rect\.txt"):
        load_dataset("otb100", root)


def _write_lasot_seq(folder, n, occl, oov, nan_row=None):
    _touch_frames(folder / "img", range(1, n + 1), 8)
    boxes = _boxes(n)
    if nan_row is not None:
        boxes[nan_row] = [float("nan")] * 4
    _write_boxes(folder / "groundtruth.txt", boxes)
    (folder / "full_occlusion.txt").write_text(",".join(map(str, occl)))
    (folder / "out_of_view.txt").write_text(",".join(map(str, oov)) + "\n")
    (folder / "nlp.txt").write_text("white airplane flying\n")


def test_lasot_layouts_visibility_and_split(tmp_path, data_dir):
    root = tmp_path / "LaSOT"
    # nested layout, airplane-1 is in the test split, airplane-10 in the train split
    _write_lasot_seq(root / "airplane/airplane-1", 6, [0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1], nan_row=3)
    _write_lasot_seq(root / "airplane/airplane-10", 4, [0] * 4, [0] * 4)
    split = json.load(open(data_dir / "annotations/lasot_split.json"))
    assert "airplane-1" in split["test"] and "airplane-10" in split["train"]
    (seq,) = load_dataset("lasot", root)  # default: the test split
    assert seq.name == "airplane-1" and seq.num_frames == 6
    assert seq.frame_paths[0].endswith("airplane-1/img/00000001.jpg")
    np.testing.assert_array_equal(seq.init_box, [9, 19, 30, 40])
    assert np.isnan(seq.ground_truth[3]).all()
    np.testing.assert_array_equal(seq.tags["full_occlusion"], [0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(seq.tags["out_of_view"], [0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(seq.visible, [1, 1, 0, 1, 0, 0])
    assert seq.meta["class"] == "airplane" and seq.meta["nlp"] == "white airplane flying"
    # explicit names may pick any present sequence; a given split / list changes the default
    assert [s.name for s in load_dataset("lasot", root, sequences=["airplane-10"])] == ["airplane-10"]
    assert len(load_dataset("lasot", root, annotations=data_dir / "annotations/lasot_split.json")) == 1
    (tmp_path / "names.txt").write_text("airplane-10\nairplane-1\n")
    assert [s.name for s in load_dataset("lasot", root, annotations=tmp_path / "names.txt")] == [
        "airplane-10", "airplane-1"]
    # flat layout
    flat = tmp_path / "flat"
    _write_lasot_seq(flat / "airplane-1", 3, [0, 0, 0], [0, 1, 0])
    (seq,) = load_dataset("lasot", flat)
    np.testing.assert_array_equal(seq.visible, [1, 0, 1])
    # errors name the file
    (flat / "airplane-1/out_of_view.txt").write_text("0,1\n")
    with pytest.raises(ValueError, match=r"out_of_view\.txt has 2 values but the sequence has 3 frames"):
        load_dataset("lasot", flat)
    (flat / "airplane-1/out_of_view.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"out_of_view\.txt"):
        load_dataset("lasot", flat)
    _write_boxes(flat / "airplane-1/groundtruth.txt", _boxes(5))
    with pytest.raises(ValueError, match=r"airplane-1/groundtruth\.txt has 5 lines but .* 3 images"):
        load_dataset("lasot", flat)
    (flat / "airplane-1/groundtruth.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"airplane-1/groundtruth\.txt"):
        load_dataset("lasot", flat, sequences=["airplane-1"])


def _write_got_seq(folder, n, absence, cover):
    _touch_frames(folder, range(1, n + 1), 8)
    _write_boxes(folder / "groundtruth.txt", _boxes(n))
    (folder / "absence.label").write_text("".join(f"{a}\n" for a in absence))
    (folder / "cover.label").write_text("".join(f"{c}\n" for c in cover))
    (folder / "cut_by_image.label").write_text("0\n" * n)
    (folder / "meta_info.ini").write_text(
        "[METAINFO]\nurl: https://youtu.be/x?t=1\nbegin: 00:00:59\nobject_class: ichneumon\n"
        "motion_class: walking\nmajor_class: viverrine\nroot_class: animal\nresolution: (1920, 1080)\n")


def test_got10k_val_absence_and_meta(tmp_path):
    root = tmp_path / "GOT-10k"
    _write_got_seq(root / "val/GOT-10k_Val_000001", 5, [0, 0, 1, 1, 0], [8, 7, 0, 0, 5])
    _write_got_seq(root / "val/GOT-10k_Val_000002", 3, [0, 0, 0], [8, 8, 8])
    (root / "val/list.txt").write_text("GOT-10k_Val_000002\nGOT-10k_Val_000001\nGOT-10k_Val_000003\n")
    seqs = load_dataset("got10k-val", root)  # list.txt order; missing _000003 skipped
    assert [s.name for s in seqs] == ["GOT-10k_Val_000002", "GOT-10k_Val_000001"]
    s = seqs[1]
    np.testing.assert_array_equal(s.visible, [1, 1, 0, 0, 1])
    np.testing.assert_array_equal(s.tags["absence"], [0, 0, 1, 1, 0])
    np.testing.assert_array_equal(s.meta["cover"], [8, 7, 0, 0, 5])
    np.testing.assert_array_equal(s.init_box, [9, 19, 30, 40])
    assert s.meta["url"] == "https://youtu.be/x?t=1" and s.meta["resolution"] == "(1920, 1080)"
    assert "object_class=ichneumon" in s.attributes and "root_class=animal" in s.attributes
    # the split folder itself as root
    assert len(load_dataset("got10k-val", root / "val")) == 2
    with pytest.raises(ValueError, match="does not look like a got10k-train dataset root"):
        load_dataset("got10k-train", root)
    (root / "val/GOT-10k_Val_000001/absence.label").write_text("0\n1\n2\n0\n0\n")
    with pytest.raises(ValueError, match=r"absence\.label: values must be integers in \(0, 1\)"):
        load_dataset("got10k-val", root, sequences=["GOT-10k_Val_000001"])


def test_uav123_subsequences_and_nan_rows(tmp_path):
    assert UAV123_SUBSEQUENCES["bird1_2"] == ("bird1", 775, 1477) and len(UAV123_SUBSEQUENCES) == 51
    root = tmp_path / "UAV123"
    anno = root / "anno/UAV123"
    anno.mkdir(parents=True)
    _touch_frames(root / "data_seq/UAV123/bird1", range(1, 1478), 6)
    b = _boxes(703)
    b[0] = [5.0, 6.0, 7.0, 8.0]
    b[10] = b[11] = [float("nan")] * 4
    _write_boxes(anno / "bird1_2.txt", b)
    _touch_frames(root / "data_seq/UAV123/uav2", range(1, 8), 6)
    _write_boxes(anno / "uav2.txt", _boxes(5))
    _write_boxes(anno / "car1_1.txt", _boxes(751))  # its frames are not here -> not available
    seqs = {s.name: s for s in load_dataset("uav123", root)}
    assert set(seqs) == {"bird1_2", "uav2"}
    s = seqs["bird1_2"]
    assert s.num_frames == 703
    assert s.frame_paths[0].endswith("bird1/000775.jpg") and s.frame_paths[-1].endswith("bird1/001477.jpg")
    np.testing.assert_array_equal(s.init_box, [4, 5, 7, 8])
    assert not s.visible[10] and not s.visible[11] and s.visible.sum() == 701
    assert np.isnan(s.ground_truth[10]).all()
    assert seqs["uav2"].num_frames == 5  # own folder, one frame per annotation line
    _write_boxes(anno / "bird1_2.txt", _boxes(700))
    with pytest.raises(ValueError, match=r"bird1_2\.txt has 700 lines but frames 775\.\.1477"):
        load_dataset("uav123", root, sequences=["bird1_2"])
    with pytest.raises(ValueError, match="unknown sequence.*'car1_1'"):
        load_dataset("uav123", root, sequences=["car1_1"])


def test_vot_rectangles_missing_and_short_tags(tmp_path):
    root = tmp_path / "VOT"
    seq = root / "rects"
    _touch_frames(seq, range(1, 5), 8)  # flat layout, no color/
    _write_boxes(seq / "groundtruth.txt", _boxes(4))
    (seq / "occlusion.tag").write_text("0\n1\n")  # shorter: padded with 0; other tags missing: all 0
    poly = root / "poly"
    _touch_frames(poly / "color", range(1, 4), 8)
    (poly / "groundtruth.txt").write_text("\n".join(["10,20,50,20,50,60,10,60"] * 2 + ["1,1,9,1,9,9,1,9"]) + "\n")
    (poly / "camera_motion.tag").write_text("1\n1\n1\n")
    (root / "list.txt").write_text("rects\npoly\nnot_here\n")
    a, p = load_dataset("vot2018", root)
    assert a.name == "rects" and p.name == "poly"
    np.testing.assert_array_equal(a.ground_truth, _boxes(4))  # rectangles as written
    np.testing.assert_array_equal(a.polygons[0], rect_to_polygon([10, 20, 30, 40]))
    assert set(a.tags) == set(VOT_TAGS)
    np.testing.assert_array_equal(a.tags["occlusion"], [0, 1, 0, 0])
    assert not a.tags["camera_motion"].any()
    np.testing.assert_array_equal(p.ground_truth[0], [10, 20, 40, 40])
    assert p.tags["camera_motion"].all() and p.frame_paths[0].endswith("color/00000001.jpg")
    # errors name the file
    (seq / "occlusion.tag").write_text("0\n1\n0\n0\n1\n")
    with pytest.raises(ValueError, match=r"occlusion\.tag has 5 lines but the sequence has 4 frames"):
        load_vot_folder(seq)
    (seq / "occlusion.tag").write_text("0\n2\n")
    with pytest.raises(ValueError, match=r"occlusion\.tag: line 2 must be 0 or 1"):
        load_vot_folder(seq)
    (seq / "occlusion.tag").unlink()
    _write_boxes(seq / "groundtruth.txt", _boxes(3))
    with pytest.raises(ValueError, match=r"rects/groundtruth\.txt has 3 regions but .* 4 images"):
        load_dataset("vot2018", root)
    (seq / "groundtruth.txt").write_text("1,2,3,4,5,6\n" * 4)
    with pytest.raises(ValueError, match=r"groundtruth\.txt: line 1 does not parse as a region"):
        load_vot_folder(seq)


def test_synthetic_dataset_round_trip(tmp_path):
    cfg = SyntheticConfig(num_frames=3, height=48, width=64, target_size_range=(12, 16), num_distractors=0)
    generate_dataset(tmp_path, 2, cfg, seed=3)
    seqs = load_dataset("synthetic", tmp_path)
    assert [s.name for s in seqs] == ["synthetic_0000", "synthetic_0001"]
    _, boxes = generate_sequence(cfg, int(np.random.SeedSequence([3, 1]).generate_state(1)[0]))
    np.testing.assert_allclose(seqs[1].ground_truth, boxes)
    assert seqs[0].frame(0).shape == (48, 64, 3)


def test_layout_and_name_errors(tmp_path, data_dir):
    with pytest.raises(ValueError, match="unknown dataset 'otb50'.*otb100"):
        load_dataset("otb50", tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset root folder not found"):
        load_dataset("otb100", tmp_path / "nope")
    (tmp_path / "something").mkdir()
    (tmp_path / "readme.txt").write_text("x")
    for name in DATASET_NAMES:
        with pytest.raises(ValueError, match=f"does not look like a {name} dataset root.*expected"):
            load_dataset(name, tmp_path)
    # an OTB root is not a LaSOT root
    with pytest.raises(ValueError, match="does not look like a lasot dataset root"):
        load_dataset("lasot", data_dir / "sequences/OTB")
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        load_dataset("vot2018", data_dir / "sequences/VOT2018", annotations=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON"):
        load_dataset("vot2018", data_dir / "sequences/VOT2018", annotations=tmp_path / "bad.json")


def test_json_missing_images_and_bad_rows(tmp_path):
    root = tmp_path / "r"
    _touch_frames(root / "a/img", [1, 2], 4)
    ann = {"a": {"video_dir": "a", "init_rect": [1, 1, 2, 2], "img_names": ["a/img/0001.jpg", "a/img/0003.jpg"],
                 "gt_rect": [[1, 1, 2, 2], [1, 1, 2, 2]]}}
    with pytest.raises(FileNotFoundError, match=r"1 of 2 image files are missing, e\.g\. .*0003\.jpg"):
        load_dataset("otb100", root, annotations=ann)
    ann["a"]["img_names"][1] = "a/img/0002.jpg"
    ann["a"]["gt_rect"] = [[1, 1, 2, 2]]
    with pytest.raises(ValueError, match=r"\['a'\]: 1 gt_rect rows for 2 img_names"):
        load_dataset("otb100", root, annotations=ann)


# ------------------------------------------------------------------------------------ Sequence fields


def test_sequence_new_fields_defaults_validation_and_pickle():
    s = Sequence("x", ("a.jpg", "b.jpg"), None, np.zeros((2, 4)))
    assert s.polygons is None and s.visible is None and dict(s.tags) == {} and dict(s.meta) == {}
    s = Sequence("x", ("a.jpg", "b.jpg"), None, np.zeros((2, 4)), polygons=np.zeros((2, 8)),
                 tags={"occlusion": [0, 1]}, visible=[1, 0], meta={"dataset": "t"})
    assert s.tags["occlusion"].dtype == bool and s.visible.dtype == bool
    with pytest.raises(ValueError):
        s.tags["occlusion"][0] = True  # read-only
    with pytest.raises(TypeError):
        s.tags["new"] = np.zeros(2, bool)  # read-only mapping
    t = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(t.tags["occlusion"], [False, True])
    assert t.meta["dataset"] == "t" and t.num_frames == 2
    with pytest.raises(ValueError, match="polygons must have shape"):
        Sequence("x", ("a.jpg",), None, np.zeros((1, 4)), polygons=np.zeros((2, 8)))
    with pytest.raises(ValueError, match="tag 'occ' must have shape"):
        Sequence("x", ("a.jpg",), None, np.zeros((1, 4)), tags={"occ": [0, 1]})
    with pytest.raises(ValueError, match="only 0/1"):
        Sequence("x", ("a.jpg",), None, np.zeros((1, 4)), tags={"occ": [2]})
    with pytest.raises(ValueError, match="visible must have shape"):
        Sequence("x", ("a.jpg",), None, np.zeros((1, 4)), visible=[1, 1])
