"""`make demo`: an INR zoo of scikit-learn's digits (embedded data, no download), then ProbeGen,
vanilla probing and synthetic probes classify the INRs from their behaviour alone.

Runs in a few minutes on 2 CPU cores; prints the results table and writes results/demo/. The
options shrink it (the test suite runs it on a few dozen INRs). Run it from the repository root:
``python -m experiments.demo``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from experiments.inr_classification import run
from probegen_jax.make.inr import INRZooConfig, make_inr_zoo
from probegen_jax.training.loop import TrainConfig
from probegen_jax.zoo import load_zoo


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/demo")
    p.add_argument("--train", type=int, default=1238, help="training INRs (val 200, test the rest of the 1,797)")
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--test", type=int, default=None, help="test INRs (default: the remaining images)")
    p.add_argument("--inr-steps", type=int, default=300, help="Adam steps per INR")
    p.add_argument("--epochs", type=int, default=30)
    args = p.parse_args(argv)
    start = time.perf_counter()
    out = Path(args.out)
    zoo_path = out / "digits_inr_zoo"
    cfg = INRZooConfig(dataset="digits", num_train=args.train, num_val=args.val, num_test=args.test,
                       steps=args.inr_steps, chunk_size=512)
    print("1/2  fitting one SIREN per digit image (vmapped; resumable) ...")
    zoo = load_zoo(zoo_path) if zoo_path.exists() else make_inr_zoo(cfg, zoo_path)
    print(zoo.describe(), f"\nmean PSNR {zoo.meta['psnr_mean']:.1f} dB\n")
    print("2/2  training ProbeGen and the probing baselines (K=64, 2 seeds) ...")
    table = run(zoo, str(zoo_path), sources=["probegen", "vanilla", "synthetic"], probe_counts=[64], seeds=[0, 1],
                cfg=TrainConfig(epochs=args.epochs), out=out, title="Demo: digits INR classification")
    print("\n" + table)
    print(f"\nchance is 10%. Plots and tables in {out}/ ({time.perf_counter() - start:.0f} s in all)")
    return table


if __name__ == "__main__":
    main()
