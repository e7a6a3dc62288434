"""The held-out evaluation sets shared by the experiments and the training runs.

* **Real:** the OTB sequences in the shared data folder that no training recipe may read
  (:data:`HELD_OUT_OTB`; the recipes list them, with VOT2018 ``bag``, in ``data.held_out``).
* **Synthetic:** sequences generated from seed :data:`HELD_OUT_SYNTHETIC_SEED`; the synthetic training recipes
  generate from seed 0, so none of these frames was trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

HELD_OUT_OTB = ("Crossing", "Couple", "KiteSurf", "Football1")
HELD_OUT_SYNTHETIC_SEED = 90_000


def held_out_otb(sequences=HELD_OUT_OTB, max_frames: int = 0) -> list:
    """The held-out real OTB sequences (``[]`` when the shared data folder has none); ``sequences="all"`` for every
    sequence of the shared OTB folder. ``max_frames`` > 0 cuts each to its first frames."""
    from jaxtrack.data.datasets import load_dataset
    from jaxtrack.paths import shared_data_dir

    root = shared_data_dir() / "sequences" / "OTB"
    if not root.is_dir():
        return []
    names = None if sequences == "all" else list(sequences)
    seqs = list(load_dataset("otb-folder", root, sequences=names))
    return [s.head(max_frames) for s in seqs] if max_frames else seqs


def held_out_synthetic(folder, count: int, frames: int = 60, max_frames: int = 0) -> list:
    """``count`` held-out synthetic sequences of ``frames`` frames, generated into ``folder`` (reused when already
    there)."""
    from jaxtrack.data.datasets import load_dataset
    from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset

    if count <= 0:
        return []
    root = Path(folder)
    generate_dataset(root, count, SyntheticConfig(num_frames=frames), seed=HELD_OUT_SYNTHETIC_SEED)
    seqs = list(load_dataset("synthetic", root))
    return [s.head(max_frames) for s in seqs] if max_frames else seqs


def parse_weights(items) -> dict[str, str]:
    """``--weights MODEL=PATH`` items -> ``{model: path}`` (a ``jaxtrack convert`` / training-export folder, an
    orbax folder or a PyTorch checkpoint). Raises ``SystemExit`` naming the item for an unknown tracker, a missing
    path or a malformed item."""
    from jaxtrack.tracking import CONFIGS

    out = {}
    for item in items or ():
        model, sep, path = str(item).partition("=")
        if not sep or not model or not path:
            raise SystemExit(f"--weights {item!r}: expected MODEL=PATH")
        if model not in CONFIGS:
            raise SystemExit(f"--weights {item!r}: unknown tracker {model!r} (known: {', '.join(sorted(CONFIGS))})")
        if not Path(path).exists():
            raise SystemExit(f"--weights {item!r}: {path} not found")
        out[model] = path
    return out


def models_with_weights(names, log=print, weights: dict[str, str] | None = None) -> list[tuple[str, dict]]:
    """``[(name, variables)]`` of the trackers among ``names`` that have weights: the user's (``weights``, from
    :func:`parse_weights`), else those shipped with the package or in the shared data folder; the others are
    skipped with a note."""
    from jaxtrack import tracking
    from jaxtrack.weights import default_path, load_weights

    weights = weights or {}
    out = []
    for name in names:
        if name not in weights and default_path(name) is None:
            log(f"skipping {name}: no trained weights here (give them with --weights {name}=PATH)")
            continue
        loaded = load_weights(tracking.create(name), weights.get(name), allow_random=False)
        if name in weights:
            log(f"{name}: weights from {loaded.source}")
        out.append((name, loaded.variables))
    return out


def benchmark_set(dataset: str, root, sequences: str = "", max_frames: int = 0) -> dict[str, tuple[str, list]]:
    """``{label: (dataset, sequences)}`` of a user's benchmark (any name of :func:`jaxtrack.data.load_dataset`:
    ``otb100``, ``lasot``, ``vot2018``, ...) under ``root``; ``sequences``: comma-separated names (all when
    empty)."""
    from jaxtrack.data.datasets import load_dataset

    names = [n for n in sequences.split(",") if n] or None
    seqs = list(load_dataset(dataset, root, sequences=names))
    if not seqs:
        raise SystemExit(f"--dataset {dataset} --root {root}: no sequences found")
    return {dataset: (dataset, [s.head(max_frames) for s in seqs] if max_frames else seqs)}


def held_out_sets(results, otb_sequences: str = ",".join(HELD_OUT_OTB), synthetic: int = 4,
                  synthetic_frames: int = 60) -> dict[str, tuple[str, list]]:
    """``{label: (dataset name for the benchmark runner, sequences)}`` of the experiments: the real OTB sequences
    ``otb_sequences`` (comma-separated, ``all`` or ``none``) and ``synthetic`` synthetic ones (generated under
    ``results/synthetic_data``)."""
    out = {}
    if otb_sequences != "none":
        otb = held_out_otb("all" if otb_sequences == "all" else otb_sequences.split(","))
        if otb:
            out["OTB (real)"] = ("otb-folder", otb)
    if synthetic:
        out["synthetic"] = ("synthetic", held_out_synthetic(Path(results) / "synthetic_data", synthetic,
                                                           synthetic_frames))
    return out


def headline_scores(scores: dict) -> tuple[float, float]:
    """``(main, second)`` of one tracker's scores: success AUC and precision at 20 px (one-pass protocol), or EAO
    and accuracy (VOT's supervised protocol)."""
    if "eao" in scores:
        return float(scores["eao"]), float(scores["accuracy"])
    return float(scores["success_auc"]), float(scores["precision"])


def add_user_data_args(parser, max_frames: bool = True) -> None:
    """``--weights MODEL=PATH`` (repeatable) and ``--dataset/--root/--sequences`` (and ``--max-frames``, unless the
    script has its own): the experiments run with anyone's checkpoints on any supported benchmark."""
    parser.add_argument("--weights", action="append", default=[], metavar="MODEL=PATH",
                        help="weights of MODEL: a jaxtrack convert / training-export folder, an orbax folder or a "
                             "PyTorch checkpoint (.pth); repeatable")
    parser.add_argument("--dataset", default="", help="a benchmark of jaxtrack.data.load_dataset (otb100, lasot, "
                                                      "vot2018, ...) instead of the held-out sets; needs --root")
    parser.add_argument("--root", default="", help="the --dataset folder")
    parser.add_argument("--sequences", default="", help="with --dataset: comma-separated sequence names (all when "
                                                        "empty)")
    if max_frames:
        parser.add_argument("--max-frames", type=int, default=0, help="with --dataset: first N frames of every "
                                                                     "sequence")


def user_sets(args):
    """The ``--dataset/--root`` set of :func:`add_user_data_args`, or None when not given."""
    if not args.dataset:
        if args.root:
            raise SystemExit("--root needs --dataset")
        return None
    if not args.root:
        raise SystemExit(f"--dataset {args.dataset} needs --root")
    return benchmark_set(args.dataset, args.root, args.sequences, args.max_frames)


def _results_written(results, dataset: str, tracker_name: str, seqs) -> list[bool]:
    """Per sequence, whether ``results`` holds this tracker's result file (the pysot layout of
    :func:`jaxtrack.eval.benchmark.run_dataset`)."""
    from jaxtrack.eval.benchmark import result_path

    return [result_path(results, dataset, tracker_name, s.name).is_file() for s in seqs]


def have_results(results, dataset: str, tracker_name: str, seqs) -> bool:
    """Whether ``results`` holds this tracker's result file for every sequence."""
    return all(_results_written(results, dataset, tracker_name, seqs))


class CellTime(NamedTuple):
    """What one grid cell cost: wall seconds and CPU seconds of this process (every thread; unaffected by the
    process being paused, ~2x the wall time when XLA keeps both cores of this machine busy). None: not recorded."""

    wall: float | None
    cpu: float | None


def _recorded(value) -> CellTime:
    if isinstance(value, dict):
        return CellTime(value.get("wall"), value.get("cpu"))
    return CellTime(value, None)  # files written before CPU time was recorded hold the wall seconds alone


def run_cell(tracker, variables, seqs, results, dataset: str, key: str) -> CellTime:
    """One cell of an experiment grid: :func:`~jaxtrack.eval.benchmark.run_dataset` (resumable), then
    ``jax.clear_caches()``. Returns what tracking the cell cost, compilation included: measured now when no result
    of the cell existed before, and recorded under ``key`` in ``RESULTS/cell_seconds.json`` (one atomic write, by
    process 0 of a multi-process run); the recorded figures when every result was there already; and None for a cell
    resumed half-way (its run covered only part of it).

    A grid's programs are not reused from one cell to the next; a long grid that kept them all died in LLVM's code
    allocator (``vm.max_map_count``) after about 25 cells, hence the cache clearing.
    """
    import json
    import time

    import jax

    from jaxtrack.eval.benchmark import run_dataset
    from jaxtrack.fileio import atomic_write_text

    path = Path(results) / "cell_seconds.json"
    written = _results_written(results, dataset, tracker.name, seqs)
    wall, cpu = time.perf_counter(), time.process_time()
    run_dataset(tracker, variables, seqs, results, dataset, tracker.name, progress=True)
    measured = CellTime(time.perf_counter() - wall, time.process_time() - cpu)
    jax.clear_caches()
    times = json.loads(path.read_text()) if path.is_file() else {}
    if all(written):
        return _recorded(times.get(key))
    if any(written):
        return CellTime(None, None)
    if jax.process_index() == 0:
        times[key] = measured._asdict()
        atomic_write_text(path, json.dumps(times, indent=1))
    return measured
