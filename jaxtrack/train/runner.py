"""The loop core shared by :func:`jaxtrack.train.train` and :func:`jaxtrack.defense.trainer.train_defense`.

Both trainings are the same machine around a different jitted step: a ``workdir`` with a configuration record,
orbax checkpoints that hold the :class:`~jaxtrack.train.state.TrainState` AND the grain data-iterator position
(exact resume), a JSON-lines metrics file, a progress bar, and SIGTERM / Ctrl-C saving a last checkpoint.
:func:`run_loop` is that machine; each training keeps only its state initialisation, its step and its export::

    workdir, log = start_run(workdir, log)
    mesh = make_data_mesh()
    local_batch = local_batch_size(config.batch_size, mesh)

    def setup(resuming):                       # called once, before the data iterator is made
        tx, step_fn = ...
        return initial_state(variables, tx, key_run, mesh, abstract=resuming), step_fn

    out = run_loop(workdir, name=config.name, config_record=config_to_dict(config), setup=setup,
                   make_iterator=lambda: make_data_iterator(config, tracker, workdir, local_batch), mesh=mesh,
                   steps=config.steps, batch_size=config.batch_size, log_every=config.log_every,
                   save_every=config.save_every, keep=config.keep, stop_at=stop_at, log=log)
    out.state, out.step, out.metrics, out.resumed_from

What lands in ``workdir``:

* ``config.json`` (:data:`CONFIG_FILE`) -- the configuration record (a resumed run whose record differs is reported
  through ``log``, key by key, and the new record is written);
* ``checkpoints/<step>/`` (:data:`CHECKPOINT_DIR`) -- orbax ``CheckpointManager`` checkpoints every ``save_every``
  steps, at the last step of the call and on an interruption; the last ``keep`` kept, synchronous and atomic. Each
  is a composite of ``state`` (the whole TrainState: params, batch_stats, optimizer state, step, PRNG key) and
  ``data`` (the grain iterator state after the batch of that step, one JSON file per process);
* ``metrics.jsonl`` (:data:`METRICS_FILE`) -- one JSON line every ``log_every`` steps and at the last step of the
  call: ``step`` (global optimizer steps done), the step's metrics as floats (those of its incoming parameters),
  ``pairs_per_s`` (global pairs per second of wall time since the previous line), ``data_wait`` (the fraction of
  that time spent waiting for the input pipeline) and ``time`` (UNIX seconds). A fresh run (no checkpoint)
  deletes an old file; a resumed run drops the lines past the restored step, so no step appears twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxtrack.fileio import atomic_save_figure
from jaxtrack.train.mesh import maybe_initialize_distributed, replicate, shard_batch
from jaxtrack.train.state import TrainState, abstract_state, create_train_state

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "METRICS_FILE",
    "DataPosition",
    "LoopResult",
    "TrainingDataError",
    "config_differences",
    "host_copy",
    "initial_state",
    "local_batch_size",
    "plot_metrics",
    "read_metrics",
    "record_config",
    "run_loop",
    "scalars",
    "sigterm_as_interrupt",
    "start_run",
    "truncate_metrics",
]

CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"


class TrainingDataError(ValueError):
    """The input pipeline failed (e.g. a corrupt frame with ``on_corrupt="raise"``); the message names the file
    and the last intact checkpoint."""


@dataclasses.dataclass
class LoopResult:
    """What :func:`run_loop` ends with."""

    state: TrainState  # the state after the last step done (replicated over the mesh; the restored one if no step)
    step: int  # global optimizer steps done (``state.step``)
    metrics: dict  # the last metrics line written by this call ({} when it logged none)
    resumed_from: int | None  # the checkpoint step the call started from (None: a fresh run)


# ----------------------------------------------------------------------------------------------- start-up
def start_run(workdir, log: Callable[[str], None] | None = None) -> tuple[Path, Callable[[str], None]]:
    """Start ``jax.distributed`` when the environment asks for it, create ``workdir``; returns its absolute path
    and ``log`` (default: a line on stderr from process 0, nothing from the others)."""
    maybe_initialize_distributed()
    if log is None:
        primary = jax.process_index() == 0
        log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if primary else (lambda msg: None)
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir, log


def local_batch_size(batch_size: int, mesh) -> int:
    """This process's share of the global ``batch_size`` (pairs per step); it must divide by the devices of
    ``mesh`` and by the processes."""
    n_dev, n_proc = mesh.size, jax.process_count()
    if batch_size % n_dev or batch_size % n_proc:
        raise ValueError(f"batch_size {batch_size} must be a multiple of the {n_dev} devices "
                         f"({n_proc} processes); set --set batch_size=...")
    return batch_size // n_proc


def config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """``["key.sub: old -> new", ...]`` for the (nested, dotted) keys whose values differ between ``a`` and ``b``."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


