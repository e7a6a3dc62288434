"""The training loop: data -> sharded jitted steps -> metrics, orbax checkpoints, exact resume, export.

::

    from jaxtrack.train import get_config, train
    result = train(get_config("siamfcpp_tiny_synthetic"), "runs/tiny")     # resumes if runs/tiny has checkpoints

The machinery around the jitted step (configuration record, checkpoints with the data position, resume,
metrics lines, progress bar, SIGTERM) is :func:`jaxtrack.train.runner.run_loop`, shared with
:func:`jaxtrack.defense.trainer.train_defense`; this module adds the tracker's data, state, step and export.

What lands in ``workdir``:

* ``config.json`` -- the configuration of the run (a resumed run with another configuration is reported);
* ``checkpoints/<step>/`` -- orbax ``CheckpointManager`` checkpoints every ``save_every`` steps and at the end,
  the last ``keep`` kept, each written to a temporary folder and renamed (atomic). One holds the whole
  :class:`~jaxtrack.train.state.TrainState` (params, batch_stats, optimizer state, step, PRNG key) AND the
  input pipeline's position (grain iterator state, one file per process), so a resumed run draws exactly the
  batches the uninterrupted run would have drawn and ends bit for bit where it would have ended;
* ``metrics.jsonl`` -- one JSON line every ``log_every`` steps: step, loss terms, lr, grad_norm, pairs/s (on
  resume, lines past the restored step are dropped, so the file never has a step twice);
* ``loss.png`` -- loss curves at the end; ``weights/`` -- the final variables as a weights folder (card with the
  run's configuration), loadable with ``jaxtrack.weights.load_weights(tracker, "WORKDIR/weights")`` and
  ``jaxtrack track/eval --model TRACKER --weights WORKDIR/weights``.

Stopping: Ctrl-C / SIGTERM save a checkpoint of the last finished step (with its data position) before
exiting, so nothing is redone; a crash loses at most ``save_every`` steps, which the resumed run recomputes
identically. Corrupt training data with ``data.on_corrupt="raise"`` stops the run with
:class:`TrainingDataError` naming the file; no checkpoint is written after the failure, the last one stays
intact.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxtrack.train.config import ConfigError, TrainConfig, config_from_dict, config_to_dict
from jaxtrack.train.mesh import make_data_mesh
from jaxtrack.train.runner import (  # re-exported: the workdir layout and metrics helpers of every training
    CHECKPOINT_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    TrainingDataError,
    host_copy,
    initial_state,
    local_batch_size,
    plot_metrics,
    read_metrics,
    run_loop,
    start_run,
)
from jaxtrack.train.state import check_prefixes, make_optimizer, make_train_step
from jaxtrack.weights.backbone import graft_backbone

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

WEIGHTS_DIR = "weights"


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
    from jaxtrack.paths import resolve_data_path, shared_data_dir

    if not d.extra_source:
        return []
    if d.extra_root:
        root = resolve_data_path(d.extra_root)
    else:
        folder = _SHARED_SEQUENCE_FOLDERS.get(d.extra_source.lower())
        if folder is None:
            raise ValueError(f"data.extra_root is required for data.extra_source={d.extra_source!r}")
        root = shared_data_dir() / "sequences" / folder
    _check_not_held_out(d.held_out, d.extra_sequences, f"data.extra_sequences ({d.extra_source} at {root})")
    seqs = load_dataset(d.extra_source, root, sequences=d.extra_sequences or None)
    _check_not_held_out(d.held_out, [s.name for s in seqs], f"data.extra_source={d.extra_source!r} at {root}")
    return list(seqs) * d.extra_repeat


def _check_not_held_out(held_out, names, where: str) -> None:
    """``ValueError`` naming every sequence of ``names`` that ``data.held_out`` forbids (case-insensitive)."""
    banned = {str(h).lower() for h in held_out}
    hits = [n for n in names if str(n).lower() in banned]
    if hits:
        raise ValueError(f"{where} yields held-out sequence(s) {hits}: data.held_out={list(held_out)} must never be "
                         f"trained on; restrict the source with data.sequences / data.extra_sequences or point its "
                         f"root elsewhere")


def _training_source(config: TrainConfig, workdir: Path):
    """What ``make_loader`` reads: a list of sequences or a TFDS folder."""
    from jaxtrack.paths import resolve_data_path

    d = config.data
    extra = _extra_sequences(d)
    if d.source == "tfds":
        if extra:
            raise ValueError("data.extra_source cannot be mixed with data.source='tfds' (build one TFDS dataset "
                             "from both folders instead)")
        if not d.root:
            raise ValueError("data.root is required for data.source='tfds' (--set data.root=/path/to/build)")
        if d.held_out:
            raise ValueError("data.held_out cannot be checked for data.source='tfds' (the shards hold no sequence "
                             "list until opened); leave the held-out sequences out when building the shards and "
                             "--set data.held_out=")
        return str(resolve_data_path(d.root))
    return _main_sequences(config, workdir) + extra


def _main_sequences(config: TrainConfig, workdir: Path) -> list:
    from jaxtrack.data import load_dataset

    d = config.data
    if d.source == "synthetic":
        from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset
        from jaxtrack.paths import resolve_data_path

        root = resolve_data_path(d.root) if d.root else workdir / "data"
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
        raise ValueError(f"data.root is required for data.source={d.source!r} (--set data.root=/path/to/dataset, "
                         f"or shared:REL for a folder inside the shared data folder)")
    from jaxtrack.paths import resolve_data_path

    root = resolve_data_path(d.root)
    _check_not_held_out(d.held_out, d.sequences, f"data.sequences ({d.source} at {root})")
    seqs = list(load_dataset(d.source, root, sequences=d.sequences or None))
    _check_not_held_out(d.held_out, [s.name for s in seqs], f"data.source={d.source!r} at {root}")
    return seqs


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


# ----------------------------------------------------------------------------------------------- export
def export_variables(workdir, variables: dict, card: dict) -> Path:
    """Write ``variables`` with ``card`` (:func:`jaxtrack.weights.new_card`) as the weights folder
    ``workdir/weights`` (replacing an older export atomically); every process takes part in the orbax write."""
    from jaxtrack.weights import save_weights

    return save_weights(Path(workdir) / WEIGHTS_DIR, host_copy(variables), card, overwrite=True)


# ----------------------------------------------------------------------------------------------- training
def _teacher_for(distill, tracker):
    """The run's :class:`~jaxtrack.train.distill.Teacher` (None when ``distill.teacher`` is empty)."""
    if not distill.enabled:
        return None
    from jaxtrack.train.distill import load_teacher

    return load_teacher(distill, tracker)


