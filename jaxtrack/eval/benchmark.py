"""Run a tracker over a dataset and keep its results on disk in pysot's layout; read results back.

Layout written (pysot ``tools/test.py``), under ``results_dir``:

* one-pass datasets: ``<Dataset>/<tracker>/<video>.txt``, one ``x,y,w,h`` line per frame (0-based, commas,
  ``%.4f``; line 1 is the initial box);
* GOT-10k: ``GOT-10k/<tracker>/<video>/<video>_001.txt`` (pysot's and got10k's GOT-10k layout);
* VOT (supervised): ``<Dataset>/<tracker>/baseline/<video>/<video>_001.txt`` with lines ``1`` (initialised),
  ``2`` (failure), ``0`` (skipped) or ``x,y,w,h`` (``%.4f``).

``<Dataset>`` is pysot's folder name (:data:`RESULT_FOLDERS`: ``otb100`` → ``OTB100``, ``lasot`` → ``LaSOT``,
``vot2018`` → ``VOT2018``, ``uav123`` → ``UAV123``, …). Every file is written atomically (temporary file in the
same folder + ``os.replace``); a sequence whose result file exists is skipped, so an interrupted run resumes
where it stopped without redoing or losing a sequence.

Reading (:func:`load_results`, :func:`find_trackers`) also accepts results written by other toolkits: got10k
writes OTB results to ``OTB2015/<tracker>/<video>.txt`` (``%.3f``, commas) — so dataset folder aliases are
tried (:data:`RESULT_FOLDER_ALIASES`) and ``results_dir`` may also be the dataset folder itself; values may be
separated by commas, tabs or spaces; pysot's OTB files for two-target sequences may be named ``jogging_2.txt``
(case and ``-``/``_`` are ignored when the exact name is missing); VOT folders with several runs
(``<video>_001.txt`` … ``_015.txt``) give one trajectory per run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence as _Seq
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from jaxtrack.data.sequence import read_boxes
from jaxtrack.fileio import atomic_write_text
from jaxtrack.eval.vot import format_record, parse_record, run_vot_sequence

__all__ = [
    "RESULT_FOLDERS",
    "RESULT_FOLDER_ALIASES",
    "process_share",
    "protocol_of",
    "result_folder",
    "result_path",
    "run_dataset",
    "sequence_mesh",
    "write_ope_result",
    "write_vot_result",
    "find_dataset_dir",
    "find_trackers",
    "find_result_files",
    "load_results",
    "read_ope_result",
    "read_vot_result",
]

#: pysot's results folder name of each dataset (``results/<name>/<tracker>/...``).
RESULT_FOLDERS = {
    "otb100": "OTB100",
    "lasot": "LaSOT",
    "vot2018": "VOT2018",
    "got10k-val": "GOT-10k",
    "got10k-train": "GOT-10k-train",
    "uav123": "UAV123",
    "synthetic": "synthetic",
    "otb-folder": "OTB",
}

#: Folder names other toolkits use for the same dataset (tried in order when reading).
RESULT_FOLDER_ALIASES = {
    "otb100": ("OTB100", "OTB2015", "OTB"),
    "otb-folder": ("OTB", "OTB100", "OTB2015"),
    "lasot": ("LaSOT", "LaSOT_test", "lasot"),
    "vot2018": ("VOT2018",),
    "got10k-val": ("GOT-10k", "GOT-10k-val", "GOT10k"),
    "got10k-train": ("GOT-10k-train", "GOT-10k"),
    "uav123": ("UAV123", "UAV"),
    "synthetic": ("synthetic",),
}

_GOT_LAYOUT = {"got10k-val", "got10k-train"}


def protocol_of(dataset: str) -> str:
    """``"vot"`` (supervised, restarts) for VOT datasets, ``"ope"`` (one pass) otherwise."""
    return "vot" if str(dataset).lower().startswith("vot") else "ope"


def result_folder(dataset: str) -> str:
    """pysot's folder name for ``dataset`` (unknown names are used as given)."""
    return RESULT_FOLDERS.get(str(dataset).lower(), str(dataset))


