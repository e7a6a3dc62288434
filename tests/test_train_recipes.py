"""Training recipes on real video: which sequences they read, from where, and what they start from.

No training step runs here (``tests/test_train.py`` covers the loop): these check the data a recipe resolves to,
against the shared data folder's own listing (``sequences/train/SOURCES.tsv``, the data README's frame count) and
against a small shared-data tree written by the test (``JAXTRACK_DATA`` pointed at it).
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from jaxtrack import tracking
from jaxtrack.paths import resolve_data_path
from jaxtrack.train import config as C
from jaxtrack.train.loop import _training_source

# the evaluation sequences (issue 17; README "Shipped defenses"): OTB Crossing, Couple, KiteSurf, Football1, VOT2018 bag
EVAL = {"crossing", "couple", "kitesurf", "football1", "bag"}


def test_real_recipe_reads_the_shared_training_set_and_no_evaluation_sequence(data_dir, tmp_path):
    train_dir = data_dir / "sequences" / "train"
    otb_dir = data_dir / "sequences" / "OTB"
    if not (train_dir / "SOURCES.tsv").is_file() or not (otb_dir / "David").is_dir():
        pytest.skip(f"real training sequences not found under {train_dir} / {otb_dir}")
    with open(train_dir / "SOURCES.tsv", newline="", encoding="utf-8") as f:
        listed = {row["name"]: int(row["stored frames"]) for row in csv.DictReader(f, delimiter="\t")}
    assert len(listed) == 41 and sum(listed.values()) == 2807  # the data README / issue 17: 41 sequences, 2,807 frames

    cfg = C.get_config("siamfcpp_tiny_real")
    assert (cfg.tracker, cfg.init_weights, cfg.data.source) == ("siamfcpp_tiny", "bundled", "otb-folder")
    seqs = _training_source(cfg, tmp_path)
    names = [s.name for s in seqs]
    assert not {n.lower() for n in names} & EVAL
    assert {n: names.count(n) for n in ("David", "Jogging-2")} == {"David": 4, "Jogging-2": 4}
    main = [s for s in seqs if s.name not in ("David", "Jogging-2")]
    assert {s.name: s.num_frames for s in main} == listed
    root = data_dir.resolve()
    for s in seqs:
        folder = (train_dir if s in main else otb_dir) / s.name
        assert Path(s.frame_paths[0]).resolve().is_relative_to(folder.resolve()), (s.name, s.frame_paths[0])
        assert Path(s.frame_paths[-1]).resolve().is_relative_to(root)
    # the three sequences with out-of-view rows keep them as NaN (the pair sampler skips them)
    nan_rows = {s.name: int(np.isnan(s.ground_truth).any(axis=1).sum()) for s in main}
    assert {k: v for k, v in nan_rows.items() if v} == {"car14": 4, "group2_2": 1, "group3_2": 8}


def _write_seq(folder: Path, n: int, first: int = 1, gt_name: str = "groundtruth_rect.txt") -> None:
    (folder / "img").mkdir(parents=True)
    for k in range(first, first + n):
        cv2.imwrite(str(folder / "img" / f"{k:04d}.jpg"), np.full((24, 32, 3), 100, np.uint8))
    (folder / gt_name).write_text("".join(f"{5 + i},6,8,7\n" for i in range(n)))


@pytest.fixture()
def fake_shared(tmp_path, monkeypatch):
    """A shared-data tree: sequences/train/{Alpha, Beta} and sequences/OTB/{David (0300..0302), Jogging-2, Crossing}."""
    shared = tmp_path / "shared"
    _write_seq(shared / "sequences" / "train" / "Alpha", 3)
    _write_seq(shared / "sequences" / "train" / "Beta", 2)
    _write_seq(shared / "sequences" / "OTB" / "David", 3, first=300)
    _write_seq(shared / "sequences" / "OTB" / "Jogging-2", 2, gt_name="groundtruth_rect.2.txt")
    _write_seq(shared / "sequences" / "OTB" / "Crossing", 2)
    monkeypatch.setenv("JAXTRACK_DATA", str(shared))
    return shared


def test_real_recipe_follows_jaxtrack_data_and_refuses_held_out_sequences(fake_shared, tmp_path):
    cfg = C.get_config("siamfcpp_tiny_real")
    seqs = _training_source(cfg, tmp_path)
    assert [s.name for s in seqs] == ["Alpha", "Beta"] + ["David", "Jogging-2"] * 4
    assert all(Path(s.frame_paths[0]).is_relative_to(fake_shared) for s in seqs)
    assert [Path(p).name for p in seqs[2].frame_paths] == ["0300.jpg", "0301.jpg", "0302.jpg"]
    np.testing.assert_array_equal(seqs[0].ground_truth[1], [5, 5, 8, 7])  # "6,6,8,7" 1-based

    # an evaluation sequence asked for by name is refused before anything is read (Couple is not even present)
    for override in ("data.extra_sequences=David,Couple", "data.extra_sequences=Crossing"):
        with pytest.raises(ValueError, match=r"held-out sequence\(s\) \['(Couple|Crossing)'\]"):
            _training_source(C.get_config("siamfcpp_tiny_real", [override]), tmp_path)
    # ... and so is one that a folder yields (whatever its case), or the whole OTB folder as the main source
    with pytest.raises(ValueError, match=r"data.extra_source='otb100' at .*held-out sequence\(s\) \['Crossing'\]"):
        _training_source(C.get_config("siamfcpp_tiny_real", ["data.extra_sequences="]), tmp_path)
    main_otb = r"data.source='otb-folder' at .*OTB yields held-out sequence\(s\) \['Crossing'\]"
    with pytest.raises(ValueError, match=main_otb):
        _training_source(C.get_config("siamfcpp_tiny_real", ["data.root=shared:sequences/OTB"]), tmp_path)
    _write_seq(fake_shared / "sequences" / "train" / "kitesurf", 2)
    with pytest.raises(ValueError, match=r"held-out sequence\(s\) \['kitesurf'\]"):
        _training_source(cfg, tmp_path)


def test_shared_paths_resolve_inside_the_shared_folder(fake_shared):
    assert resolve_data_path("shared:sequences/train") == fake_shared / "sequences" / "train"
    assert resolve_data_path("/data/GOT-10k") == Path("/data/GOT-10k")
    assert resolve_data_path("runs/x") == Path("runs/x")
    for bad in ("shared:../elsewhere", "shared:/abs/path"):
        with pytest.raises(ValueError, match="relative to the shared data folder"):
            resolve_data_path(bad)


def test_init_weights_bundled_is_the_shipped_folder():
    from jaxtrack.weights import bundled_path, load_weights

    tiny = tracking.create("siamfcpp_tiny")
    shipped = bundled_path("siamfcpp_tiny")
    if shipped is None:
        pytest.skip("no bundled siamfcpp_tiny weights in this checkout")
    cfg = C.get_config("siamfcpp_tiny_real")
    assert load_weights(tiny, cfg.init_weights).source == f"bundled:{shipped}"
    with pytest.raises(ValueError, match="no bundled weights for tracker 'siamfcpp_alexnet'"):
        load_weights(tracking.create("siamfcpp_alexnet"), cfg.init_weights, allow_random=False)
