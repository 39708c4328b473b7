"""Graph and equivariant metanetworks against ProbeGen and NFN-NP on the same zoos, 3 seeds.

    python experiments/graph_metanetworks.py                      # both zoos, made here (digits)
    python experiments/graph_metanetworks.py --zoos inr --seeds 0 --epochs 2   # a quick look
    python experiments/graph_metanetworks.py --zoos fmnist_inr hetero_cnn      # two more zoos

Zoos made by this library: ``inr`` (digits SIRENs, INR classification, accuracy), ``cnn`` (digits
small ReLU CNNs, test-accuracy prediction, Kendall tau), ``fmnist_inr`` (Fashion-MNIST SIRENs,
accuracy) and ``hetero_cnn`` (digits ReLU CNNs of several architectures in one heterogeneous zoo,
Kendall tau); a method that cannot read a zoo (``Method.heterogeneous``) is skipped on it. Every
method trains through the method contract (``methods.contract.train``) with the same optimiser
settings, the graph methods at their small presets (``Spec.small()``). Each row reports test mean ±
std over seeds at the best validation epoch, training seconds per epoch (a run's wall time over its
epochs, compilation included) and XLA-counted inference FLOPs per network of the configuration
trained. Writes ``results.md``, ``results.json`` and ``accuracy_vs_flops.png`` to ``--out``;
finished runs are logged to ``<out>/runs.json`` and not trained again.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from probegen_jax import report
from probegen_jax.archs import make_arch
from probegen_jax.data import load_digits
from probegen_jax.flops import learner_cost
from probegen_jax.io import write_json
from probegen_jax.make.cnn import CNNTraining, SmallCNNZooConfig, make_small_cnn_zoo
from probegen_jax.make.inr import INRZooConfig, make_inr_zoo
from probegen_jax.make.wild import WildZooConfig, make_wild_zoo
from probegen_jax.methods.baselines.nfn import NFNConfig
from probegen_jax.methods.contract import get_method, make_spec, select_checkpoint, spec_with_zoo_defaults, train
from probegen_jax.methods.graphs import METHOD_NAMES, NFNHNPSpec, NFTSpec, NGGNNSpec, NGTSpec, ScaleGMNSpec
from probegen_jax.training.loop import TrainConfig
from probegen_jax.training.runlog import RunLog, config_settings, run_key
from probegen_jax.training.tasks import task_for
from probegen_jax.zoo.hetero import HeteroZoo, load_any_zoo
from probegen_jax.zoo.zoo import Zoo, task_defaults

INR_ZOO = INRZooConfig(dataset="digits", num_train=800, num_val=200, num_test=300, steps=300, chunk_size=512)
CNN_ZOO = SmallCNNZooConfig(training=CNNTraining(dataset="digits", train_size=1024, test_size=300,
                                                 train_eval_size=128, epochs=(0, 1, 4), activations=("relu",)),
                            num_networks=800, chunk_size=200, seed=0)
FMNIST_INR_ZOO = dataclasses.replace(INR_ZOO, dataset="fashion_mnist")
# 8 ReLU architectures x 90 networks (2-4 conv layers of 4/8/16 channels, 3x3 or 5x5 kernels, stride
# 2 for the first three, residual connections allowed on stride-1 ones), trained like the CNN zoo.
HETERO_CNN_ZOO = WildZooConfig(training=dataclasses.replace(CNN_ZOO.training, init_std=(0.02, 0.3)),
                               num_architectures=8, networks_per_architecture=90, max_layers=4,
                               channels=(4, 8, 16), kernels=(3, 5), layer_activations=("relu",), seed=0)


@dataclasses.dataclass(frozen=True)
class ZooSetting:
    """One zoo of the experiment: its config and maker (``make(config, folder)``), the metric
    reported, ScaleGMN's symmetry on it, and the titles of its table and plot."""

    config: object
    make: object
    metric: str
    symmetry: str
    title: str
    short: str


