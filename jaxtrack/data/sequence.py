"""The :class:`Sequence` record and readers for OTB-layout folders and video files.

Conventions (DESIGN.md §3, §8):

* Frames are ``H x W x 3`` ``uint8`` **BGR** arrays (OpenCV order, as pysot / video_analyst use).
* Boxes are ``[x, y, w, h]`` float64, **0-based**, in frame pixels. OTB's ``groundtruth_rect.txt`` files are
  1-based; readers subtract 1 from ``x`` and ``y``. Rows may be NaN where the target is unknown (LaSOT).
* Frames are read lazily: a :class:`Sequence` holds file names, never pixels.
  :meth:`Sequence.iter_chunks` yields bounded-size batches for whole-sequence work.
* Bad input raises an error that names the file / sequence / frame and says what is wrong.

Frame conversion done by :func:`read_frame` (documented, deliberate):

* grayscale (2-D, or one channel) -> replicated to 3 BGR channels;
* 4-channel BGRA -> the alpha channel is **dropped** (not composited);
* 16-bit (or any non-``uint8``) images -> ``ValueError`` (no silent rescaling).
* Images are decoded with ``IMREAD_UNCHANGED``, so EXIF orientation tags are *not* applied.

Box-file conventions (:func:`read_boxes`, :func:`load_video`): files named ``groundtruth_rect*.txt`` follow OTB
(1-based); every other box file is read as 0-based unless ``one_based=`` says otherwise. :func:`write_boxes`
always writes 0-based boxes (pysot's result layout). The box-file functions live in :mod:`jaxtrack.data.boxes`
and are re-exported here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from jaxtrack.data.boxes import read_boxes, validate_box, write_boxes  # re-exported

__all__ = [
    "Sequence",
    "read_frame",
    "read_boxes",
    "load_otb_folder",
    "load_video",
    "validate_box",
    "write_boxes",
    "IMAGE_EXTENSIONS",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

# OTB sequences whose ground truth starts at a later image than the first one in the official download
# (OTB toolkit: ``SaveSequenceConfig('David', ..., '1:770', ..., '300:770')``). Used only when the folder has
# more images than GT lines; a folder that holds exactly the annotated images is mapped in order.
_OTB_GT_START_FRAME = {"David": 300}


# ----------------------------------------------------------------------------------------------- frames


def read_frame(path: str | os.PathLike) -> np.ndarray:
    """Read one image as an ``H x W x 3`` ``uint8`` BGR array.

    Grayscale images are converted to BGR and BGRA images lose their alpha channel; 16-bit or other
    non-8-bit images raise ``ValueError``. A missing file raises ``FileNotFoundError``, an undecodable one
    ``ValueError``; both name the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        # np.fromfile + imdecode also works for non-ASCII paths (cv2.imread does not on every platform).
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ValueError(f"cannot read image file {path}: {e}") from e
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ValueError(f"cannot decode image file {path} (empty, truncated or not an image)")
    if img.dtype != np.uint8:
        bits = "16-bit" if img.dtype == np.uint16 else f"dtype {img.dtype}"
        raise ValueError(f"unsupported {bits} image {path}: only 8-bit images are supported")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif not (img.ndim == 3 and img.shape[2] == 3):
        raise ValueError(f"unsupported image layout {img.shape} in {path}")
    return np.ascontiguousarray(img)


def _size_mismatch(seq_name: str, index: int, expected: tuple[int, int], got: tuple[int, int], where: str):
    return ValueError(
        f"sequence {seq_name!r}: frame {index} ({where}) has size {got[0]}x{got[1]} (HxW) but the sequence's "
        f"first frame is {expected[0]}x{expected[1]}; frame size must not change inside a sequence"
    )


# --------------------------------------------------------------------------------------------- Sequence


class _FrozenMap(Mapping):
    """A read-only, picklable mapping (``types.MappingProxyType`` cannot be pickled)."""

    __slots__ = ("_data",)

    def __init__(self, data=()):
        self._data = dict(data)

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)

    def __getstate__(self):
        return self._data

    def __setstate__(self, state):
        self._data = state


