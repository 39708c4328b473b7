"""Cost of the checksums: loads a saved zoo of DWSNets-sized INRs (random SIREN params 2-32-32-1,
70,000 networks by default, about 330 MB) with and without verification, side by side.

    python benchmarks/integrity.py                  # 70,000 INRs
    python benchmarks/integrity.py --inrs 10000 --repeats 5

Each repeat loads the zoo once verified and once with ``verify=False``, in turn, from the page
cache (the zoo was just written), timed by the wall clock and by this process's CPU time (which
other processes on a busy machine disturb less); medians are printed with the verification's
share of the verified load. "read" is a plain read of ``arrays.bin``, the yardstick for the load itself.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine_description  # noqa: E402

from probegen_jax.archs import make_arch  # noqa: E402
from probegen_jax.zoo import Zoo, load_zoo, save_zoo  # noqa: E402


def inr_zoo(n: int, seed: int = 0) -> Zoo:
    """``n`` random SIRENs of the DWSNets INR architecture (no training: only the bytes matter)."""
    arch = make_arch("siren", in_dim=2, hidden=32, depth=2, out_dim=1, w0=30.0, output_offset=0.5)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda s: rng.normal(0, 0.1, (n, *s.shape)).astype(np.float32), arch.param_shapes())
    cut = n * 6 // 7
    return Zoo(arch, params, {"label": rng.integers(0, 10, n).astype(np.int32)},
               {"train": np.arange(cut - cut // 10), "val": np.arange(cut - cut // 10, cut), "test": np.arange(cut, n)})


def seconds(fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    start = clock()
    fn()
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inrs", type=int, default=70_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "zoo"
        zoo = inr_zoo(args.inrs)
        save = seconds(lambda: save_zoo(zoo, path))
        size = (path / "arrays.bin").stat().st_size
        load_zoo(path)  # warm the page cache and the imports
        times: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for clock, suffix in [(time.perf_counter, ""), (time.process_time, " cpu")]:
                for name, fn in [("read", lambda: (path / "arrays.bin").read_bytes()), ("verified", lambda: load_zoo(path)),
                                 ("unverified", lambda: load_zoo(path, verify=False))]:
                    times.setdefault(name + suffix, []).append(seconds(fn, clock))
    print(machine_description())
    print(f"{args.inrs:,} INRs, arrays.bin {size / 1e6:.0f} MB; save {save:.2f} s; {args.repeats} repeats:")
    for name, label in [("read", "read arrays.bin"), ("verified", "load_zoo, verified"),
                        ("unverified", "load_zoo, verify=False")]:
        print(f"{label:>22}: {statistics.median(times[name]):.3f} s wall (fastest {min(times[name]):.3f} s), "
              f"{statistics.median(times[name + ' cpu']):.3f} s CPU")
    for suffix, how in [("", "wall"), (" cpu", "CPU")]:
        verified, unverified = statistics.median(times["verified" + suffix]), statistics.median(times["unverified" + suffix])
        print(f"checksums ({how}, medians): {verified - unverified:.3f} s, "
              f"{100 * (verified - unverified) / verified:.1f}% of the verified load")


if __name__ == "__main__":
    main()