ZOOS = {
    "inr": ZooSetting(INR_ZOO, lambda c, path: make_inr_zoo(c, path, data=load_digits(), progress=False),
                      "accuracy", "sign", "INR classification: digits SIRENs 2-32-32-1", "digits INRs"),
    "cnn": ZooSetting(CNN_ZOO, lambda c, path: make_small_cnn_zoo(c, path, data=load_digits(), progress=False),
                      "kendall_tau", "scale", "CNN generalisation: digits small CNNs (ReLU), final checkpoint",
                      "digits small CNNs"),
    "fmnist_inr": ZooSetting(FMNIST_INR_ZOO, lambda c, path: make_inr_zoo(c, path, progress=False), "accuracy",
                             "sign", "INR classification: Fashion-MNIST SIRENs 2-32-32-1", "Fashion-MNIST INRs"),
    "hetero_cnn": ZooSetting(HETERO_CNN_ZOO, lambda c, path: make_wild_zoo(c, path, data=load_digits(),
                                                                           progress=False),
                             "kendall_tau", "scale", "CNN generalisation: heterogeneous zoo of digits ReLU CNNs "
                             "(8 architectures), final checkpoint", "heterogeneous digits CNNs"),
}
NAMES = {"probegen": "ProbeGen (K=64)", "nfn": "NFN-NP", **METHOD_NAMES}


def specs(zoo_name: str) -> dict[str, object]:
    """The spec of each method on a zoo: graph methods at their small presets."""
    return {
        "probegen": {"num_probes": 64},
        "nfn": NFNConfig(channels=(32, 32)),
        "nfn_hnp": NFNHNPSpec.small(),
        "nft": NFTSpec.small(),
        "ng_gnn": NGGNNSpec.small(),
        "ng_t": NGTSpec.small(),
        "scalegmn": ScaleGMNSpec.small(ZOOS[zoo_name].symmetry),
    }


def make_zoos(names: list[str], folder: Path) -> dict[str, tuple[Zoo | HeteroZoo, str, float]]:
    """``{name: (zoo at its default checkpoint, metric, seconds to make or load)}``; zoos are saved
    under ``folder`` and loaded from there when present."""
    out = {}
    for name in names:
        start, path, setting = time.perf_counter(), folder / name, ZOOS[name]
        zoo = load_any_zoo(path) if path.exists() else setting.make(setting.config, path)
        zoo, _ = select_checkpoint(zoo, None)
        out[name] = (zoo, setting.metric, round(time.perf_counter() - start, 1))
    return out


def reads(method: str, zoo: Zoo | HeteroZoo) -> bool:
    """Whether ``method`` takes ``zoo`` (a heterogeneous zoo needs a heterogeneous method)."""
    return get_method(method).heterogeneous or not zoo.packs_inputs


def flops_per_network(method: str, spec, zoo: Zoo | HeteroZoo) -> float:
    """XLA's inference FLOPs per network of ``spec`` on ``zoo`` (a SIREN's sine counted as one op);
    on a heterogeneous zoo, per packed row as XLA counts the learner: graphs padded to the largest
    architecture's, every bucket's branch of a probing learner (so the sum over architectures)."""
    if not zoo.packs_inputs and zoo.arch.name == "siren":
        zoo = dataclasses.replace(zoo, arch=make_arch("siren", exact_sine=True, **zoo.arch.config))
    m = get_method(method)
    spec = spec_with_zoo_defaults(make_spec(m, spec), zoo)
    task = task_for(zoo, task_defaults(zoo).target)
    constants = m.prepare(spec, zoo, zoo.indices("train"), zoo.target(task_defaults(zoo).target)[zoo.indices("train")],
                          task)
    learner = m.learner(spec, zoo, task, constants)
    one = (jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), zoo.packed(zoo.indices("train")[:1]))
           if zoo.packs_inputs else jax.eval_shape(zoo.arch.init, jax.random.key(0)))
    return learner_cost(learner, one).total


def run(zoos, *, seeds, cfg: TrainConfig, out: Path, methods: list[str]) -> dict:
    # the digits zoos' configs are always logged (as before the other zoos existed, so older folders
    # resume), any other zoo's when it is run
    logged = dict.fromkeys(["inr", "cnn", *zoos])
    log = RunLog(out, {"train": config_settings(cfg, "seed"),
                       **{f"{z}_zoo": dataclasses.asdict(ZOOS[z].config) for z in logged}})
    rows = []
    for zoo_name, (zoo, metric, _) in zoos.items():
        for method in [m for m in methods if reads(m, zoo)]:
            spec = specs(zoo_name)[method]
            for seed in seeds:
                key = run_key(zoo_name, method, seed)
                if (row := log.get(key)) is None:
                    start = time.perf_counter()
                    result = train(method, zoo, spec, dataclasses.replace(cfg, seed=seed), progress=False).result
                    seconds = time.perf_counter() - start
                    row = {"zoo": zoo_name, "method": method, "seed": seed, "val": result.val[metric],
                           "test": result.test[metric], "best_epoch": result.best_epoch,
                           "seconds_per_epoch": round(seconds / cfg.epochs, 2)}
                    log.record(key, row)
                    print(f"{zoo_name} {method} seed {seed}: test {metric} {row['test']:.3f}, "
                          f"{row['seconds_per_epoch']} s/epoch", flush=True)
                rows.append(row)
    flops = {(z, m): flops_per_network(m, specs(z)[m], zoos[z][0]) for z in zoos for m in methods
             if reads(m, zoos[z][0])}
    return {"rows": rows, "flops": {f"{z}/{m}": v for (z, m), v in flops.items()}}


