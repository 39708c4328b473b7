"""ProbeX against the dense expert on trees of all-MiniLM-L6-v2 fine-tunes (``zoo make text-tree``),
per trained layer, over training seeds; and zero-shot from MiniLM's own text embeddings.

    probegen-jax zoo make text-tree --out zoos/text_trees --children 200 --trees minilm
    python experiments/probex_text_tree.py --trees zoos/text_trees --epochs 200 --seeds 0 1 2

Each expert reads one layer's weight matrix of the children of one tree and predicts the classes
the child was fine-tuned on (multi-label over the tree's classes; per-label test accuracy, chance
depends on how many classes a child saw: ``always no`` is listed). Zero-shot (multi-label, since a
child saw 10-20 classes): an alignment head (a linear map from the class descriptions' MiniLM
embeddings into the expert's embedding; cosine logits, binary cross-entropy) is trained on the
seen classes' labels and scored on the held-out classes, against their own text embeddings only.
Writes ``results.md`` and ``results.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from probegen_jax import report
from probegen_jax.archs.minilm import embed_text
from probegen_jax.io import write_json
from probegen_jax.methods.probex.experts import layer_splits, train_experts
from probegen_jax.methods.probex.probex import (ProbeXConfig, alignment_learner, dense_embedder, expert_learner,
                                                num_params, probex_embedder)
from probegen_jax.make.trees import load_trees
from probegen_jax.training.loop import TrainConfig, evaluate, fit
from probegen_jax.training.tasks import multilabel

PLA = "per_label_accuracy"
METHODS = {"ProbeX (rank 128)": ("probex", True), "ProbeX without the ReLU": ("probex", False),
           "Dense expert": ("dense", True)}
LAYERS = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")


def zero_shot(splits, seen: np.ndarray, heldout: np.ndarray, text: np.ndarray, kind: str, relu: bool,
              cfg: TrainConfig, dim: int = 128) -> dict[str, float]:
    """Multi-label zero-shot: trained on the ``seen`` labels, scored on the ``heldout`` ones."""
    d_out, d_in = splits["train"][0].shape[1:]
    embedder = (probex_embedder(d_out, d_in, ProbeXConfig(relu=relu)) if kind == "probex"
                else dense_embedder(d_out, d_in, dim))
    part = {s: (x, y[:, seen]) for s, (x, y) in splits.items()}
    res = fit(alignment_learner(embedder, text[seen], dim), multilabel(len(seen)), part, cfg, progress=False)
    unseen = evaluate(alignment_learner(embedder, text[heldout], dim), multilabel(len(heldout)), res.params,
                      (splits["test"][0], splits["test"][1][:, heldout]))
    return {"test_unseen": float(unseen[PLA]), "always_no": float(1 - splits["test"][1][:, heldout].mean())}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trees", required=True, help="folder written by `probegen-jax zoo make text-tree`")
    p.add_argument("--layers", nargs="+", default=["query", "attn_out", "ffn_in"], choices=LAYERS,
                   help="layers of the top trained transformer layer to read")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--zero-shot-seeds", nargs="+", type=int, default=None, help="(default: --seeds)")
    p.add_argument("--heldout", type=int, default=10, help="zero-shot: classes held out (the last ones of a "
                                                           "seeded permutation)")
    p.add_argument("--out", default="results/probex_text_tree")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    trees = {n: c for n, (_, c) in load_trees(args.trees).items()}
    names = list(trees)
    first = trees[names[0]]
    top = max(int(k[len("layer"):]) for k in first.params if k.startswith("layer"))
    task = multilabel(first.meta["num_classes"])
    base = TrainConfig(epochs=args.epochs, batch_size=128, learning_rate=1e-3, weight_decay=1e-5, eval_every=25)
    rows, record = [], {"trees": {}, "layers": {}, "train": dataclasses.asdict(base)}
    for n, zoo in trees.items():
        record["trees"][n] = {"children": len(zoo), "splits": {s: len(i) for s, i in zoo.splits.items()},
                              "classes": zoo.meta["num_classes"],
                              "child_test_accuracy": float(zoo.targets["test_accuracy"].mean()),
                              "classes_per_child": float(zoo.targets["classes"].sum(1).mean()),
                              "generation_seconds": zoo.meta["generation_seconds"],
                              "generation_cpu_seconds": zoo.meta["generation_cpu_seconds"]}
    for layer in args.layers:
        name = f"layer{top}/{layer}/kernel"
        experts = [layer_splits(trees[n], name, "classes")[0] for n in names]
        d_out, d_in = experts[0]["train"][0].shape[1:]
        always_no = [float(1 - e["test"][1].mean()) for e in experts]
        result = {}
        for method, (kind, relu) in METHODS.items():
            pcfg = ProbeXConfig(relu=relu)
            runs = []
            for seed in args.seeds:
                res = train_experts(kind, experts, task, dataclasses.replace(base, seed=seed), pcfg,
                                    progress=not args.quiet, desc=f"{method} {name} seed {seed}")
                runs.append([m["test"][PLA] for m in res.per_expert])
            params = num_params(expert_learner(kind, d_out, d_in, task.num_outputs, pcfg))
            result[method] = {"per_tree": np.asarray(runs).T.tolist(), "params": params}
            rows.append([f"`{name}` [{d_out}x{d_in}]", method]
                        + [report.mean_std(r, 100, 1) for r in np.asarray(runs).T] + [f"{params / 1e6:.2f}M"])
        rows.append([f"`{name}` [{d_out}x{d_in}]", "always no"] + [f"{100 * a:.1f}" for a in always_no] + ["0"])
        record["layers"][name] = result
    # zero-shot on the first tree's first layer
    zoo, name = trees[names[0]], f"layer{top}/{args.layers[0]}/kernel"
    splits = layer_splits(zoo, name, "classes")[0]
    order = np.random.default_rng(0).permutation(zoo.meta["num_classes"])
    seen, heldout = np.sort(order[: -args.heldout]), np.sort(order[-args.heldout:])
    text = embed_text(zoo.meta["class_descriptions"])
    zs = {}
    for method, (kind, relu) in METHODS.items():
        zs[method] = [zero_shot(splits, seen, heldout, jnp.asarray(text), kind, relu,
                                dataclasses.replace(base, seed=seed)) for seed in args.zero_shot_seeds or args.seeds]
    record["zero_shot"] = {"tree": names[0], "layer": name, "heldout": [zoo.meta["class_names"][c] for c in heldout],
                           "runs": zs}
    table = report.markdown_table(["layer", "method", *names, "params"], rows)
    zs_rows = [[m, report.mean_std([r["test_unseen"] for r in v], 100, 1), f"{100 * v[0]['always_no']:.1f}"]
               for m, v in zs.items()]
    body = (f"Trees: {record['trees']}\n\nPer-label test accuracy (%), seeds {args.seeds}:\n\n{table}\n\n"
            f"Zero-shot on {names[0]} `{name}`, {args.heldout} held-out classes (per-label test accuracy on them):\n\n"
            + report.markdown_table(["method", "held-out classes", "always no"], zs_rows) + "\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", record)
    report.save_markdown(out / "results.md", "ProbeX on all-MiniLM-L6-v2 text trees", body)
    print(body)


if __name__ == "__main__":
    main()