def result_path(results_dir, dataset: str, tracker_name: str, video: str, protocol: str | None = None) -> Path:
    """Where :func:`run_dataset` writes the result of ``video``."""
    protocol = protocol or protocol_of(dataset)
    base = Path(results_dir) / result_folder(dataset) / tracker_name
    if protocol == "vot":
        return base / "baseline" / video / f"{video}_001.txt"
    if str(dataset).lower() in _GOT_LAYOUT:
        return base / video / f"{video}_001.txt"
    return base / f"{video}.txt"


# ------------------------------------------------------------------------------------------------ writing


def write_ope_result(path, boxes) -> None:
    """``[N, 4]`` boxes → ``x,y,w,h`` lines (``%.4f``, commas), atomically."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{path}: boxes must have shape [N, 4], got {b.shape}")
    atomic_write_text(Path(path), "".join(",".join(f"{v:.4f}" for v in row) + "\n" for row in b.tolist()))


def write_vot_result(path, records: Iterable) -> None:
    """pysot's VOT result file (``1`` / ``2`` / ``0`` / ``%.4f`` values), atomically."""
    atomic_write_text(Path(path), "".join(format_record(r) + "\n" for r in records))


def _frames_bytes(seq) -> int:
    h, w = seq.frame_size
    return int(seq.num_frames) * h * w * 3


def _batch_groups(sequences: list, budget_bytes: float) -> list[list]:
    """Groups of ≥ 2 sequences of one frame size whose padded frames fit the budget; the rest alone."""
    if budget_bytes <= 0:
        return [[s] for s in sequences]
    by_size: dict[tuple[int, int], list] = {}
    for s in sequences:
        if not len(s.ground_truth):
            by_size.setdefault(("alone", id(s)), []).append(s)
        else:
            by_size.setdefault(tuple(s.frame_size), []).append(s)
    groups = []
    for key, seqs in by_size.items():
        if key[0] == "alone":
            groups.extend([s] for s in seqs)
            continue
        h, w = key
        cur: list = []
        for s in sorted(seqs, key=lambda q: q.num_frames):
            cand = cur + [s]
            if len(cand) * max(q.num_frames for q in cand) * h * w * 3 <= budget_bytes:
                cur = cand
            else:
                if cur:
                    groups.append(cur)
                cur = [s]
        if cur:
            groups.append(cur)
    return groups


def sequence_mesh(devices=None):
    """A 1-D mesh ``seq`` over ``devices`` (default: this process's devices) for :func:`run_dataset`: the sequences
    of a ``track_batch`` group are split over it; None with a single device."""
    import jax

    devices = list(jax.local_devices() if devices is None else devices)
    if len(devices) < 2:
        return None
    return jax.sharding.Mesh(np.array(devices), ("seq",))


def process_share(sequences: list) -> list:
    """This process's share of ``sequences`` under ``jax.distributed`` (every ``process_count``-th, from
    ``process_index``; all of them in a single process). The shares partition the list, so the processes write
    disjoint result files into one results folder."""
    import jax

    n, i = jax.process_count(), jax.process_index()
    return [s for k, s in enumerate(sequences) if k % n == i]