def tables(results: dict, zoos) -> str:
    parts = []
    for zoo_name, (zoo, metric, made) in zoos.items():
        scale = 100 if metric == "accuracy" else 1
        head = "test accuracy (%)" if metric == "accuracy" else "test Kendall tau"
        body = []
        for method in dict.fromkeys(r["method"] for r in results["rows"] if r["zoo"] == zoo_name):
            rs = [r for r in results["rows"] if r["zoo"] == zoo_name and r["method"] == method]
            flops = results["flops"][f"{zoo_name}/{method}"]
            body.append([NAMES[method], report.mean_std([r["test"] for r in rs], scale, 2 if scale == 100 else 3),
                         f"{np.mean([r['seconds_per_epoch'] for r in rs]):.1f}", f"{flops / 1e6:.3g}M", len(rs)])
        sizes = {s: len(zoo.indices(s)) for s in ("train", "val", "test")}
        parts.append(f"## {ZOOS[zoo_name].title}\n\nsplits {sizes}; zoo made (or loaded) in {made} s\n\n"
                     + report.markdown_table(["method", head, "s / epoch", "FLOPs / network", "seeds"], body))
    return "\n\n".join(parts)


def plot(results: dict, zoos, path: Path) -> Path:
    plt = report.pyplot()
    fig, axes = plt.subplots(1, len(zoos), figsize=(5.5 * len(zoos), 4), squeeze=False)
    for ax, (zoo_name, (_, metric, _)) in zip(axes[0], zoos.items()):
        for method in dict.fromkeys(r["method"] for r in results["rows"] if r["zoo"] == zoo_name):
            tests = [r["test"] for r in results["rows"] if r["zoo"] == zoo_name and r["method"] == method]
            f = results["flops"][f"{zoo_name}/{method}"]
            ax.errorbar(f, np.mean(tests), yerr=np.std(tests), fmt="o", capsize=3)
            ax.annotate(NAMES[method], (f, np.mean(tests)), fontsize=8, xytext=(4, 3), textcoords="offset points")
        ax.set(xscale="log", xlabel="inference FLOPs per network (XLA, log)",
               ylabel="test accuracy" if metric == "accuracy" else "test Kendall tau",
               title=ZOOS[zoo_name].short)
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return report.save_figure(fig, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoos", nargs="+", default=["inr", "cnn"], choices=list(ZOOS))
    p.add_argument("--methods", nargs="+", default=["probegen", "nfn", "nfn_hnp", "nft", "ng_gnn", "ng_t", "scalegmn"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", default="results/graph_metanetworks")
    args = p.parse_args(argv)
    out = Path(args.out)
    start = time.perf_counter()
    zoos = make_zoos(args.zoos, out / "zoos")
    for name, (zoo, _, made) in zoos.items():
        print(f"{name}: {zoo.describe()}\n  made or loaded in {made} s", flush=True)
    cfg = TrainConfig(epochs=args.epochs, batch_size=32, learning_rate=1e-3)
    results = run(zoos, seeds=args.seeds, cfg=cfg, out=out, methods=args.methods)
    body = (f"Training: Adam {cfg.learning_rate}, cosine, batch {cfg.batch_size}, {cfg.epochs} epochs, seeds "
            f"{args.seeds}; test at the best validation epoch. Total {time.perf_counter() - start:.0f} s.\n\n"
            + tables(results, zoos))
    write_json(out / "results.json", results)
    report.save_markdown(out / "results.md", "Graph metanetworks vs ProbeGen", body)
    fig = plot(results, zoos, out / "accuracy_vs_flops.png")
    print(body, f"\nwritten to {out} ({fig})", sep="\n")


if __name__ == "__main__":
    main()
