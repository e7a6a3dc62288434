"""Dataset runner (pysot result layout, atomic files, resume), result readers for other toolkits' layouts, and
the ``jaxtrack eval`` / ``jaxtrack report`` commands (including pysot's numbers on OpenCV TrackerNano results)."""

import json
import shutil

import cv2
import numpy as np
import pytest

from jaxtrack.cli import main
from jaxtrack.data.datasets import load_dataset
from jaxtrack.data.sequence import Sequence
from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset
from jaxtrack.eval import benchmark, report, vot

REF_TRACKER = "nanotrackv2_opencv"


def _temp_files(root):
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name]


# ------------------------------------------------------------------------ pysot numbers on others' results


@pytest.fixture()
def other_toolkit_results(data_dir, tmp_path):
    """TrackerNano trajectories as got10k lays them out (``OTB2015/<tracker>/<video>.txt``, commas), plus a
    copy in pysot's official-results style: tab separated, Jogging-2 named ``jogging_2.txt``."""
    src = data_dir / "reference_results/OTB" / REF_TRACKER
    results = tmp_path / "results"
    shutil.copytree(src, results / "OTB2015" / REF_TRACKER)
    tabs = results / "OTB2015" / "nano_tabs"
    tabs.mkdir()
    for f in src.glob("*.txt"):
        rows = [line.split(",") for line in f.read_text().splitlines() if line.strip()]
        name = "jogging_2.txt" if f.stem == "Jogging-2" else f.name
        (tabs / name).write_text("".join("\t".join(r) + "\n" for r in rows))
    return results


