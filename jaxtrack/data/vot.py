"""VOT sequences (short-term VOT2016-2019 layout) and region helpers.

Layout read by :func:`load_vot_folder`::

    <seq>/color/00000001.jpg ...     (newer vot-toolkit downloads)   or   <seq>/00000001.jpg ...
    <seq>/groundtruth.txt            one region per line: 8 values (polygon x1,y1,...,x4,y4) or 4 (x,y,w,h)
    <seq>/<tag>.tag                  one 0/1 line per frame (camera_motion, illum_change, ...)

Conventions (decided here, documented in the :class:`~jaxtrack.data.sequence.Sequence` docstring):

* Region coordinates are used **as written** in ``groundtruth.txt`` (no 1-based shift), as pysot's toolkit and
  tracker test script do; they are treated as 0-based frame coordinates.
* A 4-value rectangle line ``x, y, w, h`` becomes the polygon pysot's ``tools/test.py`` builds from it,
  ``[x, y,  x, y+h-1,  x+w-1, y+h-1,  x+w-1, y]`` (pixel-inclusive corners), so that overlaps and the
  re-initialisation box computed from :attr:`Sequence.polygons` match pysot exactly (VOT2018 ``conduction1``
  is annotated this way). Its ``ground_truth`` row is the rectangle as written.
* ``ground_truth`` rows of polygon lines are :func:`polygon_to_aabb` (min/max corners, ``w = x_max - x_min``).
* Tag files: missing file -> all 0; a shorter file is padded with 0 (VOT omits trailing zeros); a longer file,
  or a value other than 0/1, is an error naming the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from jaxtrack.data.sequence import Sequence, _list_images

__all__ = [
    "VOT_TAGS",
    "rect_to_polygon",
    "polygon_to_aabb",
    "get_axis_aligned_bbox",
    "vot_init_box",
    "read_regions",
    "read_tag_file",
    "load_vot_folder",
]

#: The per-frame tags of the VOT2016-2019 short-term datasets (pysot's VOT2018 JSON keys).
VOT_TAGS = ("camera_motion", "illum_change", "motion_change", "size_change", "occlusion")

_SPLIT_RE = re.compile(r"[,\s]+")


# ---------------------------------------------------------------------------------------------- regions


def rect_to_polygon(rect) -> np.ndarray:
    """``[x, y, w, h]`` (or ``[N, 4]``) -> pysot's polygon ``[x, y, x, y+h-1, x+w-1, y+h-1, x+w-1, y]``.

    This is the conversion pysot's ``tools/test.py`` applies to 4-value VOT regions before computing overlaps
    and the initialisation box; :func:`get_axis_aligned_bbox` of the result gives back ``w`` and ``h``.
    """
    r = np.asarray(rect, dtype=np.float64)
    if r.shape[-1] != 4:
        raise ValueError(f"rect_to_polygon: expected 4 values x,y,w,h, got shape {r.shape}")
    x, y, w, h = r[..., 0], r[..., 1], r[..., 2], r[..., 3]
    return np.stack([x, y, x, y + h - 1, x + w - 1, y + h - 1, x + w - 1, y], axis=-1)


def polygon_to_aabb(poly) -> np.ndarray:
    """Axis-aligned bounding rectangle ``[x_min, y_min, x_max - x_min, y_max - y_min]`` of a polygon.

    Accepts ``[2k]`` or ``[N, 2k]`` arrays of ``x1, y1, x2, y2, ...`` values; returns ``[4]`` or ``[N, 4]``.
    NaN vertices give NaN rows.
    """
    p = np.asarray(poly, dtype=np.float64)
    if p.shape[-1] < 6 or p.shape[-1] % 2:
        raise ValueError(f"polygon_to_aabb: expected an even number (>= 6) of values x1,y1,x2,y2,..., "
                         f"got shape {p.shape}")
    xs, ys = p[..., 0::2], p[..., 1::2]
    x1, x2 = xs.min(axis=-1), xs.max(axis=-1)
    y1, y2 = ys.min(axis=-1), ys.max(axis=-1)
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=-1)


def get_axis_aligned_bbox(region) -> tuple[float, float, float, float]:
    """pysot's area-preserving axis-aligned box ``(cx, cy, w, h)`` of a VOT region.

    8 values (polygon ``p1..p4``): ``cx, cy`` = mean of the 4 points; ``x1, x2, y1, y2`` = min/max of the
    coordinates; ``A1 = |p1 - p2| * |p2 - p3|`` (the polygon's area for a rectangle-like region),
    ``A2 = (x2 - x1) * (y2 - y1)``; ``s = sqrt(A1 / A2)``; ``w = s * (x2 - x1) + 1``, ``h = s * (y2 - y1) + 1``.

    4 values ``x, y, w, h``: ``cx = x + w / 2``, ``cy = y + h / 2``, ``w``, ``h`` (pysot's other branch).

    A degenerate polygon (zero-area bounding box) raises ``ValueError`` (pysot would return NaN/inf).
    See :func:`vot_init_box` for the box a tracker is initialised with.
    """
    r = np.asarray(region, dtype=np.float64).reshape(-1)
    if r.size == 8:
        xs, ys = r[0::2], r[1::2]
        cx, cy = float(np.mean(xs)), float(np.mean(ys))
        x1, x2 = float(xs.min()), float(xs.max())
        y1, y2 = float(ys.min()), float(ys.max())
        a1 = float(np.linalg.norm(r[0:2] - r[2:4]) * np.linalg.norm(r[2:4] - r[4:6]))
        a2 = (x2 - x1) * (y2 - y1)
        if not (np.isfinite(a1) and np.isfinite(a2)) or a2 <= 0:
            raise ValueError(f"get_axis_aligned_bbox: degenerate or non-finite polygon {r.tolist()}")
        s = float(np.sqrt(a1 / a2))
        return cx, cy, s * (x2 - x1) + 1.0, s * (y2 - y1) + 1.0
    if r.size == 4:
        x, y, w, h = (float(v) for v in r)
        return x + w / 2.0, y + h / 2.0, w, h
    raise ValueError(f"get_axis_aligned_bbox: expected 8 (polygon) or 4 (x,y,w,h) values, got {r.size}")


def vot_init_box(region) -> np.ndarray:
    """The ``[x, y, w, h]`` box pysot initialises (and re-initialises) a tracker with on VOT:
    ``(cx, cy, w, h) = get_axis_aligned_bbox(region)``, box ``[cx - (w-1)/2, cy - (h-1)/2, w, h]``."""
    cx, cy, w, h = get_axis_aligned_bbox(region)
    return np.array([cx - (w - 1.0) / 2.0, cy - (h - 1.0) / 2.0, w, h], dtype=np.float64)


def _regions_from_rows(rows, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 8 (polygon) or 4 (rectangle) numbers, mixed -> (polygons [N, 8], ground truth [N, 4])."""
    n = len(rows)
    sizes = np.array([len(r) for r in rows], dtype=np.int64)
    bad = np.flatnonzero((sizes != 8) & (sizes != 4))
    if bad.size:
        raise ValueError(f"{where}: region {bad[0] + 1} has {sizes[bad[0]]} values; expected 8 (polygon) or 4 "
                         f"(x,y,w,h)")
    polys = np.empty((n, 8), dtype=np.float64)
    gt = np.empty((n, 4), dtype=np.float64)
    for size in (8, 4):
        idx = np.flatnonzero(sizes == size)
        if not idx.size:
            continue
        try:
            vals = np.array([rows[i] for i in idx], dtype=np.float64).reshape(-1, size)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: regions must be lists of numbers ({e})") from None
        if size == 8:
            polys[idx], gt[idx] = vals, polygon_to_aabb(vals)
        else:
            polys[idx], gt[idx] = rect_to_polygon(vals), vals
    return polys, gt


def read_regions(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a VOT ``groundtruth.txt``: returns ``(polygons [N, 8], ground_truth [N, 4])``.

    Lines hold 8 values (polygon) or 4 (rectangle ``x,y,w,h``, converted with :func:`rect_to_polygon`),
    separated by commas (tabs/spaces accepted). Coordinates are used as written (see the module docstring).
    VOT2020+ mask regions (``m...``) are not supported and raise ``ValueError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VOT ground-truth file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"VOT ground-truth file {path} is not a text file: {e}") from e
    while lines and not lines[-1].strip():
        lines.pop()
    rows = []
    for lineno, line in enumerate(lines, start=1):
        s = line.strip()
        if s.startswith("m"):
            raise ValueError(f"{path}: line {lineno} is a VOT mask region, which is not supported (VOT2016-2019 "
                             f"polygon/rectangle regions only)")
        parts = [p for p in _SPLIT_RE.split(s) if p]
        try:
            if len(parts) not in (4, 8):
                raise ValueError(f"expected 8 (polygon) or 4 (x,y,w,h) values, found {len(parts)}")
            rows.append(np.array([float(p) for p in parts], dtype=np.float64))
        except ValueError as e:
            raise ValueError(f"{path}: line {lineno} does not parse as a region ({e}): {line!r}") from None
    if not rows:
        raise ValueError(f"VOT ground-truth file {path} is empty")
    return _regions_from_rows(rows, str(path))


def read_tag_file(path: str | os.PathLike, num_frames: int) -> np.ndarray:
    """Read a VOT per-frame tag file (one ``0``/``1`` per line) into a ``[num_frames]`` bool array.

    A missing file gives all ``False``; a shorter file is padded with ``False``; a longer file or any value
    other than 0/1 raises ``ValueError`` naming the file.
    """
    path = Path(path)
    out = np.zeros(int(num_frames), dtype=bool)
    if not path.is_file():
        return out
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) > num_frames:
        raise ValueError(f"tag file {path} has {len(lines)} lines but the sequence has {num_frames} frames")
    for i, line in enumerate(lines):
        s = line.strip()
        if s in ("0", ""):
            continue
        if s == "1":
            out[i] = True
            continue
        try:
            v = float(s)
        except ValueError:
            v = None
        if v not in (0.0, 1.0):
            raise ValueError(f"{path}: line {i + 1} must be 0 or 1, got {line!r}")
        out[i] = v == 1.0
    return out


def vot_image_dir(folder: Path) -> Path:
    """``<seq>/color`` when it exists, else ``<seq>`` itself."""
    color = folder / "color"
    return color if color.is_dir() else folder


def load_vot_folder(path: str | os.PathLike, name: str | None = None, *, dataset: str = "vot") -> Sequence:
    """Load one VOT sequence folder (layout in the module docstring) into a :class:`Sequence`.

    ``polygons`` holds the regions, ``ground_truth`` their axis-aligned rectangles, ``tags`` the five VOT tags
    (all-False when their file is missing) plus any other ``*.tag`` / ``*.label`` files found. The number of
    regions must equal the number of images; otherwise ``ValueError`` names ``groundtruth.txt``.
    ``meta["dataset"]`` is ``dataset``.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"VOT sequence folder not found: {folder}")
    name = name if name is not None else folder.resolve().name
    img_dir = vot_image_dir(folder)
    images = _list_images(img_dir)
    if not images:
        raise ValueError(f"VOT sequence {name!r}: no images in {img_dir}")
    gt_path = folder / "groundtruth.txt"
    polys, gt = read_regions(gt_path)
    if len(polys) != len(images):
        raise ValueError(
            f"VOT sequence {name!r}: {gt_path} has {len(polys)} regions but {img_dir} holds {len(images)} images"
        )
    n = len(images)
    tags = {t: np.zeros(n, dtype=bool) for t in VOT_TAGS}  # a missing tag file means "never"
    for p in sorted(folder.iterdir()):
        if p.suffix in (".tag", ".label") and p.is_file():  # older VOT releases used .label
            tags[p.stem] = tags.get(p.stem, np.zeros(n, dtype=bool)) | read_tag_file(p, n)
    _check_init_region(polys[0], gt_path, name)
    return Sequence(name, tuple(str(p) for p in images), None, gt, polygons=polys, tags=tags,
                    meta={"dataset": dataset})


def _check_init_region(poly: np.ndarray, where, name: str) -> None:
    if not np.all(np.isfinite(poly)):
        raise ValueError(f"VOT sequence {name!r}: the first region in {where} is not finite: {poly.tolist()}")
    aabb = polygon_to_aabb(poly)
    if aabb[2] <= 0 or aabb[3] <= 0:
        raise ValueError(f"VOT sequence {name!r}: the first region in {where} is degenerate: {poly.tolist()}")
