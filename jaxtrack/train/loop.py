"""The training loop: data -> sharded jitted steps -> metrics, orbax checkpoints, exact resume, export.

::

    from jaxtrack.train import get_config, train
    result = train(get_config("siamfcpp_tiny_synthetic"), "runs/tiny")     # resumes if runs/tiny has checkpoints

What lands in ``workdir``:

* ``config.json`` -- the configuration of the run (a resumed run with another configuration is reported);
* ``checkpoints/<step>/`` -- orbax ``CheckpointManager`` checkpoints every ``save_every`` steps and at the end,
  the last ``keep`` kept, each written to a temporary folder and renamed (atomic). One holds the whole
  :class:`~jaxtrack.train.state.TrainState` (params, batch_stats, optimizer state, step, PRNG key) AND the
  input pipeline's position (grain iterator state, one file per process), so a resumed run draws exactly the
  batches the uninterrupted run would have drawn and ends bit for bit where it would have ended;
* ``metrics.jsonl`` -- one JSON line every ``log_every`` steps: step, loss terms, lr, grad_norm, pairs/s (on
  resume, lines past the restored step are dropped, so the file never has a step twice);
* ``loss.png`` -- loss curves at the end; ``weights/`` + ``weights.json`` -- the final variables as an orbax
  directory, loadable with ``jaxtrack.tracking.weights.load_tracker_variables(tracker, "WORKDIR/weights")`` and
  ``jaxtrack track/eval --model TRACKER --weights WORKDIR/weights``.

Stopping: Ctrl-C / SIGTERM save a checkpoint of the last finished step (with its data position) before
exiting, so nothing is redone; a crash loses at most ``save_every`` steps, which the resumed run recomputes
identically. Corrupt training data with ``data.on_corrupt="raise"`` stops the run with
:class:`TrainingDataError` naming the file; no checkpoint is written after the failure, the last one stays
intact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxtrack.train.config import TrainConfig, config_from_dict, config_to_dict
from jaxtrack.train.mesh import make_data_mesh, maybe_initialize_distributed, replicate, shard_batch
from jaxtrack.train.state import (
    TrainState,
    abstract_state,
    check_prefixes,
    create_train_state,
    make_optimizer,
    make_train_step,
)

__all__ = [
    "TrainResult",
    "TrainingDataError",
    "train",
    "pair_config",
    "make_data_iterator",
    "read_metrics",
    "plot_metrics",
    "export_variables",
    "CHECKPOINT_DIR",
    "METRICS_FILE",
    "WEIGHTS_DIR",
]

CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
WEIGHTS_DIR = "weights"
CONFIG_FILE = "config.json"


class TrainingDataError(ValueError):
    """The input pipeline failed (e.g. a corrupt frame with ``on_corrupt="raise"``); the message names the file
    and the last intact checkpoint."""


@dataclasses.dataclass
class TrainResult:
    workdir: Path
    step: int  # optimizer steps done
    metrics: dict  # the last logged metrics line
    weights: Path | None  # exported variables (None when the run stopped before config.steps)
    resumed_from: int | None  # the checkpoint step the run started from


# ----------------------------------------------------------------------------------------------- data
def pair_config(config: TrainConfig, tracker):
    """The :class:`jaxtrack.data.pairs.PairConfig` of a run (crop sizes from the tracker)."""
    from jaxtrack.data.pairs import PairConfig

    d, t = config.data, tracker.config
    return PairConfig(
        exemplar_size=t.exemplar_size,
        instance_size=t.instance_size,
        crop_size=max(d.crop_size, t.instance_size),
        context_amount=t.context_amount,
        max_gap=d.max_gap,
        negative_rate=d.negative_rate,
        gray=d.gray,
        shift=d.shift,
        scale=d.scale,
        blur=d.blur,
        color=d.color,
        flip=d.flip,
        template_shift=d.template_shift,
        template_scale=d.template_scale,
        template_blur=d.template_blur,
        template_color=d.template_color,
        template_flip=d.template_flip,
        style=d.style,
        pairs_per_epoch=d.pairs_per_epoch or None,
        on_corrupt=d.on_corrupt,
    )


_SHARED_SEQUENCE_FOLDERS = {"otb100": "OTB", "otb-folder": "OTB", "vot2018": "VOT2018"}


def _extra_sequences(d) -> list:
    """The sequences of ``data.extra_source`` (each ``extra_repeat`` times), or ``[]``."""
    from jaxtrack.data import load_dataset

    if not d.extra_source:
        return []
    root = d.extra_root
    if not root:
        folder = _SHARED_SEQUENCE_FOLDERS.get(d.extra_source.lower())
        if folder is None:
            raise ValueError(f"data.extra_root is required for data.extra_source={d.extra_source!r}")
        from jaxtrack.paths import shared_data_dir

        root = shared_data_dir() / "sequences" / folder
    seqs = load_dataset(d.extra_source, root, sequences=d.extra_sequences or None)
    return list(seqs) * d.extra_repeat


def _training_source(config: TrainConfig, workdir: Path):
    """What ``make_loader`` reads: a list of sequences or a TFDS folder."""
    d = config.data
    extra = _extra_sequences(d)
    if d.source == "tfds":
        if extra:
            raise ValueError("data.extra_source cannot be mixed with data.source='tfds' (build one TFDS dataset "
                             "from both folders instead)")
        if not d.root:
            raise ValueError("data.root is required for data.source='tfds' (--set data.root=/path/to/build)")
        return d.root
    return _main_sequences(config, workdir) + extra


def _main_sequences(config: TrainConfig, workdir: Path) -> list:
    from jaxtrack.data import load_dataset

    d = config.data
    if d.source == "synthetic":
        from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset

        root = Path(d.root) if d.root else workdir / "data"
        if jax.process_index() == 0:
            synth = SyntheticConfig(num_frames=d.synthetic_frames, height=d.synthetic_height,
                                    width=d.synthetic_width)
            generate_dataset(root, d.synthetic_sequences, synth, seed=d.synthetic_seed)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("jaxtrack-synthetic-data")
        seqs = load_dataset("synthetic", root)
        return list(seqs[: d.synthetic_sequences])
    if not d.root:
        raise ValueError(f"data.root is required for data.source={d.source!r} (--set data.root=/path/to/dataset)")
    return list(load_dataset(d.source, d.root, sequences=d.sequences or None))


def make_data_iterator(config: TrainConfig, tracker, workdir, local_batch: int | None = None):
    """A checkpointable iterator of this process's share of every global batch."""
    from jaxtrack.data.pipeline import make_loader

    workdir = Path(workdir)
    n_proc = jax.process_count()
    local_batch = local_batch or config.batch_size // n_proc
    d = config.data
    loader = make_loader(
        _training_source(config, workdir),
        pair_config(config, tracker),
        batch_size=local_batch,
        seed=config.seed,
        shard_index=jax.process_index(),
        shard_count=n_proc,
        num_epochs=None,
        worker_count=d.workers,
        num_threads=d.threads,
        prefetch_batches=d.prefetch,
        dataset=d.dataset or None,
    )
    return iter(loader)


