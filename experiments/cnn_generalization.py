"""CNN generalisation prediction: ProbeGen vs vanilla and synthetic probes on a small CNN zoo and a
heterogeneous CNN zoo; Kendall tau (tau-b) of predicted vs true test accuracy at the final epoch.

    python experiments/cnn_generalization.py --zoo zoos/digits_small_cnn --hetero zoos/digits_wild_cnn
    python experiments/cnn_generalization.py --zoo zoos/fmnist_small_cnn --probes 128 --seeds 0 1 2

Heads train 150 epochs on a one-architecture zoo and 30 on a heterogeneous one, as the paper does on
CIFAR10-GS and CNN Wild Park (``--epochs`` sets both).

How tau grows with the zoo: ``--train-networks 105 210 420`` trains every method on nested subsets of
the training networks (validation and test networks unchanged) and plots tau against their number
(``zoo_size_<zoo>.png``); ``--updates U`` gives every size the same number of optimiser steps (the
epochs that make at least ``U``), so a small subset is not also a short run:

    python experiments/cnn_generalization.py --zoo Z --train-networks 210 525 1050 2100 --updates 2000

Make the zoos with ``probegen-jax zoo make small-cnn ...`` / ``zoo make wild-cnn ...``. Writes
``results.md`` (Kendall tau and R^2 mean ± std over seeds, test split, at the best validation
epoch), ``results.json``, ``scatter_<zoo>.png`` (predicted vs true accuracy, first seed) and
``probes_<zoo>.png`` (each method's probes) to ``--out``.

Each run is logged to ``<out>/runs.json`` as it finishes: started again, the experiment trains only
the runs not there yet. Seeds can run in separate processes, each to its own folder, then be
gathered into one table:

    python experiments/cnn_generalization.py --zoo Z --seeds 1 --out results/s1 &
    python experiments/cnn_generalization.py --zoo Z --seeds 2 --out results/s2 &
    python experiments/cnn_generalization.py --zoo Z --seeds 0 1 2 --runs-from results/s1 results/s2
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np

from probegen_jax import report
from probegen_jax.methods.baselines import NFNConfig
from probegen_jax.methods.baselines.method import BASELINE_NAMES
from probegen_jax.methods.contract import predict
from probegen_jax.methods.probing.method import learned_probes
from probegen_jax.methods.registry import get_method
from probegen_jax.methods.run import Run
from probegen_jax.methods.sweep import Cell, grid, sweep
from probegen_jax.errors import DataFileError
from probegen_jax.io import write_json
from probegen_jax.training.metrics import tau_noise_ceiling
from probegen_jax.methods.probing.probegen import RESPONSES
from probegen_jax.training.runlog import RunLog, add_run_arguments, config_settings
from probegen_jax.training.loop import TrainConfig, steps_per_epoch
from probegen_jax.make.cnn import zoo_training_data
from probegen_jax.zoo.hetero import load_any_zoo
from probegen_jax.zoo.zoo import at_epoch, shrink_split

METHOD_NAMES = {"probegen": "ProbeGen (deep linear)", "probegen5": "ProbeGen (5 layers)", "vanilla": "Vanilla probing",
                "synthetic": "Synthetic probes", "nonlinear": "Non-linear generator"}
ALL_NAMES = {**METHOD_NAMES, **BASELINE_NAMES}
TARGET = "test_accuracy"
EPOCHS = {"small_cnn": 150, "hetero": 30}  # the paper's: CIFAR10-GS (one architecture) and CNN Wild Park
CNN_NFN = NFNConfig(channels=(16, 16, 16))  # 3x3 filters make NP layers 81x costlier per channel pair than on INRs


def zoo_label(zoo) -> str:
    kind = "heterogeneous" if len(zoo.archs) > 1 else "small CNN"
    return f"{kind} ({zoo.meta.get('dataset', '?')}, {len(zoo)} nets)"


def result_row(zoo_name: str, epochs: int, train_networks: int):
    def row(cell: Cell, run: Run, seconds: float) -> dict:
        values = {"zoo": zoo_name, "train_networks": train_networks, "source": cell.method, "K": cell.label,
                  "seed": cell.seed, "epochs": epochs, "test_tau": run.result.test["kendall_tau"],
                  "test_r2": run.result.test["r2"], "val_tau": run.result.val["kendall_tau"],
                  "best_epoch": run.result.best_epoch, "seconds": seconds}
        print(values, flush=True)
        return values

    return row


def run_zoo(zoo, name: str, path: str, *, sources, probe_counts, seeds, cfg: TrainConfig, out: Path, log: RunLog,
            baselines=(), response: str = "softmax") -> list[dict]:
    """Every (source, K, seed) and (baseline, seed) on one zoo: runs already in ``log`` are taken from
    it, the others trained and logged as they finish; plots show the first seed's runs trained here."""
    rows, probes, scatter, reused_first = [], {}, {}, False
    readable = [b for b in baselines if len(zoo.archs) == 1 or get_method(b).heterogeneous]
    cells = grid(sources, seeds=seeds, probe_counts=probe_counts, response=response) + \
        grid(readable, seeds=seeds, **dataclasses.asdict(CNN_NFN))
    row = result_row(name, cfg.epochs, len(zoo.indices("train")))
    test = zoo.indices("test")
    for cell, done, run in sweep(zoo, cells, cfg, log, row=row, key=(path, cfg.epochs), target=TARGET):
        rows.append(done)
        if cell.method not in sources or cell.seed != seeds[0]:
            continue
        reused_first |= run is None
        if run is not None:
            label = f"{METHOD_NAMES[cell.method]}, K={cell.label}"
            probes[label] = np.asarray(learned_probes(run, zoo))
            scatter[f"{label}\ntau={run.result.test['kendall_tau']:.3f}"] = (zoo.target(TARGET)[test],
                                                                              predict(run, zoo, indices=test)[:, 0])
    if scatter and not reused_first:  # else keep the plots of the run that trained them
        report.plot_scatter(scatter, out / f"scatter_{name}.png", xlabel="true test accuracy",
                            ylabel="predicted", title=zoo_label(zoo))
        report.plot_image_probes(probes, out / f"probes_{name}.png", title=f"probes, {zoo_label(zoo)}")
    return rows


