"""Feature standardisation fixed from a training split and baked into a learner as constants."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from probegen_jax.types import Array


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