def loop_train_step(config: TrainConfig, tracker, mesh, teacher=None):
    """The jitted step ``jaxtrack train`` runs for ``config`` (:func:`jaxtrack.train.state.make_train_step`)."""
    return make_train_step(tracker, config.optim, config.steps, mesh,
                           compute_dtype=jnp.bfloat16 if config.bf16 else jnp.float32, teacher=teacher)


def _initial_variables(config: TrainConfig, tracker, key, abstract: bool):
    """The step-0 variables: ``config.init_weights`` through :func:`jaxtrack.weights.load_weights` (resolved, so
    checked, on resume too), else random from ``key``; their shapes only when ``abstract``."""
    if config.init_weights:
        from jaxtrack.weights import load_weights

        loaded = load_weights(tracker, config.init_weights, allow_random=False)
        if abstract:
            return jax.eval_shape(lambda: loaded.variables)
        variables = loaded.variables
    elif abstract:
        return jax.eval_shape(tracker.init_variables, key)
    else:
        variables = tracker.init_variables(key)
    if config.init_backbone:
        donor, _ = _backbone_donor(config.init_backbone)
        variables = graft_backbone(variables, donor, what=f"init_backbone={config.init_backbone!r}")
    return variables


def _backbone_donor(name: str):
    """:func:`jaxtrack.weights.backbone_donor` with a bad name reported as the config key."""
    from jaxtrack import tracking
    from jaxtrack.weights import backbone_donor

    if name not in tracking.CONFIGS:
        raise ConfigError(f"init_backbone={name!r} is not a tracker (one of {', '.join(tracking.CONFIGS)})")
    return backbone_donor(name)


