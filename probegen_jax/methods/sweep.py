"""One runner for an experiment's grid of (method, setting, seed) runs, every method through the
contract, each finished run logged at once so an interrupted experiment resumes.

    cells = grid(["probegen", "vanilla"], seeds=[0, 1, 2], probe_counts=[64, 128]) + grid(["nfn"], seeds=[0])
    for cell, row, run in sweep(zoo, cells, TrainConfig(), log, row=my_row):
        ...  # run is None for a row taken from the log
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from probegen_jax.methods.contract import train
from probegen_jax.methods.registry import get_method
from probegen_jax.methods.run import Run
from probegen_jax.training.loop import TrainConfig
from probegen_jax.training.runlog import RunLog, run_key

NO_SETTING = "—"  # the label of a cell whose method has no varying setting


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of a grid: a method, its seed, and the spec settings that vary (``label`` names them
    in tables and in the run's log key)."""

    method: str
    seed: int
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    label: Any = NO_SETTING


def grid(methods: Sequence[str], *, seeds: Sequence[int], probe_counts: Sequence[int] = (),
         **settings: Any) -> list[Cell]:
    """Cells of every method x seed; methods that take a probe count also x ``probe_counts``
    (labelled by K, with ``probe_seed`` = the seed, as the papers' runs draw their probes)."""
    cells = []
    for name in methods:
        fields = {f.name for f in dataclasses.fields(get_method(name).spec_type)}
        shared = {k: v for k, v in settings.items() if k in fields}
        if "num_probes" in fields and probe_counts:
            cells += [Cell(name, seed, {**shared, "num_probes": k, "probe_seed": seed}, k)
                      for k in probe_counts for seed in seeds]
        else:
            cells += [Cell(name, seed, shared) for seed in seeds]
    return cells


def sweep(zoo: Any, cells: Sequence[Cell], cfg: TrainConfig, log: RunLog, *,
          row: Callable[[Cell, Run, float], dict], key: Sequence[Any] = (), target: str | None = None,
          progress: bool = True) -> Iterator[tuple[Cell, dict, Run | None]]:
    """Each cell's ``(cell, row, run)``: taken from ``log`` when it holds the cell's key (``run``
    None), else trained (``cfg`` with the cell's seed), turned into a row by ``row(cell, run,
    seconds)`` and logged before the next cell starts."""
    for cell in cells:
        cell_key = run_key(*key, cell.method, cell.label, cell.seed)
        if (done := log.get(cell_key)) is not None:
            yield cell, done, None
            continue
        start = time.perf_counter()
        desc = cell.method if cell.label == NO_SETTING else f"{cell.method} K={cell.label}"
        run = train(cell.method, zoo, dict(cell.settings), dataclasses.replace(cfg, seed=cell.seed), target=target,
                    progress=progress, desc=desc)
        log.record(cell_key, row(cell, run, round(time.perf_counter() - start, 1)))
        yield cell, log.get(cell_key), run
