"""Import speed of the public zoo formats: generates a DWSNets INR set (one torch file per INR,
MNIST-INR layout) and a Small CNN Zoo set (weights.npy with 9 checkpoints per network,
metrics.csv.gz, layout.csv, a published-style permutation) in a temporary folder, imports each
in a fresh process and prints MB/s, the raw read speed of the same files, and peak RSS.

    python benchmarks/import_speed.py                              # 5k INRs, 3k CNNs (minutes)
    python benchmarks/import_speed.py --inrs 70000 --cnns 30000    # the published sizes
    python benchmarks/import_speed.py --cold                       # evict the files from the page cache first

MB/s counts the bytes an import has to read: every INR file; for the Small CNN Zoo the final
checkpoint's rows of weights.npy (a ninth of the file) plus metrics and layout. "raw MB/s" reads
the same bytes with plain file reads (no parsing), the disk-speed yardstick; for the INR folders
"walk + raw MB/s" also finds the files first, by walking the folder tree with ``os.walk``, as any
import of a folder layout has to. Each measurement runs ``--repeats`` times, the reads and the
import in turn so that the disk's drift touches each alike; medians are printed, and "import / raw
speed" is their ratio.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine_description  # noqa: E402

STEPS = (0, 1, 2, 3, 20, 40, 60, 80, 86)
WIDTHS = (2, 32, 32, 1)
T = TypeVar("T")


# ----------------------------------------------------------------------------- generating


def make_inr_set(root: Path, n: int, seed: int = 0) -> list[Path]:
    """DWSNets MNIST-INR layout, written with plain torch.save (as DWSNets' fitting script does)."""
    import torch

    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        split = "testing" if i % 7 == 0 else "training"
        path = root / f"mnist_png_{split}_{i % 10}_{i}" / "checkpoints" / "model_final.pth"
        path.parent.mkdir(parents=True)
        state = {}
        for layer, (fi, fo) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:])):
            state[f"seq.{layer}.weight"] = torch.from_numpy(rng.normal(0, 0.1, (fo, fi)).astype(np.float32))
            state[f"seq.{layer}.bias"] = torch.from_numpy(rng.normal(0, 0.1, fo).astype(np.float32))
        torch.save(state, path)
        files.append(path)
    return files


def make_small_cnn_set(root: Path, networks: int, seed: int = 0) -> list[Path]:
    """Small CNN Zoo files: rows ordered by network then checkpoint, like the published matrices;
    columns in the published order (TF's name order: each layer's bias before its kernel)."""
    from probegen_jax.archs import make_arch
    from probegen_jax.zoo.formats.small_cnn_zoo import keras_layout

    root.mkdir(parents=True, exist_ok=True)
    rows, width = networks * len(STEPS), 4970
    rng = np.random.default_rng(seed)
    weights = np.lib.format.open_memmap(root / "weights.npy", mode="w+", dtype=np.float32, shape=(rows, width))
    for start in range(0, rows, 8192):
        stop = min(start + 8192, rows)
        weights[start:stop] = rng.normal(0, 0.2, (stop - start, width)).astype(np.float32)
    weights.flush()
    del weights
    layout, position = ["varname,start_idx,end_idx,shape"], 0
    for varname, _, shape in keras_layout(make_arch("small_cnn", input_shape=(32, 32, 1))):
        size = int(np.prod(shape))
        layout.append(f'{varname},{position},{position + size},"{shape}"')
        position += size
    (root / "layout.csv").write_text("\n".join(layout) + "\n")
    write_small_cnn_metrics(root / "metrics.csv.gz", networks, rng)
    np.savetxt(root / "split.csv", rng.permutation(rows), fmt="%d")
    return [root / n for n in ("weights.npy", "metrics.csv.gz", "layout.csv", "split.csv")]


