"""``jaxtrack train``: the command line of :func:`jaxtrack.train.train`.

    jaxtrack train --config siamfcpp_tiny_synthetic --workdir runs/tiny
    jaxtrack train --config siamfcpp_tiny_synthetic --workdir runs/tiny --steps 200 --set optim.lr=1e-3
    jaxtrack train --config siamfcpp_alexnet_got10k --workdir runs/fcpp --set data.root=/data/GOT-10k --print-config

Run the same command again to resume from the latest checkpoint in ``--workdir``. Wired into ``jaxtrack`` with
``add_parser(subparsers)``; ``main(args)`` returns the exit code. The flags, the ``--steps``/``--set`` resolution,
the interrupted exit and the ``python -m`` entry are shared with ``jaxtrack train-defense``
(:mod:`jaxtrack.train.defense_cli`): :func:`add_run_arguments`, :func:`resolve_config`, :func:`interrupted`,
:func:`run_as_module`.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to an ``argparse`` sub-parsers object (sets ``func=main``)."""
    from jaxtrack.train.config import CONFIGS

    p = subparsers.add_parser(
        "train",
        help="train a tracker data-parallel on every device; resumes from the checkpoints in --workdir",
        description="Train a tracker (data-parallel over every JAX device; orbax checkpoints in WORKDIR/checkpoints, "
                    "metrics.jsonl, loss.png, final variables in WORKDIR/weights). Running the same command again "
                    "resumes exactly where the last checkpoint left off.",
    )
    add_run_arguments(p, CONFIGS, config_help="named training configuration",
                      workdir_help="output folder (checkpoints, metrics, plot, weights)",
                      set_examples="optim.lr=0.01, data.on_corrupt=skip, "
                                   "optim.freeze=basemodel/conv1@-1,basemodel/conv5@5000")
    p.add_argument("--eval-checkpoints", action="store_true",
                   help="do not train: track the eval.sequences with every checkpoint in WORKDIR that heldout.jsonl "
                        "has no line for, append the lines, redraw loss.png")
    p.set_defaults(func=main)
    return p


def add_run_arguments(p: argparse.ArgumentParser, configs, *, config_help: str, workdir_help: str,
                      set_examples: str) -> None:
    """The flags of every training sub-command: ``--config`` (one of ``configs``), ``--workdir``, ``--steps``,
    ``--set`` (repeatable, collected in ``args.overrides``), ``--print-config``, ``--no-progress``."""
    p.add_argument("--config", required=True, choices=sorted(configs), help=config_help)
    p.add_argument("--workdir", required=True, help=workdir_help)
    p.add_argument("--steps", type=int, help="total optimizer steps (overrides the config's; sets the schedule)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config field, dotted for nested ones ({set_examples}); repeatable")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration as JSON and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_config(args, get_config):
    """``get_config(args.config, overrides)`` with the ``--set`` overrides and ``--steps`` (applied last); None
    after printing the configuration as JSON when ``--print-config`` is given (the command then exits with 0).
    A bad override raises ``ConfigError`` (a ValueError: ``error: ...`` from ``jaxtrack``)."""
    from jaxtrack.train.config import config_to_dict

    overrides = list(args.overrides or [])
    if args.steps is not None:
        overrides.append(f"steps={args.steps}")
    config = get_config(args.config, overrides)
    if args.print_config:
        print(json.dumps(config_to_dict(config), indent=1))
        return None
    return config


def interrupted(workdir) -> int:
    """Tell how to resume an interrupted run (Ctrl-C, SIGTERM: its last step is checkpointed); the exit code 130."""
    print(f"interrupted; run the same command to resume from {workdir}", file=sys.stderr)
    return 130


def run_as_module(add_parser, command: str) -> None:
    """``python -m`` entry of a sub-command: parse ``sys.argv`` as ``jaxtrack COMMAND ...``, exit with the code of
    its ``main`` (a ValueError: ``error: ...`` on stderr and exit code 2, as ``jaxtrack`` does)."""
    parser = argparse.ArgumentParser(prog="jaxtrack")
    add_parser(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args([command, *sys.argv[1:]])
    from jaxtrack import runtime

    runtime.configure()
    try:
        sys.exit(ns.func(ns))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def main(args) -> int:
    from jaxtrack.train.config import get_config

    config = resolve_config(args, get_config)
    if config is None:
        return 0
    if args.eval_checkpoints:
        return eval_checkpoints(config, args.workdir)
    from jaxtrack.train.loop import train

    try:
        result = train(config, args.workdir, progress=not args.no_progress)
    except KeyboardInterrupt:
        return interrupted(args.workdir)
    m = result.metrics
    line = f"{config.name}: {result.step} steps in {result.workdir}"
    if m:
        line += f", loss {m['loss']:.4f} at step {m['step']} ({m['pairs_per_s']:.1f} pairs/s)"
    print(line)
    if result.weights is not None:
        print(f"weights: {result.weights}  (jaxtrack track --model {config.tracker} --weights {result.weights} ...)")
    return 0


def eval_checkpoints(config, workdir, tracker=None) -> int:
    """``--eval-checkpoints``: held-out success of the run's saved checkpoints (:mod:`jaxtrack.train.heldout`);
    ``tracker`` instead of ``config.tracker`` (a variant, as ``train(tracker=...)``)."""
    from pathlib import Path

    from jaxtrack.train.heldout import HELDOUT_FILE, evaluate_checkpoints
    from jaxtrack.train.runner import METRICS_FILE, plot_metrics

    rows = evaluate_checkpoints(config, workdir, tracker=tracker)
    print(f"{len(rows)} checkpoint(s) evaluated; {Path(workdir) / HELDOUT_FILE}")
    png = plot_metrics(Path(workdir) / METRICS_FILE, Path(workdir) / "loss.png", title=config.name,
                       heldout_path=Path(workdir) / HELDOUT_FILE)
    if png is not None:
        print(f"plot: {png}")
    return 0


if __name__ == "__main__":  # python -m jaxtrack.train.cli ...
    run_as_module(add_parser, "train")
