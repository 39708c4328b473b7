"""The Small CNN Zoo's ``metrics.csv.gz`` read by this library's own parser against ``pyarrow.csv``
and ``pandas.read_csv`` (only the columns needed, whole and in chunks), on the file
``import_speed.py`` generates (30,000 networks x 9 checkpoints = 270,000 rows by default).

Each reader does what the import needs of the file: every row's ``step`` and run (``modeldir``, as
integer codes), and the import's metric columns at the final checkpoint's rows. Times are medians
of ``--repeats`` calls in this process after one warm-up, the readers in turn (the file in the page
cache: decompression and parsing are what differ), as wall time and as CPU time (every thread
counted; on a shared machine the steadier of the two); the libraries' own import time is printed
apart, and a fresh process that imports a reader and reads the file once is timed as
``zoo import`` on the command line would pay it. pyarrow and pandas
are optional here (``pip install pyarrow pandas``); a missing one is left out.

    python benchmarks/metrics_csv.py                 # 30,000 networks
    python benchmarks/metrics_csv.py --networks 3000
"""

from __future__ import annotations

import argparse
import importlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from import_speed import write_small_cnn_metrics  # noqa: E402

from probegen_jax.zoo.formats.small_cnn_zoo import (  # noqa: E402
    METRIC_COLUMNS,
    MetricsFile,
    _chosen_metrics,
    read_run_column,
    read_step_column,
)

Result = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]  # steps, run codes, final rows' metric columns
WANTED = ("step", "modeldir", *METRIC_COLUMNS)
CHUNK_ROWS = 65536


def hand_written(path: Path) -> Result:
    """The import's own readers: the step column as the file decompresses, the run codes from the
    bytes, then only the final rows' lines parsed."""
    metrics = MetricsFile(path)
    steps = read_step_column(metrics)
    codes, _ = read_run_column(metrics)
    chosen = np.flatnonzero(steps == steps.max())
    columns = _chosen_metrics(metrics, chosen, len(steps))
    return steps, codes, {k: _values(c.numeric() if c.numeric() is not None else c.strings())
                          for k, c in columns.items() if k != "step"}


def _values(column: np.ndarray) -> np.ndarray:
    return column if column.dtype.kind == "f" else column.astype(str)


def _from_columns(steps: np.ndarray, runs: np.ndarray, columns: dict[str, np.ndarray]) -> Result:
    """The result from whole columns: run names coded, the final rows taken."""
    _, codes = np.unique(runs, return_inverse=True)
    chosen = np.flatnonzero(steps == steps.max())
    return steps, codes.reshape(-1), {k: _values(np.asarray(v)[chosen]) for k, v in columns.items()}


def pyarrow_csv(path: Path) -> Result:
    from pyarrow import csv as pacsv

    header = _header(path)
    include = [c for c in WANTED if c in header]
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=include))
    columns = {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}
    return _from_columns(columns.pop("step").astype(np.float64), columns.pop("modeldir"), columns)


def pandas_whole(path: Path, **options) -> Result:
    import pandas as pd

    frame = pd.read_csv(path, usecols=[c for c in WANTED if c in _header(path)], **options)
    columns = {name: frame[name].to_numpy() for name in frame.columns}
    return _from_columns(columns.pop("step").astype(np.float64), columns.pop("modeldir").astype(str), columns)


def pandas_chunked(path: Path) -> Result:
    import pandas as pd

    chunks = list(pd.read_csv(path, usecols=[c for c in WANTED if c in _header(path)], chunksize=CHUNK_ROWS))
    frame = pd.concat(chunks, ignore_index=True)
    columns = {name: frame[name].to_numpy() for name in frame.columns}
    return _from_columns(columns.pop("step").astype(np.float64), columns.pop("modeldir").astype(str), columns)


def _header(path: Path) -> list[str]:
    import gzip

    with gzip.open(path, "rt") as f:
        return f.readline().strip().split(",")


