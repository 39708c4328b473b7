"""Convolutional zoo members: Unterthiner et al.'s small CNN and config-driven CNNs (CNN Wild Park).

Both are a stack of NHWC convolutions (``SAME`` padding, bias, activation, optional residual),
global average pooling and one dense layer. Params are TF/Keras layout::

    {"conv0": {"kernel": [kh, kw, in, out] (HWIO), "bias": [out]}, "conv1": ..., "dense0":
     {"kernel": [channels, classes], "bias": [classes]}}

``small_cnn`` is the Small CNN Zoo network: three 3x3 convolutions with 16 channels and stride 2,
4,970 params on grayscale inputs, exactly in the order of the zoo's ``weights.npy``.

Activation per network. A zoo holds one architecture, yet the small CNN zoo samples the
activation per network. ``small_cnn(activation=("relu", "tanh"))`` therefore adds one leaf that
is not a weight, ``params["activation_id"]`` (an int32 scalar indexing that tuple), and ``apply``
picks the activation with ``lax.switch``; vmapped over a zoo this becomes one select, so networks
with different activations are still probed in one call. With a single name
(``activation="relu"``) there is no extra leaf. The 4,970 weights are the same either way.
Training code must not differentiate non-float leaves: ``split_trainable`` separates them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from probegen_jax.archs.base import Arch, register_arch
from probegen_jax.errors import UnknownNameError
from probegen_jax.types import Array, Params, PRNGKey

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "leaky_relu": jax.nn.leaky_relu,
    "sigmoid": jax.nn.sigmoid,
}
ACTIVATION_LEAF = "activation_id"


def _check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise UnknownNameError(f"unknown activation {name!r}; available: {sorted(ACTIVATIONS)}")
    return name


def normalise_layers(layers: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Fill defaults of a conv stack's layer specs (channels, kernel, stride, activation, residual)."""
    out = []
    for i, layer in enumerate(layers):
        spec = {"channels": int(layer["channels"]), "kernel": int(layer.get("kernel", 3)),
                "stride": int(layer.get("stride", 1)), "activation": layer.get("activation", "relu"),
                "residual": bool(layer.get("residual", False))}
        if isinstance(spec["activation"], str):
            _check_activation(spec["activation"])
        if spec["residual"] and spec["stride"] != 1:
            raise ValueError(f"layer {i}: a residual connection needs stride 1, got {spec['stride']}")
        out.append(spec)
    return out


def conv_stack_shapes(layers: Sequence[Mapping[str, Any]], in_channels: int, num_classes: int) -> Params:
    """``{"conv{i}": {"kernel": shape, "bias": shape}, "dense0": ...}`` as tuples."""
    shapes, c = {}, in_channels
    for i, layer in enumerate(layers):
        k, out = layer["kernel"], layer["channels"]
        if layer["residual"] and out != c:
            raise ValueError(f"layer {i}: a residual connection needs {c} output channels, got {out}")
        shapes[f"conv{i}"] = {"kernel": (k, k, c, out), "bias": (out,)}
        c = out
    shapes["dense0"] = {"kernel": (c, num_classes), "bias": (num_classes,)}
    return shapes


def conv_stack_init(key: PRNGKey, shapes: Params, std: Array | float | None = None) -> Params:
    """Kernels N(0, std^2) (or Glorot-uniform, Keras's default, for ``std=None``); biases zero."""
    names = sorted(shapes)
    keys = dict(zip(names, jax.random.split(key, len(names)), strict=True))
    params = {}
    for name in names:
        kshape, bshape = shapes[name]["kernel"], shapes[name]["bias"]
        if std is None:
            receptive = math.prod(kshape[:-2])
            limit = math.sqrt(6.0 / (receptive * (kshape[-2] + kshape[-1])))
            kernel = jax.random.uniform(keys[name], kshape, minval=-limit, maxval=limit)
        else:
            kernel = std * jax.random.normal(keys[name], kshape)
        params[name] = {"kernel": kernel, "bias": jnp.zeros(bshape)}
    return params


