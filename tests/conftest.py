import os
from pathlib import Path

from jaxtrack import runtime

# The suite is an entry point: the same XLA:CPU defaults as the jaxtrack command (set before JAX starts its CPU
# backend; inherited by the subprocesses some tests start).
runtime.apply_xla_defaults()

import jax  # noqa: E402
import pytest  # noqa: E402

from jaxtrack.paths import shared_data_dir  # noqa: E402

# Reference comparisons need full-precision convolutions on every backend.
jax.config.update("jax_default_matmul_precision", "highest")

# XLA's persistent compilation cache, shared by the test workers: tests in both workers (and the jaxtrack command
# called in-process) build the same jitted tracker programs (NanoTrack under attack, the defended tracker, ...);
# with the cache each distinct program is compiled once per suite run. Keyed on the program and the jax/XLA versions,
# so a stale entry is never used. JAXTRACK_TEST_JAX_CACHE= (empty) turns it off. The jaxtrack command, called
# in-process by the CLI tests, is pointed at the same folder (or kept off) through the environment.
_CACHE = os.environ.get("JAXTRACK_TEST_JAX_CACHE",
                        str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax-compilation"))
_SAVED = {"hits": 0, "seconds": 0.0}
if not _CACHE:
    os.environ[runtime.NO_CACHE_ENV] = "1"
else:
    os.environ[runtime.CACHE_ENV] = _CACHE
    runtime.enable_compilation_cache(_CACHE, min_compile_seconds=0.5)

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
