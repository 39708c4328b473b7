"""NG-GNN (Kofinas et al., ICLR 2024): PNA message passing over neural graphs, with edge updates.

Each layer: messages ``m_ij = gamma(e_ij) * W[x_i, x_j] + beta(e_ij)`` (FiLM modulation of the
receiver/sender features by the edge), aggregated at each receiver by mean, min, max and std,
each unscaled and amplified (``log(d + 1) / delta``); ``x_i <- W'[W''[x_i, aggregates]]``; then
(between layers) LayerNorm and SiLU on nodes, and the edges are replaced by
``W1 silu(We e_ij + Ws x_i + Wt x_j)``. Inputs are Fourier features of each bias and weight vector
plus positional embeddings of the node kinds; the readout concatenates the output neurons' features
and applies an MLP. Defaults are the reference INR-classification configuration.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from probegen_jax.methods.graphs.graph import (
    Graphs,
    GraphSpace,
    gather_nodes,
    in_degree,
    mean_log_degree,
    segment,
    graph_learner,
)
from probegen_jax.methods.graphs.layers import (
    embed_apply,
    embed_init,
    fourier_projection,
    keys,
    layer_norm,
    layer_norm_init,
    linear,
    linear_init,
    readout_apply,
    readout_init,
)
from probegen_jax.training.learner import Learner
from probegen_jax.types import Array, Params, PRNGKey

AGGREGATORS = 4  # mean, min, max, std
SCALERS = 2  # identity, amplification


@dataclasses.dataclass(frozen=True)
class NGGNNSpec:
    """NG-GNN sizes (reference INR-classification config: d_hid 32, 4 layers, 128 Fourier features, sigma 3)."""

    d_hid: int = 32
    num_layers: int = 4
    fourier_dim: int = 128
    fourier_sigma: float = 3.0
    fourier_seed: int = 0

    @classmethod
    def small(cls) -> NGGNNSpec:
        return cls(d_hid=16, num_layers=2, fourier_dim=16)


def pna_layer_init(key: PRNGKey, d: int) -> Params:
    k = keys(key, ("film", "pre", "post", "lin"))
    return {"film": linear_init(k["film"], d, 2 * d), "pre": linear_init(k["pre"], 2 * d, d),
            "post": linear_init(k["post"], (AGGREGATORS * SCALERS + 1) * d, d), "lin": linear_init(k["lin"], d, d)}


def pna_layer_apply(p: Params, g: Graphs, nodes: Array, edges: Array, delta: float) -> Array:
    v = nodes.shape[1]
    # W [x_i, x_j] + b, with each half of W applied to the V nodes before the gather to the E edges
    to_receiver, to_sender = jnp.split(p["pre"]["kernel"], 2, axis=0)
    pre = gather_nodes(nodes @ to_receiver, g.receivers) + gather_nodes(nodes @ to_sender, g.senders)
    scale, shift = jnp.split(linear(p["film"], edges), 2, -1)
    msg = scale * (pre + p["pre"]["bias"]) + shift
    msg = msg * g.edge_mask[..., None]
    deg = in_degree(g, v)
    safe = jnp.maximum(deg, 1.0)
    mean = segment("sum", msg, g.receivers, v) / safe
    sq = segment("sum", msg * msg, g.receivers, v) / safe
    std = jnp.sqrt(jax.nn.relu(sq - mean * mean) + 1e-5) * (deg > 0)
    aggs = jnp.concatenate([mean, segment("min", msg, g.receivers, v), segment("max", msg, g.receivers, v), std], -1)
    amplified = aggs * (jnp.log(deg + 1.0) / delta)
    out = linear(p["post"], jnp.concatenate([nodes, aggs, amplified], -1))
    return linear(p["lin"], out)


def edge_update_init(key: PRNGKey, d: int) -> Params:
    k = keys(key, ("e", "s", "t", "out"))
    return {"e": linear_init(k["e"], d, d), "s": linear_init(k["s"], d, d), "t": linear_init(k["t"], d, d),
            "out": linear_init(k["out"], d, d)}


def edge_update_apply(p: Params, g: Graphs, nodes: Array, edges: Array) -> Array:
    h = (linear(p["e"], edges) + gather_nodes(linear(p["s"], nodes), g.senders)
         + gather_nodes(linear(p["t"], nodes), g.receivers))
    return linear(p["out"], jax.nn.silu(h))


def init_params(spec: NGGNNSpec, space: GraphSpace, num_outputs: int, key: PRNGKey) -> Params:
    d = spec.d_hid
    k = keys(key, ("embed", "layers", "edges", "readout"))
    n = spec.num_layers
    return {
        "embed": embed_init(k["embed"], space.edge_dim, d, d, spec.fourier_dim, space.num_node_kinds),
        "layers": [pna_layer_init(kk, d) for kk in jax.random.split(k["layers"], n)],
        "norms": [layer_norm_init(d) for _ in range(n - 1)],
        "edges": [edge_update_init(kk, d) for kk in jax.random.split(k["edges"], n - 1)],
        "readout": readout_init(k["readout"], space.max_out, d, d, num_outputs),
    }


def forward(spec: NGGNNSpec, space: GraphSpace, params: Params, g: Graphs, activation=jax.nn.relu) -> Array:
    """Predictions ``[B, num_outputs]`` for a batch of neural graphs (``activation``: the readout's)."""
    bias_proj = fourier_projection(spec.fourier_seed, 1, spec.fourier_dim, spec.fourier_sigma)
    weight_proj = fourier_projection(spec.fourier_seed + 1, space.edge_dim, spec.fourier_dim, spec.fourier_sigma)
    nodes, edges = embed_apply(params["embed"], g, bias_proj, weight_proj)
    delta = mean_log_degree(space)
    for i, layer in enumerate(params["layers"]):
        nodes = pna_layer_apply(layer, g, nodes, edges, delta)
        if i < spec.num_layers - 1:
            nodes = jax.nn.silu(layer_norm(params["norms"][i], nodes))
            edges = edge_update_apply(params["edges"][i], g, nodes, edges)
    return readout_apply(params["readout"], g, nodes, activation)


def learner(spec: NGGNNSpec, zoo, num_outputs: int, constants: dict | None = None) -> Learner:
    """NG-GNN on a ``Zoo`` (inputs: stacked params) or ``HeteroZoo`` (inputs: packed rows);
    ``constants``: ``graph_constants`` (default: of the zoo's training split)."""
    return graph_learner(init_params, forward, spec, zoo, num_outputs, constants)
