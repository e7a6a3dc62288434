"""Process-wide JAX settings that belong to entry points, never to ``import jaxtrack``.

A library must not change global state when it is imported, so the ``jaxtrack`` command, the benchmarks, the
experiments and the test suite each call :func:`configure` once, first thing, before JAX compiles anything::

    from jaxtrack import runtime
    runtime.configure()                      # XLA:CPU default flags + persistent compilation cache
    runtime.configure(compile_cache=False)   # flags only

What it sets:

* **XLA:CPU convolution backend.** jaxlib 0.10.x sends convolutions to YNNPACK, which runs the tracker networks
  1.3-2.9x slower than XLA's own convolutions on the CPUs measured (``benchmarks/xla_cpu_flags.py``; figures in
  the README's Speed section); :data:`YNN_FLAG` sends them back, for a ~1e-6 relative change of the outputs.
  The flag is experimental and XLA aborts on unknown flags, so it is only added for the jaxlib versions it was
  checked on, appended to the caller's ``XLA_FLAGS``, and skipped when ``XLA_FLAGS`` already sets it or
  ``JAXTRACK_NO_XLA_DEFAULTS=1``. XLA reads the flags when the CPU backend starts, so this must run before the
  first computation.
* **Persistent compilation cache** (:func:`enable_compilation_cache`): compiled programs are written to a user
  cache folder, so a second run of the same command compiles nothing. Entries are keyed on the program and the
  jax/jaxlib/XLA versions and flags, so a stale entry is never used.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
_YNN_JAXLIB = ((0, 10), (0, 11))  # [first, end) jaxlib (major, minor) the flag was checked on

CACHE_ENV = "JAXTRACK_CACHE_DIR"
NO_CACHE_ENV = "JAXTRACK_NO_COMPILE_CACHE"


def _jaxlib_version() -> tuple[int, int] | None:
    try:
        from importlib.metadata import version

        return tuple(int(p) for p in version("jaxlib").split(".")[:2])
    except Exception:  # noqa: BLE001 - no jaxlib metadata: leave XLA alone
        return None


def default_xla_flags(jaxlib_version: tuple[int, int] | None = None) -> list[str]:
    """The XLA flags jaxtrack adds for this jaxlib (``[]`` where none was checked)."""
    v = _jaxlib_version() if jaxlib_version is None else jaxlib_version
    if v is not None and _YNN_JAXLIB[0] <= v < _YNN_JAXLIB[1]:
        return [YNN_FLAG]
    return []


def apply_xla_defaults(environ: MutableMapping[str, str] | None = None) -> str:
    """Append :func:`default_xla_flags` to ``environ["XLA_FLAGS"]`` (default ``os.environ``) unless the caller set
    the same option or ``JAXTRACK_NO_XLA_DEFAULTS`` is set; returns the resulting ``XLA_FLAGS``."""
    env = os.environ if environ is None else environ
    flags = env.get("XLA_FLAGS", "")
    if env.get("JAXTRACK_NO_XLA_DEFAULTS"):
        return flags
    added = [f for f in default_xla_flags() if f.split("=")[0] not in flags]
    if added:
        flags = " ".join([flags, *added]).strip()
        env["XLA_FLAGS"] = flags
    return flags


def default_cache_dir() -> Path:
    """``$JAXTRACK_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxtrack/jax-compilation``, else
    ``~/.cache/jaxtrack/jax-compilation``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "jaxtrack" / "jax-compilation"


def enable_compilation_cache(path: str | os.PathLike | None = None, *, min_compile_seconds: float = 0.0) -> Path:
    """Turn on JAX's persistent compilation cache in ``path`` (default :func:`default_cache_dir`), for every
    program that took at least ``min_compile_seconds`` to compile. Safe for concurrent processes (JAX locks the
    folder when a size limit is set, which needs ``filelock``; without it entries are still written atomically)."""
    import jax

    folder = Path(path) if path is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    try:
        import filelock  # noqa: F401

        jax.config.update("jax_compilation_cache_max_size", 4 << 30)
    except ImportError:
        pass
    return folder


def configure(*, compile_cache: bool | str | os.PathLike = True) -> Path | None:
    """Entry-point set-up: :func:`apply_xla_defaults`, then the compilation cache (``True``: the default folder;
    a path: that folder; ``False`` or ``JAXTRACK_NO_COMPILE_CACHE=1`` in the environment: off). Returns the cache
    folder or None."""
    apply_xla_defaults()
    if compile_cache is False or compile_cache is None or os.environ.get(NO_CACHE_ENV):
        return None
    return enable_compilation_cache(None if compile_cache is True else compile_cache)
