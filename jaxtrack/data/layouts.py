"""Per-layout dataset discovery behind :func:`jaxtrack.data.datasets.load_dataset`.

For each on-disk benchmark layout (OTB-style folders for ``otb100`` / ``otb-folder`` / ``synthetic``, LaSOT,
VOT2018, GOT-10k, UAV123) a ``_discover_*`` function lists the sequences under a root and returns, per name, a
:data:`Builder` that reads that sequence's annotation files and returns a :class:`~jaxtrack.data.sequence.Sequence`
(frames not decoded). :data:`_DISCOVER` maps dataset names to them. Also here: the OTB frame sub-range table
(:data:`OTB_SUBRANGES`), the UAV123 sub-sequence table (:data:`UAV123_SUBSEQUENCES`) and the small readers they
share (label/value files, text files, folder listing, layout errors). The per-dataset conventions are documented
in :mod:`jaxtrack.data.datasets`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from jaxtrack.data.boxes import read_boxes
from jaxtrack.data.sequence import Sequence, _list_images, _natural_key
from jaxtrack.data.vot import load_vot_folder

__all__ = ["Builder", "OTB_SUBRANGES", "UAV123_SUBSEQUENCES"]

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

_SPLIT_RE = re.compile(r"[,\s]+")

Builder = Callable[[], Sequence]


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
