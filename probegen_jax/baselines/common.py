"""Helpers shared by the baselines: the weight tensors of a zoo and feature standardisation."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from probegen_jax.errors import ShapeMismatchError
from probegen_jax.learner import Learner
from probegen_jax.types import Array, Params, PRNGKey


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


def features_learner(
    features: Callable[[Params], Array], train_params: Params, num_outputs: int, *, hidden: int = 256,
    layers: int = 4,
) -> Learner:
    """``features(zoo_params)`` standardised by the training split's statistics -> ReLU MLP head."""
    from probegen_jax.probing.probegen import mlp_head

    scaler = fit_standardizer(features(train_params))
    head = mlp_head(scaler.mean.shape[0], num_outputs, hidden=hidden, layers=layers)

    def init(key: PRNGKey) -> Params:
        return head.init(key)

    def apply(params: Params, zoo_params: Params) -> Array:
        return head.apply(params, scaler(features(zoo_params)))

    return Learner(init, apply)