def test_report_reproduces_pysot_scores_of_other_toolkits_results(data_dir, other_toolkit_results, tmp_path,
                                                                    capsys):
    ref = json.loads((data_dir / f"reference_results/OTB/{REF_TRACKER}.json").read_text())
    plot = tmp_path / "plots" / "otb.png"
    code = main(["report", "--dataset", "otb100", "--root", str(data_dir / "sequences/OTB"),
                 "--results", str(other_toolkit_results), "--format", "json", "--plot", str(plot)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {REF_TRACKER, "nano_tabs"}
    for tracker, scores in out.items():
        assert set(scores["per_sequence"]) == set(ref["per_sequence"])
        for name, r in ref["per_sequence"].items():  # Football1: its 74 annotated frames of 81 results
            got = scores["per_sequence"][name]
            assert got["success_auc"] == pytest.approx(r["success_auc"], abs=1e-12), (tracker, name)
            assert got["precision"] == pytest.approx(r["precision"], abs=1e-12), (tracker, name)
            assert got["norm_precision"] == pytest.approx(r["norm_precision_0.20"], abs=1e-12), (tracker, name)
        assert scores["success_auc"] == pytest.approx(ref["mean"]["success_auc"], abs=1e-12)
        assert scores["precision"] == pytest.approx(ref["mean"]["precision"], abs=1e-12)
    assert plot.stat().st_size > 10_000 and not _temp_files(plot.parent)


def test_report_formats_and_dataset_folder_as_results(data_dir, other_toolkit_results, capsys):
    ref = json.loads((data_dir / f"reference_results/OTB/{REF_TRACKER}.json").read_text())
    otb = str(data_dir / "sequences/OTB")
    assert main(["report", "--dataset", "otb100", "--root", otb, "--results", str(other_toolkit_results / "OTB2015"),
                 "--trackers", "nano_tabs", "--format", "csv", "--sequences", "Crossing,Couple"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Tracker,Success") and lines[1].startswith("nano_tabs,")
    auc = float(lines[1].split(",")[1])
    per = ref["per_sequence"]
    assert auc == pytest.approx((per["Crossing"]["success_auc"] + per["Couple"]["success_auc"]) / 2, abs=1e-12)
    assert main(["report", "--dataset", "otb100", "--root", otb, "--results", str(other_toolkit_results)]) == 0
    md = capsys.readouterr().out
    assert "| Tracker | Success (AUC)" in md and "| nano_tabs | 0.735 | 0.999 |" in md


def test_report_skips_incomplete_trackers_and_names_missing_files(data_dir, other_toolkit_results, capsys):
    partial = other_toolkit_results / "OTB2015" / "partial"
    partial.mkdir()
    shutil.copy(other_toolkit_results / "OTB2015" / REF_TRACKER / "Crossing.txt", partial)
    otb = str(data_dir / "sequences/OTB")
    assert main(["report", "--dataset", "otb100", "--root", otb, "--results", str(other_toolkit_results),
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "partial" not in json.loads(captured.out) and "skipping" in captured.err and "David" in captured.err
    assert main(["report", "--dataset", "otb100", "--root", otb, "--results", str(other_toolkit_results),
                 "--trackers", "partial"]) == 2
    assert "no result file for 5 sequence(s)" in capsys.readouterr().err


def test_result_files_in_got10k_and_pysot_layouts(tmp_path):
    got = tmp_path / "GOT-10k" / "trk"
    (got / "GOT-10k_Val_000001").mkdir(parents=True)
    (got / "GOT-10k_Val_000001" / "GOT-10k_Val_000001_001.txt").write_text("1 2 3 4\n5 6 7 8\n")
    boxes = benchmark.load_results(tmp_path, "got10k-val", "trk", ["GOT-10k_Val_000001"])
    np.testing.assert_array_equal(boxes["GOT-10k_Val_000001"], [[1, 2, 3, 4], [5, 6, 7, 8]])
    assert benchmark.result_path(tmp_path, "got10k-val", "trk", "v") == tmp_path / "GOT-10k/trk/v/v_001.txt"
    assert benchmark.result_path(tmp_path, "lasot", "trk", "cat-1") == tmp_path / "LaSOT/trk/cat-1.txt"
    assert benchmark.result_path(tmp_path, "vot2018", "trk", "bag") == tmp_path / "VOT2018/trk/baseline/bag/bag_001.txt"
    runs = tmp_path / "VOT2018" / "trk" / "baseline" / "bag"
    runs.mkdir(parents=True)
    for r in (2, 1, 10):  # several runs, read in run order; time files ignored
        (runs / f"bag_{r:03d}.txt").write_text(f"1\n{r},2,3,4\n2\n0\n")
    (runs / "bag_time.txt").write_text("0.1\n")
    trajs = benchmark.load_results(tmp_path, "vot2018", "trk", ["bag"])["bag"]
    assert [t[1][0] for t in trajs] == [1, 2, 10] and trajs[0][2:] == [[2], [0]]
    with pytest.raises(FileNotFoundError, match="no result file for 1"):
        benchmark.load_results(tmp_path, "vot2018", "trk", ["bag", "ants1"])
    with pytest.raises(FileNotFoundError, match="no results of tracker 'other'"):
        benchmark.load_results(tmp_path, "vot2018", "other", ["bag"])


# ---------------------------------------------------------------------------------------- running, resume


class FakeOPETracker:
    """``track_chunks`` / ``track_batch`` of the tracker interface: the box moves 1 px right per frame.
    Counts the frames it is asked to track."""

    def __init__(self):
        self.frames_tracked = 0
        self.sequences_tracked = 0
        self.batch_calls = 0

    def track_chunks(self, variables, chunks, box0, chunk_size, on_chunk=None):
        n = 0
        for chunk in chunks:
            assert len(chunk) <= chunk_size
            n += len(chunk)
            if on_chunk:
                on_chunk(len(chunk))
        self.frames_tracked += n
        self.sequences_tracked += 1
        boxes = np.asarray(box0, np.float64)[None] + np.arange(n)[:, None] * [1, 0, 0, 0]
        return boxes.astype(np.float32), np.ones(n, np.float32)

    def track_batch(self, variables, frames, boxes0, lengths):
        self.batch_calls += 1
        b, t = np.asarray(frames).shape[:2]
        boxes = np.asarray(boxes0, np.float64)[:, None] + np.arange(t)[None, :, None] * [1, 0, 0, 0]
        boxes[np.arange(t)[None, :] >= np.asarray(lengths)[:, None]] = np.nan
        self.frames_tracked += int(np.sum(lengths))
        self.sequences_tracked += b
        return boxes.astype(np.float32), np.ones((b, t), np.float32)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, 3, SyntheticConfig(num_frames=6, height=48, width=64, target_size_range=(12, 16),
                                              num_distractors=0, occlusion=False), seed=1)
    return root


def test_run_dataset_resumes_without_redoing_or_losing_work(synthetic_root, tmp_path):
    seqs = load_dataset("synthetic", synthetic_root)
    assert len(seqs) == 3
    trk = FakeOPETracker()
    results = tmp_path / "results"

    class Interrupt(Exception):
        pass

    def stop_after_first(video, path):
        assert path.is_file()
        raise Interrupt(video)

    with pytest.raises(Interrupt):
        benchmark.run_dataset(trk, None, seqs, results, "synthetic", "fake", chunk_size=4, progress=False,
                              on_sequence_done=stop_after_first)
    assert trk.sequences_tracked == 1 and trk.frames_tracked == 6
    done = sorted(p.name for p in (results / "synthetic" / "fake").iterdir())
    assert done == [f"{seqs[0].name}.txt"] and not _temp_files(results)
    first = (results / "synthetic" / "fake" / done[0]).read_text()

    paths = benchmark.run_dataset(trk, None, seqs, results, "synthetic", "fake", chunk_size=4, progress=False)
    assert trk.sequences_tracked == 3 and trk.frames_tracked == 18  # the first sequence was not redone
    assert (results / "synthetic" / "fake" / done[0]).read_text() == first
    assert sorted(paths) == sorted(s.name for s in seqs) and all(p.is_file() for p in paths.values())
    assert not _temp_files(results)
    boxes = benchmark.load_results(results, "synthetic", "fake", seqs)
    for s in seqs:
        expected = s.ground_truth[0] + np.arange(6)[:, None] * [1, 0, 0, 0]
        np.testing.assert_allclose(boxes[s.name], expected, atol=1e-4)
    lines = (results / "synthetic" / "fake" / f"{seqs[1].name}.txt").read_text().splitlines()
    assert len(lines) == 6 and all(len(line.split(",")) == 4 and line.count(".") == 4 for line in lines)

    benchmark.run_dataset(trk, None, seqs, results, "synthetic", "fake", progress=False)
    assert trk.sequences_tracked == 3  # everything done: nothing tracked


def test_batched_run_equals_one_by_one(synthetic_root, tmp_path):
    seqs = load_dataset("synthetic", synthetic_root)
    one, batched = FakeOPETracker(), FakeOPETracker()
    benchmark.run_dataset(one, None, seqs, tmp_path / "a", "synthetic", "fake", progress=False)
    benchmark.run_dataset(batched, None, seqs, tmp_path / "b", "synthetic", "fake", progress=False,
                          batch_memory_mb=64)
    assert batched.batch_calls == 1 and batched.sequences_tracked == 3
    for s in seqs:
        a = (tmp_path / "a" / "synthetic" / "fake" / f"{s.name}.txt").read_text()
        assert (tmp_path / "b" / "synthetic" / "fake" / f"{s.name}.txt").read_text() == a


class ScriptedVOTTracker:
    """``init`` / ``step``; the frame index is read from pixel (0, 0) of the test frames."""

    def __init__(self, script):
        self.script, self.calls = script, 0

    def init(self, variables, frame, box):
        self.calls += 1
        return None

    def step(self, variables, state, frame):
        self.calls += 1
        return state, np.float32(self.script(int(frame[0, 0, 0]))), 1.0


SQUARE = [10, 10, 30, 10, 30, 30, 10, 30]


def _vot_sequences(root, n=110):  # longer than EAO's low = 100
    seqs = []
    for name in ("toy_a", "toy_b"):
        folder = root / name
        folder.mkdir(parents=True)
        paths = []
        for t in range(n):
            img = np.full((64, 64, 3), 90, np.uint8)
            img[0, 0, 0] = t
            cv2.imwrite(str(folder / f"{t:08d}.png"), img)
            paths.append(str(folder / f"{t:08d}.png"))
        occ = np.zeros(n, bool)
        occ[5:9] = True
        seqs.append(Sequence(name, tuple(paths), None, np.tile([10.0, 10, 20, 20], (n, 1)),
                             polygons=np.tile(SQUARE, (n, 1)).astype(float), tags={"occlusion": occ}))
    return seqs


def test_vot_results_layout_resume_and_scores(tmp_path, capsys):
    seqs = _vot_sequences(tmp_path / "data")
    trk = ScriptedVOTTracker(lambda t: [45, 45, 5, 5] if t == 6 else [10.123456, 10, 20, 20])
    results = tmp_path / "results"
    paths = benchmark.run_dataset(trk, None, seqs, results, "vot2018", "fake", progress=False)
    f = results / "VOT2018" / "fake" / "baseline" / "toy_a" / "toy_a_001.txt"
    assert paths["toy_a"] == f
    lines = f.read_text().splitlines()
    # pysot tools/test.py: "1" at init, "%.4f" boxes, "2" at the failure, "0" for the 4 skipped frames
    assert lines[:2] == ["1", "10.1235,10.0000,20.0000,20.0000"]
    assert lines[6:12] == ["2", "0", "0", "0", "0", "1"] and len(lines) == 110
    calls = trk.calls
    benchmark.run_dataset(trk, None, seqs, results, "vot2018", "fake", progress=False)
    assert trk.calls == calls  # resumed: nothing re-run
    trajs = benchmark.load_results(results, "vot2018", "fake", seqs)
    assert trajs["toy_a"][0][6] == [2] and trajs["toy_a"][0][1] == pytest.approx([10.1235, 10, 20, 20])
    scores = report.score_results(results, "vot2018", seqs)
    assert scores["fake"]["lost"] == 2 and scores["fake"]["robustness"] == pytest.approx(2 / 220 * 100)
    assert 0 < scores["fake"]["eao"] < 1 and 0 < scores["fake"]["accuracy"] <= 1
    # the same through the command line, from a pysot-format annotation JSON alone (no images read)
    ann = {s.name: {"video_dir": s.name, "init_rect": SQUARE, "width": 64, "height": 64,
                    "img_names": [f"{s.name}/{t:08d}.png" for t in range(110)],
                    "gt_rect": [SQUARE] * 110, "camera_motion": [], "illum_change": [], "motion_change": [],
                    "size_change": [], "occlusion": s.tags["occlusion"].astype(int).tolist()} for s in seqs}
    ann_file = tmp_path / "elsewhere" / "VOT2018.json"
    ann_file.parent.mkdir()
    ann_file.write_text(json.dumps(ann))
    plot = tmp_path / "eao.png"
    assert main(["report", "--dataset", "vot2018", "--annotations", str(ann_file), "--results", str(results),
                 "--format", "json", "--plot", str(plot)]) == 0
    out = json.loads(capsys.readouterr().out)
    got = out["fake"]
    assert {"eao", "accuracy", "robustness", "lost"} <= set(got)
    for key in ("eao", "accuracy", "robustness", "lost"):
        assert got[key] == pytest.approx(scores["fake"][key], rel=1e-12)
    assert got["per_tag"]["occlusion"]["lost"] == 2  # both failures (frame 6) carry the occlusion tag
    assert plot.is_file()


def test_eval_and_report_commands_with_a_real_tracker(synthetic_root, tmp_path, capsys, monkeypatch):
    import jaxtrack.tracking

    create = jaxtrack.tracking.create  # the small search crop keeps compilation short
    monkeypatch.setattr(jaxtrack.tracking, "create", lambda name, **kw: create(name, instance_size=191, **kw))
    results = tmp_path / "results"
    args = ["eval", "--model", "siamrpn_alex", "--dataset", "synthetic", "--root", str(synthetic_root),
            "--results", str(results), "--chunk-size", "4", "--sequences", "synthetic_0000,synthetic_0002"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "RANDOM weights" in out and "| siamrpn_alex-random |" in out
    folder = results / "synthetic" / "siamrpn_alex-random"
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["synthetic_0000.txt", "synthetic_0002.txt"]
    stamp = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert main(args) == 0  # resumed: the files are kept as they are
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp
    capsys.readouterr()
    assert main(["report", "--dataset", "synthetic", "--root", str(synthetic_root), "--results", str(results),
                 "--sequences", "synthetic_0000,synthetic_0002", "--format", "json"]) == 0
    scores = json.loads(capsys.readouterr().out)["siamrpn_alex-random"]
    assert set(scores["per_sequence"]) == {"synthetic_0000", "synthetic_0002"}
    assert 0 <= scores["success_auc"] <= 20 / 21


def test_report_command_errors(tmp_path, capsys):
    assert main(["report", "--dataset", "otb100", "--results", str(tmp_path)]) == 2
    assert "--root" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "--dataset", "nope", "--root", str(tmp_path), "--results", str(tmp_path)])


def test_vot_protocol_scores_are_independent_of_chunking(tmp_path):
    seqs = _vot_sequences(tmp_path / "d", n=12)
    recs = [vot.run_vot_sequence(ScriptedVOTTracker(lambda t: [10, 10, 20, 20]), None, seqs[0], chunk_size=c).records
            for c in (1, 5, 64)]
    assert recs[0] == recs[1] == recs[2]
