"""Helpers shared by the baselines: the weight tensors of a zoo and feature standardisation."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from probegen_jax.errors import ShapeMismatchError
from probegen_jax.types import Array, Params


def weight_leaves(params: Params, *, where: str = "params") -> list[Array]:
    """The floating-point tensors of stacked zoo params, in ``jax.tree.leaves`` order.

    Integer leaves (such as a per-network activation index) are not weights and are skipped.
    """
    leaves = [a for a in jax.tree.leaves(params) if jnp.issubdtype(jnp.result_type(a), jnp.floating)]
    if not leaves:
        raise ShapeMismatchError(f"{where}: params hold no floating-point tensors")
    sizes = {int(a.shape[0]) if a.ndim else None for a in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ShapeMismatchError(f"{where}: every tensor needs the same leading zoo axis, got sizes {sorted(sizes, key=str)}")
    return leaves


class Standardizer(NamedTuple):
    """``(x - mean) / scale`` per column."""

    mean: Array
    scale: Array

    def __call__(self, x: Array) -> Array:
        return (x - self.mean) / self.scale


def fit_standardizer(features: Array, *, eps: float = 1e-8) -> Standardizer:
    """Column means and standard deviations of ``features[N, F]`` (constant columns keep scale 1)."""
    features = jnp.asarray(features, jnp.float32)
    std = features.std(0)
    return Standardizer(features.mean(0), jnp.where(std > eps, std, 1.0))
