"""Dense architectures: the SIREN of the INR benchmarks and a plain ReLU MLP.

Params are ``{"dense0": {"kernel": [in, out], "bias": [out]}, "dense1": ...}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from probegen_jax.archs.base import Arch, register_arch
from probegen_jax.types import Array, Params, PRNGKey


def layer_name(i: int) -> str:
    return f"dense{i}"


def _uniform_dense(key: PRNGKey, fan_in: int, fan_out: int, bound: float) -> dict[str, Array]:
    kw, kb = jax.random.split(key)
    return {
        "kernel": jax.random.uniform(kw, (fan_in, fan_out), minval=-bound, maxval=bound),
        "bias": jax.random.uniform(kb, (fan_out,), minval=-bound, maxval=bound),
    }


def dense_widths(in_dim: int, hidden: int, depth: int, out_dim: int) -> list[int]:
    """``[in, hidden, ..., hidden, out]`` with ``depth`` hidden layers."""
    return [in_dim] + [hidden] * depth + [out_dim]


def siren_init(key: PRNGKey, widths: list[int], w0: float) -> Params:
    """SIREN initialisation: first layer U(-1/in, 1/in), later U(-sqrt(6/in)/w0, +)."""
    keys = jax.random.split(key, len(widths) - 1)
    params = {}
    for i, (k, fi, fo) in enumerate(zip(keys, widths[:-1], widths[1:], strict=True)):
        bound = 1.0 / fi if i == 0 else (6.0 / fi) ** 0.5 / w0
        params[layer_name(i)] = _uniform_dense(k, fi, fo, bound)
    return params


_PI_HI, _PI_LO = 3.140625, math.pi - 3.140625  # pi = hi + lo, k * hi exact in float32 for |k| < 2**16
_SIN_TAYLOR = tuple((-1) ** n / math.factorial(2 * n + 1) for n in range(7))  # r, r^3, ..., r^13
_COS_TAYLOR = tuple((-1) ** n / math.factorial(2 * n) for n in range(8))  # 1, r^2, ..., r^14


def _horner(coefficients: tuple[float, ...], r2: Array) -> Array:
    poly = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        poly = poly * r2 + c
    return poly


def fast_sincos(x: Array) -> tuple[Array, Array]:
    """``(sin(x), cos(x))`` from one Cody-Waite reduction to ``r = x - k*pi`` in [-pi/2, pi/2]
    and two polynomials in ``r^2``: each within 3e-7 of the exact value for ``|x| < 1e4``."""
    k = jnp.round(x * (1.0 / math.pi))
    r = (x - k * _PI_HI) - k * _PI_LO
    r2 = r * r
    sign = 1.0 - 2.0 * jnp.mod(k, 2.0)  # sin(r + k pi) = (-1)^k sin(r), and so for cos
    return r * _horner(_SIN_TAYLOR, r2) * sign, _horner(_COS_TAYLOR, r2) * sign


@jax.custom_jvp
def fast_sin(x: Array) -> Array:
    """``sin(x)`` by :func:`fast_sincos`: within 2e-7 of the exact sine for ``|x| < 1e4`` (XLA's
    CPU ``sin`` is about 3x slower, and SIRENs are bound by their sines). Its derivative is the
    polynomial cosine of the same reduction, computed beside the sine in one pass, rather than
    autodiff through the sine's polynomial (which keeps every Horner step for the backward pass)."""
    return fast_sincos(x)[0]


@fast_sin.defjvp
def _fast_sin_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    sin, cos = fast_sincos(primals[0])
    return sin, cos * tangents[0]


def siren_apply(params: Params, x: Array, *, w0: float, output_offset: float,
                sine: Callable[[Array], Array] = fast_sin) -> Array:
    """sin(w0 (x W + b)) after every layer but the last, which is linear plus an offset."""
    n = len(params)
    for i in range(n):
        layer = params[layer_name(i)]
        x = x @ layer["kernel"] + layer["bias"]
        if i < n - 1:
            x = sine(w0 * x)
    return x + output_offset


@register_arch("siren")
def siren(
    in_dim: int = 2, hidden: int = 32, depth: int = 2, out_dim: int = 1, w0: float = 30.0,
    output_offset: float = 0.5, exact_sine: bool = False,
) -> Arch:
    """The DWSNets INR: 2 -> 32 -> 32 -> 1, sine (w0 = 30) after the hidden layers, output + 0.5.

    ``exact_sine`` uses XLA's ``sin`` instead of :func:`fast_sin`: the same function to 2e-7, which
    XLA's cost analysis counts as one operation per sine (FLOP accounting uses it). It is a choice
    of computation, not of model, so it is not part of ``config``.
    """
    widths = dense_widths(in_dim, hidden, depth, out_dim)
    config = dict(in_dim=in_dim, hidden=hidden, depth=depth, out_dim=out_dim, w0=w0,
                  output_offset=output_offset)
    return Arch(
        name="siren",
        init=lambda key: siren_init(key, widths, w0),
        apply=lambda p, x: siren_apply(p, x, w0=w0, output_offset=output_offset,
                                       sine=jnp.sin if exact_sine else fast_sin),
        input_shape=(in_dim,),
        output_dim=out_dim,
        config=config,
    )


def dense_layer_init(key: PRNGKey, fan_in: int, fan_out: int) -> dict[str, Array]:
    """One dense layer, ``{"kernel": [in, out], "bias": [out]}``, LeCun-uniform (bound 1/sqrt(in))."""
    return _uniform_dense(key, fan_in, fan_out, fan_in**-0.5)


def mlp_init(key: PRNGKey, widths: list[int]) -> Params:
    """LeCun-uniform kernels (PyTorch's default bound 1/sqrt(in)) for a ReLU MLP."""
    keys = jax.random.split(key, len(widths) - 1)
    return {
        layer_name(i): dense_layer_init(k, fi, fo)
        for i, (k, fi, fo) in enumerate(zip(keys, widths[:-1], widths[1:], strict=True))
    }


def mlp_apply(params: Params, x: Array, activation=jax.nn.relu) -> Array:
    """Dense layers with ``activation`` between them; inputs are flattened first."""
    x = x.reshape(x.shape[0], -1)
    n = len(params)
    for i in range(n):
        layer = params[layer_name(i)]
        x = x @ layer["kernel"] + layer["bias"]
        if i < n - 1:
            x = activation(x)
    return x


@register_arch("mlp")
def mlp(input_shape: tuple[int, ...] = (2,), hidden: int = 32, depth: int = 2, out_dim: int = 1) -> Arch:
    """A ReLU MLP over flattened inputs."""
    input_shape = tuple(input_shape)
    in_dim = 1
    for d in input_shape:
        in_dim *= d
    widths = dense_widths(in_dim, hidden, depth, out_dim)
    return Arch(
        name="mlp",
        init=lambda key: mlp_init(key, widths),
        apply=mlp_apply,
        input_shape=input_shape,
        output_dim=out_dim,
        config=dict(input_shape=list(input_shape), hidden=hidden, depth=depth, out_dim=out_dim),
    )
