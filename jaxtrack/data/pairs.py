"""Training pairs for Siamese trackers: a deterministic template/search pair sampler with pysot-style augmentation.

::

    from jaxtrack.data import load_dataset
    from jaxtrack.data.pairs import PairConfig, PairSampler
    sampler = PairSampler(load_dataset("got10k-train", root), PairConfig.siamrpn(), seed=0)
    ex = sampler.sample(12345)   # {"template": [127,127,3] u8 BGR, "search": [255,255,3] u8 BGR,
                                 #  "box": f32 (x1, y1, x2, y2) in search pixels, "negative": bool}

What one sample is (pysot ``TrkDataset.__getitem__``, video_analyst ``TrackPairSampler``):

* **Which video.** Sample ``i`` belongs to epoch ``i // len(sampler)``; inside an epoch the videos are visited in
  a seeded permutation (repeated, each time re-permuted, when ``pairs_per_epoch`` exceeds the number of videos),
  so every video is used equally often, as pysot's ``pick`` list does. ``len(sampler)`` is ``pairs_per_epoch``
  (default: one pair per usable video).
* **Positive pair** (probability ``1 - negative_rate``): a template frame uniformly among the video's valid frames,
  a search frame uniformly among its valid frames at most ``max_gap`` frames away (pysot ``FRAME_RANGE``,
  video_analyst ``max_diff``; distance in frame numbers, the template frame itself included).
* **Negative pair** (probability ``negative_rate``, pysot ``NEG``): the template as above, the search frame a
  random valid frame of **another** video, centred on that video's target; ``box`` is that target's box and
  ``negative`` is True (the loss turns it into all-background labels).
* **Crops.** Each frame is pre-cropped around its target at the template's scale (pysot's ``par_crop``, side
  ``crop_size``) and then cut to ``exemplar_size`` / ``instance_size`` with the branch's augmentation; see
  :mod:`jaxtrack.data.augment` for the exact geometry. A pair is gray with probability ``gray`` (both crops).
* **Valid frames**: finite ground truth with positive width and height and, where the dataset says so, a visible
  target (LaSOT occlusion / out-of-view, GOT-10k absence). Videos without a valid frame are left out (warned).
* **Determinism.** ``sample(i)`` draws everything from ``numpy.random.default_rng(SeedSequence([seed, i]))``, so a
  sample depends only on ``(seed, i)`` and the data, never on which worker or in which order it is computed.
  ``sample(rng)`` with a ``numpy.random.Generator`` draws the video from ``rng`` too.
* **Corrupt frames.** A frame that cannot be read or decoded raises :class:`CorruptFrameError` naming the
  sequence, the frame index and the file, when ``on_corrupt="raise"``; with ``on_corrupt="skip"`` (default) it is
  reported once per process with a :class:`CorruptFrameWarning` and the pair is redrawn from the same generator
  (deterministic; after a few failures in one video another video is drawn).

The frames come from a *frame source*: raw :class:`~jaxtrack.data.sequence.Sequence` objects
(:class:`SequenceFrames`, pre-cropping on the fly) or the pre-cropped TFDS shards written by
:mod:`jaxtrack.data.tfds_builder` (:class:`~jaxtrack.data.tfds_builder.RecordFrames`); both give the same pairs
up to the JPEG round trip of the shards.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Sequence as SequenceABC
from typing import Any, Protocol

import cv2
import numpy as np

from jaxtrack.data.augment import STYLES, AugmentParams, augment, precrop
from jaxtrack.data.sequence import Sequence, read_frame

__all__ = [
    "PairConfig",
    "PairSampler",
    "FrameSource",
    "SequenceFrames",
    "CorruptFrameError",
    "CorruptFrameWarning",
    "valid_frame_mask",
    "read_sequence_frame",
    "PAIR_KEYS",
]

#: Keys of one sample (and of a batch).
PAIR_KEYS = ("template", "search", "box", "negative")
ON_CORRUPT = ("skip", "raise")


class CorruptFrameError(ValueError):
    """A training frame that cannot be read or decoded; names the sequence, the frame index and the file."""

    def __init__(self, sequence: str, frame_index: int, path: str, reason: str):
        self.sequence = sequence
        self.frame_index = int(frame_index)
        self.path = str(path)
        self.reason = reason
        super().__init__(f"corrupt frame {self.frame_index} of sequence {sequence!r} ({self.path}): {reason}")

    def __reduce__(self):  # picklable across grain worker processes
        return (type(self), (self.sequence, self.frame_index, self.path, self.reason))


class CorruptFrameWarning(UserWarning):
    """A corrupt frame was skipped (``on_corrupt="skip"``)."""


@dataclasses.dataclass(frozen=True)
class PairConfig:
    """How pairs are drawn and cropped. Defaults are pysot's SiamRPN++ training values
    (``experiments/siamrpn_r50_l234_dwxcorr_8gpu/config.yaml``; NanoTrack's ``configv2/v3.yaml`` use the same).

    The branch augmentations: ``shift, scale, blur, color, flip`` for the search crop (pysot
    ``DATASET.SEARCH``), ``template_*`` for the template (``DATASET.TEMPLATE``). Shifts are in pre-crop pixels for
    ``style="pysot"`` and fractions of half the window for ``style="siamfcpp"`` (see :mod:`~jaxtrack.data.augment`).
    """

    exemplar_size: int = 127  # template crop side (pysot TRAIN.EXEMPLAR_SIZE)
    instance_size: int = 255  # search crop side (pysot TRAIN.SEARCH_SIZE; SiamFC++ 303)
    crop_size: int = 511  # pre-crop side (pysot par_crop 511) for raw sequences; shards store their own
    context_amount: float = 0.5
    max_gap: int = 100  # pysot FRAME_RANGE (VID/GOT-10k/LaSOT 100), video_analyst max_diff
    negative_rate: float = 0.2  # pysot DATASET.NEG
    gray: float = 0.0  # pysot DATASET.GRAY, per pair
    shift: float = 64.0
    scale: float = 0.18
    blur: float = 0.2
    color: float = 1.0
    flip: float = 0.0
    template_shift: float = 4.0
    template_scale: float = 0.05
    template_blur: float = 0.0
    template_color: float = 1.0
    template_flip: float = 0.0
    style: str = "pysot"  # "pysot" | "siamfcpp" (video_analyst's shift/scale sampling)
    pairs_per_epoch: int | None = None  # pysot VIDEOS_PER_EPOCH; None: one pair per usable video
    on_corrupt: str = "skip"  # "skip" | "raise"
    max_retries: int = 100  # redraws after corrupt frames before giving up

    def __post_init__(self):
        for name in ("exemplar_size", "instance_size", "crop_size"):
            v = getattr(self, name)
            if int(v) != v or v < 2:
                raise ValueError(f"PairConfig.{name} must be an integer >= 2, got {v}")
        if self.instance_size < self.exemplar_size:
            raise ValueError(f"PairConfig: instance_size {self.instance_size} < exemplar_size {self.exemplar_size}")
        if not (self.context_amount >= 0 and math.isfinite(self.context_amount)):
            raise ValueError(f"PairConfig.context_amount must be >= 0, got {self.context_amount}")
        if int(self.max_gap) != self.max_gap or self.max_gap < 0:
            raise ValueError(f"PairConfig.max_gap must be an integer >= 0, got {self.max_gap}")
        for name in ("negative_rate", "gray"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"PairConfig.{name} is a probability in [0, 1], got {getattr(self, name)}")
        if self.style not in STYLES:
            raise ValueError(f"PairConfig.style must be one of {STYLES}, got {self.style!r}")
        if self.on_corrupt not in ON_CORRUPT:
            raise ValueError(f"PairConfig.on_corrupt must be one of {ON_CORRUPT}, got {self.on_corrupt!r}")
        if self.pairs_per_epoch is not None and (int(self.pairs_per_epoch) != self.pairs_per_epoch
                                                 or self.pairs_per_epoch < 1):
            raise ValueError(f"PairConfig.pairs_per_epoch must be a positive integer or None, "
                             f"got {self.pairs_per_epoch}")
        if self.max_retries < 1:
            raise ValueError(f"PairConfig.max_retries must be >= 1, got {self.max_retries}")
        _ = (self.search_aug, self.template_aug)  # validates both branches' AugmentParams

    @property
    def search_aug(self) -> AugmentParams:
        return AugmentParams(self.shift, self.scale, self.blur, self.color, self.flip)

    @property
    def template_aug(self) -> AugmentParams:
        return AugmentParams(self.template_shift, self.template_scale, self.template_blur, self.template_color,
                             self.template_flip)

    # -- presets

    @classmethod
    def siamrpn(cls, **overrides) -> PairConfig:
        """pysot SiamRPN++ / NanoTrack training (template 127, search 255, NEG 0.2, search blur 0.2)."""
        return cls(**overrides)

    @classmethod
    def siamfcpp(cls, **overrides) -> PairConfig:
        """video_analyst SiamFC++ (``siamfcpp_alexnet-trn.yaml``): z 127, x 303, max_scale 0.3, max_shift 0.4,
        no template augmentation, no colour/blur/flip, negative_pair_ratio 0.1, max_diff 100."""
        base = dict(exemplar_size=127, instance_size=303, style="siamfcpp", negative_rate=0.1, max_gap=100,
                    shift=0.4, scale=0.3, blur=0.0, color=0.0, flip=0.0, template_shift=0.0,
                    template_scale=0.0, template_blur=0.0, template_color=0.0, template_flip=0.0)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def no_augmentation(cls, **overrides) -> PairConfig:
        """Centred crops, no colour/blur/flip/gray and no negatives: the pure geometry (tests, evaluation)."""
        base = dict(negative_rate=0.0, gray=0.0, shift=0.0, scale=0.0, blur=0.0, color=0.0, flip=0.0,
                    template_shift=0.0, template_scale=0.0, template_blur=0.0, template_color=0.0,
                    template_flip=0.0)
        base.update(overrides)
        return cls(**base)


# ---------------------------------------------------------------------------------------- frame sources


class FrameSource(Protocol):
    """Where pre-cropped frames come from (raw sequences or pre-cropped shards)."""

    crop_size: int
    exemplar_size: int
    context_amount: float

    def __len__(self) -> int:  # number of videos
        ...

    def video_name(self, v: int) -> str:
        ...

    def valid_frames(self, v: int) -> np.ndarray:
        """Sorted int64 frame indices of video ``v`` that can be used."""
        ...

    def load(self, v: int, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(pre-crop uint8 [C, C, 3], box (x1, y1, x2, y2) float32, pad value float32 [3])``; raises
        :class:`CorruptFrameError` when the frame cannot be read."""
        ...


def valid_frame_mask(seq: Sequence) -> np.ndarray:
    """``[N]`` bool: finite ground truth, ``w > 0`` and ``h > 0``, and visible where the dataset says."""
    gt = seq.ground_truth
    if gt.shape[0] == 0:
        return np.zeros(seq.num_frames, bool)
    with np.errstate(invalid="ignore"):
        ok = np.all(np.isfinite(gt), axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
    if seq.visible is not None:
        ok &= seq.visible
    return ok


def frame_path(seq: Sequence, f: int) -> str:
    """The file that holds frame ``f`` of ``seq`` (for messages)."""
    return seq.frame_paths[f] if seq.frame_paths is not None else f"{seq.video_path} (frame {f})"


def read_sequence_frame(seq: Sequence, f: int) -> np.ndarray:
    """Frame ``f`` of ``seq`` as uint8 BGR; any read/decode failure becomes :class:`CorruptFrameError`."""
    try:
        if seq.frame_paths is not None:
            return read_frame(seq.frame_paths[f])
        return seq.frame(f)
    except (ValueError, OSError, cv2.error) as e:
        raise CorruptFrameError(seq.name, f, frame_path(seq, f), str(e)) from None


class SequenceFrames:
    """Frame source over raw :class:`Sequence` objects: reads a frame and pre-crops it (pysot ``par_crop``)."""

    def __init__(self, sequences: SequenceABC[Sequence], crop_size: int = 511, exemplar_size: int = 127,
                 context_amount: float = 0.5):
        self.sequences = list(sequences)
        for s in self.sequences:
            if not isinstance(s, Sequence):
                raise TypeError(f"SequenceFrames takes jaxtrack Sequence objects, got {type(s).__name__}")
        self.crop_size = int(crop_size)
        self.exemplar_size = int(exemplar_size)
        self.context_amount = float(context_amount)
        self._valid = [np.flatnonzero(valid_frame_mask(s)).astype(np.int64) for s in self.sequences]

    def __len__(self) -> int:
        return len(self.sequences)

    def video_name(self, v: int) -> str:
        return self.sequences[v].name

    def valid_frames(self, v: int) -> np.ndarray:
        return self._valid[v]

    def load(self, v: int, f: int):
        frame = read_sequence_frame(self.sequences[v], f)
        return precrop(frame, self.sequences[v].ground_truth[f], self.crop_size, self.exemplar_size,
                       self.context_amount)


# ------------------------------------------------------------------------------------------ the sampler


_warned_corrupt: set[str] = set()


def _warn_corrupt(err: CorruptFrameError) -> None:
    key = f"{err.sequence}\0{err.frame_index}\0{err.path}"
    if key not in _warned_corrupt:
        _warned_corrupt.add(key)
        warnings.warn(f"skipping {err} (on_corrupt='skip')", CorruptFrameWarning, stacklevel=4)


class PairSampler:
    """Deterministic pair sampler over a list of :class:`Sequence` (or any :class:`FrameSource`).

    ``len(sampler)`` is the number of pairs in one epoch; ``sampler[i]`` is ``sampler.sample(i)`` for any
    ``i >= 0`` (indices past the first epoch are later epochs), so the sampler is a grain random-access source.
    """

    def __init__(self, source, cfg: PairConfig | None = None, seed: int = 0):
        self.cfg = cfg if cfg is not None else PairConfig()
        if int(seed) != seed or seed < 0:
            raise ValueError(f"PairSampler: seed must be a non-negative integer, got {seed}")
        self.seed = int(seed)
        if isinstance(source, Sequence):
            source = [source]
        if isinstance(source, (list, tuple)):
            source = SequenceFrames(source, self.cfg.crop_size, self.cfg.exemplar_size, self.cfg.context_amount)
        self.source = source
        cfg = self.cfg
        if (source.exemplar_size != cfg.exemplar_size
                or not math.isclose(source.context_amount, cfg.context_amount)):
            raise ValueError(
                f"PairSampler: the frames were pre-cropped for exemplar_size={source.exemplar_size}, "
                f"context_amount={source.context_amount} but the config asks for exemplar_size="
                f"{cfg.exemplar_size}, context_amount={cfg.context_amount}; rebuild the shards or change the config")
        if source.crop_size < cfg.instance_size:
            raise ValueError(f"PairSampler: pre-crops of {source.crop_size} px are smaller than the search crop "
                             f"({cfg.instance_size} px); use crop_size >= instance_size (pysot: 511)")
        self._frames = [np.asarray(source.valid_frames(v), np.int64) for v in range(len(source))]
        self.videos = np.array([v for v in range(len(source)) if len(self._frames[v])], np.int64)
        empty = [source.video_name(v) for v in range(len(source)) if not len(self._frames[v])]
        if empty:
            warnings.warn(f"PairSampler: {len(empty)} video(s) without a valid frame are left out: "
                          f"{empty[:10]}{' ...' if len(empty) > 10 else ''}", stacklevel=2)
        if not len(self.videos):
            raise ValueError(f"PairSampler: none of the {len(source)} videos has a valid frame (finite box with "
                             f"positive size, target visible)")
        self.negative_rate = cfg.negative_rate
        if cfg.negative_rate > 0 and len(self.videos) < 2:
            warnings.warn("PairSampler: negative pairs need at least two videos; negative_rate is set to 0",
                          stacklevel=2)
            self.negative_rate = 0.0
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.cfg.pairs_per_epoch) if self.cfg.pairs_per_epoch is not None else len(self.videos)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.sample(int(index))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_perm_cache"] = {}
        return state

    # -- which video

    def _perm(self, epoch: int, block: int) -> np.ndarray:
        key = (epoch, block)
        perm = self._perm_cache.get(key)
        if perm is None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, block, 0x76696473]))
            perm = rng.permutation(len(self.videos))
            if len(self._perm_cache) > 16:
                self._perm_cache.clear()
            self._perm_cache[key] = perm
        return perm

    def video_for_index(self, index: int) -> int:
        """The video (index into the frame source) that sample ``index`` is drawn from."""
        epoch, pos = divmod(int(index), len(self))
        n = len(self.videos)
        return int(self.videos[self._perm(epoch, pos // n)[pos % n]])

    # -- sampling

    def _random_frame(self, rng: np.random.Generator, v: int) -> int:
        frames = self._frames[v]
        return int(frames[rng.integers(len(frames))])

    def _search_frame(self, rng: np.random.Generator, v: int, t: int) -> int:
        frames = self._frames[v]
        lo = np.searchsorted(frames, t - self.cfg.max_gap, side="left")
        hi = np.searchsorted(frames, t + self.cfg.max_gap, side="right")
        return int(frames[lo + rng.integers(hi - lo)])

    def _other_video(self, rng: np.random.Generator, v: int) -> int:
        k = int(np.searchsorted(self.videos, v))
        j = int(rng.integers(len(self.videos) - 1))
        return int(self.videos[j + (j >= k)])

    def sample(self, index_or_rng, info: bool = False) -> dict[str, Any]:
        """One pair: ``{"template", "search", "box", "negative"}`` (see the module docstring).

        ``info=True`` adds where it came from: ``template_video``, ``template_frame``, ``search_video``,
        ``search_frame`` (video = index into the frame source, frame = frame number in that video).
        """
        if isinstance(index_or_rng, np.random.Generator):
            rng = index_or_rng
            v = int(self.videos[rng.integers(len(self.videos))])
        else:
            index = int(index_or_rng)
            if index < 0:
                raise IndexError(f"PairSampler: sample index must be >= 0, got {index}")
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, index]))
            v = self.video_for_index(index)
        cfg = self.cfg
        errors: list[CorruptFrameError] = []
        for attempt in range(cfg.max_retries):
            if attempt >= 3:  # this video keeps failing: draw another one
                v = int(self.videos[rng.integers(len(self.videos))])
            gray = cfg.gray > rng.random()
            negative = self.negative_rate > rng.random()
            t = self._random_frame(rng, v)
            if negative:
                u = self._other_video(rng, v)
                s = self._random_frame(rng, u)
            else:
                u, s = v, self._search_frame(rng, v, t)
            try:
                z_img, z_box, z_pad = self.source.load(v, t)
                x_img, x_box, x_pad = self.source.load(u, s)
            except CorruptFrameError as e:
                if cfg.on_corrupt == "raise":
                    raise
                _warn_corrupt(e)
                errors.append(e)
                continue
            template, _ = augment(z_img, z_box, cfg.exemplar_size, cfg.template_aug, rng, gray=gray,
                                  style=cfg.style, template=True, pad_value=z_pad)
            search, box = augment(x_img, x_box, cfg.instance_size, cfg.search_aug, rng, gray=gray,
                                  style=cfg.style, template=False, pad_value=x_pad)
            out = {"template": template, "search": search, "box": box, "negative": np.bool_(negative)}
            if info:
                out.update(template_video=v, template_frame=t, search_video=u, search_frame=s)
            return out
        raise RuntimeError(
            f"PairSampler: {cfg.max_retries} draws in a row hit corrupt frames; last: "
            + "; ".join(str(e) for e in errors[-3:]))

    def __repr__(self) -> str:
        return (f"PairSampler({len(self.videos)} videos, {len(self)} pairs/epoch, seed={self.seed}, "
                f"source={type(self.source).__name__})")


def _is_sequence_list(obj) -> bool:
    return isinstance(obj, Sequence) or (isinstance(obj, (list, tuple)) and len(obj) > 0
                                         and all(isinstance(s, Sequence) for s in obj))


def as_frame_source(obj, cfg: PairConfig) -> Any:
    """A list of :class:`Sequence` -> :class:`SequenceFrames`; a frame source is returned as is."""
    if _is_sequence_list(obj):
        return SequenceFrames([obj] if isinstance(obj, Sequence) else obj, cfg.crop_size, cfg.exemplar_size,
                              cfg.context_amount)
    if isinstance(obj, (str, os.PathLike)):
        raise TypeError("as_frame_source: a path is a TFDS folder; use jaxtrack.data.pipeline.make_loader")
    return obj