def write_small_cnn_metrics(path: Path, networks: int, rng: np.random.Generator) -> None:
    """A Small CNN Zoo ``metrics.csv.gz``: the published columns, one row per (network, step)."""
    header = ["config.activation", "config.b_init", "config.dataset", "config.dnn_architecture", "config.dropout",
              "config.epochs", "config.epochs_between_checkpoints", "config.init_std", "config.l2reg",
              "config.learning_rate", "config.num_layers", "config.num_units", "config.optimizer",
              "config.random_seed", "config.train_fraction", "config.w_init", "modeldir", "step", "test_accuracy",
              "test_loss", "train_accuracy", "train_loss"]
    with gzip.open(path, "wt", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for net in range(networks):
            act, opt = ("relu", "tanh")[net % 2], ("adam", "sgd", "rmsprop")[net % 3]
            for step in STEPS:
                writer.writerow([act, "zeros", "cifar10", "cnn", 0.1, 86, 20, 0.05, 1e-4, 3e-3, 3, 16, opt, 42,
                                 0.5, "he_normal", f"/tmp/run/{net}", step, rng.uniform(), rng.uniform(),
                                 rng.uniform(), rng.uniform()])


# ----------------------------------------------------------------------------- measuring


def evict(files: list[Path]) -> None:
    """Drop these files (only these) from the page cache."""
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cold_or_warm(cold: bool, files: list[Path], measure: Callable[[], T]) -> T:
    """``measure()``, after evicting ``files`` from the page cache when ``cold``."""
    if cold:
        evict(files)
    return measure()


def median_import(results: list[tuple]) -> tuple:
    """The import (of several, as ``import_in_fresh_process`` returns them) of median seconds."""
    return sorted(results)[len(results) // 2]


def raw_read_seconds(files: list[Path], ranges: dict[Path, list[tuple[int, int]]] | None = None) -> float:
    """Seconds to read the files' bytes (or the given byte ranges) with plain reads."""
    start = time.perf_counter()
    for path in files:
        with open(path, "rb", buffering=0) as f:
            if ranges and path in ranges:
                for offset, size in ranges[path]:
                    f.seek(offset)
                    f.read(size)
            else:
                while f.read(1 << 24):
                    pass
    return time.perf_counter() - start


def walk_and_read_seconds(root: Path, suffix: str) -> float:
    """Seconds to find every ``*suffix`` file under ``root`` with ``os.walk`` and read it plainly."""
    start = time.perf_counter()
    found = [Path(folder, name) for folder, _, names in os.walk(root) for name in names if name.endswith(suffix)]
    return time.perf_counter() - start + raw_read_seconds(found)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(fmt: str, path: str, options: dict, queue) -> None:
    from probegen_jax.zoo.formats import FORMATS, import_zoo

    FORMATS[fmt].read  # import the reader's module before the clock starts
    start = time.perf_counter()
    zoo = import_zoo(fmt, path, progress=False, **options)
    seconds = time.perf_counter() - start
    import jax

    nbytes = sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(zoo.params))
    workers_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest reader process
    queue.put((seconds, peak_rss_mb(), workers_rss, len(zoo), nbytes / 1e6))


def import_in_fresh_process(fmt: str, path: Path, **options) -> tuple[float, float, float, int, float]:
    """(seconds, peak RSS MB, largest worker's peak RSS MB, zoo size, zoo params MB) of one
    import in a new process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fmt, str(path), options, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def baseline_rss_mb() -> float:
    """Peak RSS of a fresh process that only imports the library (the floor under every import)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_baseline_child, args=(queue,))
    proc.start()
    value = queue.get()
    proc.join()
    return value


