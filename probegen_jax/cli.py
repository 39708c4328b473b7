"""The ``probegen-jax`` command.

    probegen-jax zoo make inr --dataset digits --out zoos/digits_inr
    probegen-jax zoo info zoos/digits_inr
    probegen-jax train probegen --zoo zoos/digits_inr --out runs/pg --probes 64
    probegen-jax eval --run runs/pg --split test
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from probegen_jax.errors import ProbegenError

EXAMPLES = __doc__.split("\n\n", 1)[1]


def _zoo_make_inr(args: argparse.Namespace) -> None:
    from probegen_jax.zoo.inr import INRZooConfig, make_inr_zoo

    cfg = INRZooConfig(dataset=args.dataset, num_train=args.train, num_val=args.val, num_test=args.test,
                       steps=args.steps, learning_rate=args.lr, target_psnr=args.target_psnr,
                       chunk_size=args.chunk_size, seed=args.seed)
    zoo = make_inr_zoo(cfg, args.out, data_dir=args.data_dir)
    print(zoo.describe())
    print(f"mean PSNR {zoo.meta['psnr_mean']:.2f} dB; {zoo.meta['generation_seconds']} s; saved to {args.out}")


def _zoo_info(args: argparse.Namespace) -> None:
    from probegen_jax.zoo import load_zoo

    print(load_zoo(args.dir).describe())


def _train_probegen(args: argparse.Namespace) -> None:
    from probegen_jax.parallel import zoo_mesh
    from probegen_jax.probing.methods import ProbingSpec
    from probegen_jax.runs import save_run, train_probing
    from probegen_jax.train import TrainConfig
    from probegen_jax.zoo import load_zoo

    zoo = load_zoo(args.zoo)
    spec = ProbingSpec(source=args.source, num_probes=args.probes)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed)
    mesh = zoo_mesh(args.devices) if args.devices else None
    result, _, _ = train_probing(zoo, spec, cfg, target=args.target, checkpoint_dir=f"{args.out}/checkpoints",
                                 mesh=mesh)
    save_run(args.out, zoo_path=args.zoo, target=args.target, spec=spec, cfg=cfg, result=result)
    print(json.dumps({"best_epoch": result.best_epoch, "val": result.val, "test": result.test}, indent=2))


def _eval(args: argparse.Namespace) -> None:
    from probegen_jax.runs import evaluate_run
    from probegen_jax.zoo import load_zoo

    zoo = load_zoo(args.zoo) if args.zoo else None
    print(json.dumps({args.split: evaluate_run(args.run, args.split, zoo)}, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probegen-jax", description="Weight-space learning on model zoos (ProbeGen and friends).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    zoo = commands.add_parser("zoo", help="make and inspect model zoos").add_subparsers(
        dest="zoo_command", required=True, metavar="ZOO_COMMAND")
    make = zoo.add_parser("make", help="train a whole zoo").add_subparsers(dest="kind", required=True,
                                                                         metavar="KIND")
    inr = make.add_parser("inr", help="one SIREN per image (DWSNets INR protocol)",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    inr.add_argument("--dataset", default="digits", choices=["digits", "fashion_mnist"],
                     help="images to fit; digits ships with scikit-learn")
    inr.add_argument("--data-dir", help="folder of Fashion-MNIST IDX files (default: Debian's)")
    inr.add_argument("--out", required=True, help="directory to save the zoo to (resumes if interrupted)")
    inr.add_argument("--train", type=int, default=None, help="train INRs (default: all but --val)")
    inr.add_argument("--val", type=int, default=200, help="validation INRs, from the train images")
    inr.add_argument("--test", type=int, default=None, help="test INRs (default: all test images)")
    inr.add_argument("--steps", type=int, default=1000, help="Adam steps per INR")
    inr.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate")
    inr.add_argument("--target-psnr", type=float, default=40.0, help="an INR stops once it reaches this PSNR")
    inr.add_argument("--chunk-size", type=int, default=512, help="INRs fitted together in one compiled call")
    inr.add_argument("--seed", type=int, default=0)
    inr.set_defaults(func=_zoo_make_inr)
    info = zoo.add_parser("info", help="print a saved zoo's size, architecture, targets and splits")
    info.add_argument("dir")
    info.set_defaults(func=_zoo_info)

    train = commands.add_parser("train", help="train a method on a zoo").add_subparsers(
        dest="method", required=True, metavar="METHOD")
    pg = train.add_parser("probegen", help="ProbeGen or a probing baseline",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pg.add_argument("--zoo", required=True, help="a saved zoo directory")
    pg.add_argument("--out", required=True, help="run directory (checkpoints, params, run.json); resumes")
    pg.add_argument("--source", default="probegen", choices=["probegen", "vanilla", "synthetic", "nonlinear"],
                    help="probegen: deep linear generator; vanilla: free learned probes; synthetic: fixed "
                         "random probes; nonlinear: generator with ReLUs (ablation)")
    pg.add_argument("--probes", type=int, default=128, help="number of probes K")
    pg.add_argument("--target", default="label", help="zoo target to predict")
    pg.add_argument("--epochs", type=int, default=30)
    pg.add_argument("--batch-size", type=int, default=32, help="networks per step")
    pg.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (cosine decay per step)")
    pg.add_argument("--seed", type=int, default=0)
    pg.add_argument("--devices", type=int, default=0, help="shard batches over this many devices (0: one)")
    pg.set_defaults(func=_train_probegen)

    ev = commands.add_parser("eval", help="evaluate a saved run on a split of its zoo")
    ev.add_argument("--run", required=True, help="run directory written by `train`")
    ev.add_argument("--split", default="test", help="train, val or test")
    ev.add_argument("--zoo", help="evaluate on this zoo instead of the run's own")
    ev.set_defaults(func=_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ProbegenError, FileExistsError, ValueError) as e:
        print(f"probegen-jax: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
