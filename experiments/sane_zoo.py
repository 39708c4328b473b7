"""SANE on a small CNN zoo with several checkpoints per network: property prediction from
embeddings (against s(W) statistics and raw weights) and new models sampled from the embedding space.

    python experiments/sane_zoo.py --zoo zoos/digits_small_cnn
    python experiments/sane_zoo.py --zoo zoos/fmnist_small_cnn --epochs 100 --out results/sane_fmnist

Make the zoo with ``probegen-jax zoo make small-cnn ...``. The SANE model is trained once into
``<out>/model`` (resumable; reused on a second run). Writes ``results.md``/``results.json``,
``finetune_curves.png`` (test accuracy of sampled vs scratch networks over fine-tuning epochs) and
``embeddings.png`` (2-D projection of the embeddings coloured by test accuracy) to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax import report
from probegen_jax.methods.baselines.flat import flatten_weights
from probegen_jax.methods.baselines.statnn import statnn_features
from probegen_jax.io import write_json
from probegen_jax.methods.sane.embed import zoo_embeddings
from probegen_jax.methods.sane.model import SANEConfig
from probegen_jax.methods.sane.properties import ridge_probe
from probegen_jax.methods.sane.sample import sample_boot, sample_models, sample_sub, sampling_setup
from probegen_jax.methods.sane.train import DEFAULT_TRAIN, MODEL_FILE, load_sane, train_sane
from probegen_jax.make.cnn import finetune_networks, zoo_training_data
from probegen_jax.zoo.hetero import load_any_zoo
from probegen_jax.zoo.zoo import SPLITS

PROPERTIES = {"test accuracy": lambda z: z.target("test_accuracy"), "epoch": lambda z: z.target("epoch"),
              "generalisation gap": lambda z: z.target("train_accuracy") - z.target("test_accuracy")}


def property_table(zoo, embeddings: np.ndarray) -> tuple[list[dict], str]:
    features = {"SANE embedding": embeddings, "s(W) statistics": np.asarray(statnn_features(zoo.params)),
                "raw W": np.asarray(flatten_weights(zoo.params))}
    rows = []
    for fname, x in features.items():
        for pname, target in PROPERTIES.items():
            y = np.asarray(target(zoo), np.float64)
            r = ridge_probe({s: x[zoo.indices(s)] for s in SPLITS}, {s: y[zoo.indices(s)] for s in SPLITS})
            rows.append({"features": fname, "dim": x.shape[1], "property": pname, **r})
    table = report.markdown_table(
        ["features", "dim", *PROPERTIES],
        [[f, next(r["dim"] for r in rows if r["features"] == f),
          *(f"{next(r['test_r2'] for r in rows if r['features'] == f and r['property'] == p):.3f}" for p in PROPERTIES)]
         for f in features])
    return rows, table


def generation(zoo, trained, args) -> tuple[dict, str]:
    """Sampled populations and scratch networks, all fine-tuned together; test accuracy per epoch."""
    data = zoo_training_data(zoo, args.data_dir)
    anchors, extras, anchor_record, score = sampling_setup(zoo, anchor_fraction=args.anchor_fraction,
                                                           reference_batch=args.reference_batch,
                                                           data_dir=args.data_dir)
    key = jax.random.key(args.seed)
    populations = {
        "KDE30 (no SUB)": sample_models(trained, anchors, jax.random.fold_in(key, 0), args.keep,
                                        bandwidth=args.bandwidth, extras=extras(args.keep)),
        "SANE-SUB": sample_sub(trained, anchors, jax.random.fold_in(key, 1), score, num=args.num_samples,
                               keep=args.keep, bandwidth=args.bandwidth, extras=extras)[0],
        "SANE-BOOT": sample_boot(trained, anchors, jax.random.fold_in(key, 2), score, rounds=args.boot_rounds,
                                 num=args.num_samples, keep=args.keep, bandwidth=args.bandwidth, extras=extras)[0],
    }
    scratch = jax.vmap(zoo.arch.init)(jax.random.split(jax.random.fold_in(key, 3), args.keep))
    populations["scratch"] = {**scratch, **extras(args.keep)}
    names = list(populations)
    stacked = jax.tree.map(lambda *a: jnp.concatenate(a), *populations.values())
    epochs = tuple(range(args.finetune_epochs + 1))
    start = time.perf_counter()
    metrics = finetune_networks(zoo.arch, stacked, data, epochs=epochs, learning_rate=args.finetune_lr, seed=args.seed)
    seconds = time.perf_counter() - start
    test = metrics["test_accuracy"]
    results = {name: test[i * args.keep:(i + 1) * args.keep] for i, name in enumerate(names)}
    curves = {name: (list(epochs), results[name].mean(0).tolist()) for name in names}
    report.plot_curves(curves, Path(args.out) / "finetune_curves.png", xlabel="fine-tuning epoch",
                       ylabel="test accuracy", title=f"sampled vs scratch ({zoo.meta.get('dataset')})")
    table = report.markdown_table(
        ["population", *(f"epoch {e}" for e in epochs)],
        [[name, *(report.mean_std(results[name][:, j], scale=100) for j in range(len(epochs)))] for name in names])
    record = {**anchor_record, "finetune_seconds": round(seconds, 1),
              "test_accuracy": {n: results[n].tolist() for n in names}, "diverged": int(metrics["diverged"].sum())}
    return record, table


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", default="zoos/digits_small_cnn", help="a saved small CNN zoo with several epochs")
    p.add_argument("--out", default="results/sane_zoo")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX folder (default: the Debian package's)")
    p.add_argument("--token-size", type=int, default=SANEConfig.token_size)
    p.add_argument("--window", type=int, default=SANEConfig.window)
    p.add_argument("--d-model", type=int, default=SANEConfig.d_model)
    p.add_argument("--latent", type=int, default=SANEConfig.latent)
    p.add_argument("--layers", type=int, default=SANEConfig.encoder_layers, help="encoder (= decoder) blocks")
    p.add_argument("--epochs", type=int, default=DEFAULT_TRAIN.epochs)
    p.add_argument("--anchor-fraction", type=float, default=0.3)
    p.add_argument("--bandwidth", type=float, default=0.2)
    p.add_argument("--num-samples", type=int, default=50, help="SUB: samples drawn")
    p.add_argument("--keep", type=int, default=10, help="SUB: samples kept (and population size)")
    p.add_argument("--boot-rounds", type=int, default=3)
    p.add_argument("--reference-batch", type=int, default=500, help="training images SUB scores on")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--finetune-lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    zoo = load_any_zoo(args.zoo)
    model_dir = out / "model"
    if (model_dir / MODEL_FILE).is_file():
        trained, train_seconds = load_sane(model_dir), None
        print(f"reusing the SANE model in {model_dir}")
    else:
        cfg = SANEConfig(token_size=args.token_size, window=args.window, d_model=args.d_model, latent=args.latent,
                         encoder_layers=args.layers, decoder_layers=args.layers)
        trained, _ = train_sane(zoo, cfg, dataclasses.replace(DEFAULT_TRAIN, epochs=args.epochs, seed=args.seed),
                                out=model_dir)
    train_seconds = trained.record["result"]["seconds"]
    embeddings = zoo_embeddings(trained, zoo.params)
    report.plot_embedding_2d(embeddings, zoo.target("test_accuracy"), out / "embeddings.png",
                             title=f"SANE embeddings, {zoo.meta.get('dataset')} small CNN zoo")
    prop_rows, prop_table = property_table(zoo, embeddings)
    print(prop_table)
    gen_record, gen_table = generation(zoo, trained, args)
    print(gen_table)
    layout = trained.layout
    body = (f"Zoo `{args.zoo}`: {len(zoo)} members ({zoo.meta.get('num_networks')} networks x epochs "
            f"{zoo.meta.get('epochs')}), splits by network. SANE: {trained.record['num_parameters']:,} parameters, "
            f"{layout.num_tokens} tokens of size {layout.token_size} per network, window "
            f"{trained.model.config.window}, trained {trained.record['train']['epochs']} epochs in {train_seconds:.0f} s "
            f"(best val epoch {trained.record['result']['best_epoch']}).\n\n"
            f"## Property prediction (ridge, penalty chosen on val; test R^2)\n\n{prop_table}\n\n"
            f"## Sampled models (test accuracy %, mean ± std of {args.keep} networks, fine-tuned together)\n\n"
            f"Anchors: top {args.anchor_fraction:.0%} of the train networks by test accuracy "
            f"({gen_record['anchors']} of the majority activation, mean accuracy "
            f"{100 * gen_record['anchor_test_accuracy']:.1f}%); KDE bandwidth {args.bandwidth}; SUB keeps "
            f"{args.keep} of {args.num_samples} on {args.reference_batch} training images; BOOT {args.boot_rounds} "
            f"rounds; fine-tuning Adam {args.finetune_lr}.\n\n{gen_table}")
    report.save_markdown(out / "results.md", "SANE on a small CNN zoo", body)
    write_json(out / "results.json", {"zoo": args.zoo, "args": vars(args), "sane": trained.record,
                                      "properties": prop_rows, "generation": gen_record})
    print(f"\nwritten to {out}/results.md, finetune_curves.png, embeddings.png")


if __name__ == "__main__":
    main()
