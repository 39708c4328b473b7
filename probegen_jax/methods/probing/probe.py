"""The central operation: pass probes through every network of a zoo in one compiled call."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import chex
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from probegen_jax.archs import Arch
from probegen_jax.parallel import (
    agree_min,
    map_in_blocks,
    place_blocks,
    place_on_mesh,
    platform_of,
    replicated,
)
from probegen_jax.tracing import largest_array_bytes
from probegen_jax.types import Array, Params

ApplyFn = Callable[[Params, Array], Array]

# Networks per block on CPU keep a block's largest activation within this many bytes: the
# block's intermediates then stay in cache, and a zoo is probed 2-3x faster than in one vmapped
# block (SIREN, small CNN; `benchmarks/probe_throughput.py --blocks`).
CPU_BLOCK_BYTES = 4 * 2**20
# Against a memory budget a network of a block is counted as this many of its largest
# activation (that layer's input and output, and XLA's scratch beside them).
ACTIVATIONS_PER_NETWORK = 4
# By default a block on an accelerator may take this share of the device's free memory.
FREE_MEMORY_SHARE = 0.5


def probe(apply_fn: ApplyFn, zoo_params: Params, probes: Array) -> Array:
    """Responses of every network to every probe.

    Args:
      apply_fn: ``(params, x[K, ...]) -> y[K, ...]`` for one network.
      zoo_params: params pytree with a leading zoo axis ``N``.
      probes: ``[K, *input_shape]``.

    Returns:
      ``[N, K, out_dim]`` (outputs flattened per probe). Pure and traceable: call it under
      ``jit``/``grad`` (gradients flow into ``probes``) or use ``probe_zoo`` for large zoos.
    """
    out = jax.vmap(apply_fn, in_axes=(0, None))(zoo_params, probes)
    return out.reshape(out.shape[0], probes.shape[0], -1)


def largest_activation_bytes(apply_fn: ApplyFn, zoo_params: Params, probes: Array) -> int:
    """Bytes of the largest array one network's forward pass on ``probes`` creates (traced
    abstractly: nothing is computed)."""
    one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), zoo_params)
    largest = largest_array_bytes(apply_fn, one, jax.ShapeDtypeStruct(probes.shape, probes.dtype))
    return max(largest, probes.size * probes.dtype.itemsize)


def free_memory_bytes(devices: Sequence[jax.Device]) -> int | None:
    """The least free memory of ``devices`` (``memory_stats``: limit less in use), agreed on by
    every process; ``None`` where a device does not report it (CPU)."""
    free = []
    for device in devices:
        stats = device.memory_stats()
        if not stats or "bytes_limit" not in stats:
            return None
        free.append(int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))
    return agree_min(min(free)) if free else None


def default_batch_size(apply_fn: ApplyFn, zoo_params: Params, probes: Array, platform: str, *,
                       free_bytes: int | None = None, memory_budget_bytes: int | None = None) -> int | None:
    """Networks per device per block when none is asked for, the most that fit every bound:

    - on CPU, the largest activation of a block within ``CPU_BLOCK_BYTES`` (cache-sized);
    - on accelerators, ``FREE_MEMORY_SHARE`` of the device's ``free_bytes``;
    - ``memory_budget_bytes`` where the user sets one;

    a network counting ``ACTIVATIONS_PER_NETWORK`` of its largest activation against memory.
    ``None`` (the whole zoo in one block) only on an accelerator with no bound known.
    """
    largest = largest_activation_bytes(apply_fn, zoo_params, probes)
    bounds = []
    if platform == "cpu":
        bounds.append(CPU_BLOCK_BYTES // largest)
    elif free_bytes is not None:
        bounds.append(int(FREE_MEMORY_SHARE * free_bytes) // (ACTIVATIONS_PER_NETWORK * largest))
    if memory_budget_bytes is not None:
        bounds.append(memory_budget_bytes // (ACTIVATIONS_PER_NETWORK * largest))
    return max(1, min(bounds)) if bounds else None


def block_size(arch: Arch, zoo_params: Params, probes: Array, *, mesh: Mesh | None = None,
               memory_budget_bytes: int | None = None) -> int | None:
    """``default_batch_size`` for ``probe_zoo`` on ``mesh`` (or the default device), reading the
    free memory of the devices this process computes on."""
    platform = platform_of(mesh)
    free = None
    if platform != "cpu":
        free = free_memory_bytes(mesh.local_devices if mesh is not None else jax.local_devices()[:1])
    return default_batch_size(arch.apply, zoo_params, probes, platform, free_bytes=free,
                              memory_budget_bytes=memory_budget_bytes)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _probe_in_blocks(apply_fn: ApplyFn, zoo_params: Params, probes: Array, devices: int, block: int) -> Array:
    return map_in_blocks(lambda p: probe(apply_fn, p, probes), zoo_params, devices, block)


def probe_zoo(
    arch: Arch,
    zoo_params: Params,
    probes: Array,
    *,
    mesh: Mesh | None = None,
    batch_size: int | None = None,
    memory_budget_bytes: int | None = None,
) -> Array:
    """``probe`` for a whole zoo: checked, jit-compiled, sharded over ``mesh``, memory-bounded.

    Args:
      arch: the zoo's architecture (its ``apply`` and input shape are used).
      zoo_params: stacked params ``[N, ...]``.
      probes: ``[K, *arch.input_shape]``.
      mesh: a ``zoo_mesh``; the zoo axis is split across its devices (padded to a multiple).
      batch_size: networks per device per inner step; bounds the activation memory. By default
        ``block_size``: cache-sized blocks on CPU, a share of the free memory on accelerators,
        within ``memory_budget_bytes`` where given.
      memory_budget_bytes: the most memory one block may take on each device where
        ``batch_size`` is not given.

    Returns:
      ``[N, K, arch.output_dim]``.
    """
    arch.check_input(probes)
    arch.check_params(zoo_params, stacked=True, where="zoo params")
    chex.assert_rank(probes, 1 + len(arch.input_shape))
    if batch_size is None:
        batch_size = block_size(arch, zoo_params, probes, mesh=mesh, memory_budget_bytes=memory_budget_bytes)
    padded, n, devices, block = place_blocks(zoo_params, mesh, batch_size)
    probes = jnp.asarray(probes) if mesh is None else place_on_mesh(probes, replicated(mesh))
    return _probe_in_blocks(arch.apply, padded, probes, devices, block)[:n]