def _baseline_child(queue) -> None:
    import probegen_jax.zoo.formats  # noqa: F401

    queue.put(peak_rss_mb())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inrs", type=int, default=5000, help="INR files (published MNIST-INR: 70000)")
    p.add_argument("--cnns", type=int, default=3000, help="networks, 9 checkpoints each (published: 30000)")
    p.add_argument("--workers", type=int, nargs="+", default=None,
                   help="reader processes for the INR files (default: 1, 2 and the library's default)")
    p.add_argument("--cold", action="store_true", help="evict the generated files from the page cache before each read")
    p.add_argument("--repeats", type=int, default=3, help="runs of each measurement (medians are printed)")
    p.add_argument("--dir", help="where to generate the sets (default: a temporary folder, removed afterwards)")
    args = p.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(dir=args.dir)
    root = Path(tmp.name)
    print(machine_description())
    print(f"baseline peak RSS (python + library imported): {baseline_rss_mb():.0f} MB\n")
    rows = []

    t = time.perf_counter()
    inr_files = make_inr_set(root / "inrs", args.inrs)
    inr_mb = sum(f.stat().st_size for f in inr_files) / 1e6
    print(f"generated {args.inrs:,} INR files ({inr_mb:.0f} MB) in {time.perf_counter() - t:.0f} s")
    from probegen_jax.zoo.formats.common import default_workers

    for workers in args.workers or sorted({1, 2, default_workers()}):
        raws, walks, imports = [], [], []
        for _ in range(args.repeats):  # interleaved, so that the disk's drift touches each alike
            raws.append(cold_or_warm(args.cold, inr_files, lambda: raw_read_seconds(inr_files)))
            walks.append(cold_or_warm(args.cold, inr_files, lambda: walk_and_read_seconds(root / "inrs", ".pth")))
            imports.append(cold_or_warm(args.cold, inr_files,
                                        lambda: import_in_fresh_process("dwsnets", root / "inrs", workers=workers)))
        seconds, rss, worker_rss, n, zoo_mb = median_import(imports)
        raw, walk_raw = statistics.median(raws), statistics.median(walks)
        rows.append(["dwsnets", f"{n:,}", f"{len(inr_files):,}", f"{inr_mb:.0f}", f"{inr_mb:.0f}", workers,
                     f"{seconds:.1f}", f"{inr_mb / seconds:.1f}", f"{inr_mb / raw:.0f}", f"{inr_mb / walk_raw:.0f}",
                     f"{raw / seconds:.0%}", f"{n / seconds:,.0f}",
                     f"{rss:.0f}", f"{worker_rss:.0f}" if workers > 1 else "-", f"{zoo_mb:.0f}"])

    try:
        import probegen_jax.archs.cnn  # noqa: F401  (the small_cnn architecture)
    except ImportError:
        args.cnns = 0
        print("the small_cnn architecture (probegen_jax.archs.cnn) is not installed: Small CNN Zoo set skipped")
    t = time.perf_counter()
    cnn_files = make_small_cnn_set(root / "cnn", args.cnns) if args.cnns else []
    cnn_mb = sum(f.stat().st_size for f in cnn_files) / 1e6
    if not args.cnns:
        return _print(rows, args, tmp)
    print(f"generated a Small CNN Zoo set of {args.cnns:,} networks x {len(STEPS)} checkpoints "
          f"({cnn_mb:.0f} MB) in {time.perf_counter() - t:.0f} s\n")
    weights = np.load(root / "cnn" / "weights.npy", mmap_mode="r")
    header, row_bytes = weights.offset, weights.shape[1] * 4
    final_rows = np.arange(len(STEPS) - 1, weights.shape[0], len(STEPS))
    del weights
    read_mb = (len(final_rows) * row_bytes + sum(f.stat().st_size for f in cnn_files[1:])) / 1e6
    ranges = {cnn_files[0]: [(header + int(r) * row_bytes, row_bytes) for r in final_rows]}
    raws, imports = [], []
    for _ in range(args.repeats):
        raws.append(cold_or_warm(args.cold, cnn_files, lambda: raw_read_seconds(cnn_files, ranges)))
        imports.append(cold_or_warm(args.cold, cnn_files, lambda: import_in_fresh_process(
            "small-cnn-zoo", root / "cnn", split_file=root / "cnn" / "split.csv")))
    seconds, rss, _, n, zoo_mb = median_import(imports)
    raw = statistics.median(raws)
    rows.append(["small-cnn-zoo", f"{n:,}", f"{len(cnn_files)}", f"{cnn_mb:.0f}", f"{read_mb:.0f}", 1,
                 f"{seconds:.1f}", f"{read_mb / seconds:.1f}", f"{read_mb / raw:.0f}", "-", f"{raw / seconds:.0%}",
                 f"{n / seconds:,.0f}", f"{rss:.0f}", "-", f"{zoo_mb:.0f}"])

    _print(rows, args, tmp)


def _print(rows, args, tmp) -> None:
    head = ["format", "networks", "files", "MB on disk", "MB to read", "workers", "seconds", "MB/s", "raw MB/s",
            "walk + raw MB/s", "import / raw speed", "networks/s", "peak RSS MB", "worker peak RSS MB", "zoo params MB"]
    out = io.StringIO()
    out.write("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
    for row in rows:
        out.write("| " + " | ".join(map(str, row)) + " |\n")
    print(f"{'cold' if args.cold else 'warm'} page cache; medians of {args.repeats} runs, each reading and importing "
          f"in turn\n" + out.getvalue())
    tmp.cleanup()


if __name__ == "__main__":
    main()