def _init_info(config: TrainConfig, tracker) -> dict:
    """Where the run started from, for the weights card (with the card of the starting weights: bundled weights
    may change between releases)."""
    info = {}
    if config.init_backbone:
        info["init_backbone"] = config.init_backbone
        from jaxtrack.weights import shared_path

        info["init_backbone_source"] = str(shared_path(config.init_backbone))
    if not config.init_weights:
        return info
    from jaxtrack.weights import load_weights

    loaded = load_weights(tracker, config.init_weights, allow_random=False)
    info.update({"init_weights": config.init_weights, "init_weights_source": loaded.source})
    if loaded.card:
        info["init_weights_card"] = loaded.card
    return info


def _distill_info(teacher) -> dict:
    """The teacher of a distillation run and where its weights came from, for the weights card."""
    if teacher is None:
        return {}
    return {"distill": {"teacher": teacher.tracker.name, "teacher_weights": teacher.source,
                        **dataclasses.asdict(teacher.weights)}}


def _jsonable(d):
    return json.loads(json.dumps(d, default=str))


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
    workdir, log = start_run(workdir, log)
    if tracker is None:
        from jaxtrack import tracking

        tracker = tracking.create(config.tracker)
    mesh = make_data_mesh()
    local_batch = local_batch_size(config.batch_size, mesh)
    key_init, key_run = jax.random.split(jax.random.key(config.seed))
    teacher = _teacher_for(config.distill, tracker)

    def setup(resuming: bool):
        init = variables
        if init is None:
            init = _initial_variables(config, tracker, key_init, abstract=resuming)
        check_prefixes(init["params"], config.optim)
        tx, _ = make_optimizer(config.optim, config.steps, init["params"])
        return initial_state(init, tx, key_run, mesh, abstract=resuming), loop_train_step(config, tracker, mesh, teacher)

    make_iter = data_iterator or make_data_iterator
    on_save = None
    if config.eval.sequences:
        from jaxtrack.train.heldout import HeldOutEvaluator

        evaluator = HeldOutEvaluator(config.eval, tracker, workdir, log)

        def on_save(state, step):
            row = evaluator(state.eval_variables, step)
            if row is not None:
                log(f"step {step}: held-out success AUC {row['success_auc']:.3f} ({row['seconds']:.0f} s)")

    out = run_loop(
        workdir, name=config.name, config_record=config_to_dict(config), setup=setup,
        make_iterator=lambda: make_iter(config, tracker, workdir, local_batch), mesh=mesh, steps=config.steps,
        batch_size=config.batch_size, log_every=config.log_every, save_every=config.save_every, keep=config.keep,
        stop_at=stop_at, progress=progress, on_save=on_save, log=log,
    )

    weights = None
    if out.step >= config.steps:
        if export:
            from jaxtrack.weights import new_card

            card = new_card("tracker", tracker.name, out.state.eval_variables,
                            tracker_config=_jsonable(dataclasses.asdict(tracker.config)), config=config.name,
                            step=out.step, training=_jsonable(config_to_dict(config)), **_init_info(config, tracker),
                            **_distill_info(teacher),
                            load=f"jaxtrack.weights.load_weights(create({tracker.name!r}), "
                                 f"{str(workdir / WEIGHTS_DIR)!r})")
            weights = export_variables(workdir, out.state.eval_variables, card)
        if plot and jax.process_index() == 0:
            d = config.distill
            terms = ("loss", "cls", "ctr", "reg") + tuple(
                k for k, w in (("distill_cls", d.cls_weight), ("distill_reg", d.reg_weight)) if d.enabled and w > 0)
            plot_metrics(workdir / METRICS_FILE, workdir / "loss.png", title=f"{config.name} ({tracker.name})",
                         terms=terms, heldout_path=workdir / "heldout.jsonl")
    return TrainResult(workdir=workdir, step=out.step, metrics=out.metrics, weights=weights,
                       resumed_from=out.resumed_from)


def load_config(workdir) -> TrainConfig:
    """The configuration recorded in ``workdir/config.json``."""
    path = Path(workdir) / CONFIG_FILE
    return config_from_dict(json.loads(path.read_text(encoding="utf-8")))
