"""Wall-clock timing of jitted work, for the benchmarks and experiments (never for assertions in tests).

Both helpers compile and warm up first, block on the results (JAX dispatch is asynchronous) and return medians,
which are robust to the occasional stall of a shared machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls of the zero-argument ``fn`` after one compiling / warm-up call."""
    import jax

    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, iters: int) -> dict[str, float]:
    """Median seconds of each zero-argument function, timed in turns (``rounds`` rounds of ``iters`` calls each),
    so that every function sees the same background load; ratios of the results are what is comparable."""
    import jax

    for fn in fns.values():  # compile + warm up
        jax.block_until_ready(fn())
        jax.block_until_ready(fn())
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            for _ in range(iters):
                start = time.perf_counter()
                jax.block_until_ready(fn())
                times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}
