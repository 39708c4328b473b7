"""Shared helpers for benchmarks: timing medians and naming the machine."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.flops import Cost
from probegen_jax.timing import Stopwatch


def median_seconds(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` (blocked until its arrays are ready) after ``warmup`` calls."""
    return median_seconds_and_cores(fn, repeats=repeats, warmup=warmup)[0]


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def median_seconds_and_cores(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1,
                             budget_s: float | None = None) -> tuple[float, float]:
    """``median_seconds`` and the cores the timed calls kept busy (this process's CPU time over
    their wall time, every thread counted). With ``budget_s`` the timed calls stop once they have
    taken that long (after one at least)."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times, stopwatch = [], Stopwatch()
    while len(times) < repeats and (budget_s is None or not times or sum(times) < budget_s):
        times.append(_seconds(fn))
    return statistics.median(times), stopwatch.elapsed().cores_busy


def compiled_cost(compiled: jax.stages.Compiled) -> Cost:
    """XLA's cost analysis of a compiled call (``flops.xla_cost`` compiles a function itself)."""
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return Cost(float(analysis.get("flops", 0.0)), float(analysis.get("transcendentals", 0.0)))


def machine_description() -> str:
    devices = jax.devices()
    kind = devices[0].device_kind if devices else "?"
    cpu = platform.processor() or platform.machine()
    return (f"{platform.node()}: {os.cpu_count()} CPU cores ({cpu}), jax {jax.__version__}, "
            f"backend {jax.default_backend()}, {len(devices)} x {kind}")


def cnn_chunk_arguments(n: int, image: int, pool: int, activations: tuple[str, ...] = ("relu", "tanh"),
                        seed: int = 0) -> tuple[tuple, dict]:
    """``(args, keywords)`` of ``make.cnn.train_steps`` for a chunk of ``n`` small CNNs on a pool of
    ``pool`` random ``image``-square images, as zoo generation trains them (every network its own
    hyper-parameters, batch 32); every keyword but ``steps``."""
    from probegen_jax.archs import make_arch
    from probegen_jax.archs.cnn import conv_layers_of, conv_stack_apply, conv_stack_init, conv_stack_shapes
    from probegen_jax.make.cnn import CNNTraining, init_opt_state, network_keys, sample_hparams

    cfg = CNNTraining(activations=activations)
    arch = make_arch("small_cnn", input_shape=(image, image, 1), activation=activations)
    layers = conv_layers_of(arch)
    shapes = conv_stack_shapes(layers, 1, 10)
    images = jax.random.uniform(jax.random.key(seed), (pool, image, image, 1), minval=-1, maxval=1)
    labels = jax.random.randint(jax.random.key(seed + 1), (pool,), 0, 10)
    keys = network_keys(seed, np.arange(n))
    hp = jax.vmap(lambda k: sample_hparams(k, cfg))(keys)
    params = jax.vmap(lambda k, h: {**conv_stack_init(k, shapes, h["init_std"]),
                                    "activation_id": h["activation"]})(keys, hp)
    opt = jax.vmap(lambda p: init_opt_state(p, cfg.optimizers))(params)
    perms = jnp.tile(jnp.arange(pool, dtype=jnp.int32), (n, 1))
    sizes = jnp.full((n,), pool, jnp.int32)
    args = (partial(conv_stack_apply, layers=layers), params, opt, hp, keys, perms, sizes, images, labels,
            jnp.asarray(0))
    return args, {"opt_names": cfg.optimizers, "batch_size": cfg.batch_size}
