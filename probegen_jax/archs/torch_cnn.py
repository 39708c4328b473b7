"""Config-driven CNNs whose params keep PyTorch's layout, so networks read from PyTorch zoos
(CNN Wild Park, Model Zoos) run in JAX unchanged.

Params: ``{"conv0": {"weight": [out, in, kh, kw], "bias": [out]}, ..., "dense0": {"weight":
[out, in], "bias": [out]}, ...}``. Inputs are NHWC images ``[B, H, W, C]`` as everywhere in this
library (or ``[B, D]`` vectors for conv-free MLPs); ``flatten`` follows PyTorch's (C, H, W) order.

Each conv layer is ``conv -> max-pool (optional) -> residual add (optional) -> activation``:
the Model Zoos CNNs pool before their activation; CNN Wild Park adds a residual (the activated
output of an earlier layer, on the channels the two share) before its activation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from probegen_jax.archs.base import Arch, register_arch
from probegen_jax.errors import ShapeMismatchError, UnknownNameError
from probegen_jax.types import Array, Params, PRNGKey

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu": partial(jax.nn.gelu, approximate=False),  # torch's default GELU is the exact one
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "leaky_relu": partial(jax.nn.leaky_relu, negative_slope=0.01),
    "leakyrelu": partial(jax.nn.leaky_relu, negative_slope=0.01),
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
    "celu": jax.nn.celu,
    "none": lambda x: x,
}

CONV_DEFAULTS = {"stride": 1, "padding": 0, "pool": 0, "activation": "relu", "residual": -1}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise UnknownNameError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _conv_out(size: int, kernel: int, stride: int, padding: int, pool: int) -> int:
    size = (size + 2 * padding - kernel) // stride + 1
    return size // pool if pool else size


def layer_shapes(input_shape: Sequence[int], convs: Sequence[Mapping], head: str,
                 dense: Sequence[Mapping]) -> dict[str, dict[str, tuple[int, ...]]]:
    """``{"conv0": {"weight": (out, in, kh, kw), "bias": (out,)}, ...}`` for a config."""
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    if convs:
        height, width, channels = input_shape
    for i, c in enumerate(convs):
        c = {**CONV_DEFAULTS, **c}
        shapes[f"conv{i}"] = {"weight": (c["out"], channels, c["kernel"], c["kernel"]), "bias": (c["out"],)}
        height = _conv_out(height, c["kernel"], c["stride"], c["padding"], c["pool"])
        width = _conv_out(width, c["kernel"], c["stride"], c["padding"], c["pool"])
        channels = c["out"]
        if min(height, width, channels) < 1:
            raise ShapeMismatchError(f"torch_cnn: conv layer {i} ({c}) leaves no output for input {tuple(input_shape)}")
    if convs:
        features = channels if head == "gap" else channels * height * width
    else:
        features = math.prod(input_shape)
    for i, d in enumerate(dense):
        if d["out"] < 1:
            raise ShapeMismatchError(f"torch_cnn: dense layer {i} has {d['out']} outputs")
        shapes[f"dense{i}"] = {"weight": (d["out"], features), "bias": (d["out"],)}
        features = d["out"]
    return shapes


def torch_cnn_init(key: PRNGKey, shapes: Mapping[str, Mapping[str, tuple[int, ...]]]) -> Params:
    """PyTorch's default init: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    keys = jax.random.split(key, len(shapes))
    params = {}
    for k, (name, layer) in zip(keys, shapes.items(), strict=True):
        kw, kb = jax.random.split(k)
        bound = math.prod(layer["weight"][1:]) ** -0.5
        params[name] = {"weight": jax.random.uniform(kw, layer["weight"], minval=-bound, maxval=bound),
                        "bias": jax.random.uniform(kb, layer["bias"], minval=-bound, maxval=bound)}
    return params


def _conv(x: Array, layer: Mapping[str, Array], stride: int, padding: int) -> Array:
    y = jax.lax.conv_general_dilated(
        x, layer["weight"], window_strides=(stride, stride), padding=[(padding, padding)] * 2,
        dimension_numbers=("NHWC", "OIHW", "NHWC"), precision=jax.lax.Precision.HIGHEST)
    return y + layer["bias"]


def _max_pool(x: Array, size: int) -> Array:
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1), (1, size, size, 1), "VALID")


def torch_cnn_apply(params: Params, x: Array, *, convs: Sequence[Mapping], head: str,
                    dense: Sequence[Mapping]) -> Array:
    saved: dict[int, Array] = {}
    sources = {int(c.get("residual", -1)) for c in convs}
    for i, c in enumerate(convs):
        c = {**CONV_DEFAULTS, **c}
        x = _conv(x, params[f"conv{i}"], c["stride"], c["padding"])
        if c["pool"]:
            x = _max_pool(x, c["pool"])
        if c["residual"] >= 0:
            res = saved[c["residual"]]
            ch = min(res.shape[-1], x.shape[-1])
            x = x.at[..., :ch].add(res[..., :ch])
        x = activation(c["activation"])(x)
        if i in sources:
            saved[i] = x
    if convs and head == "gap":
        x = x.mean(axis=(1, 2))
    elif x.ndim == 4:  # flatten in PyTorch's (C, H, W) order
        x = jnp.transpose(x, (0, 3, 1, 2))
    x = x.reshape(x.shape[0], -1)
    for i, d in enumerate(dense):
        layer = params[f"dense{i}"]
        x = jnp.dot(x, layer["weight"].T, precision=jax.lax.Precision.HIGHEST) + layer["bias"]
        x = activation(d.get("activation", "none"))(x)
    return x


def _plain(value: Any) -> Any:
    """Config values as JSON-ready lists/dicts/ints (so specs compare and save cleanly)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@register_arch("torch_cnn")
def torch_cnn(input_shape: Sequence[int] = (32, 32, 3), convs: Sequence[Mapping] = (), head: str = "gap",
              dense: Sequence[Mapping] = ({"out": 10},)) -> Arch:
    """A conv stack, then ``head`` (``"gap"``: global average pool; ``"flatten"``), then dense layers.

    ``convs``: ``[{"out", "kernel", "stride", "padding", "pool", "activation", "residual"}, ...]``
    (``residual``: index of an earlier layer whose activated output is added, or -1).
    ``dense``: ``[{"out", "activation"}, ...]`` (the last one usually ``"none"``).
    """
    if head not in ("gap", "flatten"):
        raise UnknownNameError(f"torch_cnn head must be 'gap' or 'flatten', got {head!r}")
    convs = [{**CONV_DEFAULTS, **_plain(c)} for c in convs]
    dense = [{"activation": "none", **_plain(d)} for d in dense]
    for c in convs + dense:
        activation(c["activation"])
    shapes = layer_shapes(input_shape, convs, head, dense)
    return Arch(
        name="torch_cnn",
        init=lambda key: torch_cnn_init(key, shapes),
        apply=lambda p, x: torch_cnn_apply(p, x, convs=convs, head=head, dense=dense),
        input_shape=tuple(input_shape),
        output_dim=dense[-1]["out"] if dense else convs[-1]["out"],
        config={"input_shape": list(input_shape), "convs": convs, "head": head, "dense": dense},
    )
