"""ProbeX on model trees: per-tree experts vs the dense expert, StatNN, ProbeGen and one model
across all trees; routing; zero-shot on a LoRA tree; layer selection; the ReLU ablation.

    python experiments/probex_trees.py                              # make (or load) zoos/probex_trees
    python experiments/probex_trees.py --trees zoos/probex_trees --source data text

Trees (``zoo.trees.default_trees``): a ViT, an MLP-Mixer and an MLP, each pretrained on
Fashion-MNIST, with children fine-tuned on 3-5 of its 10 classes (target: the multi-hot set);
and a LoRA tree (a denoising autoencoder, each child LoRA-tuned on 5 images of one class).
Writes ``results.md``, ``results.json`` and ``per_tree.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

from probegen_jax import report
from probegen_jax.methods.baselines.common import feature_head, precompute_features
from probegen_jax.methods.baselines.statnn import statnn_features
from probegen_jax.data import load_dataset
from probegen_jax.io import write_json
from probegen_jax.methods.probex.experts import (
    across_tree_splits,
    all_layer_names,
    evaluate_splits,
    layer_splits,
    select_layer,
    train_experts,
)
from probegen_jax.methods.probex.probex import (
    ProbeXConfig,
    dense_embedder,
    expert_learner,
    num_params,
    probex_embedder,
)
from probegen_jax.methods.probex.routing import fit_router, route, routing_accuracy
from probegen_jax.methods.probex.zero_shot import class_embeddings, fit_zero_shot, zero_shot_fold
from probegen_jax.methods.probing.probegen import probing_learner
from probegen_jax.methods.probing.sources import dense_generator
from probegen_jax.training.tasks import multilabel
from probegen_jax.training.loop import TrainConfig, fit
from probegen_jax.zoo import Zoo
from probegen_jax.make.trees import default_trees, forest_trees, make_trees

PLA = "per_label_accuracy"
LAYERS = "layers"  # the layer-selection step, by the name --rerun knows it
SECTIONS = (LAYERS, "forest", "zero-shot")  # what --rerun can name besides the per-tree methods
FOREST_LAYER = "dense0/kernel"  # the MLP tree's first layer, the one layer selection picks for it
FOREST_METHODS = ("ProbeX", "Dense expert", "ProbeX across trees", "Dense expert across trees")


def record_method(out: dict, names: list[str], method: str, per_tree: list, learners, seconds: float) -> None:
    """Test per-label accuracy per tree, parameter counts and training time of one method;
    ``learners``: one per tree (its own, unpadded layer shape) or one shared by all trees."""
    for n, metrics in zip(names, per_tree, strict=True):
        out["rows"].setdefault(n, {})[method] = metrics["test"][PLA]
    learners = learners if isinstance(learners, list) else [learners]
    out["params"][method] = [num_params(lr) for lr in learners]
    out["seconds"][method] = seconds


def across_trees(trees: dict[str, Zoo], layers: dict[str, str], task, cfg: TrainConfig, pcfg: ProbeXConfig, *,
                 kind: str = "probex", progress: bool) -> tuple[list, object, float]:
    """One expert trained on every tree's children at once, with one scaler (it is not told the
    tree): (per-tree metrics, learner, seconds)."""
    pooled, per_tree = across_tree_splits(trees, layers, "classes")
    learner = expert_learner(kind, *pooled["train"][0].shape[1:], task.num_outputs, pcfg)
    res = fit(learner, task, pooled, cfg, progress=progress, desc=f"{kind} across trees")
    return [evaluate_splits(learner, task, res.params, per_tree[n]) for n in trees], learner, res.seconds


def forest_experiment(forest: dict[str, Zoo], layer: str, cfg: TrainConfig, pcfg: ProbeXConfig, *,
                      progress: bool) -> dict:
    """Trees of one architecture (different bases): per-tree ProbeX and dense experts against one
    of each across the trees, all on ``layer``, so layer shape cannot tell the trees apart."""
    names = list(forest)
    task = multilabel(forest[names[0]].meta["num_classes"])
    out: dict = {"layer": layer, "rows": {}, "params": {}, "seconds": {}}
    experts = [layer_splits(zoo, layer, "classes")[0] for zoo in forest.values()]
    for method, kind in (("ProbeX", "probex"), ("Dense expert", "dense")):
        res = train_experts(kind, experts, task, cfg, pcfg, progress=progress, desc=f"forest {method}")
        record_method(out, names, method, res.per_expert, res.learner(0), res.seconds)  # one shape: one count
    for method, kind in (("ProbeX across trees", "probex"), ("Dense expert across trees", "dense")):
        record_method(out, names, method, *across_trees(forest, dict.fromkeys(names, layer), task, cfg, pcfg,
                                                        kind=kind, progress=progress))
    for method in FOREST_METHODS:
        print(f"forest {method}: " + ", ".join(f"{n} {out['rows'][n][method]:.3f}" for n in names))
    return out


def per_tree_experiment(trees: dict[str, Zoo], cfg: TrainConfig, pcfg: ProbeXConfig, *, probegen_cfg: TrainConfig,
                        probes: int, progress: bool, earlier: dict | None = None,
                        rerun: frozenset[str] = frozenset()) -> dict:
    """Layer selection, then every method on every discriminative tree; what ``earlier`` (an
    earlier run's per-tree results, same settings) holds is taken from it unless ``rerun`` names it."""
    names = list(trees)
    task = multilabel(trees[names[0]].meta["num_classes"])
    out: dict = {"layers": {}, "rows": {}, "params": {}, "seconds": {}}

    def reused(method: str) -> bool:
        present = earlier and (LAYERS in earlier if method == LAYERS else method in earlier.get("params", {}))
        if not present or method in rerun:
            return False
        if method == LAYERS:
            out[LAYERS] = earlier[LAYERS]
        else:
            for n in names:
                out["rows"].setdefault(n, {})[method] = earlier["rows"][n][method]
            out["params"][method], out["seconds"][method] = earlier["params"][method], earlier["seconds"][method]
        print(f"{method}: taken from the earlier run")
        return True

    # 5. Layer selection: one ProbeX per candidate layer (those of one shape trained together); best on validation.
    for name, zoo in trees.items() if not reused(LAYERS) else ():
        candidates = all_layer_names(zoo, exclude=[zoo.meta["head"]])
        chosen, val = select_layer(zoo, candidates, "classes", task, cfg, pcfg, progress=progress)
        out["layers"][name] = {"chosen": chosen, "val": val}
        print(f"{name}: chose {chosen} among {len(candidates)} layers (val {val[chosen]:.3f})")

    layers = {name: layer_splits(zoo, out["layers"][name]["chosen"], "classes")[0] for name, zoo in trees.items()}
    stacked = [layers[n] for n in names]

    def record(method, per_tree, learners, seconds):
        record_method(out, names, method, per_tree, learners, seconds)

    # ProbeX, ProbeX without ReLU and the dense expert: one expert per tree, trees of one layer shape in one step.
    for method, kind, p in (("ProbeX", "probex", pcfg), ("ProbeX w/o ReLU", "probex", dataclasses.replace(pcfg, relu=False)),
                            ("Dense expert", "dense", pcfg)):
        if reused(method):
            continue
        res = train_experts(kind, stacked, task, cfg, p, progress=progress, desc=method)
        record(method, res.per_expert, res.learners(), res.seconds)
        print(f"{method}: " + ", ".join(f"{n} {out['rows'][n][method]:.3f}" for n in names))

    if not reused("ProbeX across trees"):
        record("ProbeX across trees", *across_trees(trees, {n: out["layers"][n]["chosen"] for n in names}, task, cfg,
                                                    pcfg, progress=progress))

    # StatNN on the chosen layer and on every tensor; ProbeGen on the whole network.
    for method in ("StatNN (layer)", "StatNN (all tensors)", "ProbeGen"):
        if reused(method):
            continue
        per_tree, seconds, learners = [], 0.0, []
        for n in names:
            zoo = trees[n]
            if method.startswith("StatNN"):  # statistics computed once, then the head trains
                splits = ({s: ({"layer": x}, y) for s, (x, y) in layers[n].items()} if method == "StatNN (layer)"
                          else zoo.split_arrays("classes"))
                features = precompute_features(statnn_features, splits)
                learner = feature_head(features["train"][0], task.num_outputs, hidden=64, layers=3)
                res = fit(learner, task, features, cfg, progress=progress, desc=f"{method} {n}")
            else:
                learner = probing_learner(zoo.arch, dense_generator(probes, zoo.arch.input_shape), task.num_outputs,
                                          head_hidden=64, head_layers=3)
                res = fit(learner, task, zoo.split_arrays("classes"), probegen_cfg, progress=progress,
                          desc=f"{method} {n}")
            per_tree.append({"test": res.test})
            seconds += res.seconds
            learners.append(learner)
        record(method, per_tree, learners, seconds)
        print(f"{method}: " + ", ".join(f"{n} {out['rows'][n][method]:.3f}" for n in names))
    return out


def routing_experiment(trees: dict[str, Zoo]) -> dict:
    """Route test children to their trees; route freshly initialised models (no tree)."""
    train = {n: z.split("train").params for n, z in trees.items()}
    test = {n: z.split("test").params for n, z in trees.items()}
    heads = tuple({z.meta["head"] for z in trees.values() if "head" in z.meta})  # re-initialised per child
    router = fit_router(train, exclude=heads)
    out = {"accuracy": routing_accuracy(router, test), "out_of_tree": []}
    for n, zoo in trees.items():
        fresh = jax.vmap(zoo.arch.init)(jax.random.split(jax.random.key(123), 4))
        routes = route(router, fresh)
        out["out_of_tree"].append({"arch": n, "routed": int((routes.tree >= 0).sum()), "of": 4,
                                   "example": routes.describe(0)})
    return out


def zero_shot_experiment(zoo: Zoo, embeddings: dict[str, np.ndarray], folds: list[list[int]], cfg: TrainConfig,
                         pcfg: ProbeXConfig, *, progress: bool) -> dict:
    """Alignment heads trained on models of seen classes, scored on models of held-out classes."""
    methods = {"ProbeX": lambda o, i: probex_embedder(o, i, pcfg),
               "ProbeX w/o ReLU": lambda o, i: probex_embedder(o, i, dataclasses.replace(pcfg, relu=False)),
               "Dense expert": lambda o, i: dense_embedder(o, i, pcfg.rank_t)}
    rows: dict = {}
    for heldout in folds:
        for layer in all_layer_names(zoo):
            fold = zero_shot_fold(zoo, layer, heldout, num_classes=zoo.meta["num_classes"])
            for source, emb in embeddings.items():
                for method, make_embedder in methods.items():
                    rows.setdefault((source, method), {}).setdefault(layer, []).append(fit_zero_shot(
                        fold, make_embedder, emb, cfg, dim=pcfg.rank_t, progress=progress,
                        desc=f"zero-shot {source} {method} {layer} {heldout}"))
    # Layer per (source, method): best mean validation accuracy on seen classes.
    table = {}
    for key, per_layer in rows.items():
        chosen = max(per_layer, key=lambda layer: np.mean([r["val_seen"] for r in per_layer[layer]]))
        runs = per_layer[chosen]
        table[key] = {"layer": chosen, "test_unseen": [r["test_unseen"] for r in runs],
                      "val_seen": [r["val_seen"] for r in runs], "params": runs[0]["params"],
                      "seconds": float(np.mean([r["seconds"] for r in runs]))}
    return {"table": table, "chance": 1.0 / len(folds[0]), "folds": folds}


def accuracy_table(section: dict, names: list[str], methods: list[str]) -> str:
    """Markdown: per-label test accuracy (%) of each method on each tree, their mean, parameters
    (per tree, or one shared count) and training seconds (all trees)."""
    rows = section["rows"]
    return report.markdown_table(
        ["method", *names, "mean", "params (per tree)", "train s (all trees)"],
        [[m, *(f"{100 * rows[n][m]:.1f}" for n in names), f"{100 * np.mean([rows[n][m] for n in names]):.1f}",
          " / ".join(f"{c:,}" for c in section["params"][m]), f"{section['seconds'][m]:.0f}"] for m in methods])


def write_report(out: Path, trees: dict[str, Zoo], lora: Zoo | None, res: dict, cfg: TrainConfig) -> str:
    names = list(trees)
    methods = list(next(iter(res["trees"]["rows"].values())))
    lines = ["Per-label accuracy (%) on each tree's test children (chance 50; the multi-hot target is the 3-5 of "
             "10 Fashion-MNIST classes a child was fine-tuned on). Experts read one layer, chosen per tree on "
             "validation; ProbeGen and StatNN (all tensors) read the whole network.", ""]
    lines.append(accuracy_table(res["trees"], names, methods))
    lines += ["", "Chosen layers (validation per-label accuracy of a ProbeX per candidate layer):", ""]
    lines.append(report.markdown_table(
        ["tree", "chosen layer", "layer shape [out, in]", "candidates (val %)"],
        [[n, res["trees"]["layers"][n]["chosen"], res["trees"]["layer_shapes"][n],
          ", ".join(f"{k} {100 * v:.1f}" for k, v in res["trees"]["layers"][n]["val"].items())] for n in names]))
    if "forest" in res:
        f = res["forest"]
        forest_names = list(f["rows"])
        lines += ["", f"Trees of one architecture ({len(forest_names)} MLP trees from differently seeded bases, layer "
                  f"{f['layer']}): per-tree experts against one ProbeX and one dense expert across the trees, each "
                  "seeing every tree's children through one scaler, not told the tree. Per-label accuracy (%):", ""]
        lines.append(accuracy_table(f, forest_names, [m for m in FOREST_METHODS if m in f["params"]]))
    r = res["routing"]
    lines += ["", f"Routing to the nearest tree centroid: {100 * r['accuracy']:.1f}% of test children "
              f"(all trees) routed to their own tree. Freshly initialised networks:", ""]
    lines.append(report.markdown_table(["architecture", "routed to a tree", "example"],
                                       [[o["arch"], f"{o['routed']}/{o['of']}", o["example"]]
                                        for o in r["out_of_tree"]]))
    if lora is not None and "zero_shot" in res:
        z = res["zero_shot"]
        lines += ["", f"Zero-shot accuracy (%) on LoRA children of held-out classes (folds {z['folds']}, chance "
                  f"{100 * z['chance']:.0f}); class embeddings from image exemplars (data) or class names (text); "
                  "layer chosen on validation accuracy over the seen classes.", ""]
        lines.append(report.markdown_table(
            ["source", "method", "layer", "held-out acc", "seen val acc", "params", "train s / fold"],
            [[src, m, v["layer"], report.mean_std(v["test_unseen"], 100, 1), report.mean_std(v["val_seen"], 100, 1),
              f"{v['params']:,}", f"{v['seconds']:.0f}"] for (src, m), v in z["table"].items()]))
    lines += ["", "Trees: " + "; ".join(f"{n}: {z.describe().splitlines()[0]}, base test accuracy "
                                        f"{z.meta['base_test_accuracy']:.3f}" for n, z in trees.items()),
              f"Training: {cfg.epochs} epochs, batch {cfg.batch_size}, Adam {cfg.learning_rate}, coupled L2 "
              f"{cfg.weight_decay}, cosine decay, best validation epoch (every {cfg.eval_every})."]
    body = "\n".join(lines)
    report.save_markdown(out / "results.md", "ProbeX on model trees", body)
    report.plot_grouped_bars({n: res["trees"]["rows"][n] for n in names}, out / "per_tree.png",
                             ylabel="per-label accuracy", title="ProbeX on model trees (test children)", chance=0.5)
    return body


def earlier_run(path: Path, settings: dict) -> dict:
    """The results of an earlier run that trained with ``settings``."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no earlier results to reuse (run without --reuse first)")
    earlier = json.loads(path.read_text())
    differ = {k: (earlier.get(k), v) for k, v in settings.items() if earlier.get(k) != v}
    if differ:
        raise ValueError(f"{path}: trained with other settings ({differ}: earlier, now); run without --reuse")
    return earlier


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trees", default="zoos/probex_trees", help="trees directory (made there if missing)")
    p.add_argument("--children", type=int, default=300, help="children per tree when making trees")
    p.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "digits"])
    p.add_argument("--width", type=int, default=32, help="tree model width when making trees (see default_trees)")
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--rank", type=int, default=128, help="r_U = r_V = r_T (the paper's 128)")
    p.add_argument("--probes", type=int, default=32, help="ProbeGen's number of probes")
    p.add_argument("--probegen-epochs", type=int, default=60)
    p.add_argument("--zero-shot-epochs", type=int, default=200)
    p.add_argument("--source", nargs="+", default=["data", "text"], help="class-embedding sources (zero-shot)")
    p.add_argument("--folds", default="0,3,6;1,4,7;2,5,8", help="held-out classes per zero-shot fold")
    p.add_argument("--out", default="results/probex_trees")
    p.add_argument("--no-lora", action="store_true", help="skip the generative (LoRA) tree and zero-shot")
    p.add_argument("--forest", type=int, default=4,
                   help="MLP trees of one architecture (TREES/forest) for the in-tree vs across-tree comparison; "
                        "0 skips")
    p.add_argument("--reuse", action="store_true",
                   help="take what OUT/results.json of an earlier run with the same settings holds; compute only "
                        "what it lacks and what --rerun names (routing always runs)")
    p.add_argument("--rerun", nargs="+", default=[], metavar="NAME",
                   help=f"with --reuse, compute these again: a per-tree method (e.g. 'ProbeX across trees') or one "
                        f"of {list(SECTIONS)}")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.rerun and not args.reuse:
        raise SystemExit("--rerun names what to compute again on top of an earlier run: it needs --reuse")
    out, progress = Path(args.out), not args.quiet
    start = time.perf_counter()
    made = make_trees(default_trees(args.children, args.dataset, generative=not args.no_lora, width=args.width),
                      args.trees, progress=progress)
    children = {n: c for n, (_, c) in made.items()}
    lora = children.pop("lora", None)
    cfg = TrainConfig(epochs=args.epochs, batch_size=128, learning_rate=1e-3, weight_decay=1e-5,
                      eval_every=args.eval_every)
    pcfg = ProbeXConfig(args.rank, args.rank, args.rank)
    probegen_cfg = TrainConfig(epochs=args.probegen_epochs, batch_size=32, learning_rate=1e-3, weight_decay=1e-5)

    settings = {"trees_dir": str(Path(args.trees)), "train": dataclasses.asdict(cfg),
                "probex": dataclasses.asdict(pcfg), "zero_shot_epochs": args.zero_shot_epochs}
    earlier = earlier_run(out / "results.json", settings) if args.reuse else {}
    rerun = frozenset(args.rerun)
    unknown = rerun - set(SECTIONS) - set(earlier.get("trees", {}).get("params", {}))
    if unknown:
        raise SystemExit(f"--rerun {sorted(unknown)}: not a section {list(SECTIONS)} nor a method of the earlier run")
    res: dict = {"trees": per_tree_experiment(children, cfg, pcfg, probegen_cfg=probegen_cfg, probes=args.probes,
                                              progress=progress, earlier=earlier.get("trees"), rerun=rerun)}
    res["trees"]["layer_shapes"] = {
        n: list(layer_splits(z, res["trees"]["layers"][n]["chosen"], "classes", splits=("train",))[0]["train"][0]
                .shape[1:]) for n, z in children.items()}
    if args.forest:
        forest = {n: c for n, (_, c) in make_trees(forest_trees(args.forest, args.children, args.dataset,
                                                                width=args.width),
                                                   Path(args.trees) / "forest", progress=progress).items()}
        reuse = len(earlier.get("forest", {}).get("rows", {})) == args.forest and "forest" not in rerun
        res["forest"] = earlier["forest"] if reuse else forest_experiment(forest, FOREST_LAYER, cfg, pcfg,
                                                                          progress=progress)
    res["routing"] = routing_experiment({**children, **({"lora": lora} if lora is not None else {})})
    if lora is not None:
        data = load_dataset(lora.meta["dataset"])
        embeddings = {}
        for source in args.source:
            try:
                embeddings[source] = class_embeddings(source, data)
            except ImportError as e:  # the optional text model is not installed
                print(f"skipping {source} class embeddings: {e}")
        folds = [[int(c) for c in f.split(",")] for f in args.folds.split(";")]
        done = earlier.get("zero_shot", {})
        if done.get("folds") == folds and {k.split(" / ")[0] for k in done.get("table", {})} == set(embeddings) \
                and "zero-shot" not in rerun:
            res["zero_shot"] = {**done, "table": {tuple(k.split(" / ", 1)): v for k, v in done["table"].items()}}
        else:
            res["zero_shot"] = zero_shot_experiment(lora, embeddings, folds,
                                                    dataclasses.replace(cfg, epochs=args.zero_shot_epochs), pcfg,
                                                    progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    body = write_report(out, children, lora, res, cfg)
    res["zero_shot"] = {**res.get("zero_shot", {}), "table": {f"{s} / {m}": v for (s, m), v in
                                                               res.get("zero_shot", {}).get("table", {}).items()}}
    write_json(out / "results.json", {**res, "seconds": round(time.perf_counter() - start, 1), **settings})
    print(body)
    print(f"\nwritten to {out}/results.md, results.json, per_tree.png ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
