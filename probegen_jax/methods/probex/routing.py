"""Routing a model to its tree: the nearest tree centroid in weight space.

A tree's centroid is the mean of its training children's flattened params; its radius is the
largest distance of a training child from it, times ``margin``. A model whose nearest
centroid is farther than that tree's radius matches no tree: ``route`` reports it (index -1 and
the distances) and ``route_one`` raises ``NoMatchingTreeError`` naming the distance, rather
than guessing. Trees whose architecture differs from the model's are never candidates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.archs import flatten_params
from probegen_jax.errors import NoMatchingTreeError
from probegen_jax.types import Array, Params


def _kept(params: Params, exclude: tuple[str, ...]) -> dict[str, Array]:
    return {k: v for k, v in flatten_params(params).items()
            if not any(k == x or k.startswith(x + "/") for x in exclude)}


def flat_vector(params: Params, exclude: tuple[str, ...] = ()) -> Array:
    """``[N, P]``: the tensors of a stacked pytree (less those under ``exclude``), flattened and
    concatenated in path order."""
    flat = _kept(params, exclude)
    return jnp.concatenate([jnp.asarray(flat[k]).reshape(jnp.shape(flat[k])[0], -1) for k in sorted(flat)], axis=1)


def signature(params: Params, exclude: tuple[str, ...] = ()) -> tuple:
    """Tensor names and per-network shapes: which trees a model can belong to."""
    return tuple((k, tuple(np.shape(v)[1:])) for k, v in sorted(_kept(params, exclude).items()))


@dataclasses.dataclass(frozen=True)
class Router:
    names: tuple[str, ...]
    signatures: tuple[tuple, ...]
    centroids: tuple[np.ndarray, ...]
    radii: np.ndarray
    exclude: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Routes:
    """``tree[N]`` (index into ``names``, -1: no tree matches), ``distances[N, T]`` (inf for
    trees of another architecture) and each tree's ``radii[T]``."""

    names: tuple[str, ...]
    tree: np.ndarray
    distances: np.ndarray
    radii: np.ndarray

    def describe(self, i: int) -> str:
        d = self.distances[i]
        near = int(np.argmin(d))
        if not np.isfinite(d[near]):
            return f"model {i}: no tree has its architecture"
        verdict = f"routed to tree {self.names[near]!r}" if self.tree[i] >= 0 else "matches no tree"
        return (f"model {i}: {verdict}; nearest centroid {self.names[near]!r} at distance {d[near]:.4g} "
                f"(tree radius {self.radii[near]:.4g})")


def fit_router(trees: Mapping[str, Params], *, margin: float = 1.5, exclude: tuple[str, ...] = ()) -> Router:
    """Centroids and radii from each tree's stacked training params ``{name: params[N, ...]}``.

    ``exclude`` names tensors left out of the distance, e.g. a classifier head that every child
    re-initialises (it is not shared within a tree).
    """
    exclude = tuple(exclude)
    names, sigs, cents, radii = [], [], [], []
    for name, params in trees.items():
        vec = flat_vector(params, exclude)
        centroid = vec.mean(0)
        names.append(name)
        sigs.append(signature(params, exclude))
        cents.append(np.asarray(centroid))
        radii.append(float(margin * jnp.linalg.norm(vec - centroid, axis=1).max()))
    return Router(tuple(names), tuple(sigs), tuple(cents), np.asarray(radii), exclude)


@jax.jit
def _distances(vec: Array, centroid: Array) -> Array:
    return jnp.linalg.norm(vec - centroid, axis=1)


def route(router: Router, params: Params) -> Routes:
    """Route every model of a stacked pytree; see ``Routes``."""
    sig = signature(params, router.exclude)
    n = jax.tree.leaves(params)[0].shape[0]
    vec = flat_vector(params, router.exclude)
    dist = np.full((n, len(router.names)), np.inf)
    for t, (s, c) in enumerate(zip(router.signatures, router.centroids, strict=True)):
        if s == sig:
            dist[:, t] = np.asarray(_distances(vec, jnp.asarray(c)))
    near = dist.argmin(1)
    ok = dist[np.arange(n), near] <= router.radii[near]
    return Routes(router.names, np.where(ok, near, -1), dist, router.radii)


def route_one(router: Router, params: Params) -> str:
    """The tree of one network (unstacked params); ``NoMatchingTreeError`` if none matches."""
    routes = route(router, jax.tree.map(lambda a: jnp.asarray(a)[None], params))
    if routes.tree[0] < 0:
        raise NoMatchingTreeError(routes.describe(0).replace("model 0", "model"))
    return routes.names[routes.tree[0]]


def routing_accuracy(router: Router, trees: Mapping[str, Params]) -> float:
    """Fraction of models (``{true tree name: stacked params}``) routed to their own tree."""
    hits, total = 0, 0
    for name, params in trees.items():
        routes = route(router, params)
        hits += int(np.sum(routes.tree == router.names.index(name)))
        total += len(routes.tree)
    return hits / max(total, 1)
