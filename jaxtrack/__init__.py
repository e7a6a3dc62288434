"""jaxtrack: adversarial robustness of Siamese visual object trackers in JAX/Flax."""

import os as _os

__version__ = "0.1.0"

# XLA:CPU default measured in benchmarks/xla_cpu_flags.py: in jaxlib 0.10.x convolutions go to YNNPACK, which is
# 1.3-2.9x slower than XLA's own convolutions on the machines we measured; sending them back doubles the speed of
# the tracker step (AlexNet at 303 px: 106 -> 46 ms) for a ~1e-6 relative change of the outputs. The flag is
# experimental and XLA aborts on unknown flags, so it is only added for the jaxlib versions it was checked on,
# appended to the user's XLA_FLAGS, and skipped with JAXTRACK_NO_XLA_DEFAULTS=1. It must be set before JAX
# compiles anything (it is read when the CPU backend starts).
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def _set_default_xla_flags() -> None:
    flags = _os.environ.get("XLA_FLAGS", "")
    if _os.environ.get("JAXTRACK_NO_XLA_DEFAULTS") or "ynn_fusion_type" in flags:
        return
    try:
        from importlib.metadata import version

        jaxlib_version = tuple(int(p) for p in version("jaxlib").split(".")[:2])
    except Exception:  # noqa: BLE001 - no jaxlib metadata: leave XLA alone
        return
    if (0, 10) <= jaxlib_version < (0, 11):
        _os.environ["XLA_FLAGS"] = (flags + " " + _YNN_FLAG).strip()


_set_default_xla_flags()
