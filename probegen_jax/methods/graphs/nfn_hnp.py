"""NFN-HNP (Zhou et al., "Permutation Equivariant Neural Functionals", NeurIPS 2023).

HNP layers are equivariant to permutations of the hidden neurons only: the input and output neurons
keep their identity. Each HNP layer is the NP layer (``probegen_jax.methods.baselines.nfn``, equivariant
to every neuron permutation) plus the terms that index the fixed neurons:

- first layer ``W0[j, k]`` (``k`` an input neuron): a learned map over ``k`` (``sum_k' M_in[k, k'] W0[j, k']``),
- last layer ``W[j, k]`` and output bias ``b[j]`` (``j`` an output neuron): learned maps over ``j``,

each followed by a channel mixing. The invariant pooling keeps the fixed indices too: besides NP's
means, the first layer averaged over its hidden neurons only (one feature vector per input neuron),
the last layer averaged over its hidden neurons (one per output neuron) and the output bias as is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.archs.base import layer_order
from probegen_jax.errors import ShapeMismatchError
from probegen_jax.methods.baselines.nfn import (
    LayerScales,
    NFNConfig,
    WeightSpace,
    _standardize,
    fit_layer_scales,
    fourier_encode,
    fourier_projection,
    map_weight_space,
    np_layer_apply,
    np_layer_init,
    np_pool,
    weight_space,
)
from probegen_jax.methods.graphs.layers import keys, linear, linear_init
from probegen_jax.methods.probing.probegen import mlp_head
from probegen_jax.nn.dropout import with_head_dropout
from probegen_jax.training.learner import Learner
from probegen_jax.types import Array, Params, PRNGKey


@dataclasses.dataclass(frozen=True)
class NFNHNPSpec:
    """NFN-HNP sizes; defaults are the reference INR classifier's (three 512-channel layers, 128 Fourier
    features, head width 1000)."""

    channels: tuple[int, ...] = (512, 512, 512)
    fourier_features: int = 128
    fourier_scale: float = 10.0
    fourier_seed: int = 0
    head_hidden: int = 1000
    head_layers: int = 3

    @classmethod
    def small(cls) -> NFNHNPSpec:
        return cls(channels=(16, 16), fourier_features=0, head_hidden=64)

    @property
    def nfn(self) -> NFNConfig:
        return NFNConfig(tuple(self.channels), self.fourier_features, self.fourier_scale, self.fourier_seed,
                         self.head_hidden, self.head_layers)


def _flat(w: Array) -> Array:
    return w.reshape(*w.shape[:-2], -1)


def hnp_layer_init(key: PRNGKey, filters: list[int], n_in: int, n_out: int, c_in: int, c_out: int) -> Params:
    k = keys(key, ("np", "min", "win", "mout", "wout", "bout"))
    s0, sl = filters[0], filters[-1]
    return {
        "np": np_layer_init(k["np"], filters, c_in, c_out),
        "mix_in": jax.random.normal(k["min"], (n_in, n_in)) / n_in**0.5,
        "w_in": linear_init(k["win"], s0 * c_in, s0 * c_out, bias=False),
        "mix_out": jax.random.normal(k["mout"], (n_out, n_out)) / n_out**0.5,
        "w_out": linear_init(k["wout"], sl * c_in, sl * c_out, bias=False),
        "b_out": linear_init(k["bout"], c_in, c_out, bias=False),
    }


def hnp_layer_apply(p: Params, ws: WeightSpace) -> WeightSpace:
    """NP layer plus the input- and output-indexed terms (see the module docstring)."""
    out = np_layer_apply(p["np"], ws)
    weights, biases = list(out.weights), list(out.biases)
    first, last = ws.weights[0], ws.weights[-1]  # [B, o, i, s, C]
    t_in = linear(p["w_in"], jnp.einsum("bjkf,kq->bjqf", _flat(first), p["mix_in"]))
    weights[0] = weights[0] + t_in.reshape(weights[0].shape)
    t_out = linear(p["w_out"], jnp.einsum("bjkf,jq->bqkf", _flat(last), p["mix_out"]))
    weights[-1] = weights[-1] + t_out.reshape(weights[-1].shape)
    biases[-1] = biases[-1] + linear(p["b_out"], jnp.einsum("bjc,jq->bqc", ws.biases[-1], p["mix_out"]))
    return WeightSpace(tuple(weights), tuple(biases))


def hnp_pool(ws: WeightSpace) -> Array:
    """NP's means plus the input-, output-indexed invariants: ``[B, F]``."""
    b = ws.weights[0].shape[0]
    per_input = _flat(ws.weights[0].mean(1)).reshape(b, -1)  # mean over hidden neurons j, per input k
    per_output = _flat(ws.weights[-1].mean(2)).reshape(b, -1)  # mean over hidden neurons k, per output j
    return jnp.concatenate([np_pool(ws), per_input, per_output, ws.biases[-1].reshape(b, -1)], -1)


