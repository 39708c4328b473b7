"""Shared helpers for benchmarks: timing medians and naming the machine."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import jax


def median_seconds(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` (blocked until its arrays are ready) after ``warmup`` calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_description() -> str:
    devices = jax.devices()
    kind = devices[0].device_kind if devices else "?"
    cpu = platform.processor() or platform.machine()
    return (f"{platform.node()}: {os.cpu_count()} CPU cores ({cpu}), jax {jax.__version__}, "
            f"backend {jax.default_backend()}, {len(devices)} x {kind}")
