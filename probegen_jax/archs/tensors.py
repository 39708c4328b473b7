"""Named weight tensors of a large model, kept as they are (PyTorch layout), for learners that
read weights rather than run the model (ProbeX reads one layer's weight matrix).

Params: ``{name: array}`` for the chosen tensors. With exactly one tensor of rank >= 2 the
architecture is that layer as a linear map, ``y = x @ W.reshape(out, -1).T`` (``W`` stored
``[out, in, ...]``), so probing it means multiplying by probes; with several tensors (a full
model) there is no forward pass here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from probegen_jax.archs.base import Arch, register_arch
from probegen_jax.errors import ShapeMismatchError
from probegen_jax.types import Array, Params, PRNGKey


def _init(key: PRNGKey, shapes: Mapping[str, tuple[int, ...]]) -> Params:
    keys = jax.random.split(key, max(len(shapes), 1))
    return {name: 0.02 * jax.random.normal(k, shape) for k, (name, shape) in zip(keys, shapes.items())}


def _linear_apply(params: Params, x: Array, name: str) -> Array:
    w = params[name]
    return jnp.dot(x, w.reshape(w.shape[0], -1).T, precision=jax.lax.Precision.HIGHEST)


def _no_forward(params: Params, x: Array) -> Array:
    raise ShapeMismatchError(
        f"a zoo of several tensors ({sorted(params)}) has no forward pass; read a single layer "
        "(e.g. layers=[name]) to probe it as a linear map"
    )


@register_arch("tensors")
def tensors(shapes: Mapping[str, Sequence[int]] | None = None) -> Arch:
    """Named tensors ``{name: shape}``; a single matrix-like tensor is applied as a linear map."""
    shapes = {str(k): tuple(int(d) for d in v) for k, v in (shapes or {}).items()}
    linear = [k for k, s in shapes.items() if len(s) >= 2]
    if len(shapes) == 1 and linear:
        name = linear[0]
        out, fan_in = shapes[name][0], math.prod(shapes[name][1:])
        apply, input_shape, output_dim = (lambda p, x: _linear_apply(p, x, name)), (fan_in,), out
    else:
        apply, input_shape, output_dim = _no_forward, (0,), 0
    return Arch(
        name="tensors",
        init=lambda key: _init(key, shapes),
        apply=apply,
        input_shape=input_shape,
        output_dim=output_dim,
        config={"shapes": {k: list(v) for k, v in shapes.items()}},
    )