class _DataPosition:
    """The iterator state as grain's orbax handler sees an iterator (``get_state`` -> JSON bytes)."""

    def __init__(self, state: Any = None):
        self.state = state

    def get_state(self) -> bytes:
        return json.dumps(self.state).encode()

    def set_state(self, state: bytes) -> None:
        self.state = json.loads(state.decode())

    def start_prefetch(self) -> None:  # called by grain's handler after a restore
        pass


# ----------------------------------------------------------------------------------------------- metrics
def read_metrics(path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash
                continue
    return out


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines past ``step`` (they belong to steps the resumed run redoes)."""
    if not path.is_file():
        return
    rows = read_metrics(path)
    keep = [r for r in rows if r.get("step", 0) <= step]
    if len(keep) != len(rows) or not path.read_text(encoding="utf-8").endswith("\n"):
        from jaxtrack.fileio import atomic_write_text

        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


def plot_metrics(metrics_path, out_png, title: str = "") -> Path | None:
    """Loss curves (total and terms, log scale) and the learning rate from ``metrics.jsonl``."""
    rows = read_metrics(metrics_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in rows])
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    terms = [k for k in ("loss", "cls", "ctr", "reg") if k in rows[0]]
    window = max(1, len(rows) // 50)  # long runs: raw values faint, a running mean on top
    for k in terms:
        values = np.array([r[k] for r in rows], float)
        if window > 1:
            line, = ax.plot(steps, values, lw=0.5, alpha=0.25)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, color=line.get_color(), label=f"{k} (mean of {window})",
                    lw=1.5 if k == "loss" else 1.0)
        else:
            ax.plot(steps, values, label=k, lw=1.5 if k == "loss" else 1.0)
    ax.set_yscale("log")
    ax.set_ylabel("loss (terms unweighted)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title or "training loss")
    if "lr" in rows[0]:
        ax_lr.plot(steps, [r["lr"] for r in rows], color="k")
    ax_lr.set_ylabel("lr")
    ax_lr.set_xlabel("step")
    ax_lr.grid(True, alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    tmp = out_png.with_name(f".{out_png.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out_png)
    return out_png


# ----------------------------------------------------------------------------------------------- export
def _host_copy(tree):
    """NumPy copy of a replicated tree (works on multi-host arrays: every process holds a full replica)."""
    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(jax.device_get(x))

    return jax.tree_util.tree_map(get, tree)


def export_variables(workdir, variables: dict, info: dict) -> Path:
    """Write ``variables`` to ``workdir/weights`` (orbax; replaces an older export atomically) + ``weights.json``."""
    from jaxtrack import checkpoint
    from jaxtrack.fileio import atomic_write_text

    workdir = Path(workdir).absolute()
    dst = workdir / WEIGHTS_DIR
    tmp = workdir / f".{WEIGHTS_DIR}.tmp-{info.get('step', 0)}"
    if jax.process_index() == 0 and tmp.exists():
        shutil.rmtree(tmp)
    checkpoint.save_variables(tmp, _host_copy(variables))
    if jax.process_index() == 0:
        if dst.exists():
            old = workdir / f".{WEIGHTS_DIR}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dst, old)
            os.replace(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
        atomic_write_text(workdir / f"{WEIGHTS_DIR}.json", json.dumps(info, indent=1) + "\n")
    return dst


# ----------------------------------------------------------------------------------------------- the loop
_STEP_CACHE: dict = {}


def _train_step_for(tracker, optim, total_steps, mesh, bf16, params):
    key = (tracker, optim, int(total_steps), mesh, bool(bf16))
    if key not in _STEP_CACHE:
        tx, schedule = make_optimizer(optim, total_steps, params)
        dtype = jnp.bfloat16 if bf16 else jnp.float32
        _STEP_CACHE[key] = (tx, schedule, make_train_step(tracker, tx, schedule, mesh, compute_dtype=dtype))
    return _STEP_CACHE[key]


def _initial_variables(config: TrainConfig, tracker, key, abstract: bool):
    if config.init_weights:
        from jaxtrack.tracking.weights import load_tracker_variables

        if abstract:
            return jax.eval_shape(tracker.init_variables, key)
        return load_tracker_variables(tracker, config.init_weights)[0]
    if abstract:
        return jax.eval_shape(tracker.init_variables, key)
    return tracker.init_variables(key)


def _config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (cluster preemption) raises KeyboardInterrupt in the loop, which saves a last checkpoint."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _jsonable(d):
    return json.loads(json.dumps(d, default=str))


def _scalars(metrics: dict) -> dict:
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


def train(
    config: TrainConfig,
    workdir,
    *,
    tracker=None,
    variables: dict | None = None,
    stop_at: int | None = None,
    progress: bool = True,
    export: bool = True,
    plot: bool = True,
    data_iterator: Callable | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``config`` in ``workdir``, resuming from its latest checkpoint if there is one.

    Args:
      config: the run (see :mod:`jaxtrack.train.config`).
      workdir: output folder (created).
      tracker: use this :class:`~jaxtrack.tracking.Tracker` instead of ``config.tracker`` (tests, variants).
      variables: initial Flax variables instead of ``tracker.init_variables`` / ``config.init_weights``
        (ignored when resuming).
      stop_at: stop after this global step (saving a checkpoint), as an interruption would; the run is
        resumable and ends exactly where the uninterrupted run ends.
      data_iterator: ``f(config, tracker, workdir, local_batch)`` returning a checkpointable iterator
        (``get_state``/``set_state``) of batches; default :func:`make_data_iterator`.
      log: where notes go (default: stderr, process 0 only).
    Returns a :class:`TrainResult`.
    """
    import orbax.checkpoint as ocp
    import grain

    maybe_initialize_distributed()
    primary = jax.process_index() == 0
    if log is None:
        log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if primary else (lambda msg: None)
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    if tracker is None:
        from jaxtrack import tracking

        tracker = tracking.create(config.tracker)

    mesh = make_data_mesh()
    n_dev, n_proc = mesh.size, jax.process_count()
    if config.batch_size % n_dev or config.batch_size % n_proc:
        raise ValueError(f"batch_size {config.batch_size} must be a multiple of the {n_dev} devices "
                         f"({n_proc} processes); set --set batch_size=...")
    local_batch = config.batch_size // n_proc

    # configuration record
    from jaxtrack.fileio import atomic_write_text

    cfg_path = workdir / CONFIG_FILE
    cfg_dict = config_to_dict(config)
    if cfg_path.is_file() and primary:
        try:
            diffs = _config_differences(json.loads(cfg_path.read_text(encoding="utf-8")), cfg_dict)
        except (json.JSONDecodeError, UnicodeDecodeError):
            diffs = ["(unreadable config.json)"]
        if diffs:
            log(f"note: the configuration differs from the one recorded in {cfg_path}: " + "; ".join(diffs))
    if primary:
        atomic_write_text(cfg_path, json.dumps(cfg_dict, indent=1) + "\n")

    # checkpoints
    ckpt_dir = workdir / CHECKPOINT_DIR
    options = ocp.CheckpointManagerOptions(max_to_keep=config.keep, create=True, enable_async_checkpointing=False)
    manager = ocp.CheckpointManager(ckpt_dir, options=options)
    latest = manager.latest_step()

    key_init, key_run = jax.random.split(jax.random.key(config.seed))
    if variables is None:
        variables = _initial_variables(config, tracker, key_init, abstract=latest is not None)
    check_prefixes(variables["params"], config.optim)
    tx, schedule, train_step = _train_step_for(
        tracker, config.optim, config.steps, mesh, config.bf16, variables["params"]
    )

    make_iter = data_iterator or make_data_iterator
    it = make_iter(config, tracker, workdir, local_batch)
    position = _DataPosition()
    metrics_path = workdir / METRICS_FILE
    if latest is not None:
        target = abstract_state(jax.eval_shape(lambda v: create_train_state(v, tx, key_run), variables), mesh)
        restored = manager.restore(
            latest,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), data=grain.checkpoint.CheckpointRestore(position)
            ),
        )
        state: TrainState = restored.state
        it.set_state(position.state)
        if primary:
            _truncate_metrics(metrics_path, int(state.step))
        log(f"resumed from {ckpt_dir / str(latest)} (step {latest})")
    else:
        state = replicate(create_train_state(variables, tx, key_run), mesh)
        if primary and metrics_path.exists():
            metrics_path.unlink()  # a fresh run (no checkpoint): old metrics belong to nothing
    start = int(jax.device_get(state.step))
    resumed_from = latest
    end = config.steps if stop_at is None else min(int(stop_at), config.steps)

    def save(st, data_state, step):
        manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(st), data=grain.checkpoint.CheckpointSave(_DataPosition(data_state))
            ),
            force=True,
        )
        manager.wait_until_finished()

    from tqdm import tqdm

    bar = tqdm(total=config.steps, initial=start, desc=config.name, unit="step", dynamic_ncols=True,
               disable=not (progress and primary), file=sys.stderr)
    last_saved = latest if latest is not None else -1
    done_state, done_data, done_step = state, position.state, start
    last_metrics: dict = {}
    t_mark, step_mark, wait = time.perf_counter(), start, 0.0
    log_file = open(metrics_path, "a", encoding="utf-8") if primary else None
    try:
        with _sigterm_as_interrupt():
            for step in range(start, end):
                t0 = time.perf_counter()
                try:
                    batch = next(it)
                except StopIteration:
                    raise TrainingDataError(f"the input pipeline ended before step {step + 1}") from None
                except Exception as err:  # noqa: BLE001 - reported with the checkpoint that survives
                    kept = f"step {last_saved} in {ckpt_dir}" if last_saved >= 0 else "none written yet"
                    raise TrainingDataError(
                        f"training data error before step {step + 1}: {err} -- the run stopped; last checkpoint: "
                        f"{kept} (intact; fix or remove the file, or --set data.on_corrupt=skip, then run the same "
                        f"command to resume)"
                    ) from err
                data_state = it.get_state()
                wait += time.perf_counter() - t0
                state, metrics = train_step(state, shard_batch(batch, mesh), state.step_key(step))
                done_state, done_data, done_step = state, data_state, step + 1
                s = step + 1
                if s % config.log_every == 0 or s == end:
                    row = _scalars(metrics)
                    now = time.perf_counter()
                    dt = max(now - t_mark, 1e-9)
                    row = {"step": s, **row, "pairs_per_s": (s - step_mark) * config.batch_size / dt,
                           "data_wait": wait / dt, "time": time.time()}
                    t_mark, step_mark, wait = now, s, 0.0
                    last_metrics = row
                    if log_file is not None:
                        log_file.write(json.dumps(row) + "\n")
                        log_file.flush()
                    if not math.isfinite(row["loss"]):
                        raise FloatingPointError(f"loss is {row['loss']} at step {s}; last checkpoint: step "
                                                 f"{last_saved} in {ckpt_dir}")
                    bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}",
                                    pairs_s=f"{row['pairs_per_s']:.1f}")
                bar.update(1)
                if s % config.save_every == 0 or s == end:
                    save(state, data_state, s)
                    last_saved = s
    except KeyboardInterrupt:
        if done_step > last_saved and done_step > start:
            try:
                save(done_state, done_data, done_step)
                log(f"interrupted: checkpoint of step {done_step} saved in {ckpt_dir}; run the same command to resume")
            except Exception as err:  # noqa: BLE001 - the previous checkpoint is still there
                log(f"interrupted: could not save step {done_step} ({err}); resume from step {last_saved}")
        raise
    finally:
        bar.close()
        if log_file is not None:
            log_file.close()
        manager.close()
        close = getattr(it, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()

    final = int(jax.device_get(state.step))
    weights = None
    if final >= config.steps:
        if export:
            info = {"tracker": tracker.name, "tracker_config": _jsonable(dataclasses.asdict(tracker.config)),
                    "config": config.name, "step": final,
                    "load": f"jaxtrack.tracking.weights.load_tracker_variables(create({tracker.name!r}), "
                            f"{str(workdir / WEIGHTS_DIR)!r})"}
            weights = export_variables(workdir, state.variables, info)
        if plot and primary:
            plot_metrics(metrics_path, workdir / "loss.png", title=f"{config.name} ({tracker.name})")
    return TrainResult(workdir=workdir, step=final, metrics=last_metrics, weights=weights, resumed_from=resumed_from)


def load_config(workdir) -> TrainConfig:
    """The configuration recorded in ``workdir/config.json``."""
    path = Path(workdir) / CONFIG_FILE
    return config_from_dict(json.loads(path.read_text(encoding="utf-8")))
