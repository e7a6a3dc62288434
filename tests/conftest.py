import jax
import pytest

from jaxtrack.paths import shared_data_dir

# Reference comparisons need full-precision convolutions on every backend.
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def data_dir():
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set JAXTRACK_DATA)")
    return root
