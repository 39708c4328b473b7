"""ProbeGen and vanilla probing against the official ProbeGen code (jonkahana/ProbeGen), side by
side on the same files in one run: per-epoch and whole-process seconds, and both test accuracies.

    python benchmarks/probegen_official.py --official-code /path/to/ProbeGen \\
        --official-python /tmp/pgref/bin/python [--zoo zoos/digits_inr] [--work DIR]

1. The digits INR zoo (``--zoo DIR``, or made with ``probegen-jax zoo make inr --dataset digits``)
   is exported with ``probegen-jax zoo export dwsnets``: one state dict per INR plus a splits JSON
   of absolute paths, which the official code reads as its ``mnist_splits.json``.
2. The official ``main.py`` runs unchanged, 30 epochs, ``--gen_type linear_2_no_acts`` (ProbeGen)
   or ``linear_0_no_acts`` (vanilla), ``--n_tokens`` K, ``--n_workers 0`` as its own run scripts
   (``scripts/*/mnist_inr__*.sh``) pass it, its defaults otherwise; in a working folder of its own
   (it reads ``experiments/inr_classification/dataset/mnist_splits.json`` relative to it), through
   ``probegen_official_worker.py``, which times its epoch loop and scores its last weights (it keeps
   no best-validation weights) with its own ``evaluate``. Torch gets one intra-op thread
   (``--official-threads``): on a shared, loaded 2-core machine its default of one thread per core
   spends most of an epoch waiting for a descheduled thread (20.9 s against 1.6 s an epoch measured
   here at load average 13), so one thread is the official code's faster setting; 0 keeps torch's own.
3. This library's ``probegen-jax train {probegen,vanilla}`` runs as a whole process on the same zoo
   and splits, 30 epochs, the same K and seeds, twice: with an empty (cold) and then a filled (warm)
   persistent compilation cache in a folder of the run's own (``PROBEGEN_JAX_CACHE_DIR``; where the
   library has no ``compile_cache`` module, JAX's ``JAX_COMPILATION_CACHE_DIR``).

Per epoch: the official code's median epoch (its 30 epochs timed in the loop; the epochs that also
evaluate val and test every 500 steps included); this library's last epoch from its run record (the
training seconds its last two checkpoints record: one epoch, its validation and its checkpoint).
Whole process: from the process's start until the official main.py returns (its extra scoring
after that left out), or until this library's command exits (its test evaluation and the saved run
included). Each cell is the median over the seeds (this library's epoch: over the seeds' cold and
warm runs); ratios are the official code's seconds over this library's. Test accuracy: the
library's at its best validation epoch, the official code's at its last weights (mean of seeds).

The official environment (nothing is fetched at run time; torch pinned to the version it was checked
with): ``python3 -m venv /tmp/pgref && /tmp/pgref/bin/pip install torch==2.13.0 numpy pandas scipy
scikit-learn tqdm``. Its checkout needs only ``main.py``, ``data.py`` and ``ProbeGen.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine_description  # noqa: E402

from probegen_jax.io import read_manifest  # noqa: E402
from probegen_jax.report import markdown_table  # noqa: E402

GEN_TYPE = {"probegen": "linear_2_no_acts", "vanilla": "linear_0_no_acts"}
WORKER = Path(__file__).parent / "probegen_official_worker.py"


def cli() -> list[str]:
    script = Path(sys.executable).parent / "probegen-jax"
    return [str(script)] if script.exists() else [sys.executable, "-m", "probegen_jax.cli"]


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def prepare(args, work: Path) -> Path:
    """The zoo (made unless given) exported as DWSNets files; returns the export's splits JSON."""
    zoo = Path(args.zoo) if args.zoo else work / "zoo"
    if not args.zoo:
        subprocess.run([*cli(), "zoo", "make", "inr", "--dataset", "digits", "--out", str(zoo)], check=True)
    args.zoo = str(zoo)
    export = work / "dwsnets"
    if not (export / "splits.json").exists():
        subprocess.run([*cli(), "zoo", "export", "dwsnets", str(zoo), "--out", str(export), "--overwrite"], check=True)
    folder = work / "official" / "experiments" / "inr_classification" / "dataset"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(export / "splits.json", folder / "mnist_splits.json")
    return export / "splits.json"


def official(args, work: Path, method: str, k: int, seed: int) -> dict:
    name = f"{method}_{k}_seed{seed}"
    cmd = [args.official_python, str(WORKER), str(Path(args.official_code).absolute()), "--exp_name", name,
           "--seed", str(seed), "--dataset", "mnist_inr", "--n_tokens", str(k), "--gen_type", GEN_TYPE[method],
           "--epochs", str(args.epochs), "--n_workers", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.official_threads)} if args.official_threads else None
    start = time.time()
    with open(work / f"official_{name}.log", "w") as log:
        out = subprocess.run(cmd, cwd=work / "official", stdout=subprocess.PIPE, stderr=log, text=True, check=True,
                             env=env)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return {"epoch": statistics.median(got["epochs"]), "whole": got["end"] - start, "test": got["test_acc"],
            "epochs": got["epochs"]}


