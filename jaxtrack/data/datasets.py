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

This module holds the entry point (:func:`load_dataset`) and the pysot-JSON annotation reader
(:func:`read_pysot_json`); the per-layout discovery and readers, with the :data:`OTB_SUBRANGES` and
:data:`UAV123_SUBSEQUENCES` tables (re-exported here), are in :mod:`jaxtrack.data.layouts`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxtrack.data.layouts import _DISCOVER, OTB_SUBRANGES, UAV123_SUBSEQUENCES, Builder, _check_init_box
from jaxtrack.data.sequence import Sequence
from jaxtrack.data.vot import VOT_TAGS, _check_init_region, _regions_from_rows

__all__ = [
    "DATASET_NAMES",
    "OTB_SUBRANGES",
    "UAV123_SUBSEQUENCES",
    "load_dataset",
    "read_pysot_json",
]

DATASET_NAMES = ("otb100", "lasot", "vot2018", "got10k-val", "got10k-train", "uav123", "synthetic", "otb-folder")

_VOT_KEYS = ("vot2018",)


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