def hnp_constants(zoo, train_indices) -> dict[str, np.ndarray]:
    """NFN's per-tensor standardisation (``LayerScales``) of the training members, as arrays."""
    train = zoo.inputs(train_indices)
    scales = fit_layer_scales(weight_space(train, layer_order(train)))
    return {k: np.asarray(v, np.float32) for k, v in scales._asdict().items()}


def fixed_architecture(zoo, constants: dict | None, method: str) -> tuple[LayerScales, list[str], WeightSpace]:
    """``(scales, layer order, weight space of a zero network)`` of a one-architecture ``zoo`` for a weight-space
    method; ``constants``: ``hnp_constants`` (default: of the zoo's training split)."""
    if zoo.packs_inputs:
        raise ShapeMismatchError(f"{method} needs a zoo of one architecture; graph methods take heterogeneous zoos")
    constants = hnp_constants(zoo, zoo.indices("train")) if constants is None else constants
    scales = LayerScales(**{k: tuple(float(v) for v in np.asarray(constants[k])) for k in LayerScales._fields})
    example = zoo.archs[0].stacked_zeros()
    layers = layer_order(example)
    return scales, layers, weight_space(example, layers)


def learner(spec: NFNHNPSpec, zoo, num_outputs: int, constants: dict | None = None) -> Learner:
    """An invariant NFN-HNP over a ``Zoo`` of dense or convolutional ``(kernel, bias)`` layers;
    ``constants``: ``hnp_constants`` (default: of the zoo's training split)."""
    scales, layers, ws0 = fixed_architecture(zoo, constants, "NFN-HNP")
    cfg = spec.nfn
    filters = [w.shape[3] for w in ws0.weights]
    n_in, n_out = ws0.weights[0].shape[2], ws0.weights[-1].shape[1]
    c_in = 2 * cfg.fourier_features if cfg.fourier_features else 1
    c_last = cfg.channels[-1] if cfg.channels else c_in
    pooled = (sum(filters) + len(filters)) * c_last + n_in * filters[0] * c_last + n_out * filters[-1] * c_last \
        + n_out * c_last
    head = mlp_head(pooled, num_outputs, hidden=cfg.head_hidden, layers=cfg.head_layers)

    def init(key: PRNGKey) -> Params:
        k_layers, k_head = jax.random.split(key)
        widths = [c_in, *cfg.channels]
        hnp = [hnp_layer_init(k, filters, n_in, n_out, ci, co)
               for k, ci, co in zip(jax.random.split(k_layers, len(cfg.channels)), widths[:-1], widths[1:],
                                    strict=True)]
        return {"hnp": hnp, "head": head.init(k_head)}

    def apply(params: Params, zoo_params: Params, activation: Callable[[Array], Array] = jax.nn.relu) -> Array:
        ws = _standardize(weight_space(zoo_params, layers), scales)
        if cfg.fourier_features:
            ws = fourier_encode(ws, fourier_projection(cfg))
        for layer in params["hnp"]:
            ws = map_weight_space(jax.nn.relu, hnp_layer_apply(layer, ws))
        return head.apply(params["head"], hnp_pool(ws), activation)

    return Learner(jax.jit(init), apply, with_head_dropout(apply))