def cache_env(folder: Path) -> dict:
    chosen = ("JAX_COMPILATION_CACHE_DIR", "PROBEGEN_JAX_COMPILATION_CACHE")
    env = {k: v for k, v in os.environ.items() if k not in chosen}
    if importlib.util.find_spec("probegen_jax.compile_cache"):
        return {**env, "PROBEGEN_JAX_CACHE_DIR": str(folder)}
    return {**env, "JAX_COMPILATION_CACHE_DIR": str(folder), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.3"}


def library(args, work: Path, method: str, k: int, seed: int, cache: Path, label: str) -> dict:
    out = work / f"lib_{method}_{k}_seed{seed}_{label}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*cli(), "train", method, "--zoo", args.zoo, "--out", str(out), "--probes", str(k),
           "--epochs", str(args.epochs), "--seed", str(seed)]
    start = time.time()
    with open(f"{out}.log", "w") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=cache_env(cache), check=True)
    whole = time.time() - start
    run = json.loads((out / "run.json").read_text())
    last = sorted((p for p in (out / "checkpoints").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))[-2:]
    seconds = [read_manifest(p)["record"]["seconds"] for p in last]
    return {"epoch": seconds[1] - seconds[0], "whole": whole, "test": run["result"]["test"]["accuracy"],
            "train_s": run["result"]["seconds"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official-code", required=True, help="checkout of jonkahana/ProbeGen")
    p.add_argument("--official-python", required=True, help="Python of the official code's environment")
    p.add_argument("--official-threads", type=int, default=1,
                   help="torch threads of the official code (0: its default)")
    p.add_argument("--zoo", help="a saved digits INR zoo (default: made in the work folder)")
    p.add_argument("--work", help="folder for the export, the runs and their logs (default: a temporary one)")
    p.add_argument("--methods", default="probegen,vanilla")
    p.add_argument("--probes", default="64,128")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=30)
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="probegen_official_")).absolute()
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine_description()}; {load()}", flush=True)
    splits = json.loads(prepare(args, work).read_text())
    print(f"zoo {args.zoo}, exported to {work / 'dwsnets'}: "
          + ", ".join(f"{s} {len(v['path'])}" for s, v in splits.items()), flush=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for method in args.methods.split(","):
        for k in (int(x) for x in args.probes.split(",")):
            got: dict[str, list[dict]] = {"official": [], "cold": [], "warm": []}
            for seed in seeds:
                cache = work / f"cache_{method}_{k}_seed{seed}"
                shutil.rmtree(cache, ignore_errors=True)
                got["official"].append(official(args, work, method, k, seed))
                got["cold"].append(library(args, work, method, k, seed, cache, "cold"))
                got["warm"].append(library(args, work, method, k, seed, cache, "warm"))
                print(f"{method} K={k} seed {seed}: " + "; ".join(
                    f"{name} epoch {r[-1]['epoch']:.3f} s, whole {r[-1]['whole']:.1f} s, "
                    f"test {100 * r[-1]['test']:.2f}%"
                    for name, r in got.items()) + f"; {load()}", flush=True)
            med = {name: {key: statistics.median(r[key] for r in runs) for key in ("epoch", "whole")}
                   for name, runs in got.items()}
            ours_epoch = statistics.median(r["epoch"] for r in got["cold"] + got["warm"])
            acc = {name: statistics.mean(100 * r["test"] for r in got[name]) for name in ("official", "cold")}
            o = med["official"]
            rows.append([method, k, f"{o['epoch']:.3f}", f"{ours_epoch:.3f}", f"{o['epoch'] / ours_epoch:.1f}x",
                         f"{o['whole']:.1f}", f"{med['cold']['whole']:.1f}",
                         f"{o['whole'] / med['cold']['whole']:.1f}x",
                         f"{med['warm']['whole']:.1f}", f"{o['whole'] / med['warm']['whole']:.1f}x",
                         f"{acc['official']:.2f}", f"{acc['cold']:.2f}"])
    print()
    print(markdown_table(["method", "K", "official s / epoch", "probegen_jax s / epoch", "ratio",
                          "official whole s", "probegen_jax whole s (cold cache)", "ratio",
                          "probegen_jax whole s (warm cache)", "ratio", "official test acc (%)",
                          "probegen_jax test acc (%)"], rows))
    print(f"\nmedians of seeds {args.seeds}, {args.epochs} epochs; {load()} at the end; work folder {work}")


if __name__ == "__main__":
    main()
