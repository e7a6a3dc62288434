"""``jaxtrack train-defense``: the command line of :func:`jaxtrack.train.defense.train_defense`.

    jaxtrack train-defense --config unet_nanotrack --workdir runs/unet_nanotrack
    jaxtrack train-defense --config unet_nanotrack --workdir runs/unet_nanotrack --steps 100 \\
        --set attack.steps=5 --set unet.width=16 --eval-pairs 32
    jaxtrack train-defense --config unet_siamfcpp_tiny --workdir runs/unet_tiny \\
        --set tracker_weights=runs/tiny/weights
    jaxtrack train-defense --config unet_siamrpnpp_got10k --workdir runs/unet_rpnpp --print-config

Run the same command again to resume from the latest checkpoint in ``--workdir``. ``--eval-pairs N`` checks the
exported defense at the end on N held-out synthetic pairs (sequence seeds 1000+) against PGD-10 on the Dua-Loss
(``--eval-only``: just that, on a finished workdir). Wired into ``jaxtrack`` with ``add_parser(subparsers)``;
``main(args)`` returns the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``train-defense`` sub-command to an ``argparse`` sub-parsers object (sets ``func=main``)."""
    from jaxtrack.train.defense import DEFENSE_CONFIGS

    p = subparsers.add_parser(
        "train-defense",
        help="adversarially train the DuaLossDef U-Net in front of a frozen tracker; resumes from --workdir",
        description="Train the DuaLossDef U-Net pre-processor adversarially with the Dua-Loss (data-parallel over "
                    "every JAX device; orbax checkpoints in WORKDIR/checkpoints, metrics.jsonl, loss.png, the trained "
                    "defense in WORKDIR/defense for jaxtrack.defense.defended_from_checkpoint). Running the same "
                    "command again resumes exactly where the last checkpoint left off.",
    )
    p.add_argument("--config", required=True, choices=sorted(DEFENSE_CONFIGS), help="named defense configuration")
    p.add_argument("--workdir", required=True, help="output folder (checkpoints, metrics, plot, defense)")
    p.add_argument("--steps", type=int, help="total optimizer steps (overrides the config's; sets the schedule)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, dotted for nested ones (attack.steps=5, unet.width=16, loss.pix=0.1, "
                        "tracker_weights=runs/tiny/weights, where=search, attack_through_defense=false); repeatable")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration as JSON and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--eval-pairs", type=int, default=0, metavar="N",
                   help="at the end, evaluate the defense on N held-out synthetic pairs (PGD-10, Dua-Loss)")
    p.add_argument("--eval-only", action="store_true",
                   help="do not train: evaluate the defense already exported in --workdir (--eval-pairs, default 32)")
    p.set_defaults(func=main)
    return p


def _print_report(report: dict) -> None:
    print(f"held-out check: {report['pairs']} pairs, {report['attack']}")
    print(f"  {'condition':<20} {'dua':>8} {'iou':>7} {'succ@.5':>8} {'train':>8}")
    for cond in ("clean", "attacked", "defended_clean", "defended_transfer", "defended_adaptive"):
        r = report[cond]
        print(f"  {cond:<20} {r['dua']:8.4f} {r['iou']:7.3f} {r['success@0.5']:8.3f} {r['train']:8.4f}")


def main(args) -> int:
    from jaxtrack.train.config import config_to_dict
    from jaxtrack.train.defense import get_defense_config, heldout_report

    if args.eval_only:
        _print_report(heldout_report(args.workdir, pairs=args.eval_pairs or 32))
        return 0
    overrides = list(args.overrides or [])
    if args.steps is not None:
        overrides.append(f"steps={args.steps}")
    config = get_defense_config(args.config, overrides)  # ConfigError (ValueError) -> "error: ..."
    if args.print_config:
        print(json.dumps(config_to_dict(config), indent=1))
        return 0
    from jaxtrack.train.defense import train_defense

    try:
        result = train_defense(config, args.workdir, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted; run the same command to resume from {args.workdir}", file=sys.stderr)
        return 130
    m = result.metrics
    line = f"{config.name}: {result.step} steps in {result.workdir}"
    if m:
        line += (f", adv {m['adv']:.4f} (undefended {m['undefended_adv']:.4f}), clean {m['clean']:.4f} at step "
                 f"{m['step']} ({m['pairs_per_s']:.2f} pairs/s)")
    print(line)
    for path in result.defense:
        print(f"defense: {path}  (jaxtrack.defense.defended_from_checkpoint(tracker, {str(path)!r}))")
    if result.defense and args.eval_pairs:
        _print_report(heldout_report(args.workdir, pairs=args.eval_pairs))
    return 0


if __name__ == "__main__":  # python -m jaxtrack.train.defense_cli ...
    parser = argparse.ArgumentParser(prog="jaxtrack")
    add_parser(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["train-defense", *sys.argv[1:]])
    try:
        sys.exit(ns.func(ns))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
