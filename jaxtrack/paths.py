"""Where the shared third-party data lives (never committed into this repository).

Set ``JAXTRACK_DATA`` to override; the default is ``../shared/data`` beside the project root.

Settings that name a folder (training ``data.root`` / ``data.extra_root``) may say ``shared:REL`` for
``<shared data folder>/REL``, so that a recipe reads the shared data wherever ``JAXTRACK_DATA`` points
(:func:`resolve_data_path`).
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Prefix of a path relative to the shared data folder (``shared:sequences/train``).
SHARED_PREFIX = "shared:"


def shared_data_dir() -> Path:
    """Root of the shared data folder (weights, sequences, annotations, reference results)."""
    env = os.environ.get("JAXTRACK_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


def resolve_data_path(text: str | os.PathLike) -> Path:
    """``shared:REL`` -> ``shared_data_dir() / REL`` (read when called, so ``JAXTRACK_DATA`` applies); any other
    value is an ordinary path. ``shared:`` with an absolute or ``..``-escaping ``REL`` is a ``ValueError``."""
    text = os.fspath(text)
    if not text.startswith(SHARED_PREFIX):
        return Path(text)
    rel = Path(text[len(SHARED_PREFIX):])
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"{text!r}: a {SHARED_PREFIX} path must be relative to the shared data folder "
                         f"({shared_data_dir()}) and stay inside it")
    return shared_data_dir() / rel
