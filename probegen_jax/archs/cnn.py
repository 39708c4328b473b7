"""Convolutional zoo members: Unterthiner et al.'s small CNN and config-driven CNNs (CNN Wild Park).

Both are a stack of NHWC convolutions (``same`` or ``valid`` padding, bias, activation, optional
residual), global average pooling and one dense layer. Params are TF/Keras layout::

    {"conv0": {"kernel": [kh, kw, in, out] (HWIO), "bias": [out]}, "conv1": ..., "dense0":
     {"kernel": [channels, classes], "bias": [classes]}}

``small_cnn`` is the Small CNN Zoo network: three 3x3 convolutions with 16 channels and stride 2,
4,970 params on grayscale inputs. The published zoo's convolutions are Keras's default ``valid``
(28x28 -> 13 -> 6 -> 2, 32x32 -> 15 -> 7 -> 3); ``padding`` is part of the spec and defaults to
``same`` (28 -> 14 -> 7 -> 4), what specs saved before it was recorded mean.

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
from probegen_jax.errors import ShapeMismatchError, UnknownNameError
from probegen_jax.types import Array, Params, PRNGKey

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "leaky_relu": jax.nn.leaky_relu,
    "sigmoid": jax.nn.sigmoid,
}
ACTIVATION_LEAF = "activation_id"
PADDINGS = ("same", "valid")


def _check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise UnknownNameError(f"unknown activation {name!r}; available: {sorted(ACTIVATIONS)}")
    return name


def check_padding(padding: str) -> str:
    """``padding`` if it is one of ``PADDINGS``."""
    if padding not in PADDINGS:
        raise UnknownNameError(f"unknown convolution padding {padding!r}; available: {list(PADDINGS)}")
    return padding


def normalise_layers(layers: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Fill defaults of a conv stack's layer specs (channels, kernel, stride, activation, residual,
    padding: ``same`` unless given)."""
    out = []
    for i, layer in enumerate(layers):
        spec = {"channels": int(layer["channels"]), "kernel": int(layer.get("kernel", 3)),
                "stride": int(layer.get("stride", 1)), "activation": layer.get("activation", "relu"),
                "residual": bool(layer.get("residual", False))}
        if isinstance(spec["activation"], str):
            _check_activation(spec["activation"])
        if spec["residual"] and spec["stride"] != 1:
            raise ValueError(f"layer {i}: a residual connection needs stride 1, got {spec['stride']}")
        if layer.get("padding", "same") != "same":  # recorded only where it differs (older specs have none)
            spec["padding"] = check_padding(layer["padding"])
        out.append(spec)
    return out


def conv_output_sizes(size: int, layers: Sequence[Mapping[str, Any]]) -> list[int]:
    """The spatial size after each layer of a conv stack on ``size`` x ``size`` inputs."""
    sizes = []
    for layer in layers:
        size = conv_output_size(size, layer["kernel"], layer["stride"], layer.get("padding", "same"))
        sizes.append(size)
    return sizes