def epochs_for(train_networks: int, batch_size: int, updates: int) -> int:
    """The fewest epochs that make at least ``updates`` optimiser steps of ``fit``."""
    return math.ceil(updates / steps_per_epoch(train_networks, batch_size))


def noise_ceiling(zoo) -> dict:
    """How many images scored the networks and the tau a perfect predictor would reach on the test
    networks given that (``metrics.tau_noise_ceiling``); empty for a zoo not generated here or whose
    images are not on this machine (the experiment itself needs only the zoo). Zoos made before
    their meta recorded ``test_images`` have their images loaded to count them."""
    test_images = zoo.meta.get("test_images")
    if test_images is None:
        try:
            test_images = len(zoo_training_data(zoo).test_labels)
        except (ValueError, DataFileError):
            return {}
    return {"test_images": test_images,
            "tau_noise_ceiling": round(tau_noise_ceiling(zoo.target(TARGET)[zoo.indices("test")], test_images), 3)}


def conv_padding(zoo) -> dict:
    """``{"padding": ...}`` of a small CNN zoo (saved before padding was recorded: ``same``); empty
    for a heterogeneous zoo."""
    if len(zoo.archs) > 1 or zoo.archs[0].name != "small_cnn":
        return {}
    return {"padding": zoo.arch.config.get("padding", "same")}


def zoo_paragraph(name: str, record: dict) -> str:
    """The results page's description of one zoo."""
    noise = (f"; test accuracy measured on {record['test_images']} images, so a perfect predictor's tau is "
             f"about {record['tau_noise_ceiling']}" if "test_images" in record else "")
    padding = f"; {record['padding']} convolutions" if "padding" in record else ""
    return (f"**{name}** (`{record['path']}`, final-epoch checkpoints; generated in {record['generation_seconds']} s; "
            f"diverged: {record['diverged']}{padding}{noise})\n\n```\n{record['describe']}\n```")


def plot_zoo_size(rows: list[dict], zoo_name: str, path: Path, ceiling: float | None = None) -> None:
    """Mean test tau of every method against the number of training networks (log x), and the noise
    ceiling where it is known."""
    by_method: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        label = ALL_NAMES[r["source"]] + (f", K={r['K']}" if r["K"] != "—" else "")
        by_method.setdefault(label, {}).setdefault(r["train_networks"], []).append(r["test_tau"])
    curves = {label: (sorted(by_n), [np.mean(by_n[n]) for n in sorted(by_n)]) for label, by_n in by_method.items()}
    if ceiling is not None:
        sizes = sorted({r["train_networks"] for r in rows})
        curves["perfect predictor (test-set noise)"] = (sizes, [ceiling] * len(sizes))
    report.plot_curves(curves, path, xlabel="training networks", ylabel="Kendall tau (test)", logx=True, marker="o",
                       title=f"tau against zoo size, {zoo_name}")


