"""After training: load a saved run, predict networks it never saw, and draw its learned probes.

    python -m examples.load_and_predict --run results/own_zoo/run --out results/own_zoo
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import probegen_jax as pj
from probegen_jax import report
from probegen_jax.training import metrics


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a run directory (pj.save_run or `probegen-jax train`)")
    p.add_argument("--zoo", help="networks to predict (default: the run's own zoo)")
    p.add_argument("--out", required=True, help="folder for the probe plot")
    args = p.parse_args(argv)

    run = pj.load_run(args.run)  # nothing but the run folder: method, spec, params, constants
    zoo = pj.load_zoo(args.zoo or run.zoo["path"])
    print(run)
    print("test metrics again:", pj.evaluate(run, zoo, "test"))

    test = zoo.indices("test")
    predicted = pj.predict(run, zoo, indices=test)[:, 0]
    true = zoo.target(run.target)[test]
    tau = metrics.kendall_tau(predicted, true)
    print(f"Kendall tau on {len(test)} test networks: {tau:.3f}")

    probes = np.asarray(pj.learned_probes(run, zoo))  # [K, 8, 8, 1]
    path = report.plot_image_probes({f"{run.method}, K={len(probes)}": probes}, Path(args.out) / "probes.png",
                                    title="learned probes")
    print(f"learned probes drawn in {path}")
    return tau


if __name__ == "__main__":
    main()
