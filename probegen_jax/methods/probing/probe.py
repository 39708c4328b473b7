"""The central operation: pass probes through every network of a zoo in one compiled call."""

from __future__ import annotations

import functools
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from probegen_jax.archs import Arch
from probegen_jax.parallel import map_in_blocks, place_blocks, platform_of, replicated
from probegen_jax.tracing import largest_array_bytes
from probegen_jax.types import Array, Params

ApplyFn = Callable[[Params, Array], Array]

# Networks per block on CPU keep a block's largest activation within this many bytes: the
# block's intermediates then stay in cache, and a zoo is probed 2-3x faster than in one vmapped
# block (SIREN, small CNN; `benchmarks/probe_throughput.py --blocks`).
CPU_BLOCK_BYTES = 4 * 2**20


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


def default_batch_size(apply_fn: ApplyFn, zoo_params: Params, probes: Array, platform: str) -> int | None:
    """Networks per device per block when none is asked for: on CPU, as many as keep the largest
    activation of a block within ``CPU_BLOCK_BYTES``; on accelerators the whole zoo (``None``)."""
    if platform != "cpu":
        return None
    return max(1, CPU_BLOCK_BYTES // largest_activation_bytes(apply_fn, zoo_params, probes))


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
) -> Array:
    """``probe`` for a whole zoo: checked, jit-compiled, sharded over ``mesh``, memory-bounded.

    Args:
      arch: the zoo's architecture (its ``apply`` and input shape are used).
      zoo_params: stacked params ``[N, ...]``.
      probes: ``[K, *arch.input_shape]``.
      mesh: a ``zoo_mesh``; the zoo axis is split across its devices (padded to a multiple).
      batch_size: networks per device per inner step; bounds the activation memory. By default
        ``default_batch_size``: cache-sized blocks on CPU, the whole zoo on accelerators.

    Returns:
      ``[N, K, arch.output_dim]``.
    """
    arch.check_input(probes)
    arch.check_params(zoo_params, stacked=True, where="zoo params")
    chex.assert_rank(probes, 1 + len(arch.input_shape))
    if batch_size is None:
        batch_size = default_batch_size(arch.apply, zoo_params, probes, platform_of(mesh))
    padded, n, devices, block = place_blocks(zoo_params, mesh, batch_size)
    probes = jnp.asarray(probes) if mesh is None else jax.device_put(probes, replicated(mesh))
    return _probe_in_blocks(arch.apply, padded, probes, devices, block)[:n]
