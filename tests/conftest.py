import os
from pathlib import Path

import jax
import pytest

from jaxtrack.paths import shared_data_dir

# Reference comparisons need full-precision convolutions on every backend.
jax.config.update("jax_default_matmul_precision", "highest")

# XLA's persistent compilation cache, shared by the test workers: many tests build the same jitted tracker step
# (NanoTrack under attack, the defended tracker, ...) through fresh wrapper objects, which jit traces anew; with
# the cache each distinct program is compiled once per suite run. Keyed on the program and the jax/XLA versions,
# so a stale entry is never used. JAXTRACK_TEST_JAX_CACHE= (empty) turns it off.
_CACHE = os.environ.get("JAXTRACK_TEST_JAX_CACHE",
                        str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax-compilation"))
_SAVED = {"hits": 0, "seconds": 0.0}
if _CACHE:
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    try:  # a size limit makes JAX lock the folder (filelock) around reads and writes: safe for parallel workers
        import filelock  # noqa: F401

        jax.config.update("jax_compilation_cache_max_size", 4 << 30)
    except ImportError:
        pass

    def _count_hit(event, **_):
        if event == "/jax/compilation_cache/cache_hits":
            _SAVED["hits"] += 1

    def _count_saved(event, seconds, **_):
        if event == "/jax/compilation_cache/compile_time_saved_sec":
            _SAVED["seconds"] += seconds

    jax.monitoring.register_event_listener(_count_hit)
    jax.monitoring.register_event_duration_secs_listener(_count_saved)


def pytest_sessionfinish(session):
    """Each process (xdist worker) records what the compilation cache saved it; the main process adds them up."""
    if _CACHE and _SAVED["hits"]:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        Path(_CACHE, f"saved-{worker}-{os.getpid()}.txt").write_text(f"{_SAVED['hits']} {_SAVED['seconds']:.1f}\n")


def pytest_terminal_summary(terminalreporter):
    if not _CACHE or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    hits = seconds = 0.0
    for f in Path(_CACHE).glob("saved-*.txt"):
        h, s = f.read_text().split()
        hits, seconds = hits + int(h), seconds + float(s)
        f.unlink()
    terminalreporter.write_line(f"XLA compilation cache ({_CACHE}): {int(hits)} programs reused, "
                                f"~{seconds:.0f} s of compilation saved")


@pytest.fixture(scope="session")
def data_dir():
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set JAXTRACK_DATA)")
    return root
