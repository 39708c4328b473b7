"""The reference INR augmentations (``INRDataset._augment`` of the neural-graphs and DWSNets code),
one pure function each on one network's params, with the reference's exact semantics.

``reference_augment`` applies them in the reference's fixed order: translation, rotation, the
constant shift the reference calls "noise", weight dropout, first-layer scale, then (off by
default) positive per-neuron scale and quantile dropout. Where the reference is surprising it is
kept, and said here:

- translation ``t`` is pushed through the first ``depth`` kernels, with no activation in between,
  into bias ``depth - 1``; ``depth`` is drawn from ``1 .. layers - 1``. Only ``depth = 1`` is the
  translated function ``f(x + t)``; a deeper draw is some other perturbation.
- "noise" adds the *constant* ``scale * std(tensor)`` (unbiased std, as ``torch.Tensor.std``) to
  every entry of each kernel, and of each bias longer than one; nothing is drawn.
- weight dropout zeroes each kernel and bias entry with probability ``p`` and divides the rest by
  ``1 - p`` (``torch.nn.functional.dropout`` in training mode).
- positive scale is ReLU's rescaling symmetry; on a SIREN it changes the function.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from probegen_jax.types import Array, Params, PRNGKey
from probegen_jax.nn.dropout import dropout
from probegen_jax.weightspace.layers import (
    dense_layers,
    layers_of,
    map_tensors,
    map_tensors_keyed,
    per_hidden_layer,
    replace_layers,
    rescale_hidden,
)

if TYPE_CHECKING:
    from probegen_jax.weightspace.augment import WeightAugment


def translate(params: Params, t: Array, depth: Array | int = 1) -> Params:
    """``t @ W_0 @ ... @ W_{depth-1}`` added to bias ``depth - 1`` (``depth = 1``: ``f(x + t)``)."""
    names, kernels, biases = layers_of(params)
    res = t
    for d in range(1, len(names)):
        res = res @ kernels[d - 1]
        biases[d - 1] = biases[d - 1] + jnp.where(depth == d, res, 0.0)
    return replace_layers(params, names, kernels, biases)


def rotation_matrix(degrees: Array) -> Array:
    """``[[cos, -sin], [sin, cos]]`` of an angle in degrees."""
    a = degrees * (math.pi / 180)
    c, s = jnp.cos(a), jnp.sin(a)
    return jnp.stack([jnp.stack([c, -s]), jnp.stack([s, c])])


def rotate(params: Params, degrees: Array) -> Params:
    """First kernel ``R @ W_0`` (2-D inputs): the function ``f(x R)``, ``R = rotation_matrix(degrees)``."""
    first = dense_layers(params)[0]
    return {**params, first: {**params[first], "kernel": rotation_matrix(degrees) @ params[first]["kernel"]}}


def constant_shift(params: Params, scale: float) -> Params:
    """The reference's "noise": ``+ scale * std`` (unbiased) on each kernel and each bias longer than one."""
    def shift(a: Array, is_kernel: bool) -> Array:
        return a + scale * jnp.std(a, ddof=1) if is_kernel or a.size > 1 else a

    return map_tensors(shift, params)


def weight_dropout(key: PRNGKey, params: Params, rate: float) -> Params:
    """Every kernel and bias entry zeroed with probability ``rate``, the rest divided by ``1 - rate``."""
    return map_tensors_keyed(lambda k, a: dropout(k, a, rate), key, params)


def first_layer_scale(params: Params, factor: Array) -> Params:
    """First kernel (not its bias) times ``factor``."""
    first = dense_layers(params)[0]
    return {**params, first: {**params[first], "kernel": params[first]["kernel"] * factor}}


def positive_scale(key: PRNGKey, params: Params, scale: float) -> Params:
    """Each hidden neuron times ``U(1 - scale, 1 + scale)`` (kernel column and bias), the next kernel's
    row divided by it."""
    draw = lambda k, w: jax.random.uniform(k, (w,), minval=1 - scale, maxval=1 + scale)  # noqa: E731
    return rescale_hidden(params, per_hidden_layer(key, params, draw))


def quantile_dropout(params: Params, q: Array) -> Params:
    """Entries whose magnitude is below the ``q`` quantile of every kernel and bias magnitude set to 0."""
    _, kernels, biases = layers_of(params)
    every = jnp.concatenate([jnp.abs(a).ravel() for a in kernels + biases])
    threshold = jnp.quantile(every, q)
    return map_tensors(lambda a, _: jnp.where(jnp.abs(a) < threshold, 0.0, a), params)


def reference_augment(key: PRNGKey, params: Params, cfg: WeightAugment) -> Params:
    """One network through the reference augmentation (the settings ``cfg`` turns on), in its fixed
    order, every draw from ``key``."""
    names = dense_layers(params)
    k = dict(zip(("t", "depth", "rot", "drop", "scale", "pos", "q"), jax.random.split(key, 7), strict=True))
    if cfg.translation:
        t = jax.random.uniform(k["t"], params[names[0]]["kernel"].shape[:1], minval=-cfg.translation,
                               maxval=cfg.translation)
        params = translate(params, t, jax.random.randint(k["depth"], (), 1, len(names)))
    if cfg.rotation and params[names[0]]["kernel"].shape[0] == 2:  # the reference skips other inputs
        params = rotate(params, jax.random.uniform(k["rot"], (), minval=-cfg.rotation, maxval=cfg.rotation))
    if cfg.shift:
        params = constant_shift(params, cfg.shift)
    if cfg.weight_dropout:
        params = weight_dropout(k["drop"], params, cfg.weight_dropout)
    if cfg.scale:
        params = first_layer_scale(params, 1 + jax.random.uniform(k["scale"], (), minval=-cfg.scale, maxval=cfg.scale))
    if cfg.positive_scale:
        params = positive_scale(k["pos"], params, cfg.positive_scale)
    if cfg.quantile:
        params = quantile_dropout(params, jax.random.uniform(k["q"], (), maxval=cfg.quantile))
    return params
