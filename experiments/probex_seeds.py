"""ProbeX vs the dense expert within each tree over training seeds: both retrained on the layers an
earlier ``probex_trees.py`` run chose, so a gap between them can be told from seed noise.

    python experiments/probex_seeds.py --trees zoos/probex_trees_w128 --width 128 \
        --layers-from results/probex_trees_w128/results.json --epochs 200 --seeds 1 2

Seed 0 is the earlier run's own (same settings); its per-tree numbers are read from the results
file and listed with the new seeds, unless seed 0 is listed (as it must be when ``--rank`` or the
training settings differ from that run's, e.g. ``--rank 128 128 64`` for a smaller embedding or
``--optimizer adamw --weight-decay 1.0``). Writes ``results.md`` and ``results.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from probegen_jax import report
from probegen_jax.io import write_json
from probegen_jax.methods.probex.experts import layer_splits, train_experts
from probegen_jax.methods.probex.probex import ProbeXConfig
from probegen_jax.training.tasks import multilabel
from probegen_jax.training.loop import TrainConfig
from probegen_jax.make.trees import default_trees, make_trees

METHODS = {"ProbeX": "probex", "Dense expert": "dense"}
PLA = "per_label_accuracy"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trees", required=True, help="trees directory of the earlier run")
    p.add_argument("--width", type=int, default=32, help="tree model width the trees were made with")
    p.add_argument("--children", type=int, default=300)
    p.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "digits"])
    p.add_argument("--layers-from", required=True, help="results.json of the earlier probex_trees.py run")
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--rank", type=int, nargs="+", default=[128], metavar="R",
                   help="ProbeX ranks: one for r_U = r_V = r_T, or three (r_U r_V r_T)")
    p.add_argument("--optimizer", default="adam", choices=["adam", "adamw"],
                   help="adam: --weight-decay is a coupled L2 (the paper's); adamw: decoupled")
    p.add_argument("--weight-decay", type=float, default=1e-5)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    p.add_argument("--out", default="results/probex_seeds")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    earlier_run = json.loads(Path(args.layers_from).read_text())
    earlier = earlier_run["trees"]
    if len(args.rank) not in (1, 3):
        p.error(f"--rank takes one rank or three (r_U r_V r_T), not {len(args.rank)}")
    pcfg = ProbeXConfig(*(args.rank * 3 if len(args.rank) == 1 else args.rank))
    base = TrainConfig(epochs=args.epochs, batch_size=128, learning_rate=1e-3, optimizer=args.optimizer,
                       weight_decay=args.weight_decay, eval_every=25)
    def unseeded(settings: dict) -> dict:
        return {k: v for k, v in settings.items() if k != "seed"}

    same = {"ProbeX": (earlier_run["probex"], dataclasses.asdict(pcfg)),
            "training": (unseeded(earlier_run.get("train", {})), unseeded(dataclasses.asdict(base)))}
    for what, (there, here) in same.items():
        if 0 not in args.seeds and there != here:
            p.error(f"seed 0 of {args.layers_from} trained with {what} settings {there}, not {here}; list seed 0 "
                    "among --seeds to train it with these")
    made = make_trees(default_trees(args.children, args.dataset, generative=False, width=args.width), args.trees,
                      progress=not args.quiet)
    trees = {n: children for n, (_, children) in made.items()}
    names = list(trees)
    task = multilabel(trees[names[0]].meta["num_classes"])
    experts = [layer_splits(trees[n], earlier["layers"][n]["chosen"], "classes")[0] for n in names]
    runs = {m: {n: ([earlier["rows"][n][m]] if 0 not in args.seeds else []) for n in names} for m in METHODS}
    for seed in args.seeds:
        cfg = dataclasses.replace(base, seed=seed)
        for method, kind in METHODS.items():
            res = train_experts(kind, experts, task, cfg, pcfg, progress=not args.quiet, desc=f"{method}, seed {seed}")
            for n, metrics in zip(names, res.per_expert, strict=True):
                runs[method][n].append(metrics["test"][PLA])
            print(f"seed {seed} {method}: " + ", ".join(f"{n} {runs[method][n][-1]:.3f}" for n in names), flush=True)

    rows = [[method, *(report.mean_std([100 * a for a in runs[method][n]], digits=1) for n in names)]
            for method in METHODS]
    rows.append(["ProbeX - dense, per seed", *(" / ".join(f"{100 * (a - b):+.1f}" for a, b in
                                                          zip(runs["ProbeX"][n], runs["Dense expert"][n]))
                                               for n in names)])
    table = report.markdown_table(["method", *names], rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = ([] if 0 in args.seeds else [0]) + list(args.seeds)
    report.save_markdown(out / "results.md", "ProbeX vs dense expert over seeds",
                         f"Per-label test accuracy (%), seeds {seeds} (seed 0: `{args.layers_from}`), layers as "
                         f"chosen there, {args.epochs} epochs, {args.optimizer} with weight decay "
                         f"{args.weight_decay:g}.\n\n{table}")
    write_json(out / "results.json", {"seeds": seeds, "runs": runs, "layers": {n: earlier["layers"][n]["chosen"]
                                                                               for n in names},
                                      "train": dataclasses.asdict(base), "ranks": dataclasses.astuple(pcfg)[:3]})
    print(table)
    print("mean gap ProbeX - dense: " + ", ".join(
        f"{n} {100 * np.mean(np.subtract(runs['ProbeX'][n], runs['Dense expert'][n])):+.1f}" for n in names))


if __name__ == "__main__":
    main()
