"""Probe sources: where the K probes come from.

A ``ProbeSource`` is a pure pair ``init(key) -> params`` and ``apply(params) -> probes[K, ...]``:
gradients of a downstream loss flow through the zoo's networks into the source's params.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from probegen_jax.archs.dense import mlp_apply, mlp_init
from probegen_jax.errors import UnknownNameError
from probegen_jax.types import Array, Params, PRNGKey


@dataclasses.dataclass(frozen=True)
class ProbeSource:
    """K probes of shape ``input_shape``, produced from learnable params (or none)."""

    name: str
    num_probes: int
    input_shape: tuple[int, ...]
    init: Callable[[PRNGKey], Params]
    apply: Callable[[Params], Array]

    @property
    def trainable(self) -> bool:
        return bool(jax.tree.leaves(jax.eval_shape(self.init, jax.random.key(0))))


_SQUASH = {None: lambda x: x, "tanh": jnp.tanh}


def free_probes(num_probes: int, input_shape: tuple[int, ...], *, squash: str | None = None) -> ProbeSource:
    """Vanilla probing: each probe is a free tensor, initialised N(0, 1), optionally tanh-squashed."""
    input_shape = tuple(input_shape)
    return ProbeSource(
        name="vanilla",
        num_probes=num_probes,
        input_shape=input_shape,
        init=lambda key: {"probes": jax.random.normal(key, (num_probes, *input_shape))},
        apply=lambda p: _SQUASH[squash](p["probes"]),
    )


def fixed_probes(probes: Array, *, name: str = "synthetic") -> ProbeSource:
    """Probes that are not learned (synthetic baselines); only a head on their responses trains."""
    probes = jnp.asarray(probes)
    return ProbeSource(name, probes.shape[0], tuple(probes.shape[1:]), lambda key: {}, lambda p: probes)


def uniform_coordinate_probes(num_probes: int, dim: int = 2, *, seed: int = 0) -> ProbeSource:
    """Synthetic probes for INRs: points drawn uniformly in [-1, 1]^dim."""
    points = jax.random.uniform(jax.random.key(seed), (num_probes, dim), minval=-1.0, maxval=1.0)
    return fixed_probes(points)


def dense_generator(
    num_probes: int,
    input_shape: tuple[int, ...],
    *,
    latent_dim: int = 32,
    hidden: tuple[int, ...] = (32,),
    activation: Callable[[Array], Array] | None = None,
    squash: str | None = None,
    name: str = "probegen",
) -> ProbeSource:
    """A generator of dense layers mapping K learned latent codes (N(0, 1)) to K probes.

    With ``activation=None`` it is ProbeGen's deep linear generator (for coordinate inputs:
    Linear(32 -> 32) -> Linear(32 -> 2), no activation, no squashing); with an activation it is
    the non-linear generator of the ablation.
    """
    input_shape = tuple(input_shape)
    out_dim = 1
    for d in input_shape:
        out_dim *= d
    widths = [latent_dim, *hidden, out_dim]

    def init(key: PRNGKey) -> Params:
        k_lat, k_gen = jax.random.split(key)
        return {"latents": jax.random.normal(k_lat, (num_probes, latent_dim)),
                "generator": mlp_init(k_gen, widths)}

    def apply(params: Params) -> Array:
        act = activation if activation is not None else (lambda x: x)
        out = mlp_apply(params["generator"], params["latents"], activation=act)
        return _SQUASH[squash](out).reshape(num_probes, *input_shape)

    return ProbeSource(name, num_probes, input_shape, init, apply)


def coordinate_probe_source(kind: str, num_probes: int, dim: int = 2, *, seed: int = 0) -> ProbeSource:
    """Probe sources for coordinate inputs (INRs) by name."""
    makers = {
        "probegen": lambda: dense_generator(num_probes, (dim,)),
        "nonlinear": lambda: dense_generator(num_probes, (dim,), activation=jax.nn.relu, name="nonlinear"),
        "vanilla": lambda: free_probes(num_probes, (dim,)),
        "synthetic": lambda: uniform_coordinate_probes(num_probes, dim, seed=seed),
    }
    if kind not in makers:
        raise UnknownNameError(f"unknown probe source {kind!r}; available: {sorted(makers)}")
    return makers[kind]()


COORDINATE_SOURCES = ("probegen", "vanilla", "synthetic", "nonlinear")