def _activation_fn(activation: str | Sequence[str], params: Params) -> Callable[[Array], Array]:
    if isinstance(activation, str):
        return ACTIVATIONS[activation]
    fns = [ACTIVATIONS[a] for a in activation]
    return lambda x: jax.lax.switch(params[ACTIVATION_LEAF], fns, x)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """Output size and (low, high) padding of a ``SAME`` convolution, split as XLA splits it."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


CONV_IMPLS = ("taps", "xla")
_conv_impl: list[str | None] = [None]  # set by ``conv_impl``; None: by backend


def _checked_impl(impl: str) -> str:
    if impl not in CONV_IMPLS:
        raise UnknownNameError(f"unknown convolution implementation {impl!r}; available: {list(CONV_IMPLS)}")
    return impl


@contextlib.contextmanager
def conv_impl(impl: str) -> Iterator[None]:
    """Within the block, ``conv2d_same`` (and so every conv stack) traces with ``impl``; functions
    traced before keep theirs (for side-by-side benchmarks)."""
    _conv_impl.append(_checked_impl(impl))
    try:
        yield
    finally:
        _conv_impl.pop()


def conv2d_same(x: Array, kernel: Array, stride: int, *, impl: str | None = None) -> Array:
    """``x[B, H, W, C]`` convolved with ``kernel[kh, kw, C, O]`` (``SAME`` padding, ``stride``).

    ``impl="taps"`` (the default on CPU) sums one matmul per kernel tap over strided slices of the
    padded input: the same values as XLA's convolution (``impl="xla"``, the default elsewhere),
    without a patches tensor, and 2x faster on XLA:CPU where a zoo's convolutions are vmapped
    (they become grouped convolutions there; ``benchmarks/cnn_throughput.py``)."""
    impl = _checked_impl(impl or _conv_impl[-1] or ("taps" if jax.default_backend() == "cpu" else "xla"))
    if impl == "xla":
        return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    kh, kw = kernel.shape[:2]
    (oh, top, bottom), (ow, left, right) = (_same_padding(n, k, stride) for n, k in zip(x.shape[1:3], (kh, kw)))
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    out = None
    for dy in range(kh):
        for dx in range(kw):
            window = padded[:, dy:dy + stride * (oh - 1) + 1:stride, dx:dx + stride * (ow - 1) + 1:stride]
            term = window @ kernel[dy, dx]
            out = term if out is None else out + term
    return out


def conv_stack_apply(
    params: Params,
    x: Array,
    layers: Sequence[Mapping[str, Any]],
    *,
    dropout: Array | float = 0.0,
    key: PRNGKey | None = None,
) -> Array:
    """Logits ``[B, classes]`` of a conv stack on ``x[B, H, W, C]``.

    A layer is ``act(conv(x) + b)`` (plus ``x`` if residual); with ``key`` given, dropout at rate
    ``dropout`` (a traced per-network scalar is fine) follows every conv layer (training only).
    """
    for i, layer in enumerate(layers):
        p = params[f"conv{i}"]
        s = layer["stride"]
        y = conv2d_same(x, p["kernel"], s) + p["bias"]
        y = _activation_fn(layer["activation"], params)(y)
        x = y + x if layer["residual"] else y
        if key is not None:
            keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1.0 - dropout, x.shape)
            x = jnp.where(keep, x / jnp.maximum(1.0 - dropout, 1e-6), 0.0)
    x = x.mean(axis=(1, 2))
    return x @ params["dense0"]["kernel"] + params["dense0"]["bias"]


def conv_stack_arch(name: str, layers: Sequence[Mapping[str, Any]], input_shape: Sequence[int], num_classes: int,
                    config: Mapping[str, Any], per_network_activation: Sequence[str] | None = None) -> Arch:
    """An ``Arch`` for a conv stack; ``per_network_activation`` adds the ``activation_id`` leaf."""
    input_shape = tuple(int(d) for d in input_shape)
    shapes = conv_stack_shapes(layers, input_shape[-1], num_classes)

    def init(key: PRNGKey) -> Params:
        params = conv_stack_init(key, shapes)
        if per_network_activation is not None:
            params[ACTIVATION_LEAF] = jnp.zeros((), jnp.int32)
        return params

    return Arch(name, init, lambda p, x: conv_stack_apply(p, x, layers), input_shape, num_classes, dict(config))


SMALL_CNN_LAYERS = 3


@register_arch("small_cnn")
def small_cnn(
    input_shape: Sequence[int] = (28, 28, 1),
    channels: int = 16,
    num_classes: int = 10,
    activation: str | Sequence[str] = "relu",
) -> Arch:
    """Unterthiner et al.'s small CNN: 3 x (conv 3x3, stride 2), global average pool, dense.

    ``activation`` is one name, or a tuple of names chosen per network by ``params["activation_id"]``.
    """
    per_network = None if isinstance(activation, str) else tuple(_check_activation(a) for a in activation)
    act = activation if per_network is None else per_network
    layers = normalise_layers([{"channels": channels, "kernel": 3, "stride": 2, "activation": act}]
                              * SMALL_CNN_LAYERS)
    config = dict(input_shape=list(input_shape), channels=channels, num_classes=num_classes,
                  activation=activation if per_network is None else list(per_network))
    return conv_stack_arch("small_cnn", layers, input_shape, num_classes, config, per_network)


@register_arch("wild_cnn")
def wild_cnn(layers: Sequence[Mapping[str, Any]], input_shape: Sequence[int] = (28, 28, 1),
             num_classes: int = 10) -> Arch:
    """A config-driven CNN (CNN Wild Park): per layer channels, kernel, stride, activation, residual."""
    layers = normalise_layers(layers)
    config = dict(layers=layers, input_shape=list(input_shape), num_classes=num_classes)
    return conv_stack_arch("wild_cnn", layers, input_shape, num_classes, config)


def conv_layers_of(arch: Arch) -> list[dict[str, Any]]:
    """The layer specs of a ``small_cnn`` or ``wild_cnn`` arch (what ``conv_stack_apply`` takes)."""
    if arch.name == "small_cnn":
        act = arch.config["activation"]
        act = act if isinstance(act, str) else tuple(act)
        return normalise_layers([{"channels": arch.config["channels"], "kernel": 3, "stride": 2,
                                  "activation": act}] * SMALL_CNN_LAYERS)
    if arch.name == "wild_cnn":
        return normalise_layers(arch.config["layers"])
    raise UnknownNameError(f"architecture {arch.name!r} is not a conv stack (small_cnn or wild_cnn)")


def split_trainable(params: Params) -> tuple[Params, Params]:
    """(float leaves, other leaves) of a top-level params dict; ``{**a, **b}`` rebuilds it."""
    floats = {k: v for k, v in params.items() if any(jnp.issubdtype(leaf.dtype, jnp.floating)
                                                      for leaf in jax.tree.leaves(v))}
    return floats, {k: v for k, v in params.items() if k not in floats}