def summary_table(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["zoo"], r["source"], r["K"], r["epochs"]), []).append(r)
    return report.markdown_table(
        ["zoo", "method", "K", "epochs", "Kendall tau (test)", "R^2 (test)", "seeds", "seconds / run"],
        [[z, ALL_NAMES[s], k, e, report.mean_std([r["test_tau"] for r in g], digits=3),
          report.mean_std([r["test_r2"] for r in g], digits=3), len(g), f"{np.mean([r['seconds'] for r in g]):.0f}"]
         for (z, s, k, e), g in groups.items()])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", help="a saved small CNN zoo")
    p.add_argument("--hetero", help="a saved heterogeneous CNN zoo")
    p.add_argument("--sources", nargs="*", default=["probegen", "vanilla", "synthetic"])
    p.add_argument("--baselines", nargs="*", default=[], choices=sorted(BASELINE_NAMES),
                   help="weight-space baselines: statnn, statnn_gbt, flat, nfn (the heterogeneous zoo: the StatNNs)")
    p.add_argument("--probes", nargs="+", type=int, default=[64, 128])
    p.add_argument("--response", choices=sorted(RESPONSES), default="softmax",
                   help="what the probing heads read of each CNN's outputs (class probabilities by default)")
    p.add_argument("--epochs", type=int, help="training epochs (default: %s, as the paper trains on CIFAR10-GS "
                   "and CNN Wild Park)" % ", ".join(f"{e} on the {z} zoo" for z, e in EPOCHS.items()))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-networks", nargs="+", type=int, metavar="N",
                   help="train on nested subsets of N training networks (default: all of them)")
    p.add_argument("--updates", type=int, help="train as many epochs as make this many optimiser steps (instead of --epochs)")
    add_run_arguments(p, "results/cnn_generalization")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(batch_size=args.batch_size)
    shared = config_settings(cfg, "seed", "epochs")  # epochs: per zoo, in each run's key
    log = RunLog(out, {"train": shared, "response": args.response, "target": TARGET})
    if args.runs_from:
        print(f"{log.gather(args.runs_from)} runs gathered from {', '.join(args.runs_from)}")
    rows, zoos = [], {}
    for name, path in (("small_cnn", args.zoo), ("hetero", args.hetero)):
        if path:
            full = at_epoch(load_any_zoo(path), "final")
            zoos[name] = {"path": str(path), "members": len(full), "describe": full.describe(),
                          **noise_ceiling(full), **conv_padding(full),
                          "generation_seconds": full.meta.get("generation_seconds"),
                          "diverged": full.meta.get("diverged"), "epochs": {}}
            zoo_rows = []
            for size in args.train_networks or [None]:  # None: every training network (run keys as before)
                zoo = full if size is None else shrink_split(full, "train", size)
                key, label = (str(path), name) if size is None else (f"{path}?train={size}", f"{name}_n{size}")
                epochs = (epochs_for(len(zoo.indices("train")), cfg.batch_size, args.updates) if args.updates
                          else args.epochs or EPOCHS[name])
                zoos[name]["epochs"][label] = epochs
                zoo_rows += run_zoo(zoo, label, key, log=log, sources=args.sources, probe_counts=args.probes,
                                    seeds=args.seeds, cfg=dataclasses.replace(cfg, epochs=epochs), out=out,
                                    baselines=args.baselines, response=args.response)
            if args.train_networks and len(args.train_networks) > 1:
                plot_zoo_size(zoo_rows, zoo_label(full), out / f"zoo_size_{name}.png",
                              zoos[name].get("tau_noise_ceiling"))
            rows += zoo_rows
    table = summary_table(rows)
    body = "\n\n".join(zoo_paragraph(name, record) for name, record in zoos.items())
    body += (f"\n\nKendall tau-b and R^2 of predicted vs true test accuracy on the test networks at the best "
             f"validation epoch, mean ± std over {len(args.seeds)} seed(s); batch "
             f"{cfg.batch_size}, Adam {cfg.learning_rate} with cosine decay; probing heads read the CNNs' "
             f"{'class probabilities (softmax)' if args.response == 'softmax' else 'raw logits'}.\n\n{table}")
    report.save_markdown(out / "results.md", "CNN generalisation prediction", body)
    write_json(out / "results.json", {"zoos": zoos, "train": shared, "response": args.response,
                                      "runs": rows})
    print(table)
    print(f"\nwritten to {out}/results.md, scatter_*.png, probes_*.png")


if __name__ == "__main__":
    main()
