"""A TFDS builder that writes pysot-style pre-cropped training frames into ArrayRecord shards, and its reader.

Build (no TensorFlow needed: the shards are ArrayRecord, TFDS's TF-free format)::

    from jaxtrack.data.pipeline import build_tfds
    path = build_tfds("/data/GOT-10k", "/data/tfds", dataset="got10k", crop_size=511)
    # -> /data/tfds/tracking_crops/got10k_train_511/1.0.0

One record per frame of every sequence, in sequence order (TFDS shuffling disabled, record ``i`` = key ``i``):

==============  ===================  ============================================================================
feature         type                 meaning
==============  ===================  ============================================================================
``image``       bytes                the pre-crop (``crop_size`` square around the target with search context,
                                     border = the frame's channel mean; :func:`jaxtrack.data.augment.precrop`),
                                     encoded BGR with ``cv2.imencode`` (JPEG or PNG); empty when not valid
``box``         float32 [4]          the target ``(x1, y1, x2, y2)`` in pre-crop pixels (zeros when not valid)
``pad``         float32 [3]          the frame's per-channel mean (the pre-crop's border value)
``valid``       bool                 finite box with positive size, target visible, frame decodable
``video``       text                 sequence name
``video_index`` int32                position of the sequence in the build
``frame_index`` int32                frame number inside the sequence (0-based)
``frame_box``   float32 [4]          ground truth ``[x, y, w, h]`` in frame pixels as read (may be NaN)
``frame_size``  int32 [2]            ``(H, W)`` of the frame (0, 0 when it was not read)
``path``        text                 the source image file
==============  ===================  ============================================================================

Per-video frame indices live in the dataset's ``metadata.json`` (``videos``: name, first record, number of
frames, and a ``valid`` string of 0/1 per frame), so a loader finds every usable frame without reading the
shards; the build parameters and the list of corrupt frames are there too.

Corrupt source frames (unreadable or undecodable images): ``on_corrupt="raise"`` stops the build with a
:class:`~jaxtrack.data.pairs.CorruptFrameError` naming the sequence, the frame and the file; ``"skip"`` (default)
stores the frame as not valid, lists it in the metadata and warns (:class:`~jaxtrack.data.pairs.CorruptFrameWarning`).
TFDS writes into an ``incomplete.*`` folder renamed at the end, so an interrupted build leaves no half dataset.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import tensorflow_datasets as tfds

from jaxtrack.data.augment import precrop
from jaxtrack.data.pairs import CorruptFrameError, CorruptFrameWarning, read_sequence_frame, valid_frame_mask
from jaxtrack.data.sequence import Sequence

__all__ = [
    "BUILDER_NAME",
    "FORMAT",
    "DATASET_ALIASES",
    "build",
    "find_prepared",
    "RecordFrames",
    "TrackingCrops",
    "TrackingCropsConfig",
    "config_name",
]

BUILDER_NAME = "tracking_crops"
FORMAT = "jaxtrack-tracking-crops/1"
IMAGE_FORMATS = ("jpeg", "png")

#: build_tfds dataset names -> jaxtrack.data.load_dataset names.
DATASET_ALIASES = {"got10k": "got10k-train", "got10k-train": "got10k-train", "got10k-val": "got10k-val",
                   "lasot": "lasot", "synthetic": "synthetic", "otb-folder": "otb-folder", "otb100": "otb100",
                   "uav123": "uav123", "vot2018": "vot2018"}


def config_name(dataset: str, crop_size: int) -> str:
    """TFDS config name of a build, e.g. ``got10k_train_511``."""
    return f"{_dataset_key(dataset).replace('-', '_')}_{int(crop_size)}"


def _dataset_key(dataset: str) -> str:
    key = str(dataset).lower()
    if key not in DATASET_ALIASES:
        raise ValueError(f"unknown dataset {dataset!r}; build_tfds knows {sorted(DATASET_ALIASES)}")
    return DATASET_ALIASES[key]


def _load_sequences(dataset: str, root: Path, sequences) -> list[Sequence]:
    from jaxtrack.data.datasets import load_dataset

    key = _dataset_key(dataset)
    annotations = None
    if key == "lasot" and sequences is None:
        # training uses LaSOT's train split (load_dataset's default selection is the test split)
        from jaxtrack.paths import shared_data_dir

        split = shared_data_dir() / "annotations" / "lasot_split.json"
        if split.is_file():
            import json

            annotations = list(json.loads(split.read_text(encoding="utf-8"))["train"])
    return load_dataset(key, root, sequences=sequences, annotations=annotations)


def _ordered_map(fn: Callable, items: Iterable, num_threads: int) -> Iterator:
    """``map(fn, items)`` on a thread pool, in order, with at most ``4 * num_threads`` items in flight."""
    if num_threads <= 1:
        yield from map(fn, items)
        return
    with concurrent.futures.ThreadPoolExecutor(num_threads) as ex:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(ex.submit(fn, item))
            if len(pending) >= 4 * num_threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# ------------------------------------------------------------------------------------------------ builder


@dataclasses.dataclass(eq=False)
class TrackingCropsConfig(tfds.core.BuilderConfig):
    """Parameters of one build (``name`` from :func:`config_name`)."""

    dataset: str = "synthetic"
    crop_size: int = 511
    exemplar_size: int = 127
    context_amount: float = 0.5
    image_format: str = "jpeg"
    jpeg_quality: int = 95
    sequences: tuple[str, ...] | None = None
    on_corrupt: str = "skip"
    num_threads: int = 2


class TrackingCrops(tfds.core.GeneratorBasedBuilder):
    """Pysot-style pre-cropped frames of a tracking dataset (one record per frame)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Pre-cropped frames, per-video index in metadata.json."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put the dataset in its usual layout in manual_dir: synthetic (jaxtrack.data.synthetic."
        "generate_dataset), GOT-10k (<root>/train/<seq>/), LaSOT (<root>/<class>/<class>-N/), any OTB root.")

    # TFDS finds the builder's source file through importlib resources, which needs the
    # `importlib_resources` package for a module inside a package; the answer is simply this file.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        from etils import epath

        return epath.Path(__file__)

    def _info(self):
        f = tfds.features
        cfg = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Pre-cropped {cfg.dataset} frames ({cfg.crop_size} px, pysot par_crop).",
            features=f.FeaturesDict({
                "image": f.Tensor(shape=(), dtype=np.object_),
                "box": f.Tensor(shape=(4,), dtype=np.float32),
                "pad": f.Tensor(shape=(3,), dtype=np.float32),
                "valid": f.Tensor(shape=(), dtype=np.bool_),
                "video": f.Text(),
                "video_index": f.Scalar(dtype=np.int32),
                "frame_index": f.Scalar(dtype=np.int32),
                "frame_box": f.Tensor(shape=(4,), dtype=np.float32),
                "frame_size": f.Tensor(shape=(2,), dtype=np.int32),
                "path": f.Text(),
            }),
            disable_shuffling=True,  # record i = key i: per-video ranges stay contiguous
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        seqs = _load_sequences(cfg.dataset, Path(dl_manager.manual_dir), cfg.sequences)
        return {"train": self._generate_examples(seqs)}

    def _generate_examples(self, seqs):
        cfg = self.builder_config
        meta = self.info.metadata
        meta.clear()
        videos, start = [], 0
        for s in seqs:
            videos.append({"name": s.name, "start": start, "num_frames": s.num_frames,
                           "valid": "".join("1" if ok else "0" for ok in valid_frame_mask(s))})
            start += s.num_frames
        meta.update({
            "format": FORMAT, "dataset": cfg.dataset, "crop_size": cfg.crop_size,
            "exemplar_size": cfg.exemplar_size, "context_amount": cfg.context_amount,
            "image_format": cfg.image_format, "jpeg_quality": cfg.jpeg_quality,
            "num_records": start, "videos": videos, "corrupt": [],
        })
        items = ((vi, s, f, video["valid"][f] == "1") for vi, (s, video) in enumerate(zip(seqs, videos))
                 for f in range(s.num_frames))
        encode = functools.partial(_encode_record, cfg=cfg)
        for key, (rec, err) in enumerate(_ordered_map(encode, items, cfg.num_threads)):
            if err is not None:
                if cfg.on_corrupt == "raise":
                    raise err
                warnings.warn(f"skipping {err} (stored as not valid)", CorruptFrameWarning, stacklevel=2)
                v = videos[rec["video_index"]]
                f = rec["frame_index"]
                v["valid"] = v["valid"][:f] + "0" + v["valid"][f + 1:]
                meta["corrupt"].append({"sequence": err.sequence, "frame_index": err.frame_index,
                                        "path": err.path, "reason": err.reason})
            yield key, rec


