"""ScaleGMN (Kalogeropoulos, Bouritsas, Panagakis; NeurIPS 2024), invariant form, forward messages.

Besides permutations, a hidden neuron ``i`` can be rescaled by ``q_i`` without changing the network:
``q_i in {-1, 1}`` for odd activations (sine, tanh: ``symmetry="sign"``), ``q_i > 0`` for ReLU
(``symmetry="scale"``). Its bias and incoming weights get ``q_i``, its outgoing weights ``1/q_i``, so
an edge ``j -> i`` transforms by ``q_i / q_j``. Node states are kept equivariant (``x_i -> q_i x_i``;
input and output neurons have ``q = 1``) and the prediction invariant:

- inputs: ``x_i = (b_i Gv) * A[kind_i] + c[kind_i]`` (``c`` on input/output neurons only),
  ``e_ij = (w_ij Ge) * P[layer]``: linear without bias, so equivariant;
- message ``j -> i``: ``Eq([x_i, x_j * e_ij])`` (both parts transform by ``q_i``), summed at ``i``;
- update ``x_i <- x_i + Eq([x_i, m_i])``; for sign symmetry the edges are updated by
  ``e_ij <- Eq([e_ij, x_i * x_j])``;
- ``Eq(z) = (z G) * rho(canon(z))``: a bias-free linear map gated by an invariant MLP, where
  ``rho(canon(z))`` is ``rho(z) + rho(-z)`` (sign) or ``rho(z / |z|)`` (positive scale);
- readout: invariant ``rho(canon(x_i))`` averaged over the nodes and, in order, at the output
  neurons, then an MLP.

Defaults are the reference FMNIST-INR configuration (d_hid 128, 2 layers, MLP width 64, sign).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from probegen_jax.archs.dense import mlp_apply, mlp_init
from probegen_jax.methods.graphs.graph import Graphs, GraphSpace, gather_nodes, segment, graph_learner
from probegen_jax.methods.graphs.layers import keys, layer_norm, layer_norm_init, linear, linear_init
from probegen_jax.training.learner import Learner
from probegen_jax.types import Array, Params, PRNGKey

SYMMETRIES = ("sign", "scale")


@dataclasses.dataclass(frozen=True)
class ScaleGMNSpec:
    """ScaleGMN sizes; ``symmetry``: ``"sign"`` (sine/tanh networks) or ``"scale"`` (ReLU networks)."""

    d_hid: int = 128
    num_layers: int = 2
    d_mlp: int = 64
    d_rho: int = 64
    symmetry: str = "sign"

    @classmethod
    def small(cls, symmetry: str = "sign") -> ScaleGMNSpec:
        return cls(d_hid=16, num_layers=2, d_mlp=16, d_rho=16, symmetry=symmetry)


def _canon_gate_init(key: PRNGKey, d_in: int, d_hidden: int, d_out: int) -> Params:
    k1, k2 = jax.random.split(key)
    return {"in": linear_init(k1, d_in, d_hidden), "norm": layer_norm_init(d_hidden),
            "out": linear_init(k2, d_hidden, d_out)}


def invariant(p: Params, z: Array, symmetry: str) -> Array:
    """An MLP of ``z`` made invariant to ``z -> q z``: ``rho(z) + rho(-z)`` or ``rho(z / |z|)``."""
    rho = lambda u: linear(p["out"], jax.nn.silu(layer_norm(p["norm"], linear(p["in"], u))))
    if symmetry == "sign":
        return rho(z) + rho(-z)
    return rho(unit(z))


def unit(z: Array) -> Array:
    """``z / |z|`` along the last axis, 0 where ``z = 0``, with finite gradients there too."""
    sq = jnp.sum(z * z, -1, keepdims=True)
    safe = jnp.where(sq > 0, sq, 1.0)
    return jnp.where(sq > 0, z * jax.lax.rsqrt(safe), 0.0)


def eq_init(key: PRNGKey, d_in: int, d_out: int, d_mlp: int) -> Params:
    k1, k2 = jax.random.split(key)
    return {"lin": linear_init(k1, d_in, d_out, bias=False), "gate": _canon_gate_init(k2, d_in, d_mlp, d_out)}


def eq_apply(p: Params, z: Array, symmetry: str) -> Array:
    """``(z G) * rho(canon(z))``: equivariant to ``z -> q z`` for the symmetry's ``q``."""
    return linear(p["lin"], z) * invariant(p["gate"], z, symmetry)


