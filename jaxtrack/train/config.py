"""Training configurations: one named recipe per experiment (the fields and ``--set`` overrides are in
:mod:`jaxtrack.train.options`, re-exported here).

Run a named configuration with::

    jaxtrack train --config NAME --workdir DIR [--steps N] [--set key=value ...]

``--set`` takes dotted paths into the config (``optim.lr=0.01``, ``batch_size=16``); see
:mod:`jaxtrack.train.options`.

Named configurations (each function's docstring holds its exact run command):

* ``siamfcpp_alexnet_got10k`` -- video_analyst's SiamFC++ AlexNet recipe on GOT-10k train;
* ``siamrpnpp_r50_got10k``   -- pysot's SiamRPN++ ResNet-50 (``siamrpn_r50_l234_dwxcorr_8gpu``) recipe,
  on GOT-10k instead of VID/YTBB/COCO/DET;
* ``siamfcpp_tiny_synthetic`` -- the compact ``siamfcpp_tiny`` tracker from scratch on synthetic sequences,
  about half an hour on a 2-core CPU;
* ``siamfcpp_tiny_real`` -- the same tracker, warm-started from its shipped synthetic-trained weights, on the 41
  real training sequences of the shared data folder plus OTB David and Jogging-2 (never an evaluation sequence);
* ``siamfcpp_tiny_real_distill`` -- ``siamfcpp_tiny_real`` with NanoTrack v2 as a frozen teacher (``distill``);
* ``siamfcpp_tiny_real_head`` -- ``siamfcpp_tiny_real_distill`` with the backbone frozen and a parameter average:
  only the neck and the head learn from the real sequences;
* ``siamfcpp_nano_real`` -- SiamFC++ on NanoTrack v2's real backbone (frozen), neck and head from random on
  the real sequences with NanoTrack v2 as the teacher.

Conventions: ``batch_size`` is the GLOBAL batch (split over every device of every host); steps count optimizer
updates; parameter paths are the Flax parameter tree joined with ``/`` (``basemodel/conv1/conv/kernel``), so
a prefix ``basemodel/conv1`` selects a whole layer and ``basemodel/conv5/conv`` its conv only.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from jaxtrack.eval.heldout import HELD_OUT_OTB
from jaxtrack.train.options import (  # noqa: F401  (re-exported: the fields of a configuration)
    CORRUPT_POLICIES,
    EVAL_SEQUENCES,
    OPTIMIZERS,
    SCHEDULES,
    ConfigError,
    DataConfig,
    DistillConfig,
    EvalConfig,
    FreezeRule,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
)

__all__ = [
    "ConfigError",
    "FreezeRule",
    "OptimConfig",
    "DataConfig",
    "DistillConfig",
    "EvalConfig",
    "TrainConfig",
    "CONFIGS",
    "get_config",
    "apply_overrides",
    "config_to_dict",
    "config_from_dict",
    "siamfcpp_alexnet_got10k",
    "siamrpnpp_r50_got10k",
    "siamfcpp_tiny_synthetic",
    "siamfcpp_tiny_real",
    "siamfcpp_tiny_real_distill",
    "siamfcpp_tiny_real_head",
    "EVAL_SEQUENCES",
]


# ----------------------------------------------------------------------------------------------- recipes
def siamfcpp_alexnet_got10k() -> TrainConfig:
    """video_analyst SiamFC++ AlexNet on GOT-10k (``experiments/siamfcpp/train/got10k/siamfcpp_alexnet-trn.yaml``).

    Run::

        jaxtrack train --config siamfcpp_alexnet_got10k --workdir runs/siamfcpp_alexnet \\
            --set data.root=/data/GOT-10k/train --set init_weights=/path/to/alexnet-bn-backbone

    Facts from the yaml: SGD momentum 0.9, weight decay 5e-5, minibatch 32, 400,000 pairs per epoch (12,500
    iterations) for 20 epochs = 250,000 steps; LinearLR 1e-6 -> 0.08 over the first epoch, then CosineLR
    0.08 -> 1e-6 over 19 epochs; lr multiplier 0.1 on ``basemodel``; DynamicFreezer: every backbone conv
    frozen at epoch 0, conv5 unfrozen at epoch 5, conv4 at 10, conv3 at 15 (conv1/conv2 never; BN layers
    are never frozen: the regex matches ``basemodel.convN.conv``); negative_pair_ratio 0.1, max_diff 100,
    RandomCropTransformer max_scale 0.3 / max_shift 0.4, z 127 / x 303; losses focal (alpha 0.25, gamma 2) 1.0,
    centre-ness 1.0, IoU 3.0 (:mod:`jaxtrack.losses.siamfcpp`). The backbone starts from ImageNet weights
    (``alexnet-nopad-bn``) in video_analyst: pass them with ``init_weights``.
    """
    epoch = 12_500
    return TrainConfig(
        name="siamfcpp_alexnet_got10k",
        tracker="siamfcpp_alexnet",
        steps=20 * epoch,
        batch_size=32,
        optim=OptimConfig(
            name="sgd",
            lr=0.08,
            momentum=0.9,
            weight_decay=5e-5,
            schedule="cosine",
            warmup_steps=epoch,
            warmup_init_lr=1e-6,
            end_lr=1e-6,
            backbone_prefixes=("basemodel",),
            backbone_lr_mult=0.1,
            freeze=(
                FreezeRule("basemodel/conv1/conv", -1),
                FreezeRule("basemodel/conv2/conv", -1),
                FreezeRule("basemodel/conv3/conv", 15 * epoch),
                FreezeRule("basemodel/conv4/conv", 10 * epoch),
                FreezeRule("basemodel/conv5/conv", 5 * epoch),
            ),
        ),
        data=DataConfig(
            source="got10k-train", style="siamfcpp", negative_rate=0.1, max_gap=100, shift=0.4, scale=0.3,
            pairs_per_epoch=400_000,
        ),
        log_every=50,
        save_every=2_500,
        keep=3,
    )


def siamrpnpp_r50_got10k() -> TrainConfig:
    """pysot SiamRPN++ ResNet-50 (``experiments/siamrpn_r50_l234_dwxcorr_8gpu/config.yaml``) on GOT-10k.

    Run::

        jaxtrack train --config siamrpnpp_r50_got10k --workdir runs/siamrpnpp_r50 \\
            --set data.root=/data/GOT-10k/train --set init_weights=/path/to/resnet50-imagenet

    Facts from pysot: BATCH_SIZE 28 per GPU on 8 GPUs (global 224), VIDEOS_PER_EPOCH 600,000, 20 epochs
    (= 53,571 steps of 224 pairs); SGD momentum 0.9, weight decay 1e-4, GRAD_CLIP 10; LR_WARMUP 'step'
    0.001 -> 0.005 over 5 epochs (here linear per step), then LR 'log' 0.005 -> 0.0005; the backbone is frozen
    until TRAIN_EPOCH 10, then TRAIN_LAYERS layer2-4 train at LAYERS_LR 0.1 (conv1/bn1/layer1 never);
    DATASET.NEG 0.2, FRAME_RANGE 100, template shift 4 / scale 0.05, search shift 64 px / scale 0.18;
    CLS_WEIGHT 1.0, LOC_WEIGHT 1.2. pysot starts from an ImageNet ResNet-50 (``init_weights``) and trains on
    VID/YTBB/COCO/DET; GOT-10k train stands in here. (pysot also keeps the BatchNorm of frozen backbone layers
    in eval mode; here every BN layer runs in train mode.)
    """
    per_step = 28 * 8
    epoch = 600_000 // per_step  # 2,678
    steps = 20 * 600_000 // per_step
    frozen_always = ("backbone/conv1", "backbone/bn1", "backbone/layer1")
    return TrainConfig(
        name="siamrpnpp_r50_got10k",
        tracker="siamrpnpp_r50",
        steps=steps,
        batch_size=per_step,
        optim=OptimConfig(
            name="sgd",
            lr=0.005,
            momentum=0.9,
            weight_decay=1e-4,
            schedule="log",
            warmup_steps=5 * epoch,
            warmup_init_lr=0.001,
            end_lr=0.0005,
            backbone_prefixes=("backbone",),
            backbone_lr_mult=0.1,
            freeze=tuple(FreezeRule(p, -1) for p in frozen_always)
            + tuple(FreezeRule(f"backbone/layer{i}", 10 * epoch) for i in (2, 3, 4)),
            clip_grad_norm=10.0,
        ),
        data=DataConfig(
            source="got10k-train", style="pysot", negative_rate=0.2, max_gap=100, shift=64.0, scale=0.18,
            blur=0.2, color=1.0, template_shift=4.0, template_scale=0.05, template_color=1.0,
            pairs_per_epoch=600_000,
        ),
        log_every=20,
        save_every=epoch,
        keep=3,
    )


def siamfcpp_tiny_synthetic() -> TrainConfig:
    """The compact ``siamfcpp_tiny`` tracker (quarter-width SiamFC++ AlexNet, z 127 / x 255) from scratch on
    synthetic sequences: the CPU recipe (~30 min on 2 cores for 3,000 steps of 16 pairs).

    Run::

        jaxtrack train --config siamfcpp_tiny_synthetic --workdir runs/tiny

    Sequences are generated into ``WORKDIR/data`` with seeds 0..63 (keep other seeds, e.g. 1000+, for
    evaluation). AdamW (no pretrained backbone to protect, so no freezing and no backbone lr multiplier),
    lr 2e-3 with 100 warm-up steps and a cosine decay; video_analyst's losses and negative-pair ratio.

    The README's Training section has the run's loss curve and held-out scores.
    """
    return TrainConfig(
        name="siamfcpp_tiny_synthetic",
        tracker="siamfcpp_tiny",
        steps=3_000,
        batch_size=16,
        optim=OptimConfig(
            name="adamw",
            lr=2e-3,
            weight_decay=1e-4,
            schedule="cosine",
            warmup_steps=100,
            warmup_init_lr=1e-5,
            end_lr=1e-5,
            backbone_lr_mult=1.0,
            clip_grad_norm=10.0,
        ),
        data=DataConfig(
            source="synthetic", synthetic_sequences=64, synthetic_frames=60, synthetic_seed=0, style="siamfcpp",
            negative_rate=0.1, max_gap=30, shift=0.4, scale=0.3, crop_size=383,
        ),
        log_every=10,
        save_every=250,
        keep=3,
    )


def siamfcpp_tiny_real() -> TrainConfig:
    """``siamfcpp_tiny`` (quarter-width SiamFC++ AlexNet, z 127 / x 255) on real video, warm-started from the
    synthetic-trained weights that ship with the package; a recipe that trains on a 2-core CPU in hours.

    Run::

        jaxtrack train --config siamfcpp_tiny_real --workdir runs/siamfcpp_tiny_real

    Data: the 41 real sequences of ``<shared data>/sequences/train`` (``data.root=shared:sequences/train``, read
    as ``otb-folder``: OTB layout, 1-based ``x,y,w,h``; 2,807 stored frames, 33 of the sequences aerial) plus OTB
    David and Jogging-2 from ``sequences/OTB`` (``extra_source=otb100``, 471 + 307 frames, each listed 4 times so
    that they are drawn 4 times as often as one training sequence: they are 6x / 4x longer). Rows
    ``NaN,NaN,NaN,NaN`` (target out of view: car14, group2_2, group3_2) are never a template or search frame
    (:func:`jaxtrack.data.pairs.valid_frame_mask`). ``data.held_out`` lists the evaluation sequences (OTB
    Crossing, Couple, KiteSurf, Football1, VOT2018 ``bag``), so no override can train on them.

    The training sequences keep about 80 frames spread over their whole length (stride 2-13 annotated frames per
    stored frame, median 4, see ``SOURCES.tsv``), so ``max_gap`` counts stored frames: 30 stored frames are ~120
    annotated frames at the median stride, on the order of video_analyst's ``max_diff`` 100 on GOT-10k.
    Augmentation as video_analyst's SiamFC++ (``RandomCropTransformer`` max_shift 0.4 / max_scale 0.3 on the
    search crop, none on the template, negative_pair_ratio 0.1); pre-crops of 383 px (>= the 255 search crop at
    scale 1.3) as ``siamfcpp_tiny_synthetic``.

    Optimizer: AdamW with the whole network trainable (the synthetic-trained backbone is no ImageNet backbone to
    protect), a lower peak than training from scratch (1e-3 instead of 2e-3, 200 warm-up steps from 1e-5), cosine
    to 1e-5, weight decay 1e-4, global-norm clip 10. 5,000 steps of 16 pairs = 80,000 pairs, about 22 per distinct
    frame (3,585 of them).

    Every checkpoint is scored on the four held-out OTB sequences (``eval``: ``heldout.jsonl`` and a panel of
    ``loss.png``; :mod:`jaxtrack.train.heldout`); the README's Training section has the curve.

    ``init_weights=bundled`` resolves to ``jaxtrack/assets/weights/siamfcpp_tiny`` when the run starts (its card,
    copied into the weights card: ``siamfcpp_tiny_synthetic``, 3,000 steps); a resumed run restores its own
    checkpoint instead.
    """
    return TrainConfig(
        name="siamfcpp_tiny_real",
        tracker="siamfcpp_tiny",
        steps=5_000,
        batch_size=16,
        # the synthetic recipe's AdamW, cosine and clipping, at a lower peak and a longer warm-up
        optim=dataclasses.replace(siamfcpp_tiny_synthetic().optim, lr=1e-3, warmup_steps=200),
        data=DataConfig(
            source="otb-folder", root="shared:sequences/train",
            extra_source="otb100", extra_root="shared:sequences/OTB", extra_sequences=("David", "Jogging-2"),
            extra_repeat=4, held_out=EVAL_SEQUENCES,
            style="siamfcpp", negative_rate=0.1, max_gap=30, shift=0.4, scale=0.3, crop_size=383,
        ),
        log_every=10,
        save_every=250,
        keep=3,
        init_weights="bundled",
        eval=EvalConfig(sequences=HELD_OUT_OTB),
    )


def siamfcpp_tiny_real_distill() -> TrainConfig:
    """``siamfcpp_tiny_real`` plus NanoTrack v2 as a frozen teacher: the same data,
    optimizer, steps and start, with the teacher's foreground probabilities as soft targets.

    Run::

        jaxtrack train --config siamfcpp_tiny_real_distill --workdir runs/siamfcpp_tiny_real_distill

    The teacher: ``nanotrack_v2`` with the real ``nanotrackv2.pth`` of the shared data folder (converted in memory
    when the run starts; ``--set distill.teacher_weights=PATH`` for another copy), in inference mode and float32,
    inside the jitted data-parallel train step on the same pre-cropped pair (:mod:`jaxtrack.losses.distill`).
    Both trackers crop template 127 / search 255 at the template's scale with context 0.5 and centre the crop on
    pixel 127, and both take raw BGR 0..255, so the teacher sees exactly the student's crops (no re-crop). Its
    16x16 points (stride 16, at -1, 15, ..., 239 crop pixels) are resampled bilinearly onto the student's 11x11
    cells (stride 8, 87..167; teacher grid positions 5.5..10.5); on real training pairs the teacher's best box lands
    on the ground truth, so the two grids line up.

    Weights: ``distill.cls_weight`` 1.0 -- on real pairs the KL term (mean over cells) is of the size of the focal
    term, so the teacher is as loud as the labels. ``distill.reg_weight`` 0: on the ground-truth positive cells the
    teacher's boxes overlap the ground truth less than the student's own boxes do after a short real-video run, so
    pulling the boxes towards the teacher's would teach worse boxes than the labels (``--set distill.reg_weight=1``
    to try it; ``distill.reg_min_prob`` 0.5). The figures behind both choices: ``docs/distillation.md``.

    Measure the gain beside ``siamfcpp_tiny_real`` (same seed, same batches): held-out success AUC of both
    exports. Metrics add ``distill_cls``, ``distill_reg`` (unweighted), ``teacher_prob`` (mean of the teacher's
    highest probability per pair), ``teacher_iou`` (teacher box vs ground truth on positive cells) and ``gt_total``
    (the ground-truth loss; ``loss`` = ``gt_total`` + the weighted teacher terms).
    """
    base = siamfcpp_tiny_real()
    return dataclasses.replace(
        base, name="siamfcpp_tiny_real_distill",
        distill=DistillConfig(teacher="nanotrack_v2", cls_weight=1.0, reg_weight=0.0, reg_min_prob=0.5),
    )


def siamfcpp_tiny_real_head() -> TrainConfig:
    """``siamfcpp_tiny_real_distill`` with the backbone (``basemodel``: the synthetic-trained AlexNet features)
    frozen and a moving average of the parameters (``optim.ema_decay`` 0.998, about the last 500 steps), for 1,500
    steps: the neck and the head, 0.37 M of the 0.61 M parameters, learn from the real sequences.

    Run::

        jaxtrack train --config siamfcpp_tiny_real_head --workdir runs/siamfcpp_tiny_real_head

    Why: with the whole network trainable, the real-video runs fit their 43 training sequences almost perfectly
    while the held-out success falls from an early peak (the README's Training section has the figures): 3,585
    distinct frames are too few to learn the features. Frozen features leave fewer parameters to fit the training
    frames, and the average smooths the step-to-step swings of tracking success. The held-out success of every
    checkpoint is logged as in ``siamfcpp_tiny_real``.

    The frozen backbone's BatchNorm runs in train mode (``optim.frozen_bn_eval=False``: batch statistics, running
    averages re-estimated on real video), as when the README's figures were made; with it in inference mode the
    held-out success is lower (0.36 / 0.45 / 0.47 / 0.40 at steps 250-1,000 against 0.47 / 0.54 / 0.51 / 0.47).
    """
    base = siamfcpp_tiny_real_distill()
    return dataclasses.replace(
        base, name="siamfcpp_tiny_real_head", steps=1_500,
        optim=dataclasses.replace(base.optim, ema_decay=0.998, freeze=(FreezeRule("basemodel", -1),),
                                  frozen_bn_eval=False),
    )


def siamfcpp_nano_real() -> TrainConfig:
    """SiamFC++ on NanoTrack v2's real backbone (tracker ``siamfcpp_nano``): the MobileNetV3-small features of
    the real ``nanotrackv2.pth`` (``init_backbone=nanotrack_v2``), frozen with their BatchNorm on its running
    statistics, and a SiamFC++ neck + Densebox head (64 channels, one tower layer; 0.19 M trainable parameters)
    trained from random on the real sequences of ``siamfcpp_tiny_real``, with NanoTrack v2 as the teacher of
    ``siamfcpp_tiny_real_distill`` and the parameter average of ``siamfcpp_tiny_real_head``; 1,500 steps.

    Run::

        jaxtrack train --config siamfcpp_nano_real --workdir runs/siamfcpp_nano_real

    Why: the AlexNet runs learn their 43 training videos, not real appearance (3,585 distinct frames), and the
    synthetic-trained AlexNet features, frozen, give at best 0.54 held out. NanoTrack's backbone was trained by its
    authors on large real datasets; frozen, it leaves only the SiamFC++ part to learn from the few real videos.
    """
    base = siamfcpp_tiny_real_head()
    return dataclasses.replace(base, name="siamfcpp_nano_real", tracker="siamfcpp_nano", init_weights="",
                               init_backbone="nanotrack_v2",
                               optim=dataclasses.replace(base.optim, frozen_bn_eval=True))


CONFIGS: dict[str, Callable[[], TrainConfig]] = {
    "siamfcpp_alexnet_got10k": siamfcpp_alexnet_got10k,
    "siamrpnpp_r50_got10k": siamrpnpp_r50_got10k,
    "siamfcpp_tiny_synthetic": siamfcpp_tiny_synthetic,
    "siamfcpp_tiny_real": siamfcpp_tiny_real,
    "siamfcpp_tiny_real_distill": siamfcpp_tiny_real_distill,
    "siamfcpp_tiny_real_head": siamfcpp_tiny_real_head,
    "siamfcpp_nano_real": siamfcpp_nano_real,
}


def get_config(name: str, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """The named configuration with ``key=value`` overrides applied."""
    if name not in CONFIGS:
        raise ConfigError(f"unknown training config {name!r}; known: {', '.join(sorted(CONFIGS))}")
    return apply_overrides(CONFIGS[name](), overrides)
