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
if _CACHE:
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def data_dir():
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set JAXTRACK_DATA)")
    return root
