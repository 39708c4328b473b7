"""NG-T (Kofinas et al., ICLR 2024): a relational transformer over neural graphs.

Edges live on the dense ``[V, V]`` grid (absent pairs embed a zero weight). Each layer: multi-head
attention between every pair of nodes where the edge enters the queries, keys and values
(``q_ij = q_i + Eq e_ij``, ``k_ij = k_j + Ek e_ij``, ``v_ij = v_j * Em e_ij + Ev e_ij``), residual +
LayerNorm, a node MLP, then the edge update ``e_ij <- LN(e_ij + MLP(e_ij, e_ji, x_i, x_j))`` and an
edge MLP. Padded nodes are never attended to. Defaults are the reference INR-classification
configuration (d_node 64, d_edge 32, attention 128, 8 heads, 4 layers).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from probegen_jax.methods.graphs.graph import Graphs, GraphSpace, dense_edges, graph_learner
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


@dataclasses.dataclass(frozen=True)
class NGTSpec:
    """NG-T sizes (reference INR-classification config)."""

    d_node: int = 64
    d_edge: int = 32
    d_attn: int = 128
    d_node_hid: int = 128
    d_edge_hid: int = 64
    d_out_hid: int = 128
    num_layers: int = 4
    heads: int = 8
    fourier_dim: int = 128
    fourier_sigma: float = 1.0
    fourier_seed: int = 0

    @classmethod
    def small(cls) -> NGTSpec:
        return cls(d_node=16, d_edge=8, d_attn=16, d_node_hid=32, d_edge_hid=16, d_out_hid=32, num_layers=2,
                   heads=2, fourier_dim=16)


def layer_init(key: PRNGKey, s: NGTSpec) -> Params:
    k = keys(key, ("qkv", "eqkv", "proj", "lin0", "m1", "m2", "e0e", "e0s", "e0t", "e0o", "e1", "e2"))
    return {
        "qkv": linear_init(k["qkv"], s.d_node, 3 * s.d_attn, bias=False),
        "eqkv": linear_init(k["eqkv"], s.d_edge, 4 * s.d_attn, bias=False),
        "proj": linear_init(k["proj"], s.d_attn, s.d_node), "lin0": linear_init(k["lin0"], s.d_node, s.d_node),
        "mlp1": linear_init(k["m1"], s.d_node, s.d_node_hid, bias=False),
        "mlp2": linear_init(k["m2"], s.d_node_hid, s.d_node),
        "edge_e": linear_init(k["e0e"], 2 * s.d_edge, s.d_edge_hid), "edge_s": linear_init(k["e0s"], s.d_node, s.d_edge_hid),
        "edge_t": linear_init(k["e0t"], s.d_node, s.d_edge_hid), "edge_o": linear_init(k["e0o"], s.d_edge_hid, s.d_edge),
        "edge_mlp1": linear_init(k["e1"], s.d_edge, s.d_edge_hid, bias=False),
        "edge_mlp2": linear_init(k["e2"], s.d_edge_hid, s.d_edge),
        **{name: layer_norm_init(s.d_node) for name in ("ln0", "ln1")},
        **{name: layer_norm_init(s.d_edge) for name in ("eln0", "eln1")},
    }


def attention(p: Params, s: NGTSpec, nodes: Array, edges: Array, mask: Array) -> Array:
    """Relational attention: ``nodes [B, V, Dn]``, ``edges [B, V, V, De]``, ``mask [B, V]`` -> ``[B, V, Dn]``."""
    b, v, _ = nodes.shape
    h, dh = s.heads, s.d_attn // s.heads
    q, k, val = (a.reshape(b, v, h, dh) for a in jnp.split(linear(p["qkv"], nodes), 3, -1))
    eq, ek, ev, em = (a.reshape(b, v, v, h, dh) for a in jnp.split(linear(p["eqkv"], edges), 4, -1))
    qq = q[:, :, None] + eq  # [B, i, j, H, dh]
    kk = k[:, None, :] + ek
    vv = val[:, None, :] * em + ev
    logits = jnp.einsum("bijhd,bijhd->bhij", qq, kk) / jnp.sqrt(float(s.d_attn))
    logits = jnp.where(mask[:, None, None, :], logits, -1e9)
    out = jnp.einsum("bhij,bijhd->bihd", jax.nn.softmax(logits, -1), vv)
    return linear(p["proj"], out.reshape(b, v, s.d_attn))


def layer_apply(p: Params, s: NGTSpec, nodes: Array, edges: Array, mask: Array) -> tuple[Array, Array]:
    nodes = layer_norm(p["ln0"], nodes + linear(p["lin0"], attention(p, s, nodes, edges, mask)))
    nodes = layer_norm(p["ln1"], nodes + linear(p["mlp2"], jax.nn.gelu(linear(p["mlp1"], nodes))))
    pair = jnp.concatenate([edges, jnp.swapaxes(edges, 1, 2)], -1)
    h = (linear(p["edge_e"], pair) + linear(p["edge_s"], nodes)[:, :, None] + linear(p["edge_t"], nodes)[:, None, :])
    edges = layer_norm(p["eln0"], edges + linear(p["edge_o"], jax.nn.gelu(h)))
    edges = layer_norm(p["eln1"], edges + linear(p["edge_mlp2"], jax.nn.gelu(linear(p["edge_mlp1"], edges))))
    return nodes, edges


def init_params(spec: NGTSpec, space: GraphSpace, num_outputs: int, key: PRNGKey) -> Params:
    k = keys(key, ("embed", "layers", "readout"))
    return {
        "embed": embed_init(k["embed"], space.edge_dim, spec.d_node, spec.d_edge, spec.fourier_dim,
                            space.num_node_kinds),
        "layers": [layer_init(kk, spec) for kk in jax.random.split(k["layers"], spec.num_layers)],
        "readout": readout_init(k["readout"], space.max_out, spec.d_node, spec.d_out_hid, num_outputs),
    }


def forward(spec: NGTSpec, space: GraphSpace, params: Params, g: Graphs, activation=jax.nn.relu) -> Array:
    """Predictions ``[B, num_outputs]`` for a batch of neural graphs (``activation``: the readout's)."""
    v = space.max_nodes
    bias_proj = fourier_projection(spec.fourier_seed, 1, spec.fourier_dim, spec.fourier_sigma)
    weight_proj = fourier_projection(spec.fourier_seed + 1, space.edge_dim, spec.fourier_dim, spec.fourier_sigma)
    nodes, edges = embed_apply(params["embed"], g, bias_proj, weight_proj, edges=dense_edges(g, g.edges, v))
    for layer in params["layers"]:
        nodes, edges = layer_apply(layer, spec, nodes, edges, g.node_mask)
    return readout_apply(params["readout"], g, nodes, activation)


def learner(spec: NGTSpec, zoo, num_outputs: int, constants: dict | None = None) -> Learner:
    """NG-T on a ``Zoo`` (inputs: stacked params) or ``HeteroZoo`` (inputs: packed rows);
    ``constants``: ``graph_constants`` (default: of the zoo's training split)."""
    if spec.d_attn % spec.heads:
        raise ValueError(f"NG-T: d_attn {spec.d_attn} must be a multiple of heads {spec.heads}")
    return graph_learner(init_params, forward, spec, zoo, num_outputs, constants)