@dataclasses.dataclass(frozen=True, eq=False)
class Sequence:
    """One tracking sequence: where its frames are, and its ground truth.

    Exactly one of ``frame_paths`` (image files, in order) and ``video_path`` is set.
    ``ground_truth`` is ``[N, 4]`` float64 ``x, y, w, h`` 0-based (``N == num_frames``), or ``[0, 4]`` when no
    ground truth is known. ``video_num_frames`` is the number of frames used from ``video_path``.

    Optional per-dataset annotations (all default to "not given", so plain sequences need none of them):

    * ``attributes``: sequence-level labels, e.g. OTB's ``("IV", "SV", ...)``; GOT-10k's classes as
      ``"object_class=<value>"`` etc.
    * ``polygons``: ``[N, 8]`` float64 VOT regions ``x1, y1, ..., x4, y4`` in the coordinates of the VOT file,
      used as-is (as pysot does); ``ground_truth`` then holds their axis-aligned min/max rectangles. ``None``
      for datasets without polygons.
    * ``tags``: per-frame boolean arrays ``[N]`` by name (VOT ``camera_motion``, ``illum_change``,
      ``motion_change``, ``size_change``, ``occlusion``; LaSOT ``full_occlusion``, ``out_of_view``; GOT-10k
      ``absence``, ``cut_by_image``). Read-only mapping.
    * ``visible``: ``[N]`` bool, whether the target is visible in the frame (LaSOT: not full occlusion and not
      out of view; GOT-10k: not absent; UAV123: ground-truth row not NaN), or ``None`` when the dataset does
      not say.
    * ``meta``: anything else the dataset records (read-only mapping), e.g. ``"dataset"``, GOT-10k's
      ``meta_info.ini`` keys, GOT-10k ``"cover"`` levels (int ``[N]``), VOT ``"width"``/``"height"``.
    """

    name: str
    frame_paths: tuple[str, ...] | None
    video_path: str | None
    ground_truth: np.ndarray
    attributes: tuple[str, ...] = ()
    video_num_frames: int | None = None
    polygons: np.ndarray | None = None
    tags: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    visible: np.ndarray | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if (self.frame_paths is None) == (self.video_path is None):
            raise ValueError(f"sequence {self.name!r}: give exactly one of frame_paths and video_path")
        if self.frame_paths is not None:
            object.__setattr__(self, "frame_paths", tuple(os.fspath(p) for p in self.frame_paths))
        else:
            object.__setattr__(self, "video_path", os.fspath(self.video_path))
            if self.video_num_frames is None or self.video_num_frames < 0:
                raise ValueError(f"sequence {self.name!r}: video_num_frames is required for a video")
        gt = np.asarray(self.ground_truth, dtype=np.float64)
        if gt.size == 0:
            gt = gt.reshape(0, 4)
        if gt.ndim != 2 or gt.shape[1] != 4:
            raise ValueError(f"sequence {self.name!r}: ground_truth must have shape [N, 4], got {gt.shape}")
        if gt.shape[0] not in (0, self.num_frames):
            raise ValueError(
                f"sequence {self.name!r}: {gt.shape[0]} ground-truth rows for {self.num_frames} frames"
            )
        gt = gt.copy()
        gt.flags.writeable = False
        object.__setattr__(self, "ground_truth", gt)
        object.__setattr__(self, "attributes", tuple(self.attributes))
        n = self.num_frames
        if self.polygons is not None:
            poly = np.array(self.polygons, dtype=np.float64)
            if poly.size == 0:
                poly = poly.reshape(0, 8)
            if poly.ndim != 2 or poly.shape[1] != 8 or poly.shape[0] != n:
                raise ValueError(f"sequence {self.name!r}: polygons must have shape [{n}, 8], got {poly.shape}")
            poly.flags.writeable = False
            object.__setattr__(self, "polygons", poly)
        tags = {}
        for key, val in dict(self.tags).items():
            arr = np.asarray(val)
            if arr.shape != (n,):
                raise ValueError(f"sequence {self.name!r}: tag {key!r} must have shape [{n}], got {arr.shape}")
            if arr.dtype != np.bool_:
                if not np.all((arr == 0) | (arr == 1)):
                    raise ValueError(f"sequence {self.name!r}: tag {key!r} must hold only 0/1 values")
                arr = arr.astype(bool)
            else:
                arr = arr.copy()
            arr.flags.writeable = False
            tags[str(key)] = arr
        object.__setattr__(self, "tags", _FrozenMap(tags))
        if self.visible is not None:
            vis = np.array(self.visible)
            if vis.shape != (n,):
                raise ValueError(f"sequence {self.name!r}: visible must have shape [{n}], got {vis.shape}")
            vis = vis.astype(bool)
            vis.flags.writeable = False
            object.__setattr__(self, "visible", vis)
        object.__setattr__(self, "meta", _FrozenMap(self.meta))

    # -- basic properties

    @property
    def num_frames(self) -> int:
        if self.frame_paths is not None:
            return len(self.frame_paths)
        return int(self.video_num_frames)

    def __len__(self) -> int:
        return self.num_frames

    def head(self, n: int) -> Sequence:
        """The first ``n`` frames (every per-frame field cut to match; the same sequence if it is not longer)."""
        if n < 1:
            raise ValueError(f"sequence {self.name!r}: head needs n >= 1, got {n}")
        if n >= self.num_frames:
            return self
        changes: dict[str, Any] = {"ground_truth": self.ground_truth[:n] if self.has_ground_truth else self.ground_truth,
                                   "tags": {k: v[:n] for k, v in self.tags.items()}}
        if self.frame_paths is not None:
            changes["frame_paths"] = self.frame_paths[:n]
        else:
            changes["video_num_frames"] = n
        if self.polygons is not None:
            changes["polygons"] = self.polygons[:n]
        if self.visible is not None:
            changes["visible"] = self.visible[:n]
        return dataclasses.replace(self, **changes)

    @property
    def has_ground_truth(self) -> bool:
        return self.ground_truth.shape[0] > 0

    @property
    def init_box(self) -> np.ndarray:
        """First ground-truth row (0-based ``x, y, w, h``)."""
        if not self.has_ground_truth:
            raise ValueError(f"sequence {self.name!r} has no ground truth; give the initial box explicitly")
        return self.ground_truth[0].copy()

    @functools.cached_property
    def frame_size(self) -> tuple[int, int]:
        """``(H, W)`` of the first frame (read once, lazily)."""
        if self.num_frames == 0:
            raise ValueError(f"sequence {self.name!r} has no frames")
        if self.frame_paths is not None:
            img = read_frame(self.frame_paths[0])
        else:
            cap = self._open_video()
            try:
                img = self._read_video_frame(cap, 0)
            finally:
                cap.release()
        return int(img.shape[0]), int(img.shape[1])

    # -- frame access

    def _check_index(self, i: int) -> int:
        n = self.num_frames
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"frame index must be an int, got {type(i).__name__}")
        j = int(i) + n if i < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"sequence {self.name!r}: frame index {i} out of range for {n} frames")
        return j

    def _check_size(self, img: np.ndarray, i: int, where: str) -> np.ndarray:
        size = (int(img.shape[0]), int(img.shape[1]))
        if size != self.frame_size:
            raise _size_mismatch(self.name, i, self.frame_size, size, where)
        return img

    def _open_video(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.video_path)
        if not cap.isOpened():
            raise ValueError(f"sequence {self.name!r}: cannot open video file {self.video_path}")
        return cap

    def _read_video_frame(self, cap: cv2.VideoCapture, i: int) -> np.ndarray:
        ok, img = cap.read()
        if not ok or img is None:
            raise ValueError(
                f"sequence {self.name!r}: cannot read frame {i} from video {self.video_path} "
                f"(expected {self.num_frames} frames)"
            )
        if img.ndim == 2 or img.shape[2] == 1:
            img = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        return np.ascontiguousarray(img)

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as ``H x W x 3`` uint8 BGR (negative indices count from the end).

        For a video this seeks with ``CAP_PROP_POS_FRAMES``, reading forward from the start when the
        container does not support seeking; prefer :meth:`iter_chunks` for sequential access.
        """
        j = self._check_index(i)
        if self.frame_paths is not None:
            return self._check_size(read_frame(self.frame_paths[j]), j, self.frame_paths[j])
        cap = self._open_video()
        try:
            if j > 0 and not (cap.set(cv2.CAP_PROP_POS_FRAMES, j) and int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == j):
                cap.release()
                cap = self._open_video()
                for k in range(j):
                    if not cap.grab():
                        raise ValueError(
                            f"sequence {self.name!r}: video {self.video_path} ended at frame {k}, "
                            f"expected {self.num_frames} frames"
                        )
            img = self._read_video_frame(cap, j)
        finally:
            cap.release()
        return self._check_size(img, j, self.video_path)

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Every frame in order, one at a time."""
        for chunk in self.iter_chunks(1):
            yield chunk[0]

    def iter_chunks(self, chunk_size: int) -> Iterator[np.ndarray]:
        """Yield consecutive frames as ``[n, H, W, 3]`` uint8 arrays, ``n <= chunk_size``.

        Lazy: at most one chunk is in memory. A video is decoded sequentially with one ``cv2.VideoCapture``.
        A frame whose size differs from the first frame raises ``ValueError`` naming the sequence, the frame
        index and both sizes.
        """
        chunk_size = int(chunk_size)
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        n = self.num_frames
        if n == 0:
            return
        h, w = self.frame_size
        if self.frame_paths is not None:
            for start in range(0, n, chunk_size):
                stop = min(n, start + chunk_size)
                out = np.empty((stop - start, h, w, 3), dtype=np.uint8)
                for k in range(start, stop):
                    out[k - start] = self._check_size(read_frame(self.frame_paths[k]), k, self.frame_paths[k])
                yield out
            return
        cap = self._open_video()
        try:
            for start in range(0, n, chunk_size):
                stop = min(n, start + chunk_size)
                out = np.empty((stop - start, h, w, 3), dtype=np.uint8)
                for k in range(start, stop):
                    out[k - start] = self._check_size(self._read_video_frame(cap, k), k, self.video_path)
                yield out
        finally:
            cap.release()

    def __repr__(self) -> str:
        src = f"{len(self.frame_paths)} images" if self.frame_paths is not None else f"video {self.video_path}"
        return f"Sequence(name={self.name!r}, {src}, num_frames={self.num_frames}, gt_rows={len(self.ground_truth)})"