def init_params(spec: ScaleGMNSpec, space: GraphSpace, num_outputs: int, key: PRNGKey) -> Params:
    d, m = spec.d_hid, spec.d_mlp
    k = keys(key, ("gv", "ge", "a", "c", "pe", "msg", "upd", "edge", "rho", "head"))
    n = spec.num_layers
    return {
        "node_in": linear_init(k["gv"], 1, d, bias=False),
        "edge_in": linear_init(k["ge"], space.edge_dim, d, bias=False),
        "node_scale": 1.0 + 0.1 * jax.random.normal(k["a"], (space.num_node_kinds, d)),
        "node_pos": jax.random.normal(k["c"], (space.num_node_kinds, d)),
        "edge_scale": 1.0 + 0.1 * jax.random.normal(k["pe"], (space.max_layers, d)),
        "msg": [eq_init(kk, 2 * d, d, m) for kk in jax.random.split(k["msg"], n)],
        "upd": [eq_init(kk, 2 * d, d, m) for kk in jax.random.split(k["upd"], n)],
        "edge": ([eq_init(kk, 2 * d, d, m) for kk in jax.random.split(k["edge"], n)]
                 if spec.symmetry == "sign" else []),
        "rho": _canon_gate_init(k["rho"], d, spec.d_rho, spec.d_rho),
        "head": mlp_init(k["head"], [(1 + space.max_out) * spec.d_rho, spec.d_rho, num_outputs]),
    }


def forward(spec: ScaleGMNSpec, space: GraphSpace, params: Params, g: Graphs, activation=jax.nn.relu) -> Array:
    """Invariant predictions ``[B, num_outputs]`` for a batch of neural graphs (``activation``: the head's)."""
    sym = spec.symmetry
    v = space.max_nodes
    hidden = g.node_kind >= space.max_in + space.max_out  # hidden neurons carry the symmetry
    io = (~hidden & g.node_mask)[..., None]
    nodes = linear(params["node_in"], g.nodes) * params["node_scale"][g.node_kind] + params["node_pos"][g.node_kind] * io
    edges = linear(params["edge_in"], g.edges) * params["edge_scale"][g.edge_kind]
    mask = g.edge_mask[..., None]
    for i in range(spec.num_layers):
        x_i, x_j = gather_nodes(nodes, g.receivers), gather_nodes(nodes, g.senders)
        msg = eq_apply(params["msg"][i], jnp.concatenate([x_i, x_j * edges], -1), sym) * mask
        agg = segment("sum", msg, g.receivers, v)
        nodes = (nodes + eq_apply(params["upd"][i], jnp.concatenate([nodes, agg], -1), sym)) * g.node_mask[..., None]
        if sym == "sign":
            x_i, x_j = gather_nodes(nodes, g.receivers), gather_nodes(nodes, g.senders)
            edges = eq_apply(params["edge"][i], jnp.concatenate([edges, x_i * x_j], -1), sym) * mask
    inv = invariant(params["rho"], nodes, sym) * g.node_mask[..., None]
    pooled = inv.sum(1) / g.node_mask.sum(1, keepdims=True)
    outputs = jnp.take_along_axis(inv, g.output_nodes[..., None], axis=1).reshape(inv.shape[0], -1)
    return mlp_apply(params["head"], jnp.concatenate([pooled, outputs], -1), activation)


def learner(spec: ScaleGMNSpec, zoo, num_outputs: int, constants: dict | None = None) -> Learner:
    """Invariant ScaleGMN on a ``Zoo`` (inputs: stacked params) or ``HeteroZoo`` (inputs: packed rows);
    ``constants``: ``graph_constants`` (default: of the zoo's training split)."""
    if spec.symmetry not in SYMMETRIES:
        raise ValueError(f"ScaleGMN: symmetry must be one of {SYMMETRIES}, got {spec.symmetry!r}")
    return graph_learner(init_params, forward, spec, zoo, num_outputs, constants)
