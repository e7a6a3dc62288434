"""Where the shared third-party data lives (never committed into this repository).

Set ``JAXTRACK_DATA`` to override; the default is ``../shared/data`` beside the project root.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """Root of the shared data folder (weights, sequences, annotations, reference results)."""
    env = os.environ.get("JAXTRACK_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"