def conv_output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """Output size of a convolution (TF's rule): ``ceil(size / stride)`` for ``same``,
    ``floor((size - kernel) / stride) + 1`` for ``valid`` (below 1: the input is too small)."""
    return -(-size // stride) if padding == "same" else (size - kernel) // stride + 1


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


def _padding(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int, int]:
    """Output size and (low, high) padding of a convolution; ``same`` pads as XLA splits it."""
    out = conv_output_size(size, kernel, stride, padding)
    total = max((out - 1) * stride + kernel - size, 0) if padding == "same" else 0
    return out, total // 2, total - total // 2


CONV_IMPLS = ("taps", "xla")
_conv_impl: list[str | None] = [None]  # set by ``conv_impl``; None: by backend


def _checked_impl(impl: str) -> str:
    if impl not in CONV_IMPLS:
        raise UnknownNameError(f"unknown convolution implementation {impl!r}; available: {list(CONV_IMPLS)}")
    return impl


@contextlib.contextmanager
def conv_impl(impl: str) -> Iterator[None]:
    """Within the block, ``conv2d`` (and so every conv stack) traces with ``impl``; functions
    traced before keep theirs (for side-by-side benchmarks)."""
    _conv_impl.append(_checked_impl(impl))
    try:
        yield
    finally:
        _conv_impl.pop()


def conv2d(x: Array, kernel: Array, stride: int, *, padding: str = "same", impl: str | None = None) -> Array:
    """``x[B, H, W, C]`` convolved with ``kernel[kh, kw, C, O]`` (``padding`` ``same`` or ``valid``,
    as TF's ``SAME``/``VALID``; ``stride``).

    ``impl="taps"`` (the default on CPU) sums one matmul per kernel tap over strided slices of the
    padded input: the same values as XLA's convolution (``impl="xla"``, the default elsewhere),
    without a patches tensor, and 2x faster on XLA:CPU where a zoo's convolutions are vmapped
    (they become grouped convolutions there; ``benchmarks/cnn_throughput.py``)."""
    impl = _checked_impl(impl or _conv_impl[-1] or ("taps" if jax.default_backend() == "cpu" else "xla"))
    if impl == "xla":
        return jax.lax.conv_general_dilated(x, kernel, (stride, stride), check_padding(padding).upper(),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    kh, kw = kernel.shape[:2]
    (oh, top, bottom), (ow, left, right) = (_padding(n, k, stride, check_padding(padding))
                                            for n, k in zip(x.shape[1:3], (kh, kw)))
    if min(oh, ow) < 1:
        raise ShapeMismatchError(f"convolution input {tuple(x.shape[1:3])} is smaller than its kernel {(kh, kw)} "
                                 f"({padding} padding)")
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    out = None
    for dy in range(kh):
        for dx in range(kw):
            window = padded[:, dy:dy + stride * (oh - 1) + 1:stride, dx:dx + stride * (ow - 1) + 1:stride]
            term = window @ kernel[dy, dx]
            out = term if out is None else out + term
    return out


def conv2d_same(x: Array, kernel: Array, stride: int, *, impl: str | None = None) -> Array:
    """``conv2d`` with ``same`` padding."""
    return conv2d(x, kernel, stride, padding="same", impl=impl)


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
        y = conv2d(x, p["kernel"], s, padding=layer.get("padding", "same")) + p["bias"]
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


def small_cnn_layers(channels: int, activation: str | Sequence[str], padding: str) -> list[dict[str, Any]]:
    """The small CNN's conv stack: 3 x (conv 3x3, ``channels``, stride 2, ``padding``)."""
    return normalise_layers([{"channels": channels, "kernel": 3, "stride": 2, "activation": activation,
                              "padding": padding}] * SMALL_CNN_LAYERS)


def fits_valid_small_cnn(input_shape: Sequence[int]) -> bool:
    """Whether three stride-2 3x3 ``valid`` convolutions fit the input (at least 15x15)."""
    layers = small_cnn_layers(1, "relu", "valid")
    return min(conv_output_sizes(min(int(d) for d in input_shape[:2]), layers)) >= 1


@register_arch("small_cnn")
def small_cnn(
    input_shape: Sequence[int] = (28, 28, 1),
    channels: int = 16,
    num_classes: int = 10,
    activation: str | Sequence[str] = "relu",
    padding: str = "same",
) -> Arch:
    """Unterthiner et al.'s small CNN: 3 x (conv 3x3, stride 2), global average pool, dense.

    ``activation`` is one name, or a tuple of names chosen per network by ``params["activation_id"]``.
    ``padding``: ``valid`` as in the published zoo (needs inputs of at least 15x15), or ``same``.
    """
    per_network = None if isinstance(activation, str) else tuple(_check_activation(a) for a in activation)
    act = activation if per_network is None else per_network
    layers = small_cnn_layers(channels, act, check_padding(padding))
    if padding == "valid" and not fits_valid_small_cnn(input_shape):
        raise ShapeMismatchError(f"small_cnn: input {tuple(input_shape)} is too small for three stride-2 3x3 valid "
                                 f"convolutions (at least 15x15); use padding='same'")
    config = dict(input_shape=list(input_shape), channels=channels, num_classes=num_classes,
                  activation=activation if per_network is None else list(per_network), padding=padding)
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
        return small_cnn_layers(arch.config["channels"], act if isinstance(act, str) else tuple(act),
                                arch.config.get("padding", "same"))
    if arch.name == "wild_cnn":
        return normalise_layers(arch.config["layers"])
    raise UnknownNameError(f"architecture {arch.name!r} is not a conv stack (small_cnn or wild_cnn)")


def split_trainable(params: Params) -> tuple[Params, Params]:
    """(float leaves, other leaves) of a top-level params dict; ``{**a, **b}`` rebuilds it."""
    floats = {k: v for k, v in params.items() if any(jnp.issubdtype(leaf.dtype, jnp.floating)
                                                      for leaf in jax.tree.leaves(v))}
    return floats, {k: v for k, v in params.items() if k not in floats}