def _track_group(tracker, variables, group: list, chunk_size: int, mesh=None) -> dict[str, np.ndarray]:
    """``track_batch`` over sequences of one frame size (frames padded to the longest); with ``mesh`` the batch is
    padded to a multiple of its devices (with one-frame copies of the first sequence) and split over them."""
    t = max(s.num_frames for s in group)
    h, w = group[0].frame_size
    pad = 0 if mesh is None else -len(group) % mesh.devices.size
    frames = np.zeros((len(group) + pad, t, h, w, 3), dtype=np.uint8)
    for b, s in enumerate(group):
        k = 0
        for chunk in s.iter_chunks(chunk_size):
            frames[b, k:k + len(chunk)] = chunk
            k += len(chunk)
    frames[len(group):, 0] = frames[0, 0]
    boxes0 = np.stack([s.ground_truth[0] for s in group] + [group[0].ground_truth[0]] * pad).astype(np.float32)
    lengths = np.array([s.num_frames for s in group] + [1] * pad)
    if mesh is not None:
        import jax

        split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seq"))
        frames, boxes0 = jax.device_put(frames, split), jax.device_put(boxes0, split)
        variables = jax.device_put(variables, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    boxes, _ = tracker.track_batch(variables, frames, boxes0, lengths)
    boxes = np.asarray(boxes)
    return {s.name: boxes[b, :s.num_frames] for b, s in enumerate(group)}


def run_dataset(
    tracker,
    variables,
    sequences: _Seq,
    results_dir,
    dataset_name: str,
    tracker_name: str,
    protocol: str | None = None,
    chunk_size: int = 64,
    progress: bool = True,
    batch_memory_mb: float = 0.0,
    on_sequence_done: Callable[[str, Path], None] | None = None,
    mesh="local",
) -> dict[str, Path]:
    """Track every sequence and write its result file; returns {video: result path} (of every sequence).

    ``protocol``: ``"ope"`` (one pass through :func:`jaxtrack.eval.runner.run_sequence`, chunked, bounded
    memory) or ``"vot"`` (pysot's supervised restarts, :func:`jaxtrack.eval.vot.run_vot_sequence`); default
    from the dataset name. Sequences whose result file already exists are skipped (resume).
    ``batch_memory_mb`` > 0 lets one-pass sequences of the same frame size go through ``track_batch`` together
    when all their frames fit in that many MB (faster on accelerators; results equal one-by-one tracking).
    ``on_sequence_done(video, path)`` is called after each file is written.

    Devices and hosts: a ``track_batch`` group is split over ``mesh`` (default ``"local"``: every device of this
    process, :func:`sequence_mesh`; None: one device). Under ``jax.distributed`` each process tracks its
    :func:`process_share` of the sequences into the same results folder (a shared file system), then waits for
    the others, so every process returns with all result files written.
    """
    from jaxtrack.eval.runner import run_sequence

    protocol = protocol or protocol_of(dataset_name)
    if protocol not in ("ope", "vot"):
        raise ValueError(f"protocol must be 'ope' or 'vot', got {protocol!r}")
    names = [s.name for s in sequences]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"duplicate sequence names {dups}: their result files would collide")
    paths = {s.name: result_path(results_dir, dataset_name, tracker_name, s.name, protocol) for s in sequences}
    mine = process_share(sequences)
    todo = [s for s in mine if not paths[s.name].is_file()]
    mesh = sequence_mesh() if mesh == "local" else mesh
    overall = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="seq",
                   desc=f"{tracker_name} on {dataset_name}", disable=not progress)
    try:
        if protocol == "vot":
            for seq in todo:
                run = run_vot_sequence(tracker, variables, seq, chunk_size=chunk_size, progress=progress)
                write_vot_result(paths[seq.name], run.records)
                overall.set_postfix_str(f"{seq.name}: lost {run.lost}")
                overall.update(1)
                if on_sequence_done:
                    on_sequence_done(seq.name, paths[seq.name])
        else:
            for group in _batch_groups(list(todo), batch_memory_mb * 2**20):
                if len(group) > 1:
                    results = _track_group(tracker, variables, group, chunk_size, mesh)
                else:
                    seq = group[0]
                    results = {seq.name: run_sequence(tracker, variables, seq, chunk_size=chunk_size,
                                                      progress=progress).boxes}
                for seq in group:
                    write_ope_result(paths[seq.name], results[seq.name])
                    overall.update(1)
                    if on_sequence_done:
                        on_sequence_done(seq.name, paths[seq.name])
    finally:
        overall.close()
    _wait_for_other_processes(f"run_dataset {dataset_name} {tracker_name}")
    return paths


def _wait_for_other_processes(name: str) -> None:
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


# ------------------------------------------------------------------------------------------------ reading


def _norm(name: str) -> str:
    return name.lower().replace("-", "_")


