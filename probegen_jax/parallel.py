"""Meshes, sharding along the zoo axis, and multi-process helpers.

Single host, several devices and several processes (TPU pods, GPU clusters, or processes on one
machine after ``initialize_distributed``) differ only in the mesh: every zoo-axis computation
shards its leading axis over the mesh axis ``"zoo"``. On a multi-process mesh every process runs
the same program on the same host data and owns its local devices' shards; ``to_host`` gathers a
result into every process, and console output and plain-file writes come from the main process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from probegen_jax.stored import in_memory, is_stored
from probegen_jax.types import PyTree

ZOO_AXIS = "zoo"


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, *, cpu_devices: int | None = None) -> int:
    """Join this process to a multi-process run (``jax.distributed.initialize``); returns the
    process count. Call it before any other JAX call.

    Without arguments the cluster is detected from the environment (SLURM, Open MPI, TPU pods,
    ...) as ``jax.distributed.initialize()`` does; where none is found, or ``num_processes`` is 1,
    it does nothing (one process). ``cpu_devices`` sets the CPU devices of this process (for runs
    of several processes on one machine's CPUs). Calling it again is a no-op.
    """
    if jax.distributed.is_initialized():
        return jax.process_count()
    if cpu_devices is not None:
        jax.config.update("jax_num_cpu_devices", cpu_devices)
    if num_processes == 1:
        return 1
    if coordinator is None and num_processes is None and process_id is None:
        if not cluster_detected():
            return 1
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    return jax.process_count()


def cluster_detected() -> bool:
    """Whether ``jax.distributed.initialize()`` would find a cluster (SLURM, Open MPI, TPU pod,
    Kubernetes, ...) in this process's environment."""
    from jax._src import clusters  # the detection jax.distributed.initialize() runs

    return any(env.is_env_present() for env in clusters.ClusterEnv._cluster_types if not env.opt_in_only_method)


def is_main_process() -> bool:
    """Whether this process prints progress and writes plain files (process 0, or the only one)."""
    return not jax.distributed.is_initialized() or jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches ``barrier(name)`` (nothing to wait for in one process)."""
    if jax.distributed.is_initialized() and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def to_host(tree: PyTree) -> PyTree:
    """Every leaf as a NumPy array holding its whole value, in every process (arrays spread over
    other processes' devices are gathered)."""
    def get(a):
        if isinstance(a, jax.Array) and not (a.is_fully_addressable or a.is_fully_replicated):
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree.map(get, tree)


def agree_min(value: int) -> int:
    """The least of ``value`` over all processes (every process gets it; itself in one process),
    so that processes deciding from their own devices still run the same program."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return int(np.min(multihost_utils.process_allgather(np.asarray(value, np.int64))))


def global_devices(n: int | None = None) -> list[jax.Device]:
    """``n`` devices (default: all) taken evenly from every process, in process order."""
    devices = jax.devices()
    if n is None:
        return devices
    processes = sorted({d.process_index for d in devices})
    per_process, rest = divmod(n, len(processes))
    local = {p: [d for d in devices if d.process_index == p] for p in processes}
    if n < 1 or rest or per_process > min(len(v) for v in local.values()):
        raise ValueError(f"a mesh of {n} devices needs a multiple of the {len(processes)} processes, at most "
                         f"{min(len(v) for v in local.values())} from each; {len(devices)} devices in all")
    return [d for p in processes for d in local[p][:per_process]]


def zoo_mesh(devices: Sequence[jax.Device] | int | None = None) -> Mesh:
    """A 1-D mesh named ``"zoo"`` over ``devices`` (default: every process's devices; an int
    takes that many, the same number from every process)."""
    if devices is None or isinstance(devices, int):
        devices = global_devices(devices)
    return Mesh(np.asarray(devices), (ZOO_AXIS,))


def zoo_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the mesh."""
    return NamedSharding(mesh, PartitionSpec(ZOO_AXIS))


def platform_of(mesh: Mesh | None) -> str:
    """Where a zoo computation runs: the mesh's devices' platform, else the default backend's."""
    return jax.default_backend() if mesh is None else mesh.devices.flat[0].platform


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def pad_zoo_axis(tree: PyTree, multiple: int) -> tuple[PyTree, int]:
    """Pad every leaf's leading axis to a multiple of ``multiple`` by repeating its first row."""
    n = int(jax.tree.leaves(tree)[0].shape[0])
    pad = (-n) % multiple
    if pad == 0:
        return tree, n

    def pad_leaf(a):
        if is_stored(a):  # still unread: the padding rows are more rows to read
            return a.take(np.r_[np.arange(n), np.zeros(pad, np.int64)])
        xp = jnp if isinstance(a, jax.Array) else np  # pad where the array lives
        return xp.concatenate([a, xp.repeat(a[:1], pad, axis=0)], axis=0)

    return jax.tree.map(pad_leaf, tree), n


def place_on_mesh(tree: PyTree, sharding: NamedSharding) -> PyTree:
    """Place every leaf with ``sharding``; each device reads only its own slice.

    Host arrays and process-local ``jax.Array``s (e.g. restored from a checkpoint) are taken as
    the same value in every process (``jax.make_array_from_callback``), so this also works on
    multi-process meshes; arrays already spread over several processes are resharded in place.
    ``stored.StoredRows`` leaves are read here, each process reading only its devices' rows.
    """
    def place(a):
        if is_stored(a):
            return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])
        if isinstance(a, jax.Array):
            if not a.is_fully_addressable:
                if a.sharding.is_equivalent_to(sharding, a.ndim):
                    return a
                return jax.jit(lambda x: x, out_shardings=sharding)(a)
            if jax.process_count() == 1:
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
    padded = in_memory(padded) if mesh is None else place_on_mesh(padded, zoo_sharding(mesh))
    return padded, n, devices, block
