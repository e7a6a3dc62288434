"""The fields of a training configuration (frozen dataclasses), their checks, ``--set key=value`` overrides and
the JSON record of a run. The named recipes are in :mod:`jaxtrack.train.config`.

``--set`` takes dotted paths into the config (``optim.lr=0.01``, ``data.on_corrupt=skip``, ``batch_size=16``),
type-checked against the dataclass fields; tuples are comma-separated (``optim.backbone_prefixes=a,b``) and
freeze rules are ``prefix@step`` items (``optim.freeze=basemodel/conv1@-1,basemodel/conv5/conv@1000``, ``-1`` =
frozen for the whole run, an empty value = no rule). Unknown keys and ill-typed values are errors that list
what is accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

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

    ``frozen_bn_eval`` (default on): BatchNorm layers under a whole-run freeze rule (``until_step = -1``) normalise
    with their running statistics and never update them, as pysot's ``.eval()`` on the backbone layers it does not
    train; off: every BatchNorm of the tracker runs in train mode (batch statistics, running averages updated).
    Rules that end during the run leave their BatchNorm in train mode (video_analyst's freezing of conv weights).

    ``ema_decay`` > 0 keeps an exponential moving average of the parameters (Polyak averaging, as timm's
    ``ModelEma`` / TF's ``ExponentialMovingAverage`` with ``num_updates``: decay ``min(ema_decay, (1 + t) /
    (10 + t))`` at update ``t``); the held-out evaluation and the exported weights then use the average (with the
    run's current BatchNorm statistics). 0.998 averages over roughly the last 500 steps.
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
    frozen_bn_eval: bool = True  # BatchNorm under a whole-run freeze rule in inference mode (pysot)
    clip_grad_norm: float = 0.0  # 0 = no clipping (pysot clips the global norm at 10)
    ema_decay: float = 0.0  # 0 = no parameter average

    def __post_init__(self):
        _check_choice("optim.name", self.name, OPTIMIZERS)
        _check_choice("optim.schedule", self.schedule, SCHEDULES)
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"optim.ema_decay must be in [0, 1), got {self.ema_decay}")
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
    checkpoint in the shared data folder (:func:`jaxtrack.weights.shared_path`), else a path
    (``shared:REL`` allowed) that :func:`jaxtrack.weights.load_weights` reads.
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
    # a tracker whose backbone (its real shared checkpoint, e.g. "nanotrack_v2") replaces this tracker's
    # ``basemodel`` at step 0, after init_weights; "" = none. The two backbones must be the same network.
    init_backbone: str = ""
    # a teacher's soft targets (off by default; see DistillConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig, metadata=_OMIT_DEFAULT)
    # held-out tracking success at every checkpoint (off by default; see EvalConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig, metadata=_OMIT_DEFAULT)

    def __post_init__(self):
        for key in ("steps", "batch_size", "log_every", "save_every", "keep"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")


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
