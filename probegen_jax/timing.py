"""Wall and CPU time of a stretch of work: how long it took and how many cores it kept busy."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Timing:
    """``cpu_seconds`` counts every thread of this process (XLA's included), so ``cores_busy``,
    their ratio to the wall time, tells how much of the machine the work used."""

    wall_seconds: float
    cpu_seconds: float

    @property
    def cores_busy(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.wall_seconds + other.wall_seconds, self.cpu_seconds + other.cpu_seconds)

    def as_meta(self) -> dict[str, float]:
        """The record a generated zoo keeps in its meta."""
        return {"generation_seconds": round(self.wall_seconds, 2), "generation_cpu_seconds": round(self.cpu_seconds, 2),
                "cores_busy": round(self.cores_busy, 2)}


NO_TIME = Timing(0.0, 0.0)


class Stopwatch:
    """Started when made; ``elapsed()`` is the ``Timing`` since then, plus ``earlier`` (the time
    interrupted runs of the same work spent)."""

    def __init__(self, earlier: Timing = NO_TIME) -> None:
        self._wall, self._cpu, self._earlier = time.perf_counter(), time.process_time(), earlier

    def elapsed(self) -> Timing:
        return self._earlier + Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu)


def describe_generation(meta: Mapping[str, Any]) -> str:
    """``"412.3 s, 1.93 of 2 cores busy"`` from a zoo's meta (the cores only where recorded)."""
    text = f"{meta['generation_seconds']} s"
    if "cores_busy" in meta:
        text += f", {meta['cores_busy']:.2f} of {os.cpu_count()} cores busy"
    return text
