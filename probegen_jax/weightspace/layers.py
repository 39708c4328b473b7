"""The ``(kernel, bias)`` layers of one dense network, ``{"dense0": {"kernel": [in, out], "bias": [out]}, ...}``,
as the weight-space transforms read and write them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from probegen_jax.archs.base import layer_order
from probegen_jax.errors import ShapeMismatchError
from probegen_jax.types import Array, Params, PRNGKey


def dense_layers(params: Params) -> list[str]:
    """Names of the dense layers of one network in forward order; other kernels are refused."""
    names = layer_order(params)
    for name in names:
        if jnp.ndim(params[name]["kernel"]) != 2:
            raise ShapeMismatchError(f"weight-space transforms take dense [in, out] kernels; layer {name!r} has "
                                     f"kernel shape {jnp.shape(params[name]['kernel'])}")
    return names


def layers_of(params: Params) -> tuple[list[str], list[Array], list[Array]]:
    """``(names, kernels, biases)`` of one network's dense layers in forward order."""
    names = dense_layers(params)
    return names, [params[n]["kernel"] for n in names], [params[n]["bias"] for n in names]


def replace_layers(params: Params, names: Sequence[str], kernels: Sequence[Array], biases: Sequence[Array]
                   ) -> Params:
    """``params`` with layers ``names`` given these kernels and biases (other entries kept)."""
    new = dict(params)
    for name, kernel, bias in zip(names, kernels, biases, strict=True):
        new[name] = {**params[name], "kernel": kernel, "bias": bias}
    return new


def map_tensors(fn: Callable[[Array, bool], Array], params: Params) -> Params:
    """``fn(tensor, is_kernel)`` applied to every kernel and bias of one network."""
    names, kernels, biases = layers_of(params)
    return replace_layers(params, names, [fn(k, True) for k in kernels], [fn(b, False) for b in biases])


def map_tensors_keyed(fn: Callable[[PRNGKey, Array], Array], key: PRNGKey, params: Params) -> Params:
    """``fn(key_t, tensor)`` on every kernel and bias of one network, each tensor with its own key."""
    keys = iter(jax.random.split(key, 2 * len(dense_layers(params))))
    return map_tensors(lambda a, _: fn(next(keys), a), params)


def hidden_widths(params: Params) -> list[int]:
    """Neurons of each hidden layer of one network."""
    return [int(b.shape[0]) for b in layers_of(params)[2][:-1]]


def per_hidden_layer(key: PRNGKey, params: Params, draw: Callable[[PRNGKey, int], Array]) -> list[Array]:
    """``draw(key_i, width_i)`` for each hidden layer ``i``, each with its own key."""
    widths = hidden_widths(params)
    return [draw(k, w) for k, w in zip(jax.random.split(key, len(widths)), widths, strict=True)]


def rescale_hidden(params: Params, factors: Sequence[Array], *, bias: bool = True) -> Params:
    """Hidden neuron ``j`` of layer ``i`` times ``factors[i][j]``: its kernel column (and bias, with
    ``bias``) multiplied, and the next layer's kernel row ``j`` divided by the same factor (for
    ``+-1`` factors, the sign flip of an odd activation; for positive ones, ReLU's rescaling)."""
    names, kernels, biases = layers_of(params)
    if len(factors) != len(names) - 1:
        raise ShapeMismatchError(f"{len(names) - 1} hidden layers, got {len(factors)} factor vectors")
    for i, f in enumerate(factors):
        kernels[i] = kernels[i] * f
        biases[i] = biases[i] * f if bias else biases[i]
        kernels[i + 1] = kernels[i + 1] / f[:, None]
    return replace_layers(params, names, kernels, biases)