def record_config(workdir: Path, record: dict, log: Callable[[str], None]) -> None:
    """Write ``record`` (a JSON-able dict) to ``workdir/config.json`` (process 0, atomic), first logging how it
    differs from the record already there."""
    if jax.process_index() != 0:
        return
    from jaxtrack.fileio import atomic_write_text

    cfg_path = workdir / CONFIG_FILE
    if cfg_path.is_file():
        try:
            diffs = config_differences(json.loads(cfg_path.read_text(encoding="utf-8")), record)
        except (json.JSONDecodeError, UnicodeDecodeError):
            diffs = ["(unreadable config.json)"]
        if diffs:
            log(f"note: the configuration differs from the one recorded in {cfg_path}: " + "; ".join(diffs))
    atomic_write_text(cfg_path, json.dumps(record, indent=1) + "\n")


def initial_state(variables: dict, tx, key, mesh, *, abstract: bool = False) -> TrainState:
    """The step-0 :class:`TrainState` of ``variables`` (``params`` [+ ``batch_stats``]) with the optimizer ``tx``
    and the run's PRNG ``key``, replicated over ``mesh``; with ``abstract=True`` (``variables`` may be
    ``jax.ShapeDtypeStruct`` leaves) its shapes, dtypes and replicated shardings: the target of a restore."""
    if abstract:
        return abstract_state(jax.eval_shape(lambda v: create_train_state(v, tx, key), variables), mesh)
    return replicate(create_train_state(variables, tx, key), mesh)


# ----------------------------------------------------------------------------------------------- data position
class DataPosition:
    """An iterator state as grain's orbax handler sees an iterator (``get_state`` -> JSON bytes): holds the
    position to save, or receives the restored one in ``.state``."""

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
    """The rows of a ``metrics.jsonl`` (``[]`` when there is none; a line cut by a crash is skipped)."""
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


def truncate_metrics(path: Path, step: int) -> None:
    """Drop lines past ``step`` (they belong to steps the resumed run redoes)."""
    if not path.is_file():
        return
    rows = read_metrics(path)
    keep = [r for r in rows if r.get("step", 0) <= step]
    if len(keep) != len(rows) or not path.read_text(encoding="utf-8").endswith("\n"):
        from jaxtrack.fileio import atomic_write_text

        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


def scalars(metrics: dict) -> dict:
    """``{name: float}`` of a dict of (device) scalars."""
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


def plot_metrics(metrics_path, out_png, title: str = "",
                 terms: tuple[str, ...] = ("loss", "cls", "ctr", "reg"), heldout_path=None) -> Path | None:
    """Loss curves (the ``terms`` present in the rows, log scale) and the learning rate from ``metrics.jsonl``,
    plus, when ``heldout_path`` has rows, the held-out success AUC per checkpoint (mean and per sequence),
    written to ``out_png`` (atomic); None when there are no rows."""
    rows = read_metrics(metrics_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in rows])
    heldout = read_metrics(heldout_path) if heldout_path is not None else []
    if heldout:
        fig, (ax, ax_ev, ax_lr) = plt.subplots(3, 1, figsize=(7, 8.5), sharex=True,
                                               gridspec_kw={"height_ratios": [3, 2, 1]})
        ev_steps = [r["step"] for r in heldout]
        for name in heldout[-1].get("per_sequence", {}):
            ax_ev.plot(ev_steps, [r.get("per_sequence", {}).get(name, np.nan) for r in heldout], lw=0.8,
                       alpha=0.6, marker=".", label=name)
        ax_ev.plot(ev_steps, [r["success_auc"] for r in heldout], color="k", lw=2, marker="o", label="mean")
        ax_ev.set_ylabel("held-out success AUC")
        ax_ev.set_ylim(0, 1)
        ax_ev.grid(True, alpha=0.3)
        ax_ev.legend(fontsize=7, ncol=3)
    else:
        fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    terms = [k for k in terms if k in rows[0]]
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
    return atomic_save_figure(fig, out_png, dpi=110)


