"""NFN-NP (Zhou et al., "Permutation Equivariant Neural Functionals", NeurIPS 2023) in pure JAX.

A network is a list of ``(kernel, bias)`` layers, dense ``[in, out]`` or convolutional
``[kh, kw, in, out]`` (HWIO); output ``j`` of layer ``i`` feeds input ``j`` of layer ``i + 1``
(dense after global pooling included). Each weight tensor becomes a feature map
``W_i[n_out, n_in, s, C]`` (``s = kh * kw`` filter positions, ``C`` channels) and each bias
``b_i[n_out, C]``. The NP layer is the linear map equivariant to permuting the neurons of every
layer (inputs and outputs included): each output weight mixes

  the weight itself (pointwise over ``s * C``),
  means over its row and column, the neighbouring layers' means and biases that share its
  neurons (row- and column-broadcast terms),
  the global means of every weight and bias (broadcast everywhere),

and each bias mixes its own column-broadcast terms and the global means. NP layers with ReLU
are followed by an invariant pooling (mean of every weight and bias map) and an MLP head, so the
prediction does not change when hidden units are permuted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.archs.base import layer_order
from probegen_jax.errors import ShapeMismatchError
from probegen_jax.training.learner import Learner
from probegen_jax.methods.probing.probegen import mlp_head
from probegen_jax.nn.dropout import with_head_dropout
from probegen_jax.nn.fourier import fourier_encode as fourier_features
from probegen_jax.nn.fourier import fourier_projection as gaussian_projection
from probegen_jax.types import Array, Params, PRNGKey


class WeightSpace(NamedTuple):
    """Feature maps of a batch of networks: ``weights[i]: [B, n_out, n_in, s, C]``, ``biases[i]: [B, n_out, C]``."""

    weights: tuple[Array, ...]
    biases: tuple[Array, ...]


@dataclasses.dataclass(frozen=True)
class NFNConfig:
    """Sizes of an invariant NFN-NP.

    ``channels``: channels of each NP layer (ReLU after each). ``fourier_features``: if > 0, each
    input weight is first encoded by ``2 * fourier_features`` random Fourier features (scale
    ``fourier_scale``), as the reference INR classifier does. The head is ``head_layers`` linear
    layers of width ``head_hidden``.
    """

    channels: tuple[int, ...] = (64, 64, 64)
    fourier_features: int = 0
    fourier_scale: float = 10.0
    fourier_seed: int = 0
    head_hidden: int = 256
    head_layers: int = 3


# Sizes of the reference INR classifier (three 512-channel layers, 128 Fourier features, head
# width 1000): used to report what the published configuration costs.
NFN_PAPER_CONFIG = NFNConfig(channels=(512, 512, 512), fourier_features=128, head_hidden=1000, head_layers=3)


# ----------------------------------------------------------------------------- weight space


def weight_space(params: Params, layers: Sequence[str] | None = None) -> WeightSpace:
    """Stacked zoo params (``{"layer": {"kernel", "bias"}}``, leading axis ``B``) as NFN feature maps.

    Raises ``ShapeMismatchError`` naming the layer when a layer is not a (kernel, bias) pair of
    dense or convolutional shape, or when consecutive layers' neuron counts disagree.
    """
    layers = list(layers) if layers is not None else layer_order(params)
    weights, biases = [], []
    for name in layers:
        layer = params.get(name) if isinstance(params, dict) else None
        if not isinstance(layer, dict) or set(layer) != {"kernel", "bias"}:
            raise ShapeMismatchError(f"NFN: layer {name!r} must hold exactly 'kernel' and 'bias', got "
                                     f"{sorted(layer) if isinstance(layer, dict) else type(layer).__name__}")
        kernel, bias = layer["kernel"], layer["bias"]
        if kernel.ndim not in (3, 5) or bias.ndim != 2 or bias.shape[1] != kernel.shape[-1]:
            raise ShapeMismatchError(
                f"NFN: layer {name!r} needs kernel [B, in, out] or [B, kh, kw, in, out] and bias [B, out]; "
                f"got kernel {tuple(kernel.shape)} and bias {tuple(bias.shape)}")
        b, n_in, n_out = kernel.shape[0], kernel.shape[-2], kernel.shape[-1]
        spatial = kernel.reshape(b, -1, n_in, n_out)  # [B, s, in, out]
        weights.append(jnp.transpose(spatial, (0, 3, 2, 1))[..., None])
        biases.append(bias[..., None])
    for i in range(1, len(weights)):
        if weights[i].shape[2] != weights[i - 1].shape[1]:
            raise ShapeMismatchError(
                f"NFN: layer {layers[i]!r} takes {weights[i].shape[2]} inputs but layer {layers[i - 1]!r} "
                f"has {weights[i - 1].shape[1]} outputs; NP layers need each layer to feed the next")
    return WeightSpace(tuple(weights), tuple(biases))


def map_weight_space(fn, ws: WeightSpace) -> WeightSpace:
    return WeightSpace(tuple(fn(w) for w in ws.weights), tuple(fn(b) for b in ws.biases))


# ----------------------------------------------------------------------------- layers


def _draw(key: PRNGKey, shapes: dict[str, tuple[tuple[int, int], float]]) -> dict[str, Array]:
    """``{name: N(0, 1) * scale / sqrt(fan_in)}`` for ``{name: ((fan_in, fan_out), scale)}``, from one draw."""
    sizes = [math.prod(shape) for shape, _ in shapes.values()]
    flat = jax.random.normal(key, (sum(sizes),))
    out, start = {}, 0
    for (name, (shape, scale)), size in zip(shapes.items(), sizes, strict=True):
        out[name] = flat[start:start + size].reshape(shape) * (scale * shape[0] ** -0.5)
        start += size
    return out


def np_layer_init(key: PRNGKey, filters: Sequence[int], c_in: int, c_out: int) -> Params:
    """Params of one NP layer for a network whose layer ``i`` has ``filters[i]`` filter positions.

    Each output sums four (weights) or two (biases) terms; they are scaled so the sum keeps unit
    variance.
    """
    num = len(filters)
    global_in = (sum(filters) + num) * c_in
    w, b = 0.5, 0.5**0.5
    params = []
    for i, (k, s) in enumerate(zip(jax.random.split(key, num), filters, strict=True)):
        row_in = s + (filters[i - 1] + 1 if i > 0 else 0)
        col_in = s + 1 + (filters[i + 1] if i < num - 1 else 0)
        layer = _draw(k, {
            "w_point": ((s * c_in, s * c_out), w),
            "w_global": ((global_in, s * c_out), w),
            "w_row": ((row_in * c_in, s * c_out), w),
            "w_col": ((col_in * c_in, s * c_out), w),
            "b_col": ((col_in * c_in, c_out), b),
            "b_global": ((global_in, c_out), b),
        })
        params.append({**layer, "w_bias": jnp.zeros((s * c_out,)), "b_bias": jnp.zeros((c_out,))})
    return {"layers": params}


def _flat(w: Array) -> Array:
    """``[..., s, C] -> [..., s * C]``."""
    return w.reshape(*w.shape[:-2], -1)


def np_layer_apply(params: Params, ws: WeightSpace) -> WeightSpace:
    """The NP equivariant linear layer (see the module docstring)."""
    flat = [_flat(w) for w in ws.weights]  # [B, o, i, s C]
    row_means = [w.mean(1) for w in flat]  # [B, n_in, s C]  (mean over output neurons)
    col_means = [w.mean(2) for w in flat]  # [B, n_out, s C] (mean over input neurons)
    global_means = jnp.concatenate([w.mean((1, 2)) for w in flat] + [b.mean(1) for b in ws.biases], axis=-1)
    num = len(flat)
    weights, biases = [], []
    for i, (w, p) in enumerate(zip(flat, params["layers"], strict=True)):
        row = [row_means[i]] + ([col_means[i - 1], ws.biases[i - 1]] if i > 0 else [])
        col = [col_means[i], ws.biases[i]] + ([row_means[i + 1]] if i < num - 1 else [])
        row, col = jnp.concatenate(row, -1), jnp.concatenate(col, -1)
        z = (w @ p["w_point"]
             + (global_means @ p["w_global"] + p["w_bias"])[:, None, None]
             + (row @ p["w_row"])[:, None, :, :]
             + (col @ p["w_col"])[:, :, None, :])
        u = col @ p["b_col"] + (global_means @ p["b_global"] + p["b_bias"])[:, None]
        s = ws.weights[i].shape[3]
        weights.append(z.reshape(*z.shape[:3], s, -1))
        biases.append(u)
    return WeightSpace(tuple(weights), tuple(biases))


def np_pool(ws: WeightSpace) -> Array:
    """Invariant pooling: ``[B, sum_i (s_i + 1) C]`` means of every weight and bias map."""
    return jnp.concatenate([_flat(w.mean((1, 2))[:, None])[:, 0] for w in ws.weights]
                           + [b.mean(1) for b in ws.biases], axis=-1)


def fourier_encode(ws: WeightSpace, projection: Array) -> WeightSpace:
    """Each scalar ``x`` -> ``[sin(2 pi x B), cos(2 pi x B)]`` with a fixed ``B: [1, m]``."""

    return map_weight_space(lambda a: fourier_features(a, projection, cos_first=False), ws)


# ----------------------------------------------------------------------------- learner


class LayerScales(NamedTuple):
    """Per-tensor scalar standardisation (scalars, so permutation symmetry is kept)."""

    weight_mean: tuple[float, ...]
    weight_std: tuple[float, ...]
    bias_mean: tuple[float, ...]
    bias_std: tuple[float, ...]


def fit_layer_scales(ws: WeightSpace) -> LayerScales:
    stats = lambda ts: ([float(np.mean(t)) for t in ts], [float(np.std(t)) or 1.0 for t in ts])  # noqa: E731
    wm, wsd = stats(ws.weights)
    bm, bsd = stats(ws.biases)
    return LayerScales(tuple(wm), tuple(wsd), tuple(bm), tuple(bsd))


def _standardize(ws: WeightSpace, scales: LayerScales) -> WeightSpace:
    return WeightSpace(
        tuple((w - m) / s for w, m, s in zip(ws.weights, scales.weight_mean, scales.weight_std, strict=True)),
        tuple((b - m) / s for b, m, s in zip(ws.biases, scales.bias_mean, scales.bias_std, strict=True)))


def fourier_projection(cfg: NFNConfig) -> Array:
    """The fixed (untrained) Gaussian projection ``[1, fourier_features]`` of the input encoding."""
    return gaussian_projection(cfg.fourier_seed, 1, cfg.fourier_features, cfg.fourier_scale)


def nfn_features(cfg: NFNConfig, params: Params, ws: WeightSpace) -> Array:
    """Invariant features ``[B, F]`` of standardised weight-space maps ``ws`` (no head)."""
    if cfg.fourier_features:
        ws = fourier_encode(ws, fourier_projection(cfg))
    for layer in params["np"]:
        ws = map_weight_space(jax.nn.relu, np_layer_apply(layer, ws))
    return np_pool(ws)


def nfn_learner(
    train_params: Params, num_outputs: int, cfg: NFNConfig = NFNConfig(), *, layers: Sequence[str] | None = None,
    scales: LayerScales | None = None,
) -> Learner:
    """An invariant NFN-NP over stacked zoo params of dense or convolutional ``(kernel, bias)`` layers.

    ``train_params`` (the training split) fix the per-tensor standardisation (unless ``scales``
    are given) and the layer shapes; ``layers`` gives the forward order (default ``layer_order``).
    """
    layers = list(layers) if layers is not None else layer_order(train_params)
    ws0 = weight_space(train_params, layers)
    scales = scales if scales is not None else fit_layer_scales(ws0)
    filters = [w.shape[3] for w in ws0.weights]
    c_in = 2 * cfg.fourier_features if cfg.fourier_features else 1
    pooled = (sum(filters) + len(filters)) * cfg.channels[-1] if cfg.channels else (sum(filters) + len(filters)) * c_in
    head = mlp_head(pooled, num_outputs, hidden=cfg.head_hidden, layers=cfg.head_layers)
    shapes = [(w.shape[1:], b.shape[1:]) for w, b in zip(ws0.weights, ws0.biases, strict=True)]

    def init(key: PRNGKey) -> Params:
        k_np, k_head = jax.random.split(key)
        widths = [c_in, *cfg.channels]
        np_params = [np_layer_init(k, filters, ci, co)
                     for k, ci, co in zip(jax.random.split(k_np, len(cfg.channels)), widths[:-1], widths[1:],
                                          strict=True)]
        return {"np": np_params, "head": head.init(k_head)}

    def apply(params: Params, zoo_params: Params, activation: Callable[[Array], Array] = jax.nn.relu) -> Array:
        ws = weight_space(zoo_params, layers)
        got = [(w.shape[1:], b.shape[1:]) for w, b in zip(ws.weights, ws.biases, strict=True)]
        if got != shapes:
            raise ShapeMismatchError(f"NFN: zoo params have layer shapes {got}, the learner was built for {shapes}")
        chex.assert_equal_shape_prefix(list(ws.weights) + list(ws.biases), 1)
        features = nfn_features(cfg, params, _standardize(ws, scales))
        return head.apply(params["head"], features, activation)

    # one compiled init instead of many small eager ops; dropout on the head's hidden units in training
    return Learner(jax.jit(init), apply, with_head_dropout(apply))
