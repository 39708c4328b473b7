"""Meshes and sharding along the zoo axis.

Single host, several devices and TPU pods (after ``jax.distributed.initialize()``) differ only in
the mesh: every zoo-axis computation shards its leading axis over the mesh axis ``"zoo"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from probegen_jax.types import PyTree

ZOO_AXIS = "zoo"


def zoo_mesh(devices: Sequence[jax.Device] | int | None = None) -> Mesh:
    """A 1-D mesh named ``"zoo"`` over ``devices`` (default: all; an int takes the first n)."""
    if devices is None:
        devices = jax.devices()
    elif isinstance(devices, int):
        devices = jax.devices()[:devices]
    return Mesh(np.asarray(devices), (ZOO_AXIS,))


def zoo_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the mesh."""
    return NamedSharding(mesh, PartitionSpec(ZOO_AXIS))


def platform_of(mesh: Mesh | None) -> str:
    """Where a zoo computation runs: the mesh's devices' platform, else the default backend's."""
    return jax.default_backend() if mesh is None else mesh.devices.flat[0].platform


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def pad_zoo_axis(tree: PyTree, multiple: int) -> tuple[PyTree, int]:
    """Pad every leaf's leading axis to a multiple of ``multiple`` by repeating its first row."""
    n = int(jax.tree.leaves(tree)[0].shape[0])
    pad = (-n) % multiple
    if pad == 0:
        return tree, n

    def pad_leaf(a):
        xp = jnp if isinstance(a, jax.Array) else np  # pad where the array lives
        return xp.concatenate([a, xp.repeat(a[:1], pad, axis=0)], axis=0)

    return jax.tree.map(pad_leaf, tree), n


def place_on_mesh(tree: PyTree, sharding: NamedSharding) -> PyTree:
    """Place host arrays with ``sharding``; each device reads only its own slice.

    Built with ``jax.make_array_from_callback``, so it also works on multi-host meshes (TPU pods)
    where every process holds the same host copy and owns only its local devices' shards.
    """

    def place(a):
        if isinstance(a, jax.Array) and jax.process_count() == 1:
            return jax.device_put(a, sharding)
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    return jax.tree.map(place, tree)


def shard_zoo(tree: PyTree, mesh: Mesh) -> tuple[PyTree, int]:
    """Pad to the mesh size and place the leading axis across the mesh; returns (tree, true size)."""
    padded, n = pad_zoo_axis(tree, mesh.size)
    return place_on_mesh(padded, zoo_sharding(mesh)), n


def map_in_blocks(fn, tree: PyTree, devices: int, block: int):
    """``fn`` over ``[devices * steps * block]`` rows, ``devices * block`` rows per step (traceable).

    The leading axis is laid out device-major (as ``zoo_sharding`` places it), so each step takes
    ``block`` rows from every device and no row crosses devices. ``fn`` maps ``[R, ...]`` to
    ``[R, ...]``; memory is bounded by one step.
    """
    n = jax.tree.leaves(tree)[0].shape[0]
    steps = n // (devices * block)

    def to_steps(a):
        a = a.reshape(devices, steps, block, *a.shape[1:]).swapaxes(0, 1)
        return a.reshape(steps, devices * block, *a.shape[3:])

    def from_steps(a):
        a = a.reshape(steps, devices, block, *a.shape[2:]).swapaxes(0, 1)
        return a.reshape(n, *a.shape[3:])

    return jax.tree.map(from_steps, jax.lax.map(fn, jax.tree.map(to_steps, tree)))


def place_blocks(tree: PyTree, mesh: Mesh | None, batch_size: int | None) -> tuple[PyTree, int, int, int]:
    """Pad (and shard over ``mesh``) for ``map_in_blocks``; returns (tree, n, devices, block).

    ``block`` is at most ``batch_size`` rows per device, evened out over the fewest steps that
    allow it so that little padding is added (1,000 rows at 256 give 4 steps of 250, not 1,024).
    """
    n = int(jax.tree.leaves(tree)[0].shape[0])
    devices = 1 if mesh is None else mesh.size
    per_device = -(-n // devices)
    steps = -(-per_device // max(1, min(batch_size or per_device, per_device)))
    block = max(1, -(-per_device // steps))
    padded, _ = pad_zoo_axis(tree, block * devices)
    if mesh is not None:
        padded = place_on_mesh(padded, zoo_sharding(mesh))
    return padded, n, devices, block
