"""Wall and CPU time: a sleep keeps no core busy, a spinning thread keeps one, and generated zoos
record both."""

import os
import time

from probegen_jax.timing import Stopwatch, Timing, describe_generation


def test_cores_busy_is_cpu_time_over_wall_time():
    assert Timing(wall_seconds=10.0, cpu_seconds=15.0).cores_busy == 1.5
    assert Timing(wall_seconds=0.0, cpu_seconds=0.0).cores_busy == 0.0
    meta = Timing(wall_seconds=12.345, cpu_seconds=23.456).as_meta()
    assert meta == {"generation_seconds": 12.35, "generation_cpu_seconds": 23.46, "cores_busy": 1.9}
    assert describe_generation(meta) == f"12.35 s, 1.90 of {os.cpu_count()} cores busy"
    assert describe_generation({"generation_seconds": 3.0}) == "3.0 s"  # zoos made before cores were recorded


def test_stopwatch_counts_cpu_time_not_sleep():
    stopwatch = Stopwatch()
    time.sleep(0.2)
    asleep = stopwatch.elapsed()
    assert asleep.wall_seconds >= 0.2 and asleep.cores_busy < 0.5

    stopwatch, start = Stopwatch(), time.process_time()
    while time.process_time() - start < 0.2:  # spin one core for 0.2 s of CPU time
        pass
    spun = stopwatch.elapsed()
    assert spun.cpu_seconds >= 0.2 and spun.wall_seconds >= 0.2 / os.cpu_count()
