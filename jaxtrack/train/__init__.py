"""Training Siamese trackers: data-parallel over a device mesh, orbax checkpoints with exact resume.

>>> from jaxtrack.train import get_config, train
>>> result = train(get_config("siamfcpp_tiny_synthetic", ["steps=200"]), "runs/tiny")
>>> result.weights   # runs/tiny/weights: jaxtrack track --model siamfcpp_tiny --weights runs/tiny/weights

Command line: ``jaxtrack train --config NAME --workdir DIR [--steps N] [--set key=value ...]``.

* :mod:`~jaxtrack.train.config` -- :class:`TrainConfig` (+ :class:`OptimConfig`, :class:`DataConfig`,
  :class:`FreezeRule`), the named recipes and ``--set`` overrides;
* :mod:`~jaxtrack.train.mesh` -- the ``data`` mesh, shardings, ``jax.distributed`` start-up;
* :mod:`~jaxtrack.train.state` -- :class:`TrainState`, the optax chain, the jitted ``train_step``;
* :mod:`~jaxtrack.train.runner` -- :func:`~jaxtrack.train.runner.run_loop`, the loop core of every training:
  configuration record, orbax checkpoints with the data position (exact resume), ``metrics.jsonl``, progress bar,
  SIGTERM;
* :mod:`~jaxtrack.train.loop` -- :func:`train`: the tracker's data, state, step and export around that core;
* :mod:`~jaxtrack.train.distill` -- the frozen teacher of ``TrainConfig.distill`` (NanoTrack's soft targets for a
  SiamFC++ student, :mod:`jaxtrack.losses.distill`);
* :mod:`~jaxtrack.train.defense_cli` -- ``jaxtrack train-defense``; the DuaLossDef U-Net trains on the same core
  (:func:`jaxtrack.defense.trainer.train_defense`).
"""

from jaxtrack.train.config import (
    CONFIGS,
    ConfigError,
    DataConfig,
    FreezeRule,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    get_config,
)
from jaxtrack.train.loop import TrainResult, load_config, train
from jaxtrack.train.mesh import make_data_mesh, maybe_initialize_distributed
from jaxtrack.train.runner import TrainingDataError, plot_metrics, read_metrics
from jaxtrack.train.state import TrainState, create_train_state, make_optimizer, make_schedule, make_train_step

__all__ = [
    "CONFIGS",
    "ConfigError",
    "DataConfig",
    "FreezeRule",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "TrainingDataError",
    "apply_overrides",
    "create_train_state",
    "get_config",
    "load_config",
    "make_data_mesh",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "maybe_initialize_distributed",
    "plot_metrics",
    "read_metrics",
    "train",
]
