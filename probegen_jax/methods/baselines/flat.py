"""The flat-weights baseline: every weight of a network concatenated into one vector, read by an MLP."""

from __future__ import annotations

import jax.numpy as jnp

from probegen_jax.methods.baselines.common import features_learner, weight_leaves
from probegen_jax.training.learner import Learner
from probegen_jax.types import Array, Params


def flatten_weights(params: Params) -> Array:
    """``[N, P]``: each network's tensors flattened and concatenated (``jax.tree.leaves`` order;
    floating-point tensors only)."""
    leaves = weight_leaves(params, where="flatten_weights")
    n = leaves[0].shape[0]
    return jnp.concatenate([jnp.reshape(leaf, (n, -1)) for leaf in leaves], axis=1)


def flat_learner(train_params: Params, num_outputs: int, *, hidden: int = 256, layers: int = 4) -> Learner:
    """Standardised flat weights (per-coordinate statistics of ``train_params``) -> ReLU MLP."""
    return features_learner(flatten_weights, train_params, num_outputs, hidden=hidden, layers=layers)
