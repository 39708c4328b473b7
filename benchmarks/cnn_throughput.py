"""CNN zoo throughput: small CNNs trained per second in zoo generation (against the number trained
together), small CNNs probed per second (against zoo size), each with convolutions by kernel taps
and by XLA side by side, and ProbeGen's image generator (forward
and gradient, the dominant cost of a training step) run on its latent basis against run on every
probe, printed as tables with the machine.

    python benchmarks/cnn_throughput.py
    python benchmarks/cnn_throughput.py --train-chunks 64 256 --probe-sizes 1000 10000 --image 8
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
from common import cnn_chunk_arguments, machine_description, median_seconds, median_seconds_and_cores

from probegen_jax.archs import make_arch
from probegen_jax.archs.cnn import CONV_IMPLS, conv_impl
from probegen_jax.parallel import zoo_mesh
from probegen_jax.methods.probing.image_sources import dcgan_generator, dcgan_specs, generator_pre_tanh
from probegen_jax.methods.probing import probe_zoo
from probegen_jax.report import markdown_table
from probegen_jax.make.cnn import CNNTraining, train_steps

ACTIVATIONS = ("relu", "tanh")


def training_rows(chunks, image: int, steps: int, pool: int, repeats: int):
    """Net-steps per second of the vmapped trainer (all hyper-parameters per network)."""
    cfg = CNNTraining(activations=ACTIVATIONS)
    steps_per_epoch = -(-pool // cfg.batch_size)
    rows = []
    for n in chunks:
        args, keywords = cnn_chunk_arguments(n, image, pool, ACTIVATIONS)
        run = partial(train_steps, *args, **keywords, steps=steps)
        seconds, cores = median_seconds_and_cores(run, repeats=repeats)
        net_steps = n * steps / seconds
        rows.append([n, f"{image}x{image}", steps, f"{seconds:.2f}", f"{net_steps:,.0f}",
                     f"{net_steps * cfg.batch_size:,.0f}", f"{net_steps / steps_per_epoch:,.2f}", f"{cores:.2f}"])
    return rows, steps_per_epoch


def probing_rows(sizes, image: int, num_probes: int, batch_size: int, repeats: int):
    arch = make_arch("small_cnn", input_shape=(image, image, 1), activation=ACTIVATIONS)
    probes = jax.random.uniform(jax.random.key(2), (num_probes, image, image, 1), minval=-1, maxval=1)
    mesh = zoo_mesh() if len(jax.devices()) > 1 else None
    rows = []
    for n in sizes:
        params = jax.jit(jax.vmap(arch.init))(jax.random.split(jax.random.key(3), n))
        seconds = median_seconds(partial(probe_zoo, arch, params, probes, mesh=mesh, batch_size=batch_size),
                                 repeats=repeats)
        rows.append([f"{n:,}", f"{image}x{image}", num_probes, f"{seconds * 1e3:.1f}", f"{n / seconds:,.0f}"])
    return rows


def generator_rows(probe_counts, image: int, repeats: int):
    """Generator forward and gradient per K: every probe through the transposed convolutions
    against the latent basis only (``generator_pre_tanh(via_basis=...)``), side by side."""
    shape = (image, image, 1)
    specs = dcgan_specs(shape)
    rows = []
    for k in probe_counts:
        params = dcgan_generator(k, shape).init(jax.random.key(4))
        times = {}
        for via_basis in (False, True):
            pre_tanh = partial(generator_pre_tanh, specs=specs, height=image, width=image, via_basis=via_basis)
            forward = jax.jit(lambda p, f=pre_tanh: jnp.tanh(f(p)))
            grad = jax.jit(jax.grad(lambda p, f=pre_tanh: jnp.sum(jnp.tanh(f(p)) ** 2)))
            times[via_basis] = [median_seconds(partial(fn, params), repeats=repeats) for fn in (forward, grad)]
        rows.append([k, f"{image}x{image}", *(f"{t * 1e3:.1f}" for t in times[False] + times[True]),
                     f"{times[False][1] / times[True][1]:.1f}x"])
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-chunks", nargs="+", type=int, default=[32, 128, 256], help="networks trained together")
    p.add_argument("--probe-sizes", nargs="+", type=int, default=[1_000, 10_000])
    p.add_argument("--image", type=int, default=28, help="image side (28: Fashion-MNIST, 8: digits)")
    p.add_argument("--steps", type=int, default=5, help="SGD steps timed (rates scale linearly)")
    p.add_argument("--pool", type=int, default=2000, help="training pool that defines an epoch")
    p.add_argument("--probes", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=None,
                   help="networks per device per probing step (default: the library's, cache-sized on CPU)")
    p.add_argument("--generator-probes", nargs="+", type=int, default=[64, 128, 256],
                   help="K of ProbeGen's image generator timings")
    p.add_argument("--conv", nargs="+", default=list(CONV_IMPLS), choices=CONV_IMPLS,
                   help="convolution implementations to time (conv2d_same: taps is the CPU default)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print(f"machine: {machine_description()}\n")
    train, probing = [], []
    for impl in args.conv:  # each in its own traces, side by side
        with conv_impl(impl):
            rows, spe = training_rows(args.train_chunks, args.image, args.steps, args.pool, args.repeats)
            train += [[impl, *row] for row in rows]
            probing += [[impl, *row] for row in probing_rows(args.probe_sizes, args.image, args.probes,
                                                             args.batch_size, args.repeats)]
    print(f"Small CNN zoo generation: networks trained together (batch 32, per-network hyper-parameters; "
          f"an epoch of a {args.pool}-image pool is {spe} steps); convolutions by kernel taps or by XLA\n")
    print(markdown_table(["convolution", "CNNs per call", "image", "steps timed", "median s", "CNN-steps / s",
                          "images / s", "CNN-epochs / s", f"cores busy (of {os.cpu_count()})"], train))
    print(f"\nProbing: small CNNs probed per second (K={args.probes}, one compiled call per zoo)\n")
    print(markdown_table(["convolution", "zoo size", "image", "K", "median ms", "CNNs / s"], probing))
    print("\nProbeGen's image generator (6 layers, width 16, latent 32): every probe through the transposed "
          "convolutions vs the latent basis only (33 passes), median ms\n")
    print(markdown_table(["K", "image", "forward, per probe", "gradient, per probe", "forward, basis",
                          "gradient, basis", "gradient speed-up"],
                         generator_rows(args.generator_probes, args.image, args.repeats)))


if __name__ == "__main__":
    main()
