"""Zoo generation split across the processes of a multi-process run.

Chunk ``i`` is computed by process ``i % P``, which keeps its share in its own folder of the work
folder (resumable, checksummed: ``make.chunks.run_chunks``); every process then reads all the
shares. Chunks depend only on their index, so the zoo is the one a single process makes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from probegen_jax.errors import ZooFormatError
from probegen_jax.io import process_local_writes
from probegen_jax.make.chunks import ChunkFn, run_chunks, time_spent
from probegen_jax.parallel import barrier, is_main_process
from probegen_jax.timing import Timing


def chunk_shares(num_chunks: int, processes: int) -> list[list[int]]:
    """The chunks each process computes: every ``processes``-th, starting at its index."""
    return [list(range(p, num_chunks, processes)) for p in range(processes)]


def share_dir(work_dir: str | os.PathLike, process: int, processes: int) -> Path:
    """Where process ``process`` of ``processes`` keeps its chunks."""
    return Path(work_dir) / f"process_{process:03d}_of_{processes:03d}"


def time_spent_before(work_dir: str | os.PathLike | None) -> Timing:
    """The time interrupted runs of this process spent on its chunks of the job in ``work_dir``;
    a generator's ``Stopwatch`` starts from it, so a resumed zoo records the time of every run."""
    if work_dir is None or jax.process_count() == 1:
        return time_spent(work_dir)
    return time_spent(share_dir(work_dir, jax.process_index(), jax.process_count()))


def run_chunks_on_processes(
    work_dir: str | os.PathLike | None,
    plan: Mapping[str, Any],
    num_chunks: int,
    make_chunk: ChunkFn,
    *,
    desc: str = "chunks",
    progress: bool = True,
) -> list[dict[str, np.ndarray]]:
    """``run_chunks`` with the chunks shared out among the processes (each process gets all of
    them back, in order). Without a work folder, or in one process, every chunk is computed here."""
    processes, progress = jax.process_count(), progress and is_main_process()
    if work_dir is None or processes == 1:
        return run_chunks(work_dir, plan, num_chunks, make_chunk, desc=desc, progress=progress)
    shares = chunk_shares(num_chunks, processes)

    def share(p: int) -> tuple[Path, dict[str, Any]]:
        return share_dir(work_dir, p, processes), {**plan, "process": p, "processes": processes}

    me = jax.process_index()
    with process_local_writes():
        run_chunks(*share(me), len(shares[me]), lambda j: make_chunk(shares[me][j]), desc=desc, progress=progress)
    barrier(f"{desc}: every share computed")

    def missing(p: int) -> ChunkFn:
        def fail(j: int) -> Mapping[str, np.ndarray]:
            raise ZooFormatError(f"{share(p)[0]}: chunk {shares[p][j]} of process {p} is missing or damaged; "
                                 "run the generation again to compute it")
        return fail

    done = [run_chunks(*share(p), len(shares[p]), missing(p), progress=False) for p in range(processes)]
    return [done[i % processes][i // processes] for i in range(num_chunks)]
