"""Dropout for heads whose ``apply(params, inputs, activation=relu)`` takes their hidden activation:
``with_head_dropout(apply)`` is the ``Learner.apply_train`` that drops those hidden units."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from probegen_jax.types import Array, Params, PRNGKey, PyTree


def dropout(key: PRNGKey, x: Array, rate: float) -> Array:
    """Entries of ``x`` zeroed with probability ``rate``, the rest divided by ``1 - rate``."""
    if not rate:
        return x
    return jnp.where(jax.random.bernoulli(key, 1.0 - rate, x.shape), x / (1.0 - rate), 0.0)


def dropout_activation(key: PRNGKey, rate: float, activation: Callable[[Array], Array] = jax.nn.relu
                       ) -> Callable[[Array], Array]:
    """``activation`` followed by dropout, a fresh mask for each layer it is called on (the layer's
    position in call order folded into ``key``)."""
    calls = itertools.count()
    return lambda x: dropout(jax.random.fold_in(key, next(calls)), activation(x), rate)


def with_head_dropout(apply: Callable[..., Array]) -> Callable[[Params, PyTree, PRNGKey, float], Array]:
    """``apply_train(params, inputs, key, rate)``: ``apply`` with its head's hidden units dropped at ``rate``."""
    return lambda params, inputs, key, rate: apply(params, inputs, activation=dropout_activation(key, rate))
