"""Training configurations: frozen dataclasses, one named recipe per experiment, ``--set`` overrides.

Run a named configuration with::

    jaxtrack train --config NAME --workdir DIR [--steps N] [--set key=value ...]

``--set`` takes dotted paths into the config (``optim.lr=0.01``, ``data.on_corrupt=skip``, ``batch_size=16``),
type-checked against the dataclass fields; tuples are comma-separated (``optim.backbone_prefixes=a,b``) and
freeze rules are ``prefix@step`` items (``optim.freeze=basemodel/conv1@-1,basemodel/conv5/conv@1000``, ``-1`` =
frozen for the whole run, an empty value = no rule). Unknown keys and ill-typed values are errors that list
what is accepted.

Named configurations (each function's docstring holds its exact run command):

* ``siamfcpp_alexnet_got10k`` -- video_analyst's SiamFC++ AlexNet recipe on GOT-10k train;
* ``siamrpnpp_r50_got10k``   -- pysot's SiamRPN++ ResNet-50 (``siamrpn_r50_l234_dwxcorr_8gpu``) recipe,
  on GOT-10k instead of VID/YTBB/COCO/DET;
* ``siamfcpp_tiny_synthetic`` -- the compact ``siamfcpp_tiny`` tracker from scratch on synthetic sequences,
  about half an hour on a 2-core CPU;
* ``siamfcpp_tiny_real`` -- the same tracker, warm-started from its shipped synthetic-trained weights, on the 41
  real training sequences of the shared data folder plus OTB David and Jogging-2 (never an evaluation sequence);
* ``siamfcpp_tiny_real_distill`` -- ``siamfcpp_tiny_real`` with NanoTrack v2 as a frozen teacher (``distill``).

Conventions: ``batch_size`` is the GLOBAL batch (split over every device of every host); steps count optimizer
updates; parameter paths are the Flax parameter tree joined with ``/`` (``basemodel/conv1/conv/kernel``), so
a prefix ``basemodel/conv1`` selects a whole layer and ``basemodel/conv5/conv`` its conv only.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Callable

from jaxtrack.eval.heldout import HELD_OUT_OTB

__all__ = [
    "ConfigError",
    "FreezeRule",
    "OptimConfig",
    "DataConfig",
    "DistillConfig",
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
    "EVAL_SEQUENCES",
]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "log", "constant")
CORRUPT_POLICIES = ("raise", "skip")

#: The real sequences that evaluations here use (OTB Crossing, Couple, KiteSurf, Football1; VOT2018 ``bag``):
#: recipes on real video list them in ``data.held_out`` so that no setting can put them into training.
EVAL_SEQUENCES = ("Crossing", "Couple", "KiteSurf", "Football1", "bag")


class ConfigError(ValueError):
    """A configuration key or value that is not accepted (the message says what is)."""


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")


@dataclasses.dataclass(frozen=True)
class FreezeRule:
    """Parameters whose path starts with ``prefix`` get no update while ``step < until_step``
    (``until_step = -1``: never updated during the run). Their momentum/Adam moments stay zero while frozen
    and weight decay does not touch them, as for a PyTorch parameter with ``requires_grad=False``."""

    prefix: str
    until_step: int = -1

    def __str__(self) -> str:
        return f"{self.prefix}@{self.until_step}"


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimizer and learning-rate schedule.

    lr(step): linear warm-up from ``warmup_init_lr`` to ``lr`` over ``warmup_steps``, then ``schedule`` from
    ``lr`` to ``end_lr`` at the last step (``cosine``: video_analyst's CosineLR; ``log``: pysot's log-spaced
    decay; ``constant``). Parameters under ``backbone_prefixes`` get ``lr * backbone_lr_mult``.
    """

    name: str = "sgd"  # sgd (momentum, PyTorch semantics: L2 weight decay added to the gradient) | adamw
    lr: float = 0.08
    momentum: float = 0.9
    nesterov: bool = False
    b1: float = 0.9  # adamw
    b2: float = 0.999  # adamw
    eps: float = 1e-8  # adamw
    weight_decay: float = 5e-5
    schedule: str = "cosine"
    warmup_steps: int = 0
    warmup_init_lr: float = 1e-6
    end_lr: float = 1e-6
    backbone_prefixes: tuple[str, ...] = ("basemodel",)
    backbone_lr_mult: float = 0.1
    freeze: tuple[FreezeRule, ...] = ()
    clip_grad_norm: float = 0.0  # 0 = no clipping (pysot clips the global norm at 10)

    def __post_init__(self):
        _check_choice("optim.name", self.name, OPTIMIZERS)
        _check_choice("optim.schedule", self.schedule, SCHEDULES)
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.schedule == "log" and self.end_lr <= 0:
            raise ConfigError("optim.end_lr must be > 0 for the log schedule")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where training pairs come from and how they are drawn (:class:`jaxtrack.data.pairs.PairConfig`; the crop
    sizes and the context amount come from the tracker config).

    ``source``: ``synthetic`` (sequences generated with :func:`jaxtrack.data.synthetic.generate_dataset` into
    ``root``, default ``WORKDIR/data``, sequence ``i`` from ``SeedSequence([synthetic_seed, i])``), ``tfds``
    (shards pre-cropped by :func:`jaxtrack.data.pipeline.build_tfds` under ``root``; ``dataset`` picks the build)
    or a dataset name of :func:`jaxtrack.data.load_dataset` (``got10k-train``, ``lasot``, ...) read raw from
    ``root`` (frames decoded and pre-cropped on the fly).

    ``sequences`` restricts a ``load_dataset`` source to the named sequences. ``extra_source`` / ``extra_root`` /
    ``extra_sequences`` add the sequences of a second ``load_dataset`` source (e.g. real OTB sequences kept apart
    from every evaluation sequence, beside synthetic ones), each listed ``extra_repeat`` times so that a few long
    real videos are drawn as often as wanted (pairs are drawn per video). ``extra_root`` empty: the source's folder
    in the shared data folder (``sequences/OTB``, ``sequences/VOT2018``). ``root`` and ``extra_root`` may be
    ``shared:REL``: ``REL`` inside the shared data folder (``JAXTRACK_DATA``, default ``../shared/data``), e.g.
    ``shared:sequences/train``.

    ``held_out``: sequence names that must never be trained on; a training source (main or extra) that yields
    one of them stops the run before the first step with an error naming it (compared case-insensitively).

    Augmentation fields are PairConfig's: ``style`` ``siamfcpp`` (shifts are fractions of half the window) or
    ``pysot`` (shifts in pre-crop pixels).
    """

    source: str = "synthetic"
    root: str = ""
    dataset: str = ""  # source=tfds: which build under root (when several)
    sequences: tuple[str, ...] = ()  # load_dataset sources: only these (empty = all)
    extra_source: str = ""  # a second load_dataset source whose sequences are added ("" = none)
    extra_root: str = ""
    extra_sequences: tuple[str, ...] = ()
    extra_repeat: int = 1
    held_out: tuple[str, ...] = ()  # never train on these sequence names (checked when the data is loaded)
    synthetic_sequences: int = 64
    synthetic_frames: int = 60
    synthetic_height: int = 240
    synthetic_width: int = 320
    synthetic_seed: int = 0
    style: str = "siamfcpp"
    crop_size: int = 511  # pre-crop side (pysot par_crop 511); >= the search crop
    max_gap: int = 100  # video_analyst max_diff / pysot FRAME_RANGE
    negative_rate: float = 0.1  # video_analyst negative_pair_ratio 0.1; pysot DATASET.NEG 0.2
    gray: float = 0.0
    shift: float = 0.4  # search crop: video_analyst max_shift 0.4 / pysot 64 px
    scale: float = 0.3  # video_analyst max_scale 0.3 / pysot 0.18
    blur: float = 0.0
    color: float = 0.0
    flip: float = 0.0
    template_shift: float = 0.0
    template_scale: float = 0.0
    template_blur: float = 0.0
    template_color: float = 0.0
    template_flip: float = 0.0
    pairs_per_epoch: int = 0  # pysot VIDEOS_PER_EPOCH / video_analyst nr_image_per_epoch; 0 = one pair per video
    on_corrupt: str = "raise"  # unreadable frame: raise (names the file; checkpoints stay intact) | skip (warned)
    workers: int = 0  # input worker processes (0 = threads in the training process)
    threads: int = 2  # batches prepared concurrently per process
    prefetch: int = 4  # batches read ahead

    def __post_init__(self):
        _check_choice("data.on_corrupt", self.on_corrupt, CORRUPT_POLICIES)
        _check_choice("data.style", self.style, ("siamfcpp", "pysot"))
        if not 0.0 <= self.negative_rate <= 1.0:
            raise ConfigError(f"data.negative_rate must be in [0, 1], got {self.negative_rate}")
        if self.pairs_per_epoch < 0:
            raise ConfigError(f"data.pairs_per_epoch must be >= 0, got {self.pairs_per_epoch}")
        if self.extra_repeat < 1:
            raise ConfigError(f"data.extra_repeat must be >= 1, got {self.extra_repeat}")
        if self.sequences and self.source in ("synthetic", "tfds"):
            raise ConfigError(f"data.sequences selects sequences of a load_dataset source, not of "
                              f"data.source={self.source!r}")
        if self.extra_source in ("synthetic", "tfds"):
            raise ConfigError(f"data.extra_source must be a load_dataset source (otb, vot2018, got10k-train, ...), "
                              f"got {self.extra_source!r}")


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """A frozen teacher tracker's dense outputs as soft targets for the student (:mod:`jaxtrack.losses.distill`).

    ``teacher``: a NanoTrack tracker name (``nanotrack_v2``, ``nanotrack_v3``); ``""`` = no teacher (the default:
    the train step is then exactly the one without this group). ``teacher_weights``: ``""`` = the teacher's real
    checkpoint in the shared data folder (:func:`jaxtrack.tracking.weights.shared_checkpoint`), else a path
    (``shared:REL`` allowed) that :func:`jaxtrack.tracking.weights.load_tracker_variables` reads.
    ``cls_weight`` weighs the KL divergence between the student's classification probability and the teacher's
    foreground probability (every cell); ``reg_weight`` the IoU loss towards the teacher's boxes on cells where the
    teacher's probability is at least ``reg_min_prob`` (weighted by that probability). The teacher runs in
    inference mode (BatchNorm running averages) in float32, also when ``bf16`` is on.
    """

    teacher: str = ""
    teacher_weights: str = ""
    cls_weight: float = 1.0
    reg_weight: float = 0.0
    reg_min_prob: float = 0.5

    def __post_init__(self):
        for key in ("cls_weight", "reg_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"distill.{key} must be >= 0, got {getattr(self, key)}")
        if not 0.0 <= self.reg_min_prob <= 1.0:
            raise ConfigError(f"distill.reg_min_prob must be in [0, 1], got {self.reg_min_prob}")
        if self.teacher_weights and not self.teacher:
            raise ConfigError("distill.teacher_weights is set but distill.teacher is empty (no teacher to load them "
                              "into); --set distill.teacher=nanotrack_v2")

    @property
    def enabled(self) -> bool:
        return bool(self.teacher)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Held-out tracking success measured at every checkpoint (:mod:`jaxtrack.train.heldout`).

    ``sequences``: OTB-layout sequence names under ``root`` (``shared:REL`` = inside the shared data folder);
    ``()`` = no evaluation (the default). ``max_frames`` > 0 tracks only the first frames of each.
    """

    sequences: tuple[str, ...] = ()
    root: str = "shared:sequences/OTB"
    max_frames: int = 0

    def __post_init__(self):
        if self.max_frames < 0:
            raise ConfigError(f"eval.max_frames must be >= 0, got {self.max_frames}")


