"""Draw tracked boxes (and ground truth) onto frames and write a video."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np


def draw_box(frame: np.ndarray, box, color, thickness: int = 2) -> None:
    if box is None or not np.all(np.isfinite(box)):
        return
    x, y, w, h = (float(v) for v in box)
    cv2.rectangle(frame, (round(x), round(y)), (round(x + w), round(y + h)), color, thickness)


def render_video(
    chunks: Iterable[np.ndarray],
    boxes: np.ndarray,
    out_path: str | os.PathLike,
    ground_truth: np.ndarray | None = None,
    fps: float = 25.0,
) -> Path:
    """Write frames with the predicted boxes (red) and ground truth (green) to ``out_path`` (mp4v codec).

    Written to a temporary name and renamed, so a half-written video never takes the final name.
    """
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.stem + ".partial" + out_path.suffix)
    writer = None
    t = 0
    try:
        for chunk in chunks:
            for frame in chunk:
                if writer is None:
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    if not writer.isOpened():
                        raise OSError(f"cannot open a video writer for {out_path}")
                canvas = np.ascontiguousarray(frame.copy())
                if ground_truth is not None and t < len(ground_truth):
                    draw_box(canvas, ground_truth[t], (0, 255, 0))
                if t < len(boxes):
                    draw_box(canvas, boxes[t], (0, 0, 255))
                writer.write(canvas)
                t += 1
    finally:
        if writer is not None:
            writer.release()
    if t == 0:
        raise ValueError("no frames to render")
    os.replace(tmp, out_path)
    return out_path