READERS: dict[str, tuple[str | None, Callable[[Path], Result]]] = {
    "hand-written (numpy C parser, only the final rows' lines)": (None, hand_written),
    "pyarrow.csv.read_csv (include_columns, threads)": ("pyarrow.csv", pyarrow_csv),
    "pandas.read_csv (usecols, C engine)": ("pandas", pandas_whole),
    f"pandas.read_csv (usecols, chunksize={CHUNK_ROWS})": ("pandas", pandas_chunked),
    "pandas.read_csv (usecols, engine=pyarrow)": ("pandas", lambda p: pandas_whole(p, engine="pyarrow")),
}


def _process_seconds(code: str) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, every thread) of a fresh process running ``code``."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); {code}"],
                   check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - start, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def import_seconds(module: str) -> float:
    """Seconds a fresh interpreter takes to import ``module``, less its own start-up."""
    return (statistics.median(_process_seconds(f"import {module}")[1] for _ in range(3))
            - statistics.median(_process_seconds("")[1] for _ in range(3)))


def fresh_process_seconds(name: str, path: Path, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of a fresh process that imports the reader (this library and the
    parsing library) and reads ``path`` once: what ``zoo import`` on the command line pays."""
    code = f"import metrics_csv; metrics_csv.READERS[{name!r}][1](metrics_csv.Path({str(path)!r}))"
    runs = [_process_seconds(code) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two codings group the rows alike (the codes themselves may differ)."""
    pairs = np.unique(np.stack([a, b]), axis=1).shape[1]
    return a.shape == b.shape and pairs == len(np.unique(a)) == len(np.unique(b))


def same(a: Result, b: Result) -> bool:
    """Whether two readers agree: steps, runs, and every metric column at the final rows."""
    return (np.array_equal(a[0], b[0]) and same_partition(a[1], b[1]) and set(a[2]) == set(b[2])
            and all(np.array_equal(a[2][k], b[2][k]) if a[2][k].dtype.kind != "f"
                    else np.allclose(a[2][k], b[2][k], equal_nan=True) for k in a[2]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", type=int, default=30000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.csv.gz"
        write_small_cnn_metrics(path, args.networks, np.random.default_rng(0))
        print(f"{args.networks} networks, {args.networks * 9} rows, {path.stat().st_size / 1e6:.1f} MB gzipped")
        print("| reader | read: wall s | read: CPU s | CPU vs hand-written | library import: CPU s "
              "| fresh process, import + read: wall s | CPU s | same values |")
        print("|---|---|---|---|---|---|---|---|")
        readers = {name: read for name, (module, read) in READERS.items() if _available(module, name)}
        results = {name: read(path) for name, read in readers.items()}  # warm-up
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in readers}
        for _ in range(args.repeats):  # the readers in turn, so the machine's drift touches each alike
            for name, read in readers.items():
                start, cpu = time.perf_counter(), time.process_time()
                read(path)
                times[name].append((time.perf_counter() - start, time.process_time() - cpu))
        reference = next(iter(results.values()))
        baseline = statistics.median(t[1] for t in next(iter(times.values())))
        for name, read in readers.items():
            wall, cpu = (statistics.median(t[i] for t in times[name]) for i in (0, 1))
            module = READERS[name][0]
            imported = f"{import_seconds(module):.2f}" if module else "-"
            fresh_wall, fresh_cpu = fresh_process_seconds(name, path, args.repeats)
            print(f"| {name} | {wall:.2f} | {cpu:.2f} | {cpu / baseline:.2f}x | {imported} | {fresh_wall:.2f} | "
                  f"{fresh_cpu:.2f} | {same(results[name], reference)} |")


def _available(module: str | None, name: str) -> bool:
    if module is None:
        return True
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        print(f"| {name} | not installed | | | | | | |")
        return False

if __name__ == "__main__":
    main()
