"""NanoTrack (real weights) in JAX against OpenCV's cv2.TrackerNano on the real OTB sequences of the shared data.

Run: ``.venv/bin/python experiments/nanotrack_otb.py [--results out/nanotrack_otb]``

Tracks every sequence of ``<shared data>/sequences/OTB`` with ``nanotrack_v2`` (the Python reference tracker,
pysot-style), ``nanotrack_v3`` and ``nanotrack_v2_opencv`` (the emulation of OpenCV's C++ tracker loop), puts the
stored trajectories of OpenCV's ``cv2.TrackerNano`` beside them as results "of another toolkit", and scores all
with ``jaxtrack report``. Writes ``docs/nanotrack_otb.md`` (table) and ``docs/nanotrack_otb.png`` (plots).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from jaxtrack.cli import main as jaxtrack
from jaxtrack.paths import shared_data_dir


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="out/nanotrack_otb")
    args = parser.parse_args(argv)
    data = shared_data_dir()
    otb, results = data / "sequences/OTB", Path(args.results)
    for model in ("nanotrack_v2", "nanotrack_v3", "nanotrack_v2_opencv"):
        jaxtrack(["eval", "--model", model, "--dataset", "otb-folder", "--root", str(otb), "--results", str(results)])
    opencv = results / "OTB/opencv_TrackerNano"
    if not opencv.exists():
        shutil.copytree(data / "reference_results/OTB/nanotrackv2_opencv", opencv)
    docs = ROOT / "docs"
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        jaxtrack(["report", "--dataset", "otb-folder", "--root", str(otb), "--results", str(results),
                  "--plot", str(docs / "nanotrack_otb.png")])
    lines = [line for line in table.getvalue().splitlines() if line.startswith("|")]
    (docs / "nanotrack_otb.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    from jaxtrack import runtime

    runtime.configure()
    run()
