"""Symmetries of dense networks (the function is unchanged) and Shamsian et al.'s Gaussian noise.

- ``permute``: hidden neurons reordered, layer by layer (any activation);
- ``flip_signs``: hidden neurons negated, incoming kernel column, bias and outgoing kernel row
  (odd activations: sine, tanh);
- ``shift_biases``: SIREN hidden biases moved by ``k * pi / w0``; ``sin(z + k pi) = (-1)^k sin(z)``,
  so the next kernel's row is negated for odd ``k``.

Each has a ``random_*`` form drawing its transform from a key (for one network; ``jax.vmap`` over
a batch with one key each).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from probegen_jax.types import Array, Params, PRNGKey
from probegen_jax.weightspace.layers import (
    layers_of,
    map_tensors_keyed,
    per_hidden_layer,
    replace_layers,
    rescale_hidden,
)


def permute(params: Params, perms: Sequence[Array]) -> Params:
    """Hidden neuron ``j`` of layer ``i`` becomes neuron ``perms[i][j]`` of the input network: kernel
    columns and bias of layer ``i`` and kernel rows of layer ``i + 1`` taken in that order."""
    names, kernels, biases = layers_of(params)
    for i, p in enumerate(perms):
        kernels[i], biases[i] = kernels[i][:, p], biases[i][p]
        kernels[i + 1] = kernels[i + 1][p, :]
    return replace_layers(params, names, kernels, biases)


def random_permutations(key: PRNGKey, params: Params) -> list[Array]:
    """One uniform permutation per hidden layer."""
    return per_hidden_layer(key, params, jax.random.permutation)


def flip_signs(params: Params, signs: Sequence[Array]) -> Params:
    """Hidden neurons times ``signs[i]`` (``+-1``) in, and in the next kernel's rows (odd activations)."""
    return rescale_hidden(params, signs)


def random_signs(key: PRNGKey, params: Params, p: float) -> list[Array]:
    """Per hidden neuron ``-1`` with probability ``p``, else ``+1``."""
    return per_hidden_layer(key, params, lambda k, w: jnp.where(jax.random.bernoulli(k, p, (w,)), -1.0, 1.0))


def shift_biases(params: Params, ks: Sequence[Array], w0: float) -> Params:
    """SIREN hidden biases plus ``k * pi / w0``; the next kernel's rows negated where ``k`` is odd."""
    names, kernels, biases = layers_of(params)
    for i, k in enumerate(ks):
        biases[i] = biases[i] + k * (math.pi / w0)
        kernels[i + 1] = kernels[i + 1] * jnp.where(k % 2 == 1, -1.0, 1.0)[:, None]
    return replace_layers(params, names, kernels, biases)


def random_shifts(key: PRNGKey, params: Params, k_max: int) -> list[Array]:
    """Per hidden neuron an integer ``k`` uniform in ``[-k_max, k_max - 1]`` (the reference's range)."""
    return per_hidden_layer(key, params, lambda k, w: jax.random.randint(k, (w,), -k_max, k_max))


def gaussian_noise(key: PRNGKey, params: Params, scale: float) -> Params:
    """Shamsian et al.'s noise: each kernel and bias plus ``N(0, (scale * (std + 1e-8))^2)`` entrywise
    (unbiased std of the tensor; 0 for a single entry)."""
    def noisy(key: PRNGKey, a: Array) -> Array:
        std = jnp.std(a, ddof=1) if a.size > 1 else 0.0
        return a + scale * (std + 1e-8) * jax.random.normal(key, a.shape)

    return map_tensors_keyed(noisy, key, params)