def find_dataset_dir(results_dir, dataset: str) -> Path:
    """The folder holding one sub-folder per tracker: ``results_dir/<alias>`` for the first alias of
    ``dataset`` present (case-insensitive), else ``results_dir`` itself."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder not found: {root}")
    key = str(dataset).lower()
    aliases = RESULT_FOLDER_ALIASES.get(key, (result_folder(key),))
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for alias in aliases:
        if alias.lower() in children:
            return children[alias.lower()]
    return root


def find_trackers(results_dir, dataset: str) -> dict[str, Path]:
    """{tracker name: folder} of every (non-hidden) tracker folder under the dataset's results folder."""
    base = find_dataset_dir(results_dir, dataset)
    return {p.name: p for p in sorted(base.iterdir(), key=lambda q: q.name)
            if p.is_dir() and not p.name.startswith((".", "_"))}


def _lookup(folder: Path, names: Iterable[str]) -> Path | None:
    for n in names:
        p = folder / n
        if p.is_file():
            return p
    if not folder.is_dir():
        return None
    wanted = {_norm(n) for n in names}
    for p in sorted(folder.iterdir()):
        if p.is_file() and _norm(p.name) in wanted:
            return p
    return None


def find_result_files(tracker_dir, video: str, protocol: str = "ope") -> list[Path]:
    """Result file(s) of ``video`` in a tracker folder ([] if none): one file for one-pass results
    (``<video>.txt`` or GOT-10k's ``<video>/<video>_001.txt``), every run for VOT."""
    tracker_dir = Path(tracker_dir)
    if protocol == "vot":
        base = tracker_dir / "baseline"
        folder = base / video
        if not folder.is_dir():
            cands = [q for q in sorted(base.iterdir()) if q.is_dir() and _norm(q.name) == _norm(video)] \
                if base.is_dir() else []
            if not cands:
                return []
            folder = cands[0]
        pat = re.compile(re.escape(_norm(folder.name)) + r"_(\d+)\.txt")
        runs = [p for p in folder.iterdir() if p.is_file() and pat.fullmatch(_norm(p.name))]
        return sorted(runs, key=lambda p: int(pat.fullmatch(_norm(p.name)).group(1)))
    p = _lookup(tracker_dir, [f"{video}.txt"])
    if p is None:
        sub = tracker_dir / video
        if not sub.is_dir():
            cands = [q for q in tracker_dir.iterdir() if q.is_dir() and _norm(q.name) == _norm(video)] \
                if tracker_dir.is_dir() else []
            sub = cands[0] if cands else sub
        p = _lookup(sub, [f"{video}_001.txt"]) if sub.is_dir() else None
    return [p] if p is not None else []


def read_ope_result(path) -> np.ndarray:
    """``[N, 4]`` boxes of a one-pass result file (commas, tabs or spaces; ``nan`` kept; 0-based as written)."""
    return read_boxes(path, one_based=False)


def read_vot_result(path) -> list[list[float]]:
    """pysot VOT records of one run file."""
    path = Path(path)
    out = [parse_record(line, f"{path}: line {i}") for i, line in
           enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1) if line.strip()]
    if not out:
        raise ValueError(f"result file {path} is empty")
    return out


def load_results(results_dir, dataset: str, tracker: str, sequences: Iterable, missing: str = "raise") -> dict:
    """Results of ``tracker`` for ``sequences`` (Sequence records or names).

    One-pass datasets: {video: boxes [N, 4]}; VOT: {video: [run records, ...]}. ``missing="raise"`` raises
    ``FileNotFoundError`` listing the videos without a result file, ``"skip"`` leaves them out.
    """
    protocol = protocol_of(dataset)
    trackers = find_trackers(results_dir, dataset)
    if tracker not in trackers:
        raise FileNotFoundError(f"no results of tracker {tracker!r} for {dataset} under "
                                f"{find_dataset_dir(results_dir, dataset)} (found: {sorted(trackers) or 'none'})")
    tdir = trackers[tracker]
    out, absent = {}, []
    for s in sequences:
        name = s if isinstance(s, str) else s.name
        files = find_result_files(tdir, name, protocol)
        if not files:
            absent.append(name)
            continue
        out[name] = [read_vot_result(f) for f in files] if protocol == "vot" else read_ope_result(files[0])
    if absent and missing == "raise":
        raise FileNotFoundError(f"tracker {tracker!r} ({tdir}): no result file for {len(absent)} sequence(s): "
                                f"{absent[:10]}{' ...' if len(absent) > 10 else ''}")
    return out
