"""``jaxtrack train-defense``: the command line of :func:`jaxtrack.defense.trainer.train_defense`.

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

from jaxtrack.train.cli import (
    add_run_arguments,
    interrupted,
    resolve_config,
    run_as_module,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``train-defense`` sub-command to an ``argparse`` sub-parsers object (sets ``func=main``)."""
    from jaxtrack.defense.config import DEFENSE_CONFIGS

    p = subparsers.add_parser(
        "train-defense",
        help="adversarially train the DuaLossDef U-Net in front of a frozen tracker; resumes from --workdir",
        description="Train the DuaLossDef U-Net pre-processor adversarially with the Dua-Loss (data-parallel over "
                    "every JAX device; orbax checkpoints in WORKDIR/checkpoints, metrics.jsonl, loss.png, the trained "
                    "defense in WORKDIR/defense for jaxtrack.defense.defended_from_checkpoint). Running the same "
                    "command again resumes exactly where the last checkpoint left off.",
    )
    add_run_arguments(p, DEFENSE_CONFIGS, config_help="named defense configuration",
                      workdir_help="output folder (checkpoints, metrics, plot, defense)",
                      set_examples="attack.steps=5, unet.width=16, loss.pix=0.1, tracker_weights=runs/tiny/weights, "
                                   "where=search, attack_through_defense=false")
    p.add_argument("--eval-pairs", type=int, default=0, metavar="N",
                   help="at the end, evaluate the defense on N held-out synthetic pairs (PGD-10, Dua-Loss)")
    p.add_argument("--eval-only", action="store_true",
                   help="do not train: evaluate the defense already exported in --workdir (--eval-pairs, default 32)")
    p.set_defaults(func=main)
    return p


def _print_report(report: dict) -> None:
    from jaxtrack.defense.evaluate import CONDITIONS

    print(f"held-out check: {report['pairs']} pairs, {report['attack']}")
    print(f"  {'condition':<20} {'dua':>8} {'iou':>7} {'succ@.5':>8} {'train':>8}")
    for cond in CONDITIONS:
        r = report[cond]
        print(f"  {cond:<20} {r['dua']:8.4f} {r['iou']:7.3f} {r['success@0.5']:8.3f} {r['train']:8.4f}")


def main(args) -> int:
    from jaxtrack.defense.config import get_defense_config
    from jaxtrack.defense.evaluate import heldout_report

    if args.eval_only:
        _print_report(heldout_report(args.workdir, pairs=args.eval_pairs or 32))
        return 0
    config = resolve_config(args, get_defense_config)
    if config is None:
        return 0
    from jaxtrack.defense.trainer import train_defense

    try:
        result = train_defense(config, args.workdir, progress=not args.no_progress)
    except KeyboardInterrupt:
        return interrupted(args.workdir)
    m = result.metrics
    line = f"{config.name}: {result.step} steps in {result.workdir}"
    if m:
        line += (f", adv {m['adv']:.4f} (undefended {m['undefended_adv']:.4f}), clean {m['clean']:.4f} at step "
                 f"{m['step']} ({m['pairs_per_s']:.2f} pairs/s)")
    print(line)
    for path in result.defense:
        print(f"defense: {path}  (jaxtrack.defense.defended_from_checkpoint(tracker, variables, {str(path)!r}))")
    if result.defense and args.eval_pairs:
        _print_report(heldout_report(args.workdir, pairs=args.eval_pairs))
    return 0


if __name__ == "__main__":  # python -m jaxtrack.train.defense_cli ...
    run_as_module(add_parser, "train-defense")
