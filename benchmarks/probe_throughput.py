"""Probing throughput (networks probed per second against zoo size, K=128 SIRENs) and INR zoo
generation rate (INRs fitted per second), printed as tables with the machine named.

    python benchmarks/probe_throughput.py                 # 1k..100k SIRENs
    python benchmarks/probe_throughput.py --sizes 1000 10000 --fit-chunk 256
    python benchmarks/probe_throughput.py --blocks      # also: probing time against networks per block

``probe_zoo`` vmaps the networks of a block and maps over blocks inside one compiled call; by
default a block holds as many networks as keep its largest activation within
``probe.CPU_BLOCK_BYTES`` on CPU (the whole zoo on accelerators). ``--blocks`` times SIRENs and
small CNNs at several block sizes beside that default.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).parent))
from common import machine_description, median_seconds, median_seconds_and_cores  # noqa: E402

from probegen_jax.archs import make_arch  # noqa: E402
from probegen_jax.parallel import zoo_mesh  # noqa: E402
from probegen_jax.methods.probing import probe_zoo  # noqa: E402
from probegen_jax.methods.probing.probe import default_batch_size  # noqa: E402
from probegen_jax.report import markdown_table  # noqa: E402
from probegen_jax.make.inr import coordinate_grid, fit_inrs  # noqa: E402


def random_zoo(arch, n: int, seed: int = 0):
    return jax.jit(jax.vmap(arch.init))(jax.random.split(jax.random.key(seed), n))


def probing_rows(sizes, num_probes: int, batch_size: int, repeats: int):
    arch = make_arch("siren")
    probes = jax.random.uniform(jax.random.key(1), (num_probes, 2), minval=-1, maxval=1)
    mesh = zoo_mesh() if len(jax.devices()) > 1 else None
    rows = []
    for n in sizes:
        params = random_zoo(arch, n)
        seconds = median_seconds(lambda: probe_zoo(arch, params, probes, mesh=mesh, batch_size=batch_size),
                                 repeats=repeats)
        flops = n * num_probes * 2 * arch.num_params()
        rows.append([f"{n:,}", num_probes, f"{seconds * 1e3:.1f}", f"{n / seconds:,.0f}",
                     f"{flops / seconds / 1e9:.1f}"])
    return rows


BLOCK_CASES = (("siren", {}, 128, 2048), ("small_cnn", {"input_shape": (8, 8, 1)}, 64, 2048),
               ("small_cnn", {"input_shape": (28, 28, 1)}, 64, 512))
BLOCK_SIZES = (4, 16, 64, 256, 1024)


def block_rows(repeats: int):
    """Probing time (ms) per networks-per-block, the default block and the whole zoo in one block."""
    rows = []
    for name, kw, num_probes, n in BLOCK_CASES:
        arch = make_arch(name, **kw)
        probes = jax.random.uniform(jax.random.key(1), (num_probes, *arch.input_shape), minval=-1, maxval=1)
        params = random_zoo(arch, n)

        def ms(batch_size):
            call = lambda: probe_zoo(arch, params, probes, batch_size=batch_size)  # noqa: E731
            return f"{median_seconds(call, repeats=repeats) * 1e3:.1f}"

        default = default_batch_size(arch.apply, params, probes, "cpu")
        rows.append([f"{name} {'x'.join(map(str, arch.input_shape))}", num_probes, f"{n:,}",
                     *(ms(b) for b in BLOCK_SIZES), f"{ms(None)} ({default})", ms(n)])
    return rows


def fitting_rows(chunk: int, steps: int, image_size: int, repeats: int):
    arch = make_arch("siren")
    coords = coordinate_grid(image_size, image_size)
    pixels = jax.random.uniform(jax.random.key(2), (chunk, image_size * image_size, 1))
    init = random_zoo(arch, chunk)
    fit = lambda: fit_inrs(arch, init, coords, pixels, steps=steps, learning_rate=5e-4,  # noqa: E731
                           target_psnr=99.0)
    seconds, cores = median_seconds_and_cores(fit, repeats=repeats)
    step_rate = chunk * steps / seconds
    return [[chunk, f"{image_size}x{image_size}", steps, f"{seconds:.2f}", f"{step_rate:,.0f}",
             f"{step_rate / 1000:,.2f}", f"{step_rate / 300:,.2f}", f"{cores:.2f}"]]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=int, default=[1_000, 10_000, 100_000])
    p.add_argument("--probes", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=None,
                   help="networks per device per inner step (default: the library's, cache-sized on CPU)")
    p.add_argument("--blocks", action="store_true", help="also time probing against networks per block")
    p.add_argument("--fit-chunk", type=int, default=512, help="INRs fitted together")
    p.add_argument("--fit-steps", type=int, default=20, help="Adam steps timed (rates scale linearly)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    print(f"machine: {machine_description()}\n")
    print("Probing: networks probed per second (SIREN 2-32-32-1, one compiled call per zoo)\n")
    print(markdown_table(["zoo size", "K", "median ms", "networks / s", "GFLOP/s"],
                         probing_rows(args.sizes, args.probes, args.batch_size, args.repeats)))
    if args.blocks:
        print("\nProbing time (ms) against networks per block (one compiled call per zoo)\n")
        print(markdown_table(["networks", "K", "zoo", *(f"{b} per block" for b in BLOCK_SIZES),
                              "default (block)", "whole zoo"], block_rows(args.repeats)))
    print("\nINR zoo generation: SIRENs fitted together (Fashion-MNIST-sized 28x28 images)\n")
    print(markdown_table(
        ["INRs per call", "image", "steps timed", "median s", "INR-steps / s", "INRs / s at 1000 steps",
         "INRs / s at 300 steps", f"cores busy (of {os.cpu_count()})"],
        fitting_rows(args.fit_chunk, args.fit_steps, 28, max(1, args.repeats // 2))))


if __name__ == "__main__":
    main()
