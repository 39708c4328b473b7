"""SANE's augmentations: function-preserving permutations of hidden units, multiplicative noise.

A sequential stack of ``(kernel, bias)`` layers (dense ``[in, out]`` or conv ``[..., in, out]``,
each layer's outputs feeding the next layer's inputs, global pooling and BatchNorm in between allowed) computes
the same function when the outputs of a hidden layer, and the matching inputs of the next layer,
are permuted together. Networks with residual connections are not sequential in this sense.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from probegen_jax.errors import ShapeMismatchError
from probegen_jax.types import Array, Params, PRNGKey


def permute_hidden(params: Params, key: PRNGKey, layers: Sequence[str]) -> Params:
    """Permute the hidden units of every ``(kernel, bias)`` layer but the last, consistently with the
    next one and with any BatchNorm layer (``{"scale", "bias", "mean", "var"}``, each ``[C]``) between them.

    ``layers`` is the forward order; other leaves of ``params`` are kept. Pure and vmappable.
    """
    out = dict(params)
    kernels = [i for i, n in enumerate(layers) if "kernel" in params[n]]
    keys = jax.random.split(key, max(len(kernels) - 1, 1))
    for j, (a, b) in enumerate(zip(kernels[:-1], kernels[1:], strict=True)):
        name, nxt = layers[a], layers[b]
        width = out[name]["kernel"].shape[-1]
        if out[nxt]["kernel"].shape[-2] != width:
            raise ShapeMismatchError(f"layer {nxt!r} takes {out[nxt]['kernel'].shape[-2]} inputs but {name!r} "
                                     f"has {width} outputs; permutations need a sequential stack")
        perm = jax.random.permutation(keys[j], width)
        out[name] = {**out[name], "kernel": out[name]["kernel"][..., perm], "bias": out[name]["bias"][perm]}
        for norm in layers[a + 1: b]:
            out[norm] = {k: v[perm] for k, v in out[norm].items()}
        out[nxt] = {**out[nxt], "kernel": jnp.take(out[nxt]["kernel"], perm, axis=-2)}
    return out


def multiplicative_noise(tokens: Array, key: PRNGKey, scale: float = 0.1) -> Array:
    """``tokens * (1 + scale * N(0, 1))`` elementwise (padding stays zero)."""
    return tokens * (1.0 + scale * jax.random.normal(key, tokens.shape, tokens.dtype))