def _encode_record(item, cfg) -> tuple[dict[str, Any], CorruptFrameError | None]:
    vi, seq, f, valid = item
    path = seq.frame_paths[f] if seq.frame_paths is not None else f"{seq.video_path} (frame {f})"
    gt = np.asarray(seq.ground_truth[f], np.float32) if seq.has_ground_truth else np.full(4, np.nan, np.float32)
    rec = {"image": b"", "box": np.zeros(4, np.float32), "pad": np.zeros(3, np.float32), "valid": False,
           "video": seq.name, "video_index": vi, "frame_index": f, "frame_box": gt,
           "frame_size": np.zeros(2, np.int32), "path": path}
    if not valid:
        return rec, None
    try:
        frame = read_sequence_frame(seq, f)
    except CorruptFrameError as e:
        return rec, e
    crop, box, pad = precrop(frame, seq.ground_truth[f], cfg.crop_size, cfg.exemplar_size, cfg.context_amount)
    ext, params = (".jpg", [int(cv2.IMWRITE_JPEG_QUALITY), int(cfg.jpeg_quality)]) if cfg.image_format == "jpeg" \
        else (".png", [int(cv2.IMWRITE_PNG_COMPRESSION), 1])
    ok, buf = cv2.imencode(ext, crop, params)
    if not ok:
        return rec, CorruptFrameError(seq.name, f, path, f"{cfg.image_format} encoding of the pre-crop failed")
    rec.update(image=buf.tobytes(), box=box, pad=pad, valid=True,
               frame_size=np.array(frame.shape[:2], np.int32))
    return rec, None


