"""Box files: reading ``x,y,w,h`` text files (:func:`read_boxes`), checking one box against a frame
(:func:`validate_box`) and writing result files (:func:`write_boxes`).

Boxes are ``[x, y, w, h]`` float64, **0-based**, in frame pixels. Files named ``groundtruth_rect*.txt`` follow
OTB (1-based; 1 is subtracted from ``x`` and ``y``); every other box file is read as 0-based unless
``one_based=`` says otherwise. :func:`write_boxes` always writes 0-based boxes (pysot's result layout).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from jaxtrack.fileio import atomic_write_text

__all__ = ["read_boxes", "validate_box", "write_boxes"]

_SPLIT_RE = re.compile(r"[,\s]+")


def _parse_box_lines(path: Path) -> np.ndarray:
    """Parse a text file of ``x,y,w,h`` rows (comma, tab or whitespace separated) as written (no shift)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"box file {path} is not a text file: {e}") from e
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # trailing blank lines are harmless
        lines.pop()
    rows = []
    for lineno, line in enumerate(lines, start=1):
        s = line.strip()
        parts = [p for p in _SPLIT_RE.split(s) if p] if s else []
        try:
            if len(parts) != 4:
                raise ValueError(f"expected 4 values x,y,w,h, found {len(parts)}")
            rows.append([float(p) for p in parts])
        except ValueError as e:
            raise ValueError(f"{path}: line {lineno} does not parse as a box ({e}): {line!r}") from None
    if not rows:
        raise ValueError(f"box file {path} is empty")
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _is_otb_gt_name(path: Path) -> bool:
    return path.name.startswith("groundtruth_rect") and path.suffix == ".txt"


def read_boxes(path: str | os.PathLike, one_based: bool | None = None) -> np.ndarray:
    """Read a box file into ``[N, 4]`` float64 0-based ``x, y, w, h``.

    Separators may be commas, tabs or whitespace; ``nan`` values are kept. ``one_based=None`` decides from the
    file name: ``groundtruth_rect*.txt`` is OTB ground truth (1-based: 1 is subtracted from x and y), any other
    file is taken as 0-based.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"box file not found: {path}")
    boxes = _parse_box_lines(path)
    if one_based is None:
        one_based = _is_otb_gt_name(path)
    if one_based:
        boxes[:, :2] -= 1.0
    return boxes


def validate_box(box, frame_size: tuple[int, int], where: str) -> np.ndarray:
    """Check one ``[x, y, w, h]`` box against a frame of size ``(H, W)``; return it as float64.

    Raises ``ValueError`` (with ``where`` in the message) when the box is not 4 finite numbers, when
    ``w <= 0`` or ``h <= 0``, or when it lies entirely outside the frame. Partly outside is allowed.
    """
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,):
        raise ValueError(f"{where}: a box must be 4 numbers x,y,w,h, got shape {np.shape(box)}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{where}: box {b.tolist()} contains NaN or infinity")
    x, y, w, h = b.tolist()
    if w <= 0 or h <= 0:
        raise ValueError(f"{where}: box {b.tolist()} has non-positive width or height (w={w}, h={h})")
    fh, fw = int(frame_size[0]), int(frame_size[1])
    if x >= fw or y >= fh or x + w <= 0 or y + h <= 0:
        raise ValueError(
            f"{where}: box {b.tolist()} lies entirely outside the {fh}x{fw} (HxW) frame"
        )
    return b


def _format_value(v: float) -> str:
    return f"{v:.4f}"


def write_boxes(path: str | os.PathLike, boxes) -> None:
    """Write ``[N, 4]`` 0-based boxes, one ``x,y,w,h`` line per frame with 4 decimals, atomically.

    The text goes to a temporary file in the destination folder, which then replaces ``path``
    (``os.replace``), so readers never see a half-written file. NaN rows are written as ``nan``.
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"write_boxes({path}): boxes must have shape [N, 4], got {b.shape}")
    text = "".join(",".join(_format_value(v) for v in row) + "\n" for row in b.tolist())
    atomic_write_text(Path(path), text)
