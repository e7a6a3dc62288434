"""Tracking benchmark readers: :func:`load_dataset` turns a dataset folder into a list of :class:`Sequence`.

Reading is lazy: files are listed and annotation text files parsed, no image is decoded. Every box is
returned **0-based** ``[x, y, w, h]`` (project convention); the per-dataset conventions are:

============  ===========================================================  =====================================
dataset       layout                                                       ground truth as stored / what we do
============  ===========================================================  =====================================
otb100        ``<Seq>/img/NNNN.jpg`` + ``groundtruth_rect.txt``            1-based (OTB toolkit) -> minus 1
              (two targets: ``groundtruth_rect.1.txt`` / ``.2.txt`` ->      separators: comma, tab or spaces
              ``<Seq>-1`` / ``<Seq>-2``)
lasot         ``<class>/<class>-N/img/NNNNNNNN.jpg`` (or flat               1-based (LaSOT authors: "the smallest
              ``<class>-N/...``), ``groundtruth.txt``,                      should be 1") -> minus 1
              ``full_occlusion.txt``, ``out_of_view.txt``
vot2018       ``<seq>/color/NNNNNNNN.jpg`` or ``<seq>/NNNNNNNN.jpg``,        used as written (as pysot does),
              ``groundtruth.txt`` (8-value polygons or 4-value rects),      see :mod:`jaxtrack.data.vot`
              ``*.tag``, optional ``list.txt``
got10k-*      ``<root>/{train,val}/<seq>/NNNNNNNN.jpg``,                    1-based (GOT-10k maintainers) ->
              ``groundtruth.txt``, ``absence.label``, ``cover.label``,      minus 1
              ``cut_by_image.label``, ``meta_info.ini``, ``list.txt``
uav123        ``data_seq/UAV123/<folder>/NNNNNN.jpg`` +                     1-based -> minus 1; NaN rows kept
              ``anno/UAV123/<seq>.txt``                                     (target absent: ``visible`` False)
synthetic     :func:`jaxtrack.data.synthetic.generate_dataset` folders     OTB layout, 1-based -> minus 1
otb-folder    any root of OTB-layout folders                               as otb100, but lenient (below)
============  ===========================================================  =====================================

pysot's annotation JSONs (``OTB100.json``, ``VOT2018.json``, ``UAV123.json``, ``LaSOT.json``, ...: one entry per
sequence with ``video_dir``, ``init_rect``, ``img_names`` relative to the dataset root, ``gt_rect`` and optional
``attr`` / VOT tag lists / ``absent`` / ``width`` / ``height``) can be given as ``annotations``; they copy the
datasets' text files unchanged, so the same shifts apply (VOT as written, every other dataset minus 1).

Frame sub-ranges:

* OTB (:data:`OTB_SUBRANGES`, image file numbers): David 300-770, Football1 1-74, Freeman3 1-460, Freeman4
  1-283, Diving 1-215 (got10k's ``OTB.__getitem__`` and the OTB toolkit's ``MakeSequenceConfig``), BlurCar1
  247-988, BlurCar3 3-359, BlurCar4 18-397 (their image folders start there; pytracking's OTB table), and
  Tiger1 6-354 with ground-truth lines 6-354 (the OTB toolkit omits the first 5 frames; pysot's OTB100.json has
  349 frames, pysot-toolkit issue #6; got10k keeps all 354). The ground-truth file either covers exactly the
  range (David: 471 lines for 0300..0770) or starts at the folder's first image (Tiger1: 354 lines); any
  other line count is an error naming the file.
* UAV123 (:data:`UAV123_SUBSEQUENCES`): the 51 sub-sequences cut from longer recordings (``bird1_1`` = frames
  1-253 of folder ``bird1`` ...), from the ``uav123.json`` table shipped with the got10k toolkit
  (``got10k/datasets/uav123.json``, MIT). Every other sequence uses folder ``<seq>``, frames ``1..`` one per
  annotation line. A pysot ``UAV123.json`` given as ``annotations`` takes precedence (it lists the images).

``otb100`` and ``synthetic`` are strict: a ground-truth file whose line count differs from the images (outside
the sub-range table) is an error. ``otb-folder`` follows :func:`~jaxtrack.data.sequence.load_otb_folder`:
fewer lines than images means the first frames are the annotated ones.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxtrack.data.sequence import Sequence, _list_images, _natural_key, read_boxes
from jaxtrack.data.vot import VOT_TAGS, _check_init_region, _regions_from_rows, load_vot_folder

__all__ = [
    "DATASET_NAMES",
    "OTB_SUBRANGES",
    "UAV123_SUBSEQUENCES",
    "load_dataset",
    "read_pysot_json",
]

DATASET_NAMES = ("otb100", "lasot", "vot2018", "got10k-val", "got10k-train", "uav123", "synthetic", "otb-folder")

#: OTB sequences evaluated on a range of image numbers (first, last), inclusive; keys lower-case folder names.
OTB_SUBRANGES: dict[str, tuple[int, int]] = {
    "david": (300, 770),
    "football1": (1, 74),
    "freeman3": (1, 460),
    "freeman4": (1, 283),
    "diving": (1, 215),
    "blurcar1": (247, 988),
    "blurcar3": (3, 359),
    "blurcar4": (18, 397),
    "tiger1": (6, 354),
}


def _uav_table() -> dict[str, tuple[str, int, int]]:
    # (sub-sequence prefix, folder, [(first, last) of part 1, part 2, ...]) -> name "<prefix>_<part>"
    parts = {
        "bird1": [(1, 253), (775, 1477), (1573, 2437)],
        "car1": [(1, 751), (751, 1627), (1627, 2629)],
        "car6": [(1, 487), (487, 1807), (1807, 2953), (2953, 3925), (3925, 4861)],
        "car8": [(1, 1357), (1357, 2575)],
        "car16": [(1, 415), (415, 1993)],
        "group1": [(1, 1333), (1333, 2515), (2515, 3925), (3925, 4873)],
        "group2": [(1, 907), (907, 1771), (1771, 2683)],
        "group3": [(1, 1567), (1567, 2827), (2827, 4369), (4369, 5527)],
        "person2": [(1, 1189), (1189, 2623)],
        "person4": [(1, 1501), (1501, 2743)],
        "person5": [(1, 877), (877, 2101)],
        "person7": [(1, 1249), (1249, 2065)],
        "person8": [(1, 1075), (1075, 1525)],
        "person12": [(1, 601), (601, 1621)],
        "person14": [(1, 847), (847, 1813), (1813, 2923)],
        "person17": [(1, 1501), (1501, 2347)],
        "person19": [(1, 1243), (1243, 2791), (2791, 4357)],
        "truck4": [(1, 577), (577, 1261)],
        "uav1": [(1, 1555), (1555, 2377), (2473, 3469)],
    }
    return {f"{folder}_{k}": (folder, a, b) for folder, rs in parts.items() for k, (a, b) in enumerate(rs, 1)}


#: UAV123 sub-sequences: name -> (image folder, first frame number, last frame number), inclusive.
UAV123_SUBSEQUENCES: dict[str, tuple[str, int, int]] = _uav_table()

_VOT_KEYS = ("vot2018",)
_SPLIT_RE = re.compile(r"[,\s]+")

Builder = Callable[[], Sequence]


# ------------------------------------------------------------------------------------------ entry point


def load_dataset(
    name: str,
    root: str | os.PathLike,
    sequences: Iterable[str] | None = None,
    annotations: str | os.PathLike | Mapping | None = None,
    progress: bool = False,
) -> list[Sequence]:
    """Load the sequences of a tracking benchmark found under ``root``.

    Args:
      name: one of :data:`DATASET_NAMES` (case-insensitive).
      root: the dataset folder (layouts in the module docstring). A root holding only some of the sequences is
        fine: those present are loaded.
      sequences: names to load, in this order; an unknown (or absent) name raises ``ValueError`` listing the
        available ones. ``None``: every available sequence (LaSOT: the test split, see below).
      annotations: a pysot-format JSON file (or its parsed dict) describing the sequences (then image paths,
        ground truth, attributes and tags come from it, relative to ``root``), or a list of sequence names
        (JSON list, ``.txt`` with one name per line, or a split JSON ``{"train": [...], "test": [...]}``, whose
        ``test`` list is used) that sets the default selection. For ``lasot`` without ``annotations`` the
        default selection is the test split of ``<shared data>/annotations/lasot_split.json`` when that file
        exists; explicit ``sequences`` may name any sequence present.
      progress: show a progress bar (tqdm) on stderr while reading annotation files.

    Returns a list of :class:`Sequence` (frames not decoded). Missing/corrupt annotation files, ground truth with
    the wrong number of lines, and a root without the expected structure raise ``FileNotFoundError`` /
    ``ValueError`` naming the file and the problem.
    """
    key = str(name).lower()
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{key}: dataset root folder not found: {root}")

    entries, default_names = None, None
    if annotations is not None:
        entries, default_names = _read_annotations(annotations)

    if entries is not None:
        available = _discover_json(entries, root, key, _annotation_source(annotations))
        if not available:
            raise ValueError(
                f"{key}: none of the {len(entries)} sequences of {_annotation_source(annotations)} has its "
                f"images under {root} (checked e.g. {root / _first_img_name(entries)})"
            )
    else:
        available = _DISCOVER[key](root)

    if default_names is None and key == "lasot" and entries is None:
        default_names = _default_lasot_split()

    if sequences is not None:
        wanted = list(dict.fromkeys(str(s) for s in ([sequences] if isinstance(sequences, str) else sequences)))
        unknown = [s for s in wanted if s not in available]
        if unknown:
            raise ValueError(f"{key} at {root}: unknown sequence name(s) {unknown}; "
                             f"available: {_list_names(list(available))}")
    elif default_names is not None:
        wanted = [s for s in default_names if s in available]
        if not wanted:
            raise ValueError(
                f"{key} at {root}: none of the {len(available)} sequences found ({_list_names(list(available))}) "
                f"is in the selected list of {len(default_names)} names; pass sequences=[...] to pick them"
            )
    else:
        wanted = list(available)

    it: Iterable[str] = wanted
    if progress:
        try:
            from tqdm import tqdm

            it = tqdm(wanted, desc=f"loading {key}", file=sys.stderr)
        except ImportError:  # pragma: no cover - tqdm is a dependency of the project
            pass
    return [available[s]() for s in it]


def _list_names(names: list[str], limit: int = 40) -> str:
    if not names:
        return "(none)"
    shown = ", ".join(names[:limit])
    return f"{shown} ... ({len(names) - limit} more, {len(names)} in all)" if len(names) > limit else shown


# ------------------------------------------------------------------------------------------ annotations


def _annotation_source(annotations) -> str:
    return str(annotations) if isinstance(annotations, (str, os.PathLike)) else "the given annotations"


def _first_img_name(entries: Mapping) -> str:
    for e in entries.values():
        if e.get("img_names"):
            return str(e["img_names"][0])
    return "?"


def _read_annotations(annotations) -> tuple[dict | None, list[str] | None]:
    """-> (pysot entries or None, default name list or None)."""
    src = _annotation_source(annotations)
    if isinstance(annotations, (str, os.PathLike)):
        path = Path(annotations)
        if not path.is_file():
            raise FileNotFoundError(f"annotation file not found: {path}")
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"annotation file {path} is not valid JSON: {e}") from None
        else:
            data = [ln.strip() for ln in text.splitlines() if ln.strip()]
    else:
        data = annotations
    if isinstance(data, Mapping):
        if data and all(isinstance(v, Mapping) for v in data.values()):
            bad = [k for k, v in data.items() if "img_names" not in v or "gt_rect" not in v]
            if bad:
                raise ValueError(f"{src}: entries {bad[:5]} lack 'img_names' / 'gt_rect' (pysot format expected)")
            return dict(data), None
        if "test" in data and isinstance(data["test"], list):
            return None, [str(s) for s in data["test"]]
        raise ValueError(f"{src}: expected a pysot annotation dict (name -> {{video_dir, img_names, gt_rect, ...}})"
                         f" or a split {{'train': [...], 'test': [...]}}, got keys {list(data)[:5]}")
    if isinstance(data, (list, tuple)) and all(isinstance(s, str) for s in data):
        return None, [str(s) for s in data]
    raise ValueError(f"{src}: unsupported annotation content of type {type(data).__name__}")


def _default_lasot_split() -> list[str] | None:
    from jaxtrack.paths import shared_data_dir

    path = shared_data_dir() / "annotations" / "lasot_split.json"
    if not path.is_file():
        return None
    _, names = _read_annotations(path)
    return names


def read_pysot_json(
    annotations: str | os.PathLike | Mapping,
    root: str | os.PathLike | None = None,
    dataset: str = "otb100",
) -> list[Sequence]:
    """Every sequence of a pysot-format annotation JSON, without touching the image files.

    ``root`` (default: the JSON file's folder) is prefixed to ``img_names``. ``dataset`` selects the coordinate
    convention: ``"vot2018"`` keeps coordinates as written (regions may be 8-value polygons or 4-value
    rectangles, ``polygons`` is filled), every other name subtracts 1 from x and y. VOT tag lists fill ``tags``
    (an empty list means all 0, a shorter list is padded with 0), ``attr`` fills ``attributes``, ``absent``
    (pysot LaSOT: 1 = scored frame) fills ``visible``, ``width``/``height`` go to ``meta``.
    """
    src = _annotation_source(annotations)
    key = str(dataset).lower()
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; known datasets: {', '.join(DATASET_NAMES)}")
    if root is None:
        if not isinstance(annotations, (str, os.PathLike)):
            raise ValueError("read_pysot_json: give root when passing parsed annotations")
        root = Path(annotations).parent
    entries, _ = _read_annotations(annotations)
    if entries is None:
        raise ValueError(f"{src} is a list of names, not pysot annotations")
    root = Path(root)
    return [_sequence_from_json(name, e, key, src, [str(root / p) for p in e["img_names"]])
            for name, e in entries.items()]


def _sequence_from_json(name: str, e: Mapping, key: str, src: str, frame_paths: list[str]) -> Sequence:
    where = f"{src} [{name!r}]"
    n = len(frame_paths)
    rows = e["gt_rect"]
    if len(rows) != n:
        raise ValueError(f"{where}: {len(rows)} gt_rect rows for {n} img_names")
    if n == 0:
        raise ValueError(f"{where}: no images")
    meta: dict[str, Any] = {"dataset": key}
    for k in ("width", "height"):
        if k in e:
            meta[k] = int(e[k])
    polygons = None
    if key in _VOT_KEYS:
        polygons, gt = _regions_from_rows(rows, where)
        _check_init_region(polygons[0], where, name)
    else:
        bad = [i + 1 for i, r in enumerate(rows) if not hasattr(r, "__len__") or len(r) != 4]
        if bad:
            raise ValueError(f"{where}: gt_rect rows {bad[:5]} do not have 4 values x,y,w,h")
        try:
            gt = np.array(rows, dtype=np.float64).reshape(n, 4)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: gt_rect rows must be lists of numbers ({err})") from None
        gt[:, :2] -= 1.0
        _check_init_box(gt[0], where, name)
    tags = {}
    for t in VOT_TAGS:
        if t in e:
            v = np.asarray(e[t], dtype=np.float64).reshape(-1)
            if v.size > n or not np.all((v == 0) | (v == 1)):
                raise ValueError(f"{where}: tag {t!r} must be at most {n} values of 0/1, got {v.size} values")
            tags[t] = np.pad(v, (0, n - v.size)).astype(bool)
    visible = None
    if "absent" in e:
        a = np.asarray(e["absent"], dtype=np.float64).reshape(-1)
        if a.size != n:
            raise ValueError(f"{where}: 'absent' has {a.size} values for {n} frames")
        visible = a == 1  # pysot scores the frames with absent == 1: the field is a visibility flag
    elif key == "uav123" or (polygons is None and np.isnan(gt).any()):
        visible = ~np.isnan(gt).any(axis=1)
    attrs = tuple(str(a) for a in e.get("attr", ()) or ())
    return Sequence(name, tuple(frame_paths), None, gt, attributes=attrs, polygons=polygons, tags=tags,
                    visible=visible, meta=meta)


def _discover_json(entries: Mapping, root: Path, key: str, src: str) -> dict[str, Builder]:
    """Sequences of a pysot JSON whose images are under ``root`` (first image decides, with fallbacks)."""
    transforms: list[Callable[[str], Path]] = [lambda s: root / s]
    if key in _VOT_KEYS:  # JSON says <seq>/color/N.jpg, the folder may be the older flat <seq>/N.jpg
        transforms.append(lambda s: root / Path(s).parent.parent / Path(s).name
                          if Path(s).parent.name == "color" else root / s)
    if key == "uav123":  # pysot's flattened layout vs the official data_seq/UAV123/<folder>/
        transforms.append(lambda s: root / "data_seq" / "UAV123" / s)
    out: dict[str, Builder] = {}
    listings: dict[Path, set[str]] = {}
    for name, e in entries.items():
        imgs = [str(s) for s in e["img_names"]]
        if not imgs:
            continue
        for tf in transforms:
            if tf(imgs[0]).is_file():
                out[name] = _json_builder(name, e, key, src, imgs, tf, listings)
                break
    return out


def _json_builder(name, e, key, src, imgs, tf, listings) -> Builder:
    def build() -> Sequence:
        paths = [tf(s) for s in imgs]
        missing = []
        for p in paths:
            d = p.parent
            if d not in listings:
                listings[d] = set(os.listdir(d)) if d.is_dir() else set()
            if p.name not in listings[d]:
                missing.append(p)
        if missing:
            raise FileNotFoundError(f"{key} sequence {name!r} ({src}): {len(missing)} of {len(paths)} image "
                                    f"files are missing, e.g. {missing[0]}")
        return _sequence_from_json(name, e, key, src, [str(p) for p in paths])

    return build


# ------------------------------------------------------------------------------------------ small readers


def _check_init_box(b: np.ndarray, where, name: str) -> None:
    if not (np.all(np.isfinite(b)) and b[2] > 0 and b[3] > 0):
        raise ValueError(f"sequence {name!r}: the first box in {where} (the initial box) must be finite with "
                         f"positive width and height, got 0-based {b.tolist()}")


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} file {path} is not a text file: {e}") from e


def _read_values(path: Path, n: int, what: str, allowed: Iterable[int] | None = (0, 1)) -> np.ndarray:
    """Integer values separated by commas/whitespace/newlines; exactly ``n`` of them, each in ``allowed``."""
    text = _read_text(path, what).strip()
    parts = [p for p in _SPLIT_RE.split(text) if p] if text else []
    try:
        vals = np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError:
        bad = next(p for p in parts if not _is_float(p))
        raise ValueError(f"{what} file {path}: value {bad!r} is not a number") from None
    if vals.size != n:
        raise ValueError(f"{what} file {path} has {vals.size} values but the sequence has {n} frames")
    if np.any(vals != np.round(vals)) or (allowed is not None and not np.all(np.isin(vals, list(allowed)))):
        raise ValueError(f"{what} file {path}: values must be integers in {tuple(allowed or ())}")
    return vals.astype(np.int64)


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _boxes_for_images(gt_path: Path, n_images: int, name: str, img_dir: Path) -> np.ndarray:
    gt = read_boxes(gt_path, one_based=True)
    if len(gt) != n_images:
        raise ValueError(f"sequence {name!r}: {gt_path} has {len(gt)} lines but {img_dir} holds {n_images} "
                         f"images; expected one box per image")
    _check_init_box(gt[0], gt_path, name)
    return gt


def _subdirs(folder: Path) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        raise ValueError(f"cannot list folder {folder}: {e}") from e
    dirs = [Path(d.path) for d in entries if d.is_dir() and not d.name.startswith(".")]
    return sorted(dirs, key=lambda p: _natural_key(p.name))


def _layout_error(key: str, root: Path, expected: str) -> ValueError:
    try:
        found = sorted(p.name for p in root.iterdir())[:10]
    except OSError:
        found = []
    return ValueError(f"{key}: {root} does not look like a {key} dataset root: expected {expected}; "
                      f"found {found or 'an empty folder'}")


# ------------------------------------------------------------------------------------------------ OTB


_NUMBERED_GT = re.compile(r"groundtruth_rect\.(\d+)\.txt")


def _otb_targets(folder: Path) -> list[tuple[str, Path]]:
    """(sequence name, GT file) pairs of one OTB folder."""
    plain = folder / "groundtruth_rect.txt"
    if plain.is_file():
        return [(folder.name, plain)]
    numbered = []
    for p in folder.iterdir():
        m = _NUMBERED_GT.fullmatch(p.name)
        if m and p.is_file() and p.read_text(encoding="utf-8-sig", errors="replace").strip():
            numbered.append((int(m.group(1)), p))  # empty files (Human4's .1) are not targets
    numbered.sort()
    m = re.fullmatch(r"(.+)-(\d+)", folder.name)
    if m:  # a folder already named per target (Jogging-2 holding groundtruth_rect.2.txt)
        for k, p in numbered:
            if k == int(m.group(2)):
                return [(folder.name, p)]
    if not numbered and (folder / "img").is_dir():
        return [(folder.name, plain)]  # frames without ground truth: loading it reports the missing file
    return [(f"{folder.name}-{k}", p) for k, p in numbered]


def _otb_select(name: str, folder: Path, images: list[Path], gt: np.ndarray, gt_path: Path,
                strict: bool) -> tuple[list[Path], np.ndarray]:
    n_gt, n_img = len(gt), len(images)
    base = re.sub(r"-\d+$", "", folder.name).lower()
    rng = OTB_SUBRANGES.get(base)
    nums = [int(p.stem) if p.stem.isdigit() else None for p in images]
    if rng is not None and None not in nums:
        a, b = rng
        sel = [i for i, k in enumerate(nums) if a <= k <= b]
        if sel and n_gt == len(sel):
            return [images[i] for i in sel], gt
        if sel and len(sel) == b - a + 1 and nums[0] <= a and n_gt == b - nums[0] + 1:
            off = a - nums[0]  # GT starts at the folder's first image (Tiger1: lines 6..354 of 354)
            return [images[i] for i in sel], gt[off:off + len(sel)]
        raise ValueError(
            f"sequence {name!r}: {gt_path} has {n_gt} lines, which fits neither OTB's frames {a}..{b} "
            f"({len(sel)} of them among the {n_img} images {images[0].name}..{images[-1].name} in "
            f"{images[0].parent}) nor those frames counted from the first image"
        )
    if n_gt == n_img:
        return images, gt
    if n_gt < n_img and not strict:
        return images[:n_gt], gt
    raise ValueError(f"sequence {name!r}: {gt_path} has {n_gt} lines but {images[0].parent} holds {n_img} images; "
                     f"expected one box per image")


def _otb_builder(name: str, folder: Path, gt_path: Path, key: str, strict: bool) -> Builder:
    def build() -> Sequence:
        img_dir = folder / "img" if (folder / "img").is_dir() else folder
        images = _list_images(img_dir)
        if not images:
            raise ValueError(f"sequence {name!r}: no images in {img_dir}")
        gt = read_boxes(gt_path, one_based=True)
        images, gt = _otb_select(name, folder, images, gt, gt_path, strict)
        _check_init_box(gt[0], gt_path, name)
        return Sequence(name, tuple(str(p) for p in images), None, gt, meta={"dataset": key})

    return build


def _discover_otb_like(root: Path, key: str, strict: bool) -> dict[str, Builder]:
    folders = [root] if (key == "otb-folder" and _otb_targets(root)) else _subdirs(root)
    out: dict[str, Builder] = {}
    origin: dict[str, Path] = {}
    for folder in folders:
        for name, gt_path in _otb_targets(folder):
            if name in out:
                raise ValueError(f"{key}: sequence {name!r} is defined twice, by {origin[name]} and {gt_path}; "
                                 f"keep one of them")
            origin[name] = gt_path
            out[name] = _otb_builder(name, folder, gt_path, key, strict)
    if not out:
        raise _layout_error(key, root, "sequence folders <root>/<Name>/img/NNNN.jpg with groundtruth_rect.txt")
    return out


def _discover_otb100(root: Path) -> dict[str, Builder]:
    return _discover_otb_like(root, "otb100", strict=True)


def _discover_otb_folder(root: Path) -> dict[str, Builder]:
    return _discover_otb_like(root, "otb-folder", strict=False)


def _discover_synthetic(root: Path) -> dict[str, Builder]:
    return _discover_otb_like(root, "synthetic", strict=True)


# ---------------------------------------------------------------------------------------------- LaSOT


def _lasot_builder(name: str, folder: Path, cls: str) -> Builder:
    def build() -> Sequence:
        img_dir = folder / "img" if (folder / "img").is_dir() else folder
        images = _list_images(img_dir)
        if not images:
            raise ValueError(f"LaSOT sequence {name!r}: no images in {img_dir}")
        n = len(images)
        gt = _boxes_for_images(folder / "groundtruth.txt", n, name, img_dir)
        fo = _read_values(folder / "full_occlusion.txt", n, "LaSOT full-occlusion").astype(bool)
        oov = _read_values(folder / "out_of_view.txt", n, "LaSOT out-of-view").astype(bool)
        meta: dict[str, Any] = {"dataset": "lasot", "class": cls}
        nlp = folder / "nlp.txt"
        if nlp.is_file():
            meta["nlp"] = nlp.read_text(encoding="utf-8-sig", errors="replace").strip()
        return Sequence(name, tuple(str(p) for p in images), None, gt,
                        tags={"full_occlusion": fo, "out_of_view": oov}, visible=~(fo | oov), meta=meta)

    return build


def _discover_lasot(root: Path) -> dict[str, Builder]:
    found: list[tuple[str, Path]] = []
    def is_seq(d: Path) -> bool:  # a LaSOT folder without groundtruth.txt is reported when loaded
        return (d / "groundtruth.txt").is_file() or (
            (d / "img").is_dir() and any((d / f).is_file() for f in ("full_occlusion.txt", "out_of_view.txt")))

    for d in _subdirs(root):
        if is_seq(d):
            found.append((d.name, d))  # flat <root>/<class>-N
        else:
            found.extend((e.name, e) for e in _subdirs(d) if is_seq(e))
    out: dict[str, Builder] = {}
    for name, d in sorted(found, key=lambda t: _natural_key(t[0])):
        if name in out:
            raise ValueError(f"lasot: sequence {name!r} appears twice under {root}")
        cls = name.rsplit("-", 1)[0] if "-" in name else d.parent.name
        out[name] = _lasot_builder(name, d, cls)
    if not out:
        raise _layout_error("lasot", root, "<root>/<class>/<class>-N/ (or <root>/<class>-N/) folders with img/ "
                                           "and groundtruth.txt")
    return out


# ------------------------------------------------------------------------------------------------ VOT


def _discover_vot(root: Path) -> dict[str, Builder]:
    def builder(name: str, d: Path) -> Builder:
        return lambda: load_vot_folder(d, name, dataset="vot2018")

    if (root / "groundtruth.txt").is_file():
        return {root.name: builder(root.name, root)}
    list_file = root / "list.txt"
    if list_file.is_file():
        names = [ln.strip() for ln in _read_text(list_file, "VOT list").splitlines() if ln.strip()]
        folders = [(s, root / s) for s in names]
    else:
        folders = [(d.name, d) for d in _subdirs(root)]
    out = {s: builder(s, d) for s, d in folders
           if (d / "groundtruth.txt").is_file() or (list_file.is_file() and d.is_dir())}
    if not out:
        raise _layout_error("vot2018", root, "<root>/<seq>/groundtruth.txt with images in <seq>/color/ or <seq>/"
                                             + (f" (none of the {len(folders)} names in {list_file} is present)"
                                                if list_file.is_file() else ""))
    return out


# -------------------------------------------------------------------------------------------- GOT-10k


def _parse_meta_info(path: Path) -> dict[str, str]:
    meta = {}
    for lineno, line in enumerate(_read_text(path, "GOT-10k meta-info").splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith(("[", "#", ";")):
            continue
        if ":" not in s:
            raise ValueError(f"{path}: line {lineno} is not 'key: value': {line!r}")
        k, v = s.split(":", 1)
        meta[k.strip()] = v.strip()
    return meta


def _got10k_builder(name: str, folder: Path, split: str) -> Builder:
    def build() -> Sequence:
        images = _list_images(folder)
        if not images:
            raise ValueError(f"GOT-10k sequence {name!r}: no images in {folder}")
        n = len(images)
        gt = _boxes_for_images(folder / "groundtruth.txt", n, name, folder)
        absence = _read_values(folder / "absence.label", n, "GOT-10k absence").astype(bool)
        tags = {"absence": absence}
        info = _parse_meta_info(folder / "meta_info.ini") if (folder / "meta_info.ini").is_file() else {}
        attrs = tuple(f"{k}={info[k]}" for k in ("object_class", "motion_class", "major_class", "root_class")
                      if info.get(k))
        meta: dict[str, Any] = {**info, "dataset": f"got10k-{split}"}
        if (folder / "cut_by_image.label").is_file():
            tags["cut_by_image"] = _read_values(folder / "cut_by_image.label", n, "GOT-10k cut-by-image").astype(bool)
        if (folder / "cover.label").is_file():
            meta["cover"] = _read_values(folder / "cover.label", n, "GOT-10k cover", allowed=range(9)).astype(np.int8)
        return Sequence(name, tuple(str(p) for p in images), None, gt, attributes=attrs, tags=tags,
                        visible=~absence, meta=meta)

    return build


def _discover_got10k(root: Path, split: str) -> dict[str, Builder]:
    key = f"got10k-{split}"
    if (root / split).is_dir():
        split_dir = root / split
    elif (root / "list.txt").is_file() or any((d / "groundtruth.txt").is_file() for d in _subdirs(root)[:50]):
        split_dir = root  # the split folder itself
    else:
        raise _layout_error(key, root, f"<root>/{split}/<seq>/ folders (or the {split} folder itself) with "
                                       f"NNNNNNNN.jpg, groundtruth.txt and absence.label")
    list_file = split_dir / "list.txt"
    if list_file.is_file():
        names = [ln.strip() for ln in _read_text(list_file, "GOT-10k list").splitlines() if ln.strip()]
    else:
        names = [d.name for d in _subdirs(split_dir)]
    out = {s: _got10k_builder(s, split_dir / s, split) for s in names
           if (split_dir / s / "groundtruth.txt").is_file() or (list_file.is_file() and (split_dir / s).is_dir())}
    if not out:
        raise _layout_error(key, split_dir, "<seq>/ folders with NNNNNNNN.jpg, groundtruth.txt and absence.label")
    return out


# --------------------------------------------------------------------------------------------- UAV123


def _uav_builder(name: str, anno: Path, folder: Path, start: int, end: int | None,
                 listings: dict[Path, dict[int, Path]]) -> Builder:
    def build() -> Sequence:
        gt = read_boxes(anno, one_based=True)
        last = start + len(gt) - 1 if end is None else end
        if len(gt) != last - start + 1:
            raise ValueError(f"UAV123 sequence {name!r}: {anno} has {len(gt)} lines but frames {start}..{last} "
                             f"of {folder} are {last - start + 1}")
        if folder not in listings:
            listings[folder] = {int(p.stem): p for p in folder.iterdir()
                                if p.suffix.lower() == ".jpg" and p.stem.isdigit()}
        files = listings[folder]
        missing = [k for k in range(start, last + 1) if k not in files]
        if missing:
            raise FileNotFoundError(
                f"UAV123 sequence {name!r}: {len(missing)} of the frames {start}..{last} its annotation {anno} "
                f"needs are missing from {folder}, e.g. {folder / f'{missing[0]:06d}.jpg'}")
        visible = ~np.isnan(gt).any(axis=1)
        _check_init_box(gt[0], anno, name)
        return Sequence(name, tuple(str(files[k]) for k in range(start, last + 1)), None, gt, visible=visible,
                        meta={"dataset": "uav123", "folder": folder.name, "frames": (start, last)})

    return build


def _discover_uav123(root: Path) -> dict[str, Builder]:
    anno_dir, data_dir = root / "anno" / "UAV123", root / "data_seq" / "UAV123"
    if not anno_dir.is_dir() or not data_dir.is_dir():
        raise _layout_error("uav123", root,
                            "<root>/anno/UAV123/<seq>.txt and <root>/data_seq/UAV123/<folder>/NNNNNN.jpg")
    annos = sorted((p for p in anno_dir.iterdir() if p.suffix == ".txt" and p.is_file()),
                   key=lambda p: _natural_key(p.stem))
    listings: dict[Path, dict[int, Path]] = {}
    out: dict[str, Builder] = {}
    for anno in annos:
        folder_name, start, end = UAV123_SUBSEQUENCES.get(anno.stem, (anno.stem, 1, None))
        folder = data_dir / folder_name
        if folder.is_dir():
            out[anno.stem] = _uav_builder(anno.stem, anno, folder, start, end, listings)
    if not out:
        raise _layout_error("uav123", root, f"frame folders in {data_dir} matching the annotations in {anno_dir}")
    return out


_DISCOVER: dict[str, Callable[[Path], dict[str, Builder]]] = {
    "otb100": _discover_otb100,
    "otb-folder": _discover_otb_folder,
    "synthetic": _discover_synthetic,
    "lasot": _discover_lasot,
    "vot2018": _discover_vot,
    "got10k-val": lambda root: _discover_got10k(root, "val"),
    "got10k-train": lambda root: _discover_got10k(root, "train"),
    "uav123": _discover_uav123,
}
