"""Learning curves under training recipes: validation accuracy against optimiser steps of NG-GNN and
NFN-NP on the digits INR zoo of ``graph_metanetworks.py`` (1,300 SIRENs, splits 800/200/300), each
trained with its default settings and with its reference recipe (``--recipe official``), at a
budget of ``--epochs`` epochs. The official recipes warm up over 1,000 (NG-GNN) or 10,000 (NFN)
steps, more than such a budget holds, so a third curve runs the official recipe with its warm-up
cut to a tenth of the budget's steps (labelled so).

    python experiments/recipe_curves.py --out results/recipe_curves --epochs 20
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import probegen_jax as pj
from probegen_jax.data import load_digits
from probegen_jax.make import finished_zoo
from probegen_jax.make.inr import INRZooConfig, make_inr_zoo
from probegen_jax.methods.baselines.nfn import NFNConfig
from probegen_jax.methods.graphs import NGGNNSpec
from probegen_jax.training.loop import steps_per_epoch
from probegen_jax.training.recipes import recipe_config

ZOO = INRZooConfig(dataset="digits", num_train=800, num_val=200, num_test=300, steps=300, chunk_size=512)
SPECS = {"ng_gnn": NGGNNSpec.small(), "nfn": NFNConfig(channels=(32, 32))}  # the accuracy table's presets
NAMES = {"ng_gnn": "NG-GNN", "nfn": "NFN-NP"}
VARIANTS = ("default", "official", "official, warm-up 10%")


def config(method: str, variant: str, epochs: int, n_train: int) -> pj.TrainConfig:
    cfg = dataclasses.replace(recipe_config(method, variant.split(",")[0]), epochs=epochs, steps=0)
    if variant.endswith("10%"):
        cfg = dataclasses.replace(cfg, warmup_steps=max(1, epochs * steps_per_epoch(n_train, cfg.batch_size) // 10))
    return cfg


def curve(run: pj.Run, n_train: int) -> list[tuple[int, float]]:
    """``(optimiser steps, validation accuracy)`` after each evaluated epoch."""
    per_epoch = steps_per_epoch(n_train, run.train_config.batch_size)
    return [((h["epoch"] + 1) * per_epoch, h["val_accuracy"]) for h in run.result.history]


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted({r["method"] for r in rows})
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 3.6), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        for r in (r for r in rows if r["method"] == method):
            steps, acc = zip(*r["curve"], strict=True)
            ax.plot(steps, [100 * a for a in acc], marker=".", label=r["variant"])
        ax.axhline(10, color="grey", lw=0.8, ls=":")
        ax.set(title=f"{NAMES[method]}, digits INRs", xlabel="optimiser steps", ylabel="val accuracy (%)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/recipe_curves")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--methods", nargs="+", default=list(SPECS), choices=list(SPECS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    zoo = finished_zoo(out / "zoo", ZOO) or make_inr_zoo(ZOO, out / "zoo", data=load_digits(), progress=False)
    n_train = len(zoo.indices("train"))
    rows = []
    for method in args.methods:
        for variant in args.variants:
            cfg = dataclasses.replace(config(method, variant, args.epochs, n_train), seed=args.seed)
            run = pj.train(method, zoo, SPECS[method], cfg, out=str(out / f"{method}_{variant[:8]}_{cfg.warmup_steps}"),
                           progress=False)
            rows.append({"method": method, "variant": variant, "curve": curve(run, n_train),
                         "steps": curve(run, n_train)[-1][0], "warmup_steps": cfg.warmup_steps,
                         "best_val": run.result.val["accuracy"], "test": run.result.test["accuracy"],
                         "seconds": run.result.seconds})
    table = "\n".join(["| method | recipe | steps | warm-up | best val acc (%) | test acc at best val (%) | seconds |",
                       "|---|---|---|---|---|---|---|"]
                      + [f"| {NAMES[r['method']]} | {r['variant']} | {r['steps']} | {r['warmup_steps']} | "
                         f"{100 * r['best_val']:.1f} | {100 * r['test']:.1f} | {r['seconds']:.0f} |" for r in rows])
    (out / "results.json").write_text(json.dumps({"epochs": args.epochs, "seed": args.seed, "runs": rows}, indent=1))
    plot(rows, out / "recipe_curves.png")
    print(table)
    return table


if __name__ == "__main__":
    main()