_PARAM_KEYS = ("crop_size", "exemplar_size", "context_amount", "image_format", "jpeg_quality")


def build(manual_dir: str | os.PathLike, data_dir: str | os.PathLike, dataset: str = "synthetic",
          crop_size: int = 511, *, exemplar_size: int = 127, context_amount: float = 0.5,
          image_format: str = "jpeg", jpeg_quality: int = 95, sequences: Iterable[str] | None = None,
          on_corrupt: str = "skip", num_threads: int = 2, overwrite: bool = False,
          progress: bool = False) -> Path:
    """Pre-crop every frame of ``dataset`` found in ``manual_dir`` into ArrayRecord shards under ``data_dir``.

    Returns the prepared folder (``data_dir/tracking_crops/<config>/1.0.0``). An existing build with the same
    parameters is reused; one with other parameters raises ``ValueError`` unless ``overwrite=True``.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if on_corrupt not in ("skip", "raise"):
        raise ValueError(f"on_corrupt must be 'skip' or 'raise', got {on_corrupt!r}")
    if int(crop_size) != crop_size or crop_size < exemplar_size:
        raise ValueError(f"crop_size must be an integer >= exemplar_size ({exemplar_size}), got {crop_size}")
    manual_dir = Path(manual_dir)
    if not manual_dir.is_dir():
        raise FileNotFoundError(f"build_tfds: dataset folder (manual_dir) not found: {manual_dir}")
    key = _dataset_key(dataset)
    config = TrackingCropsConfig(
        name=config_name(key, crop_size), dataset=key, crop_size=int(crop_size), exemplar_size=int(exemplar_size),
        context_amount=float(context_amount), image_format=image_format, jpeg_quality=int(jpeg_quality),
        sequences=None if sequences is None else tuple(str(s) for s in sequences), on_corrupt=on_corrupt,
        num_threads=max(1, int(num_threads)),
        description=f"{key} pre-cropped to {int(crop_size)} px")
    prepared = Path(data_dir) / BUILDER_NAME / config.name / str(TrackingCrops.VERSION)
    if (prepared / "dataset_info.json").is_file():
        old = _read_metadata(prepared)
        want = {k: getattr(config, k) for k in _PARAM_KEYS}
        have = {k: old.get(k) for k in _PARAM_KEYS}
        if want != have and not overwrite:
            raise ValueError(f"build_tfds: {prepared} holds a build with {have}, not {want}; pass overwrite=True "
                             f"or another data_dir")
        if not overwrite:
            return prepared
        shutil.rmtree(prepared)
    with _quiet_absl(not progress):  # "Using custom data configuration" on every build
        builder = TrackingCrops(config=config, data_dir=os.fspath(data_dir))
    if Path(builder.data_dir) != prepared:
        raise RuntimeError(f"TFDS chose {builder.data_dir}, expected {prepared}")
    dl_config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir))
    previous = _progress_enabled()
    tfds.display_progress_bar(progress)
    try:
        builder.download_and_prepare(download_config=dl_config, file_format="array_record")
    finally:
        tfds.display_progress_bar(previous)
    return prepared


@contextlib.contextmanager
def _quiet_absl(quiet: bool):
    if not quiet:
        yield
        return
    from absl import logging as absl_logging

    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(level)


def _progress_enabled() -> bool:
    try:
        from tensorflow_datasets.core.utils import tqdm_utils

        return bool(tqdm_utils._active)  # no public getter
    except Exception:  # noqa: BLE001
        return True


def _read_metadata(prepared: Path) -> dict:
    import json

    path = Path(prepared) / "metadata.json"
    if not path.is_file():
        raise ValueError(f"{prepared} is not a jaxtrack tracking-crops build (no metadata.json)")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def find_prepared(data_dir: str | os.PathLike, dataset: str | None = None, crop_size: int | None = None) -> Path:
    """The prepared build under ``data_dir``: the folder itself when it holds ``dataset_info.json``, else the
    one build of ``tracking_crops`` below it (``dataset`` / ``crop_size`` select among several)."""
    root = Path(data_dir)
    if (root / "dataset_info.json").is_file():
        return root
    found = sorted(p.parent for p in root.glob(f"{BUILDER_NAME}/*/*/dataset_info.json"))
    if dataset is not None:
        prefix = _dataset_key(dataset).replace("-", "_") + "_"
        found = [p for p in found if p.parent.name.startswith(prefix)]
    if crop_size is not None:
        found = [p for p in found if p.parent.name.endswith(f"_{int(crop_size)}")]
    if not found:
        raise FileNotFoundError(f"no prepared tracking_crops build under {root}"
                                f"{f' for dataset {dataset!r}' if dataset else ''}; run build_tfds first")
    if len(found) > 1:
        raise ValueError(f"several builds under {root}: {[str(p) for p in found]}; pass dataset=/crop_size= "
                         f"or the build folder itself")
    return found[0]


# ------------------------------------------------------------------------------------------------- reader


class RecordFrames:
    """Frame source (:class:`jaxtrack.data.pairs.FrameSource`) over a prepared build: record ``start + f`` of
    a video holds its frame ``f``. Picklable (the shards are reopened lazily in each process)."""

    def __init__(self, prepared: str | os.PathLike):
        self.path = Path(prepared)
        meta = _read_metadata(self.path)
        self.meta = meta
        self.crop_size = int(meta["crop_size"])
        self.exemplar_size = int(meta["exemplar_size"])
        self.context_amount = float(meta["context_amount"])
        self.videos = meta["videos"]
        self._valid = [np.flatnonzero(np.frombuffer(v["valid"].encode("ascii"), np.uint8) == ord("1"))
                       .astype(np.int64) for v in self.videos]
        self._ds = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_ds"] = None
        return state

    @property
    def data_source(self):
        """The TFDS ``ArrayRecordDataSource`` (opened on first use)."""
        if self._ds is None:
            ds = tfds.builder_from_directory(os.fspath(self.path)).as_data_source("train")
            if len(ds) != int(self.meta["num_records"]):
                raise ValueError(f"{self.path}: {len(ds)} records but metadata.json lists "
                                 f"{self.meta['num_records']}; the build is incomplete or mixed")
            self._ds = ds
        return self._ds

    def __len__(self) -> int:
        return len(self.videos)

    def video_name(self, v: int) -> str:
        return self.videos[v]["name"]

    def valid_frames(self, v: int) -> np.ndarray:
        return self._valid[v]

    def record_index(self, v: int, f: int) -> int:
        video = self.videos[v]
        if not 0 <= f < video["num_frames"]:
            raise IndexError(f"{self.path}: frame {f} out of range for video {video['name']!r} "
                             f"({video['num_frames']} frames)")
        return int(video["start"]) + int(f)

    def record(self, v: int, f: int) -> dict[str, Any]:
        """The raw record of frame ``f`` of video ``v`` (image still encoded)."""
        i = self.record_index(v, f)
        rec = self.data_source[i]
        if int(rec["video_index"]) != v or int(rec["frame_index"]) != f:
            raise ValueError(f"{self.path}: record {i} holds video {int(rec['video_index'])} frame "
                             f"{int(rec['frame_index'])}, expected video {v} frame {f}; the shards are out of order")
        return rec

    def load(self, v: int, f: int):
        rec = self.record(v, f)
        name = self.video_name(v)
        src = rec["path"].decode("utf-8", "replace") if isinstance(rec["path"], bytes) else str(rec["path"])
        where = f"record {self.record_index(v, f)} of {self.path} (source {src})"
        if not bool(rec["valid"]):
            raise CorruptFrameError(name, f, where, "the frame is stored as not valid")
        data = rec["image"]
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if len(data) else None
        c = self.crop_size
        if img is None or img.shape != (c, c, 3):
            raise CorruptFrameError(name, f, where, "cannot decode the stored pre-crop"
                                    if img is None else f"stored pre-crop has shape {img.shape}, expected {(c, c, 3)}")
        return img, np.asarray(rec["box"], np.float32), np.asarray(rec["pad"], np.float32)

    def __repr__(self) -> str:
        return f"RecordFrames({self.path}, {len(self.videos)} videos, crop {self.crop_size})"
