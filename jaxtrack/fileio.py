"""Atomic file writing: results are never seen half-written, and an interrupted run leaves no partial file."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder + ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_save_figure(fig, path: str | os.PathLike, *, dpi: int = 120, **savefig_kwargs) -> Path:
    """Save a Matplotlib figure to ``path`` through a temporary file in the same folder + ``os.replace`` (the format
    from the suffix, PNG without one), then close the figure. Lay it out (``fig.tight_layout()``) before."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix or ".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, format=path.suffix[1:] or "png", **savefig_kwargs)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        plt.close(fig)
    return path


@contextlib.contextmanager
def atomic_directory(dst: str | os.PathLike) -> Iterator[Path]:
    """Build a folder in a temporary sibling of ``dst`` and move it to ``dst`` only if the block succeeds.

    An existing ``dst`` is replaced (moved aside, swapped, then deleted), so readers see the old folder or the new
    one, never a mix; on an exception the temporary folder is removed and ``dst`` is untouched. Whether replacing
    is allowed is the caller's decision, made before entering.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    try:
        yield tmp
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
            os.replace(dst, old / dst.name)
            os.replace(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