# Fields left out of config_to_dict while they hold their default value, so that the record (config.json) of a run
# without them is the one written before they existed.
_OMIT_DEFAULT = {"omit_if_default": True}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. ``batch_size`` is global (must divide by the number of devices)."""

    name: str
    tracker: str  # a jaxtrack.tracking tracker name; its network, crop sizes and loss are used
    steps: int
    batch_size: int
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    seed: int = 0
    log_every: int = 10  # metrics.jsonl line every K steps
    save_every: int = 500  # orbax checkpoint every K steps (and at the end)
    keep: int = 3  # checkpoints kept
    bf16: bool = False  # compute the network in bfloat16 (float32 master weights, loss and optimizer)
    # start from these variables: "bundled" (the weights shipped in jaxtrack/assets for `tracker`), a converted
    # folder, an orbax directory (a run's WORKDIR/weights) or a .pth; "" = random initialisation
    init_weights: str = ""
    # a teacher's soft targets (off by default; see DistillConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig, metadata=_OMIT_DEFAULT)
    # held-out tracking success at every checkpoint (off by default; see EvalConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig, metadata=_OMIT_DEFAULT)

    def __post_init__(self):
        for key in ("steps", "batch_size", "log_every", "save_every", "keep"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")


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

    Measured: loss 7.8 -> 0.48 (mean of the last 100 steps; training-pair IoU 0.87); on 16 held-out synthetic
    sequences (seed 1000) success AUC 0.596 / precision@20 0.874 (random weights: 0.026 / 0.019). The run took
    77 min on a 2-core CPU shared with other jobs (~11 pairs/s; ~38 pairs/s when the machine is quiet).
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
    copied into ``weights.json``: ``siamfcpp_tiny_synthetic``, 3,000 steps); a resumed run restores its own
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
    """``siamfcpp_tiny_real`` plus NanoTrack v2 as a frozen teacher (issue 17, deliverable 2): the same data,
    optimizer, steps and start, with the teacher's foreground probabilities as soft targets.

    Run::

        jaxtrack train --config siamfcpp_tiny_real_distill --workdir runs/siamfcpp_tiny_real_distill

    The teacher: ``nanotrack_v2`` with the real ``nanotrackv2.pth`` of the shared data folder (converted in memory
    when the run starts; ``--set distill.teacher_weights=PATH`` for another copy), in inference mode and float32,
    inside the jitted data-parallel train step on the same pre-cropped pair (:mod:`jaxtrack.losses.distill`).
    Both trackers crop template 127 / search 255 at the template's scale with context 0.5 and centre the crop on
    pixel 127, and both take raw BGR 0..255, so the teacher sees exactly the student's crops (no re-crop). Its
    16x16 points (stride 16, at -1, 15, ..., 239 crop pixels) are resampled bilinearly onto the student's 11x11
    cells (stride 8, 87..167; teacher grid positions 5.5..10.5). Checked on real training pairs: the teacher's
    best box lands on the ground truth (median centre error 1.5 / 0.8 px in x / y, median IoU 0.77 over 96
    positive pairs), so the two grids line up.

    Weights: ``distill.cls_weight`` 1.0 -- the KL term (mean over cells) measured 0.28-0.39 on real pairs for the
    shipped synthetic-trained student, the size of the focal term (0.36-0.37), so the teacher is as loud as the
    labels. ``distill.reg_weight`` 0: the teacher's boxes on the ground-truth positive cells have IoU 0.61 with the
    ground truth (0.67 where its probability is >= 0.5, 0.72 where >= 0.9), while ``siamfcpp_tiny_real`` already
    reaches 0.71-0.74 there by step 1,000, so pulling the boxes towards the teacher's would teach worse boxes than
    the labels (``--set distill.reg_weight=1`` to try it; ``distill.reg_min_prob`` 0.5).

    Measure the gain beside ``siamfcpp_tiny_real`` (same seed, same batches): held-out success AUC of both
    exports. Metrics add ``distill_cls``, ``distill_reg`` (unweighted), ``teacher_prob`` (mean of the teacher's
    highest probability per pair), ``teacher_iou`` (teacher box vs ground truth on positive cells) and ``gt_total``
    (the ground-truth loss; ``loss`` = ``gt_total`` + the weighted teacher terms).

    Measured (smoke runs of 30 steps, same batches as ``siamfcpp_tiny_real``'s): ``gt_total`` 3.58 -> 2.93 (plain
    run: 3.58 -> 2.94), ``distill_cls`` 0.286 -> 0.270, ``teacher_prob`` 0.86-0.98, ``teacher_iou`` 0.58-0.62;
    4.5-5.0 pairs/s against 5.3-5.4 without the teacher on the shared 2-core machine (noisy: another job's tests
    and a niced training run); the same step alternated in one process: 1.27x the time with the teacher (medians).
    """
    base = siamfcpp_tiny_real()
    return dataclasses.replace(
        base, name="siamfcpp_tiny_real_distill",
        distill=DistillConfig(teacher="nanotrack_v2", cls_weight=1.0, reg_weight=0.0, reg_min_prob=0.5),
    )


CONFIGS: dict[str, Callable[[], TrainConfig]] = {
    "siamfcpp_alexnet_got10k": siamfcpp_alexnet_got10k,
    "siamrpnpp_r50_got10k": siamrpnpp_r50_got10k,
    "siamfcpp_tiny_synthetic": siamfcpp_tiny_synthetic,
    "siamfcpp_tiny_real": siamfcpp_tiny_real,
    "siamfcpp_tiny_real_distill": siamfcpp_tiny_real_distill,
}


def get_config(name: str, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """The named configuration with ``key=value`` overrides applied."""
    if name not in CONFIGS:
        raise ConfigError(f"unknown training config {name!r}; known: {', '.join(sorted(CONFIGS))}")
    return apply_overrides(CONFIGS[name](), overrides)


# ----------------------------------------------------------------------------------------------- overrides
def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        (item, _) = typing.get_args(tp)
        return f"comma-separated list of {_type_name(item)}"
    if tp is FreezeRule:
        return "prefix@until_step"
    return getattr(tp, "__name__", str(tp))


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_value(key: str, text: str, tp):
    def bad(what: str = ""):
        return ConfigError(f"--set {key}={text!r}: expected {_type_name(tp)}{what}")

    origin = typing.get_origin(tp)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        parts = [p.strip() for p in text.split(",")] if text.strip() else []
        return tuple(_parse_value(key, p, item) for p in parts)
    if tp is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise bad(" (true/false)")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise bad() from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise bad() from None
    if tp is str:
        return text
    if tp is FreezeRule:
        prefix, sep, step = text.partition("@")
        if not prefix:
            raise bad(" (empty prefix)")
        try:
            return FreezeRule(prefix, int(step) if sep else -1)
        except ValueError:
            raise bad(" (the step after @ must be an integer)") from None
    raise bad(" (type not settable from the command line)")


def _flat_keys(cls, prefix: str = "") -> list[str]:
    out = []
    for name, tp in _field_types(cls).items():
        if dataclasses.is_dataclass(tp):
            out += _flat_keys(tp, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def _set_path(obj, path: list[str], text: str, full_key: str):
    cls = type(obj)
    types = _field_types(cls)
    name = path[0]
    if name not in types:
        keys = _flat_keys(TrainConfig)
        close = difflib.get_close_matches(full_key, keys, n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(f"--set {full_key}: unknown config key{hint} Known keys: {', '.join(keys)}")
    tp = types[name]
    if dataclasses.is_dataclass(tp):
        if len(path) == 1:
            sub = ", ".join(f"{full_key}.{k}" for k in _flat_keys(tp))
            raise ConfigError(f"--set {full_key}: is a group of settings, set one of {sub}")
        value = _set_path(getattr(obj, name), path[1:], text, full_key)
    else:
        if len(path) > 1:
            raise ConfigError(f"--set {full_key}: {'.'.join(full_key.split('.')[: -len(path) + 1])} is not a group")
        value = _parse_value(full_key, text, tp)
    try:
        return dataclasses.replace(obj, **{name: value})
    except ValueError as err:
        raise ConfigError(f"--set {full_key}={text!r}: {err}") from None


def apply_overrides(config: TrainConfig, overrides) -> TrainConfig:
    """``config`` with ``key=value`` strings applied in order (dotted keys into nested groups).

    Raises :class:`ConfigError` (a ``ValueError``) for unknown keys (listing the known ones) and for values of
    the wrong type or outside their allowed set.
    """
    for item in overrides or ():
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        config = _set_path(config, key.split("."), text, key)
    return config


# ----------------------------------------------------------------------------------------------- (de)serialise
def config_to_dict(config) -> dict:
    """A JSON-able dict of a config (freeze rules as ``prefix@step`` strings). Groups marked ``omit_if_default``
    (``distill``) are left out while they equal their default, so a run without them records what it did before
    they existed; :func:`config_from_dict` fills them back in."""
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if f.metadata.get("omit_if_default") and f.default_factory is not dataclasses.MISSING \
                and v == f.default_factory():
            continue
        if dataclasses.is_dataclass(v):
            v = config_to_dict(v)
        elif isinstance(v, tuple):
            v = [str(x) if isinstance(x, FreezeRule) else x for x in v]
        out[f.name] = v
    return out


def config_from_dict(d: dict, cls=TrainConfig):
    """Inverse of :func:`config_to_dict`."""
    kwargs = {}
    types = _field_types(cls)
    for name, v in d.items():
        if name not in types:
            raise ConfigError(f"unknown config key {name!r} for {cls.__name__}")
        tp = types[name]
        if dataclasses.is_dataclass(tp):
            v = config_from_dict(v, tp)
        elif typing.get_origin(tp) is tuple:
            item = typing.get_args(tp)[0]
            v = tuple(_parse_value(name, x, FreezeRule) if item is FreezeRule else x for x in v)
        kwargs[name] = v
    return cls(**kwargs)
