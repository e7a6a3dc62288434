"""``jaxtrack train``: the command line of :func:`jaxtrack.train.train`.

    jaxtrack train --config siamfcpp_tiny_synthetic --workdir runs/tiny
    jaxtrack train --config siamfcpp_tiny_synthetic --workdir runs/tiny --steps 200 --set optim.lr=1e-3
    jaxtrack train --config siamfcpp_alexnet_got10k --workdir runs/fcpp --set data.root=/data/GOT-10k --print-config

Run the same command again to resume from the latest checkpoint in ``--workdir``. Wired into ``jaxtrack`` with
``add_parser(subparsers)``; ``main(args)`` returns the exit code.
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
    p.add_argument("--config", required=True, choices=sorted(CONFIGS), help="named training configuration")
    p.add_argument("--workdir", required=True, help="output folder (checkpoints, metrics, plot, weights)")
    p.add_argument("--steps", type=int, help="total optimizer steps (overrides the config's; sets the schedule)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, dotted for nested ones (optim.lr=0.01, data.on_corrupt=skip, "
                        "optim.freeze=basemodel/conv1@-1,basemodel/conv5@5000); repeatable")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration as JSON and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=main)
    return p


def main(args) -> int:
    from jaxtrack.train.config import config_to_dict, get_config

    overrides = list(args.overrides or [])
    if args.steps is not None:
        overrides.append(f"steps={args.steps}")
    config = get_config(args.config, overrides)  # ConfigError (ValueError) -> "error: ..." from jaxtrack.cli
    if args.print_config:
        print(json.dumps(config_to_dict(config), indent=1))
        return 0
    from jaxtrack.train.loop import train

    try:
        result = train(config, args.workdir, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted; run the same command to resume from {args.workdir}", file=sys.stderr)
        return 130
    m = result.metrics
    line = f"{config.name}: {result.step} steps in {result.workdir}"
    if m:
        line += f", loss {m['loss']:.4f} at step {m['step']} ({m['pairs_per_s']:.1f} pairs/s)"
    print(line)
    if result.weights is not None:
        print(f"weights: {result.weights}  (jaxtrack track --model {config.tracker} --weights {result.weights} ...)")
    return 0


if __name__ == "__main__":  # python -m jaxtrack.train.cli ...
    parser = argparse.ArgumentParser(prog="jaxtrack")
    add_parser(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["train", *sys.argv[1:]])
    try:
        sys.exit(ns.func(ns))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
