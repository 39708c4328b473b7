"""Helpers shared by the baselines: the weight tensors of a zoo and feature standardisation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from probegen_jax.errors import ShapeMismatchError
from probegen_jax.training.learner import Learner
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


def feature_head(train_features: Array, num_outputs: int, *, hidden: int = 256, layers: int = 4) -> Learner:
    """Features ``[N, F]`` standardised by ``train_features``' statistics -> ReLU MLP head."""
    from probegen_jax.methods.probing.probegen import mlp_head

    scaler = fit_standardizer(train_features)
    head = mlp_head(scaler.mean.shape[0], num_outputs, hidden=hidden, layers=layers)
    return Learner(head.init, lambda params, features: head.apply(params, scaler(features)))


def features_learner(
    features: Callable[[Params], Array], train_params: Params, num_outputs: int, *, hidden: int = 256,
    layers: int = 4,
) -> Learner:
    """``features(zoo_params)`` -> :func:`feature_head`; its params are the head's params."""
    return on_zoo_params(feature_head(features(train_params), num_outputs, hidden=hidden, layers=layers), features)


def on_zoo_params(head: Learner, features: Callable[[Params], Array]) -> Learner:
    """``head`` fed ``features(zoo_params)``: the same params, read from zoo params."""
    return Learner(head.init, lambda params, zoo_params: head.apply(params, features(zoo_params)))


def precompute_features(features: Callable[[Params], Array], splits: Mapping[str, tuple[Params, Array]]
                        ) -> dict[str, tuple[Array, Array]]:
    """``{split: (features(params), targets)}``, each split's features computed once, under ``jit``.

    A fixed feature map needs no recomputation every step: train :func:`feature_head` on these,
    and the params apply unchanged to :func:`features_learner` of the same features.
    """
    compute = jax.jit(features)
    return {name: (compute(params), targets) for name, (params, targets) in splits.items()}