# ------------------------------------------------------------------------------------------- OTB folders


def _natural_key(name: str):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


def _list_images(img_dir: Path) -> list[Path]:
    files = [p for p in img_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
             and not p.name.startswith(".")]
    if all(p.stem.isdigit() for p in files):
        files.sort(key=lambda p: (int(p.stem), p.name))
        nums = [int(p.stem) for p in files]
        dups = sorted({n for n in nums if nums.count(n) > 1}) if len(set(nums)) != len(nums) else []
        if dups:
            raise ValueError(f"{img_dir}: several image files share the frame number(s) {dups[:10]}")
        if files:
            missing = sorted(set(range(nums[0], nums[-1] + 1)) - set(nums))
            if missing:
                raise ValueError(
                    f"{img_dir}: image numbers {nums[0]}..{nums[-1]} have gaps, missing {missing[:10]}"
                    f"{' ...' if len(missing) > 10 else ''} ({len(missing)} missing); frames and ground truth "
                    f"would no longer line up"
                )
    else:
        files.sort(key=lambda p: _natural_key(p.name))
    return files


def _find_gt_file(folder: Path) -> Path | None:
    p = folder / "groundtruth_rect.txt"
    if p.is_file():
        return p
    # OTB's two-target sequences (Jogging, Skating2) ship groundtruth_rect.1.txt / .2.txt; the folder name
    # then ends in -1 / -2 (Jogging-2).
    m = re.fullmatch(r".*-(\d+)", folder.name)
    if m and (folder / f"groundtruth_rect.{m.group(1)}.txt").is_file():
        return folder / f"groundtruth_rect.{m.group(1)}.txt"
    return None


