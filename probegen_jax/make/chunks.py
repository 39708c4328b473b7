"""Resumable chunked work: each finished chunk is saved atomically with checksums
(``io.save_pytree``), so an interrupted zoo generation restarts from the last finished chunk and
gives the same zoo; a chunk that fails its checksum is computed again."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from probegen_jax.errors import ZooFormatError
from probegen_jax.io import load_pytree, read_json, remove_stale_temps, save_pytree, write_json
from probegen_jax.progress import progress as progress_bar
from probegen_jax.timing import NO_TIME, Stopwatch, Timing

ChunkFn = Callable[[int], Mapping[str, np.ndarray]]
TIME_FILE = "time_spent.json"  # the time spent on the chunks so far, over every (interrupted) run


def work_dir_for(out: str | os.PathLike) -> Path:
    """Where the chunks of a zoo bound for ``out`` are kept until it is complete."""
    out = Path(out).absolute()
    return out.with_name(out.name + ".partial")


def run_chunks(
    work_dir: str | os.PathLike | None,
    plan: Mapping[str, Any],
    num_chunks: int,
    make_chunk: ChunkFn,
    *,
    desc: str = "chunks",
    progress: bool = True,
) -> list[dict[str, np.ndarray]]:
    """Run ``make_chunk(i)`` for every chunk not yet on disk in ``work_dir``; return all chunks.

    ``plan`` (JSON) describes the whole job; resuming with a different plan is refused, so
    chunks of two different zoos are never mixed. With ``work_dir=None`` nothing is written.
    """
    if work_dir is None:
        return [dict(make_chunk(i)) for i in progress_bar(range(num_chunks), desc=desc, disable=not progress,
                                                  unit="chunk")]
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    plan_file = work_dir / "plan.json"
    plan = json.loads(json.dumps(dict(plan)))  # normalise tuples etc.
    if plan_file.exists():
        saved = read_json(plan_file, ZooFormatError)
        if saved != plan:
            raise ZooFormatError(
                f"{plan_file}: an unfinished job with a different plan is here; remove {work_dir} "
                f"or use another output path (saved plan {saved}, new plan {plan})"
            )
    else:
        write_json(plan_file, plan)
    chunks, stopwatch = [], Stopwatch(time_spent(work_dir))
    done = sum(chunk_path(work_dir, i).exists() for i in range(num_chunks))
    with progress_bar(total=num_chunks, initial=done, desc=desc, disable=not progress, unit="chunk") as bar:
        for i in range(num_chunks):
            path = chunk_path(work_dir, i)
            if path.exists():
                try:
                    chunks.append(load_pytree(path, error=ZooFormatError))
                    continue
                except ZooFormatError as e:  # damaged (IntegrityError) or incomplete: compute it again
                    bar.write(f"{e}; computing chunk {i} again")
            remove_stale_temps(path)
            chunk = {k: np.asarray(v) for k, v in make_chunk(i).items()}
            save_pytree(path, chunk)
            write_json(work_dir / TIME_FILE, dataclasses.asdict(stopwatch.elapsed()))
            chunks.append(chunk)
            bar.update(1)
    return chunks


def time_spent(work_dir: str | os.PathLike | None) -> Timing:
    """The time earlier, interrupted runs spent computing the chunks in ``work_dir`` (none without one)."""
    file = Path(work_dir) / TIME_FILE if work_dir is not None else None
    if file is None or not file.exists():
        return NO_TIME
    record = read_json(file, ZooFormatError, fields={"wall_seconds": (int, float), "cpu_seconds": (int, float)})
    return Timing(record["wall_seconds"], record["cpu_seconds"])


def chunk_path(work_dir: str | os.PathLike, i: int) -> Path:
    """The folder of chunk ``i`` (arrays and checksums, ``io.save_pytree``)."""
    return Path(work_dir) / f"chunk_{i:05d}"


def concat_chunks(chunks: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def remove_work_dir(work_dir: str | os.PathLike) -> None:
    shutil.rmtree(work_dir, ignore_errors=True)
