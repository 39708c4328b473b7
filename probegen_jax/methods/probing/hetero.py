"""Probing heterogeneous zoos: one vmapped call per architecture bucket.

``probe_hetero`` returns every member's responses in the zoo's own order. Training a probing
method on a ``HeteroZoo`` goes through the common ``fit``: a member is fed as one row of its
bucket's weights, zero-padded to the widest bucket (``{"bucket": [N], "weights": [N, P_max]}``,
``HeteroZoo.packed``), so the loop's single-index batch gather works unchanged. The learner
(``hetero_probing_learner``) probes a batch bucket by bucket, each under ``lax.cond`` so only the
buckets present in a batch run, and ``bucket_batch_order`` makes batches bucket-homogeneous
(apart from the few that straddle two buckets). The probing model only ever sees the networks'
responses, never their weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh

from probegen_jax.archs import Arch
from probegen_jax.errors import ShapeMismatchError
from probegen_jax.methods.probing.probe import probe, probe_zoo
from probegen_jax.methods.probing.probegen import responses_learner
from probegen_jax.methods.probing.sources import ProbeSource
from probegen_jax.parallel import to_host
from probegen_jax.training.learner import Learner
from probegen_jax.types import Array, Params, PyTree
from probegen_jax.zoo.hetero import HeteroZoo


def probe_hetero(zoo: HeteroZoo, probes: Array, *, mesh: Mesh | None = None, batch_size: int | None = None,
                 memory_budget_bytes: int | None = None) -> np.ndarray:
    """Responses ``[N, K, out]`` of every member, in the zoo's order: one ``probe_zoo`` call per
    bucket (the same arguments), gathered into every process of a multi-process mesh."""
    out = None
    for b, bucket in enumerate(zoo.buckets):
        responses = to_host(probe_zoo(bucket.arch, bucket.params, probes, mesh=mesh, batch_size=batch_size,
                                      memory_budget_bytes=memory_budget_bytes))
        if out is None:
            out = np.empty((len(zoo), *responses.shape[1:]), responses.dtype)
        rows = zoo.bucket == b
        out[rows] = responses[zoo.position[rows]]
    return out


def _unravel_fn(arch: Arch) -> tuple[int, Callable[[Array], Params]]:
    template = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), arch.param_shapes())
    flat, unravel = ravel_pytree(template)
    return int(flat.size), unravel


def hetero_respond(archs: Sequence[Arch]) -> Callable[[Array, PyTree], Array]:
    """``(probes, {"bucket", "weights"}) -> [B, K, out]``: each bucket present in the batch runs once."""
    unravels = [_unravel_fn(a) for a in archs]
    out_dim = archs[0].output_dim

    def respond(probes: Array, inputs: PyTree) -> Array:
        bucket, weights = inputs["bucket"], inputs["weights"]
        shape = (weights.shape[0], probes.shape[0], out_dim)
        out = jnp.zeros(shape, probes.dtype)
        for b, (arch, (size, unravel)) in enumerate(zip(archs, unravels, strict=True)):
            mask = bucket == b

            def run(w, arch=arch, size=size, unravel=unravel):
                return probe(arch.apply, jax.vmap(unravel)(w[:, :size]), probes).astype(probes.dtype)

            responses = jax.lax.cond(jnp.any(mask), run, lambda w: jnp.zeros(shape, probes.dtype), weights)
            out = jnp.where(mask[:, None, None], responses, out)
        return out

    return respond


def hetero_probing_learner(zoo: HeteroZoo, source: ProbeSource, num_outputs: int, *, head_hidden: int = 256,
                           head_layers: int = 6, response: str = "raw") -> Learner:
    """ProbeGen (or a probing baseline) over a heterogeneous zoo's packed inputs."""
    if tuple(source.input_shape) != tuple(zoo.input_shape):
        raise ShapeMismatchError(
            f"probe source {source.name!r} makes probes of shape {source.input_shape}, but the zoo's "
            f"architectures take inputs of shape {zoo.input_shape}")
    return responses_learner(hetero_respond(zoo.archs), source, zoo.output_dim, num_outputs,
                             head_hidden=head_hidden, head_layers=head_layers, response=response)


def bucket_batch_order(buckets: np.ndarray) -> Callable[[int, int, int, int], np.ndarray]:
    """A ``fit`` ``order_fn``: members shuffled within buckets, buckets laid out in a shuffled
    order, cut into batches, batches shuffled. A batch spans one bucket unless it straddles a
    bucket boundary."""
    buckets = np.asarray(buckets)

    def order(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
        rng = np.random.default_rng([seed, epoch, 7])
        ids = np.unique(buckets)
        perm = np.concatenate([rng.permutation(np.flatnonzero(buckets == b)) for b in rng.permutation(ids)])
        steps = n // batch_size
        batches = perm[: steps * batch_size].reshape(steps, batch_size)
        return batches[rng.permutation(steps)]

    return order
