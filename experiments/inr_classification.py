"""INR classification: ProbeGen vs vanilla and synthetic probes, K in {64, 128}, 3 seeds.

    python experiments/inr_classification.py --zoo zoos/fmnist_inr          # an existing zoo
    python experiments/inr_classification.py --make fashion_mnist --train 6000 --val 1000 --test 2000
    python experiments/inr_classification.py --zoo zoos/fmnist_inr --baselines statnn statnn_gbt flat nfn

Writes ``results.md`` (test accuracy mean ± std at the best validation epoch), ``results.json``,
``probes.png`` (each method's learned probes on the INR domain) and ``curves.png``
(validation accuracy per epoch) to ``--out``. Finished runs are logged to ``<out>/runs.json``: started
again, only the runs not there are trained; ``--runs-from`` gathers seeds run in other processes
(see ``cnn_generalization.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import jax
import numpy as np

from probegen_jax import report
from probegen_jax.io import write_json
from probegen_jax.methods.baselines.method import BASELINE_NAMES
from probegen_jax.methods.probing.probe import probe_zoo
from probegen_jax.methods.run import Run
from probegen_jax.methods.sweep import Cell, grid, sweep
from probegen_jax.training.runlog import RunLog, add_run_arguments, config_settings
from probegen_jax.training.loop import TrainConfig
from probegen_jax.zoo import Zoo, load_zoo
from probegen_jax.make.inr import INRZooConfig, coordinate_grid, make_inr_zoo

METHOD_NAMES = {"probegen": "ProbeGen (deep linear)", "vanilla": "Vanilla probing", "synthetic": "Synthetic probes",
                "nonlinear": "Non-linear generator"}


def result_row(cell: Cell, run: Run, seconds: float) -> dict:
    return {"source": cell.method, "K": cell.label, "seed": cell.seed, "val": run.result.val["accuracy"],
            "test": run.result.test["accuracy"], "best_epoch": run.result.best_epoch, "seconds": seconds}


def run(zoo: Zoo, zoo_path: str, *, sources, probe_counts, seeds, cfg: TrainConfig, out: Path, title: str, baselines=(),
        runs_from=()) -> str:
    """Train every (source, K, seed) and every (baseline, seed) not yet in ``<out>/runs.json``; write
    the table, JSON and plots (of the first seed's runs trained here); return the table."""
    log = RunLog(out, {"train": config_settings(cfg, "seed"), "zoo": zoo_path, "zoo_size": len(zoo)})
    log.gather(runs_from)
    rows, probes, curves, reused_first = [], {}, {}, False
    cells = grid(sources, seeds=seeds, probe_counts=probe_counts) + grid(baselines, seeds=seeds)
    for cell, row, trained in sweep(zoo, cells, cfg, log, row=result_row):
        rows.append(row)
        if cell.seed != seeds[0]:
            continue
        reused_first |= trained is None
        if trained is None:
            continue
        name = f"{cell.method} K={cell.label}" if cell.method in sources else cell.method
        if cell.method in sources:
            source = trained.spec.make_source(zoo.arch)
            probes[f"{METHOD_NAMES[cell.method]}, K={cell.label}"] = np.asarray(source.apply(trained.params["source"]))
        if trained.result.history:
            curves[name] = ([h["epoch"] for h in trained.result.history],
                            [h["val_accuracy"] for h in trained.result.history])
    table = summary_table(rows)
    body = (f"{zoo.describe()}\n\nTest accuracy (%) at the best validation epoch, mean ± std over "
            f"{len(seeds)} seed(s); {cfg.epochs} epochs, batch {cfg.batch_size}, Adam {cfg.learning_rate}.\n\n{table}")
    out.mkdir(parents=True, exist_ok=True)
    report.save_markdown(out / "results.md", title, body)
    write_json(out / "results.json", {"zoo": zoo.meta, "train": dataclasses.asdict(cfg), "runs": rows})
    if not reused_first:  # else keep the plots of the run that trained them
        if probes:
            report.plot_coordinate_probes(probes, out / "probes.png", background=mean_image(zoo))
        report.plot_curves(curves, out / "curves.png", xlabel="epoch", ylabel="val accuracy", title=title)
    return table


def summary_table(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["K"]), []).append(r)
    return report.markdown_table(
        ["method", "K", "test acc (%)", "val acc (%)", "seconds / run"],
        [[{**METHOD_NAMES, **BASELINE_NAMES}[s], k, report.mean_std([r["test"] for r in g], 100), report.mean_std([r["val"] for r in g], 100),
          f"{np.mean([r['seconds'] for r in g]):.0f}"] for (s, k), g in groups.items()])


def mean_image(zoo: Zoo, count: int = 256) -> np.ndarray:
    """The mean of the zoo's first INRs rendered on their training grid: a backdrop for probe plots."""
    height, width = zoo.meta.get("image_shape", (28, 28))
    params = jax.tree.map(lambda a: a[:count], zoo.params)
    return np.asarray(probe_zoo(zoo.arch, params, coordinate_grid(height, width))).mean(0).reshape(height, width)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", help="a saved INR zoo")
    p.add_argument("--make", choices=["digits", "fashion_mnist"], help="make a zoo first (saved to --zoo or out/zoo)")
    p.add_argument("--train", type=int, default=6000)
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--inr-steps", type=int, default=300)
    p.add_argument("--sources", nargs="*", default=["probegen", "vanilla", "synthetic"])
    p.add_argument("--baselines", nargs="*", default=[], choices=sorted(BASELINE_NAMES),
                   help="weight-space baselines to add as rows (statnn, statnn_gbt, flat, nfn)")
    p.add_argument("--probes", nargs="+", type=int, default=[64, 128])
    p.add_argument("--epochs", type=int, default=30)
    add_run_arguments(p, "results/inr_classification")
    args = p.parse_args(argv)
    out = Path(args.out)
    zoo_path = Path(args.zoo or out / "zoo")
    if args.make:
        cfg = INRZooConfig(dataset=args.make, num_train=args.train, num_val=args.val, num_test=args.test,
                           steps=args.inr_steps)
        zoo = load_zoo(zoo_path) if zoo_path.exists() else make_inr_zoo(cfg, zoo_path)
    elif args.zoo:
        zoo = load_zoo(args.zoo)
    else:
        sys.exit("give --zoo DIR or --make DATASET")
    table = run(zoo, str(zoo_path), sources=args.sources, probe_counts=args.probes, seeds=args.seeds,
                cfg=TrainConfig(epochs=args.epochs), out=out, baselines=args.baselines, runs_from=args.runs_from,
                title=f"INR classification ({zoo.meta.get('dataset', '?')})")
    print(table)
    print(f"\nwritten to {out}/results.md, probes.png, curves.png")


if __name__ == "__main__":
    main()
