"""The ``jaxtrack`` command: thin argument parsing over importable modules.

    jaxtrack track --model siamrpnpp_r50 --sequence ../shared/data/sequences/OTB/Crossing --out boxes.txt
    jaxtrack eval --model nanotrack_v2 --dataset otb100 --root DIR --results out/results --attack pgd --eps 8
    jaxtrack train --config siamfcpp_tiny_synthetic --workdir out/train/tiny
    jaxtrack demo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parse_box(text: str):
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--init must be x,y,w,h (numbers), got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"--init must have 4 values x,y,w,h, got {len(values)}")
    return values


def _variables(tracker, weights):
    """``(variables, is_random)`` of ``--weights`` (:func:`jaxtrack.weights.load_weights`; absent: the weights
    shipped with the package, else the real checkpoint in the shared data folder, else random)."""
    from jaxtrack.weights import load_weights

    loaded = load_weights(tracker, weights)
    if weights is None and not loaded.is_random:  # random weights: the caller says so, with what it means there
        kind = "shipped" if loaded.source.startswith("bundled:") else "pretrained"
        print(f"note: no --weights given, using the {kind} weights {loaded.source}")
    return loaded.variables, loaded.is_random


def _add_robustness_args(p) -> None:
    """--attack/--loss/... and --refine-template/... (shared by track and eval)."""
    from jaxtrack.attacks import ATTACKS, LOSSES, REFINE_LOSSES, TARGETS

    g = p.add_argument_group("online attack (every frame's search crop and/or the template at initialisation)")
    g.add_argument("--attack", choices=ATTACKS, help="projected-gradient attack, or iou (the black-box IoU attack: "
                                                     "--eps and --steps only); none when absent")
    g.add_argument("--loss", default="dua", choices=sorted(LOSSES), help="attack loss (default: dua = cls + reg)")
    g.add_argument("--eps", type=float, default=8.0, help="L-inf budget in grey levels of the crop (default 8)")
    g.add_argument("--steps", type=int, default=10, help="attack iterations (bim/pgd/mifgsm; default 10)")
    g.add_argument("--step-size", type=float, help="pixels per step (default: eps/steps for bim, 2.5*eps/steps "
                                                   "for pgd)")
    g.add_argument("--target", default="search", choices=TARGETS, help="what is attacked (default: search)")
    g.add_argument("--warm-start", action="store_true", help="start each frame's attack from the previous "
                                                            "frame's perturbation (RTAA, SPARK)")
    g.add_argument("--restarts", type=int, default=1, help="pgd: keep the best of this many random starts per "
                                                           "frame (default 1)")
    g.add_argument("--attack-seed", type=int, default=0, help="PRNG seed of random starts")
    g = p.add_argument_group("template refinement (MTP / AUTracker) at initialisation")
    g.add_argument("--refine-template", action="store_true", help="refine the template by descending the tracker "
                                                                  "loss on the first frame")
    g.add_argument("--refine-steps", type=int, default=16, help="descent steps (MTP: 16 on OTB, 2 on VOT/GOT-10k)")
    g.add_argument("--refine-alpha", type=float, default=0.05, help="pixels per step (MTP: 0.05)")
    g.add_argument("--refine-eps", type=float, help="optional L-inf bound on the template change (pixels)")
    g.add_argument("--refine-loss", default="family", choices=REFINE_LOSSES,
                   help="loss descended: the family's training loss with its training weights, mtp (SiamFC++ only: "
                        "MTP's weights, focal alpha 0.5, gamma 0, IoU weight 1) or the family-independent one")
    g = p.add_argument_group("defense (DuaLossDef U-Net before the network)")
    g.add_argument("--defense", help="defense checkpoint folder (jaxtrack train-defense / defense.save_defense), "
                                     "'bundled' (the U-Net shipped for --model), 'bundled-minmax' (its min-max trained U-Net), "
                                     "or either with ':TRACKER' (transfer)")
    g.add_argument("--defense-where", choices=["template", "search", "both"],
                   help="branches the U-Net defends (default: the checkpoint's)")
    g.add_argument("--defense-transfer", action="store_true",
                   help="allow a defense trained with another tracker family or crop size (transfer experiments)")
    g.add_argument("--adaptive", action="store_true",
                   help="with --defense and --attack: white-box attack through the U-Net (default: the attack "
                        "ignores the defense, the non-adaptive setting)")


def _robust_tracker(tracker, variables, args):
    """``(tracker, variables)`` wrapped as --defense/--refine-template/--attack ask (unchanged without them)."""
    from jaxtrack import robust
    from jaxtrack.attacks import OnlineAttack, attack_config

    refine = None
    if args.refine_template:
        refine = robust.Refinement(args.refine_steps, args.refine_alpha, args.refine_eps, args.refine_loss)
    attack = None
    if args.attack:
        config = attack_config(args.attack, args.eps, args.steps, args.step_size, restarts=args.restarts)
        attack = OnlineAttack(config, loss=args.loss, target=args.target, warm_start=args.warm_start,
                              seed=args.attack_seed)
    defense = robust.Defense(args.defense, args.defense_where, args.defense_transfer) if args.defense else None
    return robust.wrap(tracker, variables, defense=defense, refine=refine, attack=attack, adaptive=args.adaptive)


def cmd_track(args) -> int:
    from jaxtrack.data.sequence import load_otb_folder, load_video, write_boxes
    from jaxtrack.eval import metrics
    from jaxtrack.eval.runner import run_sequence
    from jaxtrack.tracking import create

    if args.sequence:
        sequence = load_otb_folder(args.sequence, require_gt=args.init is None)
    else:
        sequence = load_video(args.video, args.boxes)
        if args.init is None and len(sequence.ground_truth) == 0:
            raise SystemExit(f"error: {args.video}: no box file given, pass --init x,y,w,h (0-based)")
    if args.model is None:
        from jaxtrack.weights import default_siamfcpp

        args.model = default_siamfcpp()
        print(f"model: {args.model} (the best SiamFC++ with weights here; --model to choose another)")
    tracker = create(args.model)
    variables, is_random = _variables(tracker, args.weights)
    if is_random:
        print(f"note: no --weights given, {args.model} runs with RANDOM weights (boxes are not meaningful)")
    tracker, variables = _robust_tracker(tracker, variables, args)
    result = run_sequence(tracker, variables, sequence, init_box=args.init, chunk_size=args.chunk_size)
    write_boxes(args.out, result.boxes)
    msg = f"{sequence.name}: {len(result.boxes)} boxes written to {args.out} ({result.fps:.1f} frames/s incl. compile)"
    gt = sequence.ground_truth
    if args.init is None and len(gt):
        n = min(len(gt), len(result.boxes))
        msg += f", success AUC {metrics.success_auc(gt[:n], result.boxes[:n]):.3f}"
    print(msg)
    if args.render:
        from jaxtrack.eval.render import render_video

        path = render_video(sequence.iter_chunks(args.chunk_size), result.boxes, args.render, gt if len(gt) else None)
        print(f"video written to {path}")
    return 0


def cmd_convert(args) -> int:
    import json

    from jaxtrack.weights import convert_checkpoint, read_card

    try:
        dst = convert_checkpoint(args.kind, args.src, args.dst, overwrite=args.overwrite)
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    card = read_card(dst)
    print(json.dumps(card, indent=2))
    print(
        f"converted {card['num_arrays']} arrays ({card['num_parameters']:,} parameters + "
        f"{card['num_batch_stats']:,} BatchNorm statistics) from {args.src} into {dst}"
    )
    print(f"use it with: jaxtrack track --model {card['tracker']} --weights {dst} ...")
    return 0


def cmd_demo(args) -> int:
    from jaxtrack.demo import DemoConfig, format_table, plot_success, run_demo

    config = DemoConfig(
        out=args.out,
        models=tuple(args.models.split(",")),
        num_sequences=args.sequences,
        num_frames=args.frames,
        seed=args.seed,
        robust_models=tuple(_split_names(args.robust_models) or ()),
        attack_steps=args.attack_steps,
        refine_steps=args.refine_steps,
        defend=not args.no_defense,
    )
    rows = run_demo(config)
    print()
    print(format_table(rows))
    if any(r.weights.startswith("random") for r in rows):
        print("\nModels marked 'random' ran with RANDOM weights (no SiamFC++/SiamRPN checkpoint is available offline):"
              " their success figures are those of untrained networks; the speed figures are real.")
    plot = plot_success(rows, Path(config.out) / "success.png")
    print(f"plot: {plot}")
    return 0


def _split_names(text: str | None) -> list[str] | None:
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    return names or None


def _load_sequences(dataset: str, root: str | None, annotations: str | None, sequences: list[str] | None):
    """Sequences of ``dataset`` from a dataset folder (``root``), or from a pysot annotation JSON alone."""
    from jaxtrack.data.datasets import load_dataset, read_pysot_json

    if root:
        return load_dataset(dataset, root, sequences=sequences, annotations=annotations, progress=True)
    seqs = read_pysot_json(annotations, dataset=dataset)
    if sequences is not None:
        by_name = {s.name: s for s in seqs}
        unknown = [n for n in sequences if n not in by_name]
        if unknown:
            raise ValueError(f"{annotations}: unknown sequence name(s) {unknown}")
        seqs = [by_name[n] for n in sequences]
    return seqs


def cmd_eval(args) -> int:
    from jaxtrack.eval.benchmark import protocol_of, run_dataset
    from jaxtrack.eval.report import format_table, score_results
    from jaxtrack.tracking import create

    if args.distributed:  # before any other JAX call: every process of the job runs this same command
        import jax

        jax.distributed.initialize()
    sequences = _load_sequences(args.dataset, args.root, args.annotations, _split_names(args.sequences))
    if args.max_frames < 0:
        raise ValueError(f"--max-frames must be >= 0, got {args.max_frames}")
    if args.max_frames:
        sequences = [s.head(args.max_frames) for s in sequences]
    tracker = create(args.model)
    variables, is_random = _variables(tracker, args.weights)
    tracker, variables = _robust_tracker(tracker, variables, args)
    name = args.name or (tracker.name + ("-random" if is_random else ""))
    if is_random:
        print(f"note: no --weights given, {args.model} runs with RANDOM weights; results go to tracker name {name!r}")
    paths = run_dataset(tracker, variables, sequences, args.results, args.dataset, name,
                        chunk_size=args.chunk_size, progress=True, batch_memory_mb=args.batch_memory_mb)
    folder = next(iter(paths.values())).parent if paths else args.results
    print(f"{len(paths)} result files for {name} on {args.dataset} ({protocol_of(args.dataset)}) under {folder}")
    scores = score_results(args.results, args.dataset, sequences, trackers=[name])
    print(format_table(scores, protocol_of(args.dataset), "md"))
    return 0


def cmd_report(args) -> int:
    from jaxtrack.eval.benchmark import protocol_of
    from jaxtrack.eval.report import format_table, plot_scores, score_results

    if not args.root and not args.annotations:
        raise ValueError("give the dataset with --root DIR and/or --annotations FILE")
    sequences = _load_sequences(args.dataset, args.root, args.annotations, _split_names(args.sequences))
    protocol = protocol_of(args.dataset)
    scores = score_results(args.results, args.dataset, sequences, trackers=_split_names(args.trackers))
    sys.stdout.write(format_table(scores, protocol, args.format))
    if args.format == "json":
        sys.stdout.write("\n")
    if args.plot:
        path = plot_scores(scores, args.plot, args.dataset, protocol)
        print(f"plot written to {path}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from jaxtrack.tracking.configs import CONFIGS

    parser = argparse.ArgumentParser(prog="jaxtrack", description=__doc__.split("\n")[0])
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not read or write JAX's persistent compilation cache (default: on, in "
                             "$JAXTRACK_CACHE_DIR or ~/.cache/jaxtrack/jax-compilation, so a second run of the same "
                             "command compiles nothing)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("track", help="track one sequence (OTB folder or video) and write one box per frame")
    p.add_argument("--model", choices=sorted(CONFIGS),
                   help="tracker configuration (default: the best SiamFC++ trained by this project whose weights "
                        "load here: siamfcpp_nano, trained on real video, when the shared data folder has NanoTrack "
                        "v2's backbone; else siamfcpp_tiny, trained on synthetic video, fully shipped)")
    p.add_argument("--weights", help="weights: a folder (jaxtrack convert / train), a .pth, bundled, shared, random, shared:REL "
                                         "(default: shipped with the package, else the shared data's real weights, "
                                         "else random)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--sequence", help="OTB-layout folder: img/*.jpg + groundtruth_rect.txt")
    src.add_argument("--video", help="video file")
    p.add_argument("--boxes", help="with --video: box file (x,y,w,h per line, 0-based); its first line initialises")
    p.add_argument("--init", type=_parse_box, help="initial box x,y,w,h (0-based); default: first ground-truth line")
    p.add_argument("--out", required=True, help="output file: one x,y,w,h line per frame (0-based)")
    p.add_argument("--render", help="also write a video with the boxes drawn (e.g. out.mp4)")
    p.add_argument("--chunk-size", type=int, default=64, help="frames loaded and scanned at a time (memory bound)")
    _add_robustness_args(p)
    p.set_defaults(func=cmd_track)

    from jaxtrack.convert.convert import CHECKPOINT_KINDS

    p = sub.add_parser("convert", help="convert a PyTorch checkpoint (.pth/.pkl) to a jaxtrack weights folder")
    p.add_argument("--kind", "--family", dest="kind", required=True, choices=sorted(CHECKPOINT_KINDS),
                   help="checkpoint kind: which published release the file is (--family: the former name)")
    p.add_argument("src", help="checkpoint written by torch.save (read without torch)")
    p.add_argument("dst", help="output folder (variables/ + card.json); use it with `track --weights`")
    p.add_argument("--overwrite", action="store_true", help="replace an existing converted folder")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("demo", help="synthetic sequences tracked by each model: table + success plot")
    p.add_argument("--out", default="out/demo", help="output folder (data, results, plot)")
    p.add_argument("--models", default="siamfcpp_tiny,siamfcpp_nano,nanotrack_v2,siamrpn_alex",
                   help="comma-separated tracker names (siamfcpp_tiny: weights shipped with the package; "
                        "siamfcpp_nano: head shipped, NanoTrack v2's backbone from the shared data folder; NanoTrack: "
                        "real weights from the shared data folder; others random)")
    p.add_argument("--sequences", type=int, default=4, help="number of synthetic sequences")
    p.add_argument("--frames", type=int, default=48, help="frames per sequence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--robust-models", default="siamfcpp_tiny,nanotrack_v2",
                   help="models also shown under attack (PGD, eps 8, Dua-Loss) and with a refined template "
                        "(comma-separated; empty for none)")
    p.add_argument("--attack-steps", type=int, default=10, help="PGD steps of the attacked rows")
    p.add_argument("--refine-steps", type=int, default=16, help="refinement steps of the refined rows")
    p.add_argument("--no-defense", action="store_true", help="leave out the rows with the shipped U-Net defenses")
    p.set_defaults(func=cmd_demo)

    from jaxtrack.data.datasets import DATASET_NAMES

    eval_sets = list(DATASET_NAMES)
    p = sub.add_parser("eval", help="run a tracker over a benchmark; results in pysot's layout (resumable)")
    p.add_argument("--model", required=True, choices=sorted(CONFIGS), help="tracker configuration")
    p.add_argument("--weights", help="weights: a folder (jaxtrack convert / train), a .pth, bundled, shared, random, shared:REL "
                                         "(default: shipped with the package, else the shared data's real weights, "
                                         "else random)")
    p.add_argument("--dataset", required=True, choices=eval_sets, help="benchmark (vot2018: supervised restarts)")
    p.add_argument("--root", required=True, help="dataset folder")
    p.add_argument("--annotations", help="pysot annotation JSON or list of sequence names (optional)")
    p.add_argument("--sequences", help="comma-separated sequence names (default: all found)")
    p.add_argument("--max-frames", type=int, default=0,
                   help="track and score only the first N frames of every sequence (0: all; use a results folder "
                        "of its own, e.g. as experiments/defense_table.py --max-frames does)")
    p.add_argument("--results", required=True, help="results folder (pysot layout: <Dataset>/<tracker>/...)")
    p.add_argument("--name", help="tracker name in the results folder (default: the model, '-random' added "
                                  "without --weights)")
    p.add_argument("--chunk-size", type=int, default=64, help="frames loaded and scanned at a time (memory bound)")
    p.add_argument("--batch-memory-mb", type=float, default=0.0,
                   help="one-pass only: track same-size sequences together with track_batch (vmap, split over "
                        "every local device), loading up to this many MB of frames at once; 0 = one sequence at a "
                        "time")
    p.add_argument("--distributed", action="store_true",
                   help="multi-host: jax.distributed.initialize() (cluster auto-detection), then each process "
                        "tracks its share of the sequences into the same --results folder")
    _add_robustness_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("report", help="score every tracker found in a results folder (pysot's metrics)")
    p.add_argument("--dataset", required=True, choices=eval_sets, help="benchmark the results belong to")
    p.add_argument("--root", help="dataset folder (ground truth)")
    p.add_argument("--annotations", help="pysot annotation JSON (enough on its own: no images are read)")
    p.add_argument("--sequences", help="comma-separated sequence names (default: all found)")
    p.add_argument("--results", required=True, help="results folder (ours, pysot's or got10k's layout)")
    p.add_argument("--trackers", help="comma-separated tracker names (default: every tracker folder)")
    p.add_argument("--format", default="md", choices=["md", "json", "csv"], help="output format on stdout")
    p.add_argument("--plot", help="also write success/precision (or EAO) plots to this image file")
    p.set_defaults(func=cmd_report)

    from jaxtrack.train import cli as train_cli

    train_cli.add_parser(sub)
    from jaxtrack.train import defense_cli

    defense_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from jaxtrack import runtime

    runtime.configure(compile_cache=not args.no_compile_cache)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