def load_otb_folder(
    path: str | os.PathLike,
    name: str | None = None,
    *,
    require_gt: bool = True,
    start_frame: int | None = None,
) -> Sequence:
    """Load an OTB-layout folder: ``<path>/img/NNNN.jpg|png`` + ``<path>/groundtruth_rect.txt``.

    * Images are sorted by their number (natural order when names are not plain numbers); duplicate
      numbers or gaps in the numbering are errors. Without an ``img/`` folder, images in ``path`` are used.
    * Ground truth is 1-based ``x,y,w,h`` (comma, tab or whitespace separated) and returned 0-based.
    * Same number of GT lines as images: line ``i`` belongs to the ``i``-th image in sorted order, whatever
      the first file number (David here: files 0300..0770, 471 lines).
    * Fewer GT lines than images: the sequence is the annotated frames only, as the OTB toolkit does. They
      start at file number ``start_frame`` if given, else at OTB's start for known sequences (David: 300),
      else at the first image (Football1: 81 images, 74 lines -> the first 74 frames).
    * More GT lines than images: ``ValueError``.
    * No ground-truth file: ``FileNotFoundError`` unless ``require_gt=False``; then ``ground_truth`` has
      shape ``[0, 4]`` and the initial box must be given by the caller.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"sequence folder not found: {folder}")
    name = name if name is not None else folder.resolve().name
    img_dir = folder / "img" if (folder / "img").is_dir() else folder
    images = _list_images(img_dir)
    if not images:
        raise ValueError(
            f"no images ({', '.join('*' + e for e in IMAGE_EXTENSIONS)}) in sequence folder {img_dir}"
        )

    gt_path = _find_gt_file(folder)
    if gt_path is None:
        if require_gt:
            raise FileNotFoundError(
                f"sequence {name!r}: ground-truth file {folder / 'groundtruth_rect.txt'} not found "
                f"(pass require_gt=False and give the initial box explicitly)"
            )
        return Sequence(name, tuple(str(p) for p in images), None, np.zeros((0, 4)))

    gt = read_boxes(gt_path, one_based=True)
    n_gt, n_img = len(gt), len(images)
    if n_gt > n_img:
        raise ValueError(
            f"sequence {name!r}: {gt_path} has {n_gt} ground-truth lines but {img_dir} holds only {n_img} "
            f"images; the ground truth cannot be matched to the frames"
        )
    if n_gt < n_img:
        start = start_frame if start_frame is not None else _OTB_GT_START_FRAME.get(name)
        first = 0
        if start is not None:
            stems = [p.stem for p in images]
            idx = [i for i, s in enumerate(stems) if s.isdigit() and int(s) == int(start)]
            if not idx:
                raise ValueError(f"sequence {name!r}: start frame {start} not found among the images in {img_dir}")
            first = idx[0]
            if first + n_gt > n_img:
                raise ValueError(
                    f"sequence {name!r}: {n_gt} ground-truth lines from frame {start} run past the last "
                    f"image ({images[-1].name}) in {img_dir}"
                )
        images = images[first:first + n_gt]
    elif start_frame is not None and images[0].stem.isdigit() and int(images[0].stem) != int(start_frame):
        raise ValueError(
            f"sequence {name!r}: start_frame={start_frame} given but the {n_img} images (= GT lines) start at "
            f"{images[0].name}"
        )

    b0 = gt[0]
    if not (np.all(np.isfinite(b0)) and b0[2] > 0 and b0[3] > 0):
        raise ValueError(
            f"{gt_path}: line 1 (the initial box) must be finite with positive width and height, "
            f"got 1-based {[b0[0] + 1, b0[1] + 1, b0[2], b0[3]]}"
        )
    return Sequence(name, tuple(str(p) for p in images), None, gt)


# ------------------------------------------------------------------------------------------------ video


def load_video(
    path: str | os.PathLike,
    boxes_path: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    one_based: bool | None = None,
) -> Sequence:
    """A :class:`Sequence` over the frames of a video file (decoded with ``cv2.VideoCapture``).

    The frame count is found by walking the stream once (``grab``), not trusted from the container header.
    ``boxes_path`` (optional) follows :func:`read_boxes`: a file named ``groundtruth_rect*.txt`` is OTB ground
    truth (1-based), any other box file is 0-based; ``one_based`` overrides. As for OTB folders, fewer box lines
    than frames restrict the sequence to the annotated (first) frames; more lines than frames is an error.
    """
    vpath = Path(path)
    if not vpath.is_file():
        raise FileNotFoundError(f"video file not found: {vpath}")
    name = name if name is not None else vpath.stem
    cap = cv2.VideoCapture(str(vpath))
    try:
        if not cap.isOpened():
            raise ValueError(f"cannot open video file {vpath} (unknown format or codec)")
        n = 0
        while cap.grab():
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise ValueError(f"video file {vpath} contains no decodable frames")
    gt = np.zeros((0, 4))
    if boxes_path is not None:
        gt = read_boxes(boxes_path, one_based=one_based)
        if len(gt) > n:
            raise ValueError(
                f"sequence {name!r}: {boxes_path} has {len(gt)} box lines but video {vpath} has {n} frames"
            )
        n = len(gt)
    return Sequence(name, None, str(vpath), gt, video_num_frames=n)
