"""Shared helpers for benchmarks: timing medians and naming the machine."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import jax

from probegen_jax.timing import Stopwatch


def median_seconds(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` (blocked until its arrays are ready) after ``warmup`` calls."""
    return median_seconds_and_cores(fn, repeats=repeats, warmup=warmup)[0]


def median_seconds_and_cores(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> tuple[float, float]:
    """``median_seconds`` and the cores the timed calls kept busy (this process's CPU time over
    their wall time, every thread counted)."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times, stopwatch = [], Stopwatch()
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times), stopwatch.elapsed().cores_busy


def machine_description() -> str:
    devices = jax.devices()
    kind = devices[0].device_kind if devices else "?"
    cpu = platform.processor() or platform.machine()
    return (f"{platform.node()}: {os.cpu_count()} CPU cores ({cpu}), jax {jax.__version__}, "
            f"backend {jax.default_backend()}, {len(devices)} x {kind}")