# ----------------------------------------------------------------------------------------------- helpers
def host_copy(tree):
    """NumPy copy of a replicated tree (works on multi-host arrays: every process holds a full replica)."""
    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(jax.device_get(x))

    return jax.tree_util.tree_map(get, tree)


@contextlib.contextmanager
def sigterm_as_interrupt():
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


def _loss_postfix(row: dict) -> dict:
    return {"loss": f"{row['loss']:.4f}", "lr": f"{row['lr']:.2e}", "pairs_s": f"{row['pairs_per_s']:.1f}"}


# ----------------------------------------------------------------------------------------------- the loop
def run_loop(
    workdir: Path,
    *,
    name: str,
    config_record: dict,
    setup: Callable[[bool], tuple[TrainState, Callable]],
    make_iterator: Callable[[], Any],
    mesh,
    steps: int,
    batch_size: int,
    log_every: int,
    save_every: int,
    keep: int,
    stop_at: int | None = None,
    progress: bool = True,
    postfix: Callable[[dict], dict] | None = None,
    on_save: Callable[[TrainState, int], None] | None = None,
    log: Callable[[str], None],
) -> LoopResult:
    """Run steps ``state.step + 1 .. min(stop_at, steps)`` in ``workdir``, resuming from its latest checkpoint.

    In order: :func:`record_config` (``config_record``); open the checkpoint manager (keeps ``keep``);
    ``setup(resuming)``; ``make_iterator()``; restore the latest checkpoint (state and data position) or start
    from step 0; then per step ``state, metrics = step_fn(state, shard_batch(next(iterator), mesh),
    state.step_key(step))`` with the 0-based index ``step`` of that step (the PRNG key schedule: the run's key
    folded with the step, so a resumed run draws the same keys).

    Args:
      workdir: the run's folder (absolute, existing: :func:`start_run`).
      name: the progress bar's label.
      config_record: the run's configuration as a JSON-able dict (``config.json``: the resume check).
      setup: ``setup(resuming) -> (state, step_fn)``; ``state`` is the step-0 :class:`TrainState` replicated over
        ``mesh`` or, with ``resuming=True``, its abstract shape (the restore target; :func:`initial_state` makes
        both); ``step_fn(state, batch, key) -> (state, metrics)`` is the jitted step (it may donate ``state``),
        ``batch`` this process's share of the global batch placed on ``mesh``, ``metrics`` a dict of scalars
        that includes ``loss`` (a non-finite loss stops the run with ``FloatingPointError``).
      make_iterator: ``() -> iterator`` of this process's batches with grain's ``get_state``/``set_state``
        (optionally ``close``, called at the end).
      mesh: the ``data`` mesh (:func:`jaxtrack.train.mesh.make_data_mesh`).
      steps: the run's total optimizer steps (the progress bar's total).
      batch_size: global pairs per step (for ``pairs_per_s``).
      log_every / save_every: metrics line / checkpoint every so many global steps (and at the last step).
      keep: checkpoints kept.
      stop_at: stop after this global step (saving a checkpoint), as an interruption would.
      progress: show the progress bar (process 0 only).
      postfix: ``row -> dict`` shown after the bar at every metrics line (default: loss, lr, pairs/s).
      on_save: ``on_save(state, step)`` after every scheduled checkpoint (not the one an interruption writes),
        e.g. a held-out evaluation.
      log: where notes go.

    A failing ``next(iterator)`` raises :class:`TrainingDataError` naming the last checkpoint (nothing is saved
    after it); KeyboardInterrupt (Ctrl-C, and SIGTERM in the main thread) saves the last finished step first.
    Returns a :class:`LoopResult`.
    """
    import grain
    import orbax.checkpoint as ocp
    from tqdm import tqdm

    primary = jax.process_index() == 0
    postfix = postfix or _loss_postfix
    record_config(workdir, config_record, log)

    ckpt_dir = workdir / CHECKPOINT_DIR
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
    manager = ocp.CheckpointManager(ckpt_dir, options=options)
    latest = manager.latest_step()

    state, step_fn = setup(latest is not None)
    it = make_iterator()
    position = DataPosition()
    metrics_path = workdir / METRICS_FILE
    if latest is not None:
        restored = manager.restore(
            latest,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(state), data=grain.checkpoint.CheckpointRestore(position)
            ),
        )
        state = restored.state
        it.set_state(position.state)
        if primary:
            truncate_metrics(metrics_path, int(state.step))
        log(f"resumed from {ckpt_dir / str(latest)} (step {latest})")
    elif primary and metrics_path.exists():
        metrics_path.unlink()  # a fresh run (no checkpoint): old metrics belong to nothing
    start = int(jax.device_get(state.step))
    end = steps if stop_at is None else min(int(stop_at), steps)

    def save(st, data_state, step):
        manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(st), data=grain.checkpoint.CheckpointSave(DataPosition(data_state))
            ),
            force=True,
        )
        manager.wait_until_finished()

    bar = tqdm(total=steps, initial=start, desc=name, unit="step", dynamic_ncols=True,
               disable=not (progress and primary), file=sys.stderr)
    last_saved = latest if latest is not None else -1
    done_state, done_data, done_step = state, position.state, start
    last_metrics: dict = {}
    t_mark, step_mark, wait = time.perf_counter(), start, 0.0
    log_file = open(metrics_path, "a", encoding="utf-8") if primary else None
    try:
        with sigterm_as_interrupt():
            for step in range(start, end):
                t0 = time.perf_counter()
                try:
                    batch = next(it)
                except StopIteration:
                    raise TrainingDataError(f"the input pipeline ended before step {step + 1}") from None
                except Exception as err:  # reported with the checkpoint that survives
                    kept = f"step {last_saved} in {ckpt_dir}" if last_saved >= 0 else "none written yet"
                    raise TrainingDataError(
                        f"training data error before step {step + 1}: {err} -- the run stopped; last checkpoint: "
                        f"{kept} (intact; fix or remove the file, or --set data.on_corrupt=skip, then run the same "
                        f"command to resume)"
                    ) from err
                data_state = it.get_state()
                wait += time.perf_counter() - t0
                state, metrics = step_fn(state, shard_batch(batch, mesh), state.step_key(step))
                done_state, done_data, done_step = state, data_state, step + 1
                s = step + 1
                if s % log_every == 0 or s == end:
                    row = scalars(metrics)
                    now = time.perf_counter()
                    dt = max(now - t_mark, 1e-9)
                    row = {"step": s, **row, "pairs_per_s": (s - step_mark) * batch_size / dt,
                           "data_wait": wait / dt, "time": time.time()}
                    t_mark, step_mark, wait = now, s, 0.0
                    last_metrics = row
                    if log_file is not None:
                        log_file.write(json.dumps(row) + "\n")
                        log_file.flush()
                    if not math.isfinite(row["loss"]):
                        raise FloatingPointError(f"loss is {row['loss']} at step {s}; last checkpoint: step "
                                                 f"{last_saved} in {ckpt_dir}")
                    bar.set_postfix(**postfix(row))
                bar.update(1)
                if s % save_every == 0 or s == end:
                    save(state, data_state, s)
                    last_saved = s
                    if on_save is not None:
                        on_save(state, s)
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

    return LoopResult(state=state, step=int(jax.device_get(state.step)), metrics=last_metrics, resumed_from=latest)
