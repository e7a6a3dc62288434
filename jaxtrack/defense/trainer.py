"""Adversarial training of the DuaLossDef U-Net: the jitted step, the loop (on the shared loop core
:func:`jaxtrack.train.runner.run_loop`: data-parallel, exactly resumable) and the export of the trained U-Net.

One training step (:func:`make_defense_train_step`, ONE ``jax.jit`` on the ``data`` mesh: U-Net parameters and
optimizer state replicated, the batch split over ``data``, the tracker variables replicated and frozen) minimises
:func:`jaxtrack.defense.objective.defense_objective` (its module docstring says what it computes) over the U-Net
parameters.

Metrics per step (``metrics.jsonl``): ``loss`` (the weighted total), ``adv`` and ``clean`` (the two training-loss
terms, with ``adv_cls`` / ``adv_reg``), ``pix``, ``attack_clean`` / ``attack_adv`` / ``attack_gain`` (the attack
objective at the clean and at the adversarial crops, and their difference: what the attack achieved against the
model it attacked), ``undefended_adv`` (the training loss of the undefended tracker on the same adversarial crops,
for reference), ``lr``, ``grad_norm``, ``pairs_per_s``.

What lands in ``workdir`` (the layout of :func:`jaxtrack.train.train`): ``config.json``; ``checkpoints/<step>/``
(orbax: U-Net params, optimizer state, step, PRNG key AND the grain iterator position, so a resumed run draws the
batches the uninterrupted run would have drawn and ends where it would have ended); ``metrics.jsonl``;
``loss.png``; and at the end ``defense/`` -- the trained U-Net as a :func:`jaxtrack.defense.save_defense` folder
(card with family, tracker, crop sizes, where, this configuration and the training data), loadable with
``jaxtrack.defense.defended_from_checkpoint(tracker, variables, "WORKDIR/defense")``. With one U-Net per branch
(``unet.shared=false``, ``where=both``) the two are ``defense_template/`` and ``defense_search/``;
:func:`load_trained_defense` wraps a tracker with whatever the workdir holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxtrack.defense.config import DEFENSE_DIR, DEFENSE_PLOT_TERMS, DefenseTrainConfig
from jaxtrack.defense.objective import abstract_unet_params, branch_variables, defense_objective, init_unet_params
from jaxtrack.train.options import DataConfig, config_to_dict
from jaxtrack.train.mesh import make_data_mesh, replicate, replicated, shard_batch
from jaxtrack.train.runner import (
    METRICS_FILE,
    host_copy,
    initial_state,
    local_batch_size,
    plot_metrics,
    run_loop,
    start_run,
)
from jaxtrack.train.state import TrainState, apply_step, check_prefixes, create_train_state, make_optimizer

__all__ = [
    "DefenseTrainResult",
    "defense_optimizer",
    "export_defense",
    "init_defense_state",
    "load_tracker",
    "load_trained_defense",
    "make_defense_train_step",
    "step_config",
    "train_defense",
    "warm_start_params",
]


# ----------------------------------------------------------------------------------------------- tracker
def load_tracker(config: DefenseTrainConfig, tracker=None) -> tuple[Any, dict, str]:
    """(tracker, its frozen variables, where they came from) for ``config.tracker_weights``, resolved by
    :func:`jaxtrack.weights.load_weights` (``bundled``, ``shared``, ``random`` from ``config.seed``, or a path).
    The source label recorded in the defense card is ``bundled:<tracker>``, ``random``, or the absolute path."""
    from jaxtrack.weights import load_weights

    if tracker is None:
        from jaxtrack import tracking

        tracker = tracking.create(config.tracker)
    w = config.tracker_weights
    if not w:
        raise ValueError(f"{config.name}: tracker_weights is required for {tracker.name!r} "
                         f"(--set tracker_weights=/path/to/weights: a jaxtrack train export, a converted folder or "
                         f"a PyTorch checkpoint)")
    if w not in ("bundled", "shared", "random") and not Path(w).exists():
        raise FileNotFoundError(f"tracker_weights {w} not found")
    try:
        loaded = load_weights(tracker, w, seed=config.seed, allow_random=False)
    except ValueError as err:
        raise ValueError(f"tracker_weights={w!r}: {err}; --set tracker_weights=/path/to/weights") from None
    source = {"random": "random", "bundled": f"bundled:{tracker.name}"}.get(w)
    if source is None:
        source = loaded.source.split(":", 1)[1] if w == "shared" else str(Path(w).absolute())
    return tracker, loaded.variables, source


# ----------------------------------------------------------------------------------------------- the step
def step_config(config: DefenseTrainConfig) -> DefenseTrainConfig:
    """The configuration as the compiled step sees it: the full-budget attack without its ε curriculum (each step's
    stage is the step's traced ``budget_scale``), and the fields the step does not read (name, weights source, warm
    start, data, seed, logging and checkpoint intervals) set to fixed values: configurations that differ only
    there, or only in their curriculum, compile one program."""
    return dataclasses.replace(config, name="step", tracker_weights="shared", init_from="", data=DataConfig(), seed=0,
                               log_every=1, save_every=1, keep=1, attack=config.attack.without_ramp())


def _defense_step(state: TrainState, tracker_variables, batch, key, budget_scale, tracker, config: DefenseTrainConfig,
                  mesh):
    tx, schedule = defense_optimizer(config)
    grad_fn = jax.value_and_grad(defense_objective(tracker, config), has_aux=True)
    (total, metrics), grads = grad_fn(state.params, tracker_variables, batch, key, budget_scale)
    return apply_step(state, grads, total, metrics, tx, schedule, mesh)


#: The step as one module-level jit: the tracker, the step's configuration (:func:`step_config`) and the mesh are
#: static arguments compared by value, so equal settings share one compiled program.
_jitted_defense_step = jax.jit(_defense_step, static_argnames=("tracker", "config", "mesh"), donate_argnums=(0,))


def defense_optimizer(config: DefenseTrainConfig):
    """``(optax transformation, lr schedule)`` of ``config`` (:func:`jaxtrack.train.state.make_optimizer` on the
    U-Net parameters)."""
    return make_optimizer(config.optim, config.steps, abstract_unet_params(config))


def make_defense_train_step(tracker, tracker_variables, config: DefenseTrainConfig, mesh=None) -> Callable:
    """``defense_train_step(state, batch, key) -> (state, metrics)`` for ``config`` on ``tracker``.

    ``state``: a :class:`~jaxtrack.train.state.TrainState` from :func:`init_defense_state` (``params`` = the
    U-Net parameters of :func:`~jaxtrack.defense.objective.init_unet_params`, no ``batch_stats``); batch:
    ``template`` ``[B,Z,Z,3]``, ``search`` ``[B,X,X,3]`` (uint8 or float BGR 0..255), ``box`` ``[B,4]``
    (x1, y1, x2, y2) in search-crop pixels, ``negative`` ``[B]``; key: the step's PRNG key (the loop uses
    ``state.step_key(step)``). The metrics are those of the INCOMING parameters (the loss that the update then
    lowers).

    One module-level ``jax.jit`` (``defense_train_step.lower(state, batch, key)`` lowers it), shared by every call
    with the same tracker, configuration (minus logging / data fields: :func:`step_config`) and mesh; the tracker
    variables are its argument, replicated over ``mesh`` once here and never updated. With ``mesh`` the state is
    replicated and the batch split over ``data``; the state is donated. With an ε curriculum
    (``attack.ramp_steps``) the stage's budget fraction is a traced argument of the same program, chosen by
    ``state.step`` (read on the host until the ramp is over).
    """
    tvars = replicate(tracker_variables, mesh) if mesh is not None else tracker_variables
    static = {"tracker": tracker, "config": step_config(config), "mesh": mesh}
    ramp = {"over": not config.attack.ramp_steps}

    def budget_scale(state) -> float:
        if ramp["over"]:
            return 1.0
        step = int(jax.device_get(state.step))
        ramp["over"] = step >= config.attack.ramp_steps
        return config.attack.stage_scale(step)

    def arguments(state, batch, key):
        scale = jnp.float32(budget_scale(state))
        if mesh is None:
            return batch, key, scale
        # the key as the loop passes it (derived from the replicated state): the same compiled program
        return shard_batch(batch, mesh), jax.device_put(key, replicated(mesh)), jax.device_put(scale, replicated(mesh))

    def defense_train_step(state: TrainState, batch, key):
        return _jitted_defense_step(state, tvars, *arguments(state, batch, key), **static)

    defense_train_step.lower = lambda state, batch, key: _jitted_defense_step.lower(
        state, tvars, *arguments(state, batch, key), **static)
    return defense_train_step


def init_defense_state(config: DefenseTrainConfig, key=None, params=None, mesh=None) -> TrainState:
    """Step 0: the identity U-Net (or ``params``), the optimizer state and the run's PRNG key (default: from
    ``config.seed``, as :func:`train_defense` does); replicated over ``mesh`` when given."""
    key_init, key_run = jax.random.split(jax.random.key(config.seed) if key is None else key)
    params = init_unet_params(config, key_init) if params is None else params
    tx, _ = defense_optimizer(config)
    state = create_train_state({"params": params}, tx, key_run)
    return replicate(state, mesh) if mesh is not None else state


def warm_start_params(config: DefenseTrainConfig, tracker):
    """The U-Net parameters ``config.init_from`` names (a shipped defense spec or an exported folder:
    :func:`jaxtrack.defense.checkpoint.resolve_defense`), in the layout of :func:`init_unet_params` (the one U-Net
    for both branches when ``config.separate_unets``). Raises ``ValueError`` naming the card and every U-Net
    hyper-parameter that differs from ``config.unet``."""
    from jaxtrack.defense.checkpoint import CARD_NAME, load_defense, resolve_defense
    from jaxtrack.models.unet import unet_hparams

    folder = resolve_defense(config.init_from, tracker.name)
    if not folder.is_dir():
        raise FileNotFoundError(f"init_from={config.init_from!r}: no defense folder at {folder}")
    loaded = load_defense(folder)
    have, want = unet_hparams(loaded.unet), unet_hparams(config.unet.module())
    diffs = [f"{k}: {have.get(k)!r} in the checkpoint, {v!r} in the config"
             for k, v in want.items() if k != "zero_init_last" and have.get(k) != v]
    if diffs:
        raise ValueError(f"init_from={config.init_from!r}: the U-Net in {folder / CARD_NAME} differs from "
                         f"{config.name}'s unet settings:\n" + "\n".join(f"  - {d}" for d in diffs))
    params = loaded.variables["params"]
    return {"template": params, "search": params} if config.separate_unets else params


# ----------------------------------------------------------------------------------------------- export
def _card_info(config: DefenseTrainConfig, tracker, weights_source: str, step: int) -> dict:
    d = config.data
    data = {"source": d.source, "root": d.root, "dataset": d.dataset, "style": d.style,
            "negative_rate": d.negative_rate}
    if d.source == "synthetic":
        data.update(synthetic_sequences=d.synthetic_sequences, synthetic_frames=d.synthetic_frames,
                    synthetic_seed=d.synthetic_seed, held_out_seeds="1000+")
    if d.extra_source:
        data.update(extra_source=d.extra_source, extra_sequences=list(d.extra_sequences), extra_repeat=d.extra_repeat)
    return {
        "method": "DuaLossDef (adversarial training of a U-Net pre-processor with the Dua-Loss)",
        "config_name": config.name,
        "step": int(step),
        "tracker_weights": weights_source,
        "tracker_instance_size": int(tracker.config.instance_size),
        "attack": dataclasses.asdict(config.attack) | {"target": config.attack_target},
        "attack_through_defense": config.attack_through_defense,
        "init_from": config.init_from,
        "loss_weights": dataclasses.asdict(config.loss),
        "training_data": data,
        "config": config_to_dict(config),
    }


def export_defense(workdir, config: DefenseTrainConfig, tracker, params, info: dict) -> list[Path]:
    """Write the trained U-Net(s) with :func:`jaxtrack.defense.save_defense` into ``workdir/defense`` (or
    ``defense_template`` + ``defense_search`` with one U-Net per branch); returns the folders."""
    from jaxtrack.defense import defense_meta, save_defense

    workdir = Path(workdir)
    params = host_copy(params)
    unet = config.unet.module()
    if config.separate_unets:
        parts = [(workdir / f"{DEFENSE_DIR}_{b}", b, branch_variables(config, params, b)) for b in ("template", "search")]
    else:
        parts = [(workdir / DEFENSE_DIR, config.where, {"params": params})]
    out = []
    for path, where, variables in parts:
        if jax.process_index() == 0:
            save_defense(path, variables, defense_meta(unet, tracker, where, info), overwrite=True)
        out.append(path)
    return out


def load_trained_defense(tracker, tracker_variables, workdir, allow_transfer: bool = False):
    """``(tracker wrapped with the U-Net(s) exported in workdir by train_defense, its variables)``."""
    from jaxtrack.defense import defended_from_checkpoint

    workdir = Path(workdir)
    if (workdir / DEFENSE_DIR).is_dir():
        return defended_from_checkpoint(tracker, tracker_variables, workdir / DEFENSE_DIR,
                                        allow_transfer=allow_transfer)
    t, s = workdir / f"{DEFENSE_DIR}_template", workdir / f"{DEFENSE_DIR}_search"
    if t.is_dir() and s.is_dir():
        inner, inner_variables = defended_from_checkpoint(tracker, tracker_variables, t, allow_transfer=allow_transfer)
        return defended_from_checkpoint(inner, inner_variables, s, allow_transfer=allow_transfer)
    raise FileNotFoundError(f"no exported defense in {workdir} (expected {DEFENSE_DIR}/ or {DEFENSE_DIR}_template/ + "
                            f"{DEFENSE_DIR}_search/; a run exports when it reaches its last step)")


# ----------------------------------------------------------------------------------------------- the loop
@dataclasses.dataclass
class DefenseTrainResult:
    workdir: Path
    step: int  # optimizer steps done
    metrics: dict  # the last logged metrics line
    defense: list  # exported defense folders ([] when the run stopped before config.steps)
    resumed_from: int | None
    params: Any = None  # the final U-Net parameters (host copy)


def train_defense(
    config: DefenseTrainConfig,
    workdir,
    *,
    tracker=None,
    tracker_variables: dict | None = None,
    unet_params=None,
    stop_at: int | None = None,
    progress: bool = True,
    export: bool = True,
    plot: bool = True,
    data_iterator: Callable | None = None,
    log: Callable[[str], None] | None = None,
) -> DefenseTrainResult:
    """Train the DuaLossDef U-Net of ``config`` in ``workdir``, resuming from its latest checkpoint if any.

    Args:
      config: the run (:class:`~jaxtrack.defense.config.DefenseTrainConfig`).
      workdir: output folder (created).
      tracker / tracker_variables: use these instead of ``config.tracker`` / ``config.tracker_weights`` (tests,
        variants with overridden crop sizes).
      unet_params: initial U-Net parameters instead of ``config.init_from`` or the identity initialisation (ignored
        when resuming).
      stop_at: stop after this global step (saving a checkpoint), as an interruption would.
      data_iterator: ``f(config, tracker, workdir, local_batch)`` returning a checkpointable iterator of batches;
        default :func:`jaxtrack.train.loop.make_data_iterator`.
      log: where notes go (default: stderr, process 0 only).
    """
    from jaxtrack.train.loop import make_data_iterator

    workdir, log = start_run(workdir, log)
    if tracker_variables is None:
        tracker, tracker_variables, weights_source = load_tracker(config, tracker)
    else:
        if tracker is None:
            from jaxtrack import tracking

            tracker = tracking.create(config.tracker)
        weights_source = "given" if config.tracker_weights in ("", "shared") else config.tracker_weights
    mesh = make_data_mesh()
    local_batch = local_batch_size(config.batch_size, mesh)
    key_init, key_run = jax.random.split(jax.random.key(config.seed))

    def setup(resuming: bool):
        params = abstract_unet_params(config) if resuming else unet_params
        if params is None and config.init_from:
            params = warm_start_params(config, tracker)
        if params is None:
            params = init_unet_params(config, key_init)
        check_prefixes(params, config.optim)
        tx, _ = defense_optimizer(config)
        state = initial_state({"params": params}, tx, key_run, mesh, abstract=resuming)
        return state, make_defense_train_step(tracker, tracker_variables, config, mesh)

    make_iter = data_iterator or make_data_iterator
    out = run_loop(
        workdir, name=config.name, config_record=config_to_dict(config), setup=setup,
        make_iterator=lambda: make_iter(config, tracker, workdir, local_batch), mesh=mesh, steps=config.steps,
        batch_size=config.batch_size, log_every=config.log_every, save_every=config.save_every, keep=config.keep,
        stop_at=stop_at, progress=progress, postfix=_progress_postfix, log=log,
    )

    params = host_copy(out.state.eval_variables["params"])  # the parameter average when optim.ema_decay > 0
    exported: list = []
    if out.step >= config.steps:
        if export:
            exported = export_defense(workdir, config, tracker, params,
                                      _card_info(config, tracker, weights_source, out.step))
        if plot and jax.process_index() == 0:
            plot_metrics(workdir / METRICS_FILE, workdir / "loss.png",
                         title=f"{config.name}: U-Net loss ({tracker.name}, where={config.where})",
                         terms=DEFENSE_PLOT_TERMS)
    return DefenseTrainResult(workdir=workdir, step=out.step, metrics=out.metrics, defense=exported,
                              resumed_from=out.resumed_from, params=params)


def _progress_postfix(row: dict) -> dict:
    """The progress bar's summary of a metrics line."""
    return {"adv": f"{row['adv']:.4f}", "clean": f"{row['clean']:.4f}", "undef": f"{row['undefended_adv']:.4f}",
            "pairs_s": f"{row['pairs_per_s']:.1f}"}
