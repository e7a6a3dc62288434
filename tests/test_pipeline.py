"""TFDS builder (pre-cropped ArrayRecord shards) and the grain loader: read-back, determinism, resumable
iterator state, sharding, corrupt frames."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from jaxtrack.data.augment import precrop
from jaxtrack.data.datasets import load_dataset
from jaxtrack.data.pairs import PAIR_KEYS, CorruptFrameError, CorruptFrameWarning, PairConfig
from jaxtrack.data.pipeline import build_tfds, make_loader, make_sampler, steps_per_epoch
from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset
from jaxtrack.data.tfds_builder import RecordFrames, find_prepared

Z, X, C = 31, 63, 127
SMALL = dict(exemplar_size=Z, instance_size=X, crop_size=C)
SYNTH = SyntheticConfig(num_frames=8, height=96, width=128, target_size_range=(14.0, 28.0))


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 3, SYNTH, seed=5)
    return root


@pytest.fixture(scope="module")
def seqs(synth_root):
    return load_dataset("synthetic", synth_root)


@pytest.fixture(scope="module")
def png_build(synth_root, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds_png")
    path = build_tfds(synth_root, data_dir, dataset="synthetic", crop_size=C, exemplar_size=Z, image_format="png")
    return data_dir, path


def take(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert set(x) == set(PAIR_KEYS) == set(y)
        for k in PAIR_KEYS:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


# ------------------------------------------------------------------------------------------ builder


def test_build_writes_exactly_the_precrops(seqs, png_build):
    data_dir, path = png_build
    assert find_prepared(data_dir) == path and find_prepared(data_dir, dataset="synthetic") == path
    frames = RecordFrames(path)
    assert len(frames) == len(seqs)
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["crop_size"] == C and meta["exemplar_size"] == Z and meta["num_records"] == sum(len(s) for s in seqs)
    for v, seq in enumerate(seqs):
        assert frames.video_name(v) == seq.name
        np.testing.assert_array_equal(frames.valid_frames(v), np.arange(len(seq)))
        for f in range(len(seq)):
            rec = frames.record(v, f)
            frame = cv2.imread(seq.frame_paths[f])
            crop, box, pad = precrop(frame, seq.ground_truth[f], C, Z)
            ok, buf = cv2.imencode(".png", crop, [int(cv2.IMWRITE_PNG_COMPRESSION), 1])
            assert ok and rec["image"] == buf.tobytes()  # the very bytes
            np.testing.assert_array_equal(rec["box"], box)
            np.testing.assert_array_equal(rec["pad"], pad)
            np.testing.assert_array_equal(rec["frame_box"], seq.ground_truth[f].astype(np.float32))
            assert bool(rec["valid"]) and int(rec["frame_index"]) == f and int(rec["video_index"]) == v
            assert rec["path"].decode() == seq.frame_paths[f]
            img, loaded_box, _ = frames.load(v, f)
            np.testing.assert_array_equal(img, crop)
            np.testing.assert_array_equal(loaded_box, box)
    assert "tensorflow" not in sys.modules


def test_loader_over_shards_equals_in_memory_loader(seqs, png_build):
    data_dir, _ = png_build
    cfg = PairConfig(negative_rate=0.3, gray=0.2, **SMALL)
    from_shards = take(make_loader(data_dir, cfg, batch_size=4, seed=3), 3)
    in_memory = take(make_loader(seqs, cfg, batch_size=4, seed=3), 3)
    assert_batches_equal(from_shards, in_memory)  # PNG is lossless: the two paths give the same pairs
    b = from_shards[0]
    assert b["template"].shape == (4, Z, Z, 3) and b["template"].dtype == np.uint8
    assert b["search"].shape == (4, X, X, 3) and b["box"].shape == (4, 4) and b["box"].dtype == np.float32
    assert b["negative"].shape == (4,) and b["negative"].dtype == np.bool_


def test_jpeg_build_and_rebuild_rules(synth_root, tmp_path, seqs):
    path = build_tfds(synth_root, tmp_path, dataset="synthetic", crop_size=C, exemplar_size=Z, jpeg_quality=90)
    frames = RecordFrames(path)
    img, box, _ = frames.load(1, 3)
    crop, ref_box, _ = precrop(cv2.imread(seqs[1].frame_paths[3]), seqs[1].ground_truth[3], C, Z)
    np.testing.assert_array_equal(box, ref_box)
    assert np.abs(img.astype(float) - crop).mean() < 6  # JPEG round trip
    _, buf = cv2.imencode(".jpg", crop, [int(cv2.IMWRITE_JPEG_QUALITY), 90])
    assert frames.record(1, 3)["image"] == buf.tobytes()
    # same parameters: reused; other parameters: refused unless overwrite
    assert build_tfds(synth_root, tmp_path, dataset="synthetic", crop_size=C, exemplar_size=Z,
                      jpeg_quality=90) == path
    with pytest.raises(ValueError, match="overwrite"):
        build_tfds(synth_root, tmp_path, dataset="synthetic", crop_size=C, exemplar_size=Z, jpeg_quality=80)
    with pytest.raises(ValueError, match="exemplar_size"):
        make_sampler(tmp_path, PairConfig(exemplar_size=27, instance_size=X, crop_size=C))


# ------------------------------------------------------------------------------------------- loader


def test_same_seed_same_batches_different_seed_differs(png_build):
    data_dir, _ = png_build
    cfg = PairConfig(**SMALL)
    a = take(make_loader(data_dir, cfg, batch_size=3, seed=11), 3)
    b = take(make_loader(data_dir, cfg, batch_size=3, seed=11, num_threads=1, prefetch_batches=1), 3)
    assert_batches_equal(a, b)
    c = take(make_loader(data_dir, cfg, batch_size=3, seed=12), 1)
    assert not np.array_equal(a[0]["search"], c[0]["search"])


def test_iterator_state_resumes_exactly(seqs):
    cfg = PairConfig(**SMALL)
    loader = make_loader(seqs, cfg, batch_size=2, seed=4)
    full = take(loader, 6)
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # the state is JSON: it goes into a checkpoint
    rest_original = [next(it) for _ in range(3)]
    resumed = iter(make_loader(seqs, cfg, batch_size=2, seed=4))
    resumed.set_state(state)
    rest_resumed = [next(resumed) for _ in range(3)]
    assert_batches_equal(rest_original, full[3:])
    assert_batches_equal(rest_resumed, full[3:])


def test_sharding_splits_without_overlap(png_build):
    data_dir, _ = png_build
    cfg = PairConfig(negative_rate=0.0, **SMALL)
    k, bsz, steps = 3, 2, 2

    def keys(batch):
        return [batch["search"][j].tobytes() + batch["box"][j].tobytes() for j in range(len(batch["box"]))]

    shards = [take(make_loader(data_dir, cfg, batch_size=bsz, seed=0, shard_index=i, shard_count=k), steps)
              for i in range(k)]
    whole = take(make_loader(data_dir, cfg, batch_size=k * bsz, seed=0), steps)
    for t in range(steps):
        per_shard = [keys(shards[i][t]) for i in range(k)]
        flat = [x for ks in per_shard for x in ks]
        assert len(set(flat)) == len(flat)  # no pair twice
        assert sorted(flat) == sorted(keys(whole[t]))  # together: the unsharded batch
    assert steps_per_epoch(data_dir, cfg, batch_size=bsz, shard_count=k) == 3 // (k * bsz)


def test_finite_epochs(seqs):
    cfg = PairConfig(pairs_per_epoch=8, **SMALL)
    batches = list(make_loader(seqs, cfg, batch_size=4, seed=0, num_epochs=2))
    assert len(batches) == 4
    assert list(make_loader(seqs, cfg, batch_size=3, seed=0, num_epochs=1, drop_remainder=False))[-1][
        "box"].shape == (2, 4)


# ------------------------------------------------------------------------------------------ corrupt


@pytest.fixture()
def corrupt_root(tmp_path):
    root = tmp_path / "data"
    generate_dataset(root, 2, SYNTH, seed=9)
    bad = sorted((root / "synthetic_0001" / "img").iterdir())[4]
    bad.write_bytes(b"\xff\xd8\xff garbage that is not a JPEG" * 8)
    return root, str(bad)


def test_build_corrupt_frame_raise(corrupt_root, tmp_path):
    root, bad = corrupt_root
    with pytest.raises(Exception) as info:
        build_tfds(root, tmp_path / "tfds", dataset="synthetic", crop_size=C, exemplar_size=Z, on_corrupt="raise")
    chain, e = [], info.value
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    err = next(x for x in chain if isinstance(x, CorruptFrameError))
    assert err.path == bad and err.frame_index == 4 and err.sequence == "synthetic_0001"
    assert bad in str(info.value) or bad in str(err)
    assert not list((tmp_path / "tfds").glob("tracking_crops/*/1.0.0"))  # nothing half-built


def test_build_corrupt_frame_skip(corrupt_root, tmp_path):
    root, bad = corrupt_root
    with pytest.warns(CorruptFrameWarning, match="frame 4 of sequence 'synthetic_0001'"):
        path = build_tfds(root, tmp_path / "tfds", dataset="synthetic", crop_size=C, exemplar_size=Z)
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["corrupt"] == [{"sequence": "synthetic_0001", "frame_index": 4, "path": bad,
                                "reason": meta["corrupt"][0]["reason"]}]
    assert meta["videos"][1]["valid"] == "11110111"
    frames = RecordFrames(path)
    assert 4 not in frames.valid_frames(1).tolist()
    with pytest.raises(CorruptFrameError, match="not valid"):
        frames.load(1, 4)
    batches = take(make_loader(path, PairConfig(**SMALL), batch_size=4, seed=0), 3)
    assert all(b["search"].shape == (4, X, X, 3) for b in batches)


def test_loader_corrupt_frame_in_memory(corrupt_root):
    root, _ = corrupt_root
    seqs = load_dataset("synthetic", root)
    cfg = PairConfig(negative_rate=0.0, **SMALL)
    with pytest.raises(CorruptFrameError, match="frame 4"):
        list(make_loader(seqs, PairConfig(negative_rate=0.0, on_corrupt="raise", pairs_per_epoch=64, **SMALL),
                         batch_size=4, num_epochs=1))
    with pytest.warns(CorruptFrameWarning):
        a = take(make_loader(seqs, cfg, batch_size=4, seed=2), 8)
    b = take(make_loader(seqs, cfg, batch_size=4, seed=2), 8)
    assert_batches_equal(a, b)


def test_worker_processes_give_the_same_batches(png_build, tmp_path):
    """worker_count > 0 (grain mp_prefetch, spawned processes) changes nothing but speed; run in a fresh
    interpreter so the spawned workers do not inherit pytest's state."""
    data_dir, _ = png_build
    code = f"""
import faulthandler, sys
faulthandler.dump_traceback_later(150, exit=True)  # a hang shows where it is instead of a silent timeout
import numpy as np
from jaxtrack.data.pairs import PairConfig
from jaxtrack.data.pipeline import make_loader
cfg = PairConfig(exemplar_size={Z}, instance_size={X}, crop_size={C})
def take(loader, n):
    it = iter(loader)
    out = [next(it) for _ in range(n)]
    state = it.get_state()
    it.close()  # close and drop worker iterators before exit (grain)
    del it
    return out, state
if __name__ == "__main__":
    a, _ = take(make_loader({str(data_dir)!r}, cfg, batch_size=2, seed=1, worker_count=2), 4)
    b, _ = take(make_loader({str(data_dir)!r}, cfg, batch_size=2, seed=1), 4)
    for x, y in zip(a, b):
        for k in x:
            assert np.array_equal(x[k], y[k]), k
    print("SAME", flush=True)
"""
    script = tmp_path / "workers.py"
    script.write_text(code)
    log = tmp_path / "workers.log"
    with open(log, "w") as out:  # a file, not a pipe: nothing waits for stray children to close it
        proc = subprocess.run([sys.executable, str(script)], stdout=out, stderr=subprocess.STDOUT, timeout=200,
                              check=False)
    text = log.read_text()
    assert proc.returncode == 0 and "SAME" in text, text[-4000:]
