"""Trajectories of the installed OpenCV's ``cv2.TrackerNano`` on OTB-layout sequences (reference files).

Run: ``.venv/bin/python experiments/opencv_nano_reference.py --out DIR [--root <shared data>/sequences/OTB]``

Writes ``DIR/<Sequence>.txt`` (0-based ``x,y,w,h`` per image, line 1 the init box, as the shared data's
``reference_results/OTB/nanotrackv2_opencv``) with the NanoTrack v2 ONNX pair of the shared data and OpenCV's
default tracker parameters, for every sequence under ``--root``. ``tests/data/opencv51_nanotrack`` was written
this way with ``opencv-python-headless==5.1.0.95``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from jaxtrack.data import read_frame
from jaxtrack.data.sequence import load_otb_folder
from jaxtrack.paths import shared_data_dir

ONNX = ("nanotrackv2_backbone_sim.onnx", "nanotrackv2_head_sim.onnx")


def track_with_opencv(weights_dir: Path, folder: Path) -> np.ndarray:
    """``cv2.TrackerNano`` on every image of the OTB-layout ``folder`` (also those past the ground truth's end, as
    the stored reference files): integer boxes [T, 4] (0-based x, y, w, h; row 0 the init box)."""
    params = cv2.TrackerNano_Params()
    params.backbone, params.neckhead = (str(weights_dir / name) for name in ONNX)
    tracker = cv2.TrackerNano_create(params)
    box0 = tuple(int(v) for v in load_otb_folder(folder).init_box)
    images = sorted((folder / "img").glob("*.jpg"))
    tracker.init(read_frame(images[0]), box0)
    boxes = [box0]
    for image in images[1:]:
        _, box = tracker.update(read_frame(image))
        boxes.append(tuple(int(v) for v in box))
    return np.asarray(boxes, np.int64)


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--root", type=Path, default=None, help="a folder of OTB-layout sequences")
    args = parser.parse_args(argv)
    data = shared_data_dir()
    root = args.root or data / "sequences/OTB"
    names = sorted(p.name for p in root.iterdir() if (p / "img").is_dir())
    if not names:
        raise SystemExit(f"{root}: no OTB-layout sequence (<name>/img/) here")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in tqdm(names, desc=f"cv2.TrackerNano {cv2.__version__}"):
        boxes = track_with_opencv(data / "weights/nanotrack", root / name)
        tmp = args.out / f".{name}.txt.tmp"
        np.savetxt(tmp, boxes, fmt="%d", delimiter=",")
        tmp.replace(args.out / f"{name}.txt")


if __name__ == "__main__":
    run()
