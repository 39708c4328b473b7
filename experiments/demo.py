"""`make demo`: an INR zoo of scikit-learn's digits (embedded data, no download), then ProbeGen,
vanilla probing and synthetic probes classify the INRs from their behaviour alone.

Runs in a few minutes on 2 CPU cores; prints the results table and writes results/demo/.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from inr_classification import run  # noqa: E402

from probegen_jax.train import TrainConfig  # noqa: E402
from probegen_jax.zoo import load_zoo  # noqa: E402
from probegen_jax.zoo.inr import INRZooConfig, make_inr_zoo  # noqa: E402


def main() -> None:
    start = time.perf_counter()
    out = Path("results/demo")
    zoo_path = out / "digits_inr_zoo"
    cfg = INRZooConfig(dataset="digits", num_train=1238, num_val=200, num_test=None, steps=300, chunk_size=512)
    print("1/2  fitting one SIREN per digit image (1,797 INRs, vmapped; resumable) ...")
    zoo = load_zoo(zoo_path) if zoo_path.exists() else make_inr_zoo(cfg, zoo_path)
    print(zoo.describe(), f"\nmean PSNR {zoo.meta['psnr_mean']:.1f} dB\n")
    print("2/2  training ProbeGen and the probing baselines (K=64, 2 seeds) ...")
    table = run(zoo, sources=["probegen", "vanilla", "synthetic"], probe_counts=[64], seeds=[0, 1],
                cfg=TrainConfig(epochs=30), out=out, title="Demo: digits INR classification")
    print("\n" + table)
    print(f"\nchance is 10%. Plots and tables in {out}/ ({time.perf_counter() - start:.0f} s in all)")


if __name__ == "__main__":
    main()
