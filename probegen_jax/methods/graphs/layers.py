"""Small pure layers shared by the graph metanetworks: linear maps, layer norm, Gaussian Fourier
encodings of scalars, node/edge input embeddings and the output-node readout."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from probegen_jax.archs.dense import dense_layer_init, mlp_apply, mlp_init
from probegen_jax.methods.graphs.graph import Graphs
from probegen_jax.nn.fourier import fourier_encode, fourier_projection  # noqa: F401 (the graph models' encoding)
from probegen_jax.types import Array, Params, PRNGKey


def linear_init(key: PRNGKey, fan_in: int, fan_out: int, *, bias: bool = True) -> Params:
    """``{"kernel": [in, out], "bias": [out]}`` (PyTorch's default uniform bound ``1/sqrt(in)``); no bias on request."""
    p = dense_layer_init(key, fan_in, fan_out)
    return p if bias else {"kernel": p["kernel"]}


def linear(p: Params, x: Array) -> Array:
    y = x @ p["kernel"]
    return y + p["bias"] if "bias" in p else y


def layer_norm_init(dim: int) -> Params:
    return {"scale": jnp.ones((dim,)), "offset": jnp.zeros((dim,))}


def layer_norm(p: Params, x: Array, eps: float = 1e-5) -> Array:
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["offset"]


def keys(key: PRNGKey, names: Sequence[str]) -> dict[str, PRNGKey]:
    return dict(zip(names, jax.random.split(key, len(names)), strict=True))


# ----------------------------------------------------------------------------- inputs and readout (NG models)


def embed_init(key: PRNGKey, edge_in: int, d_node: int, d_edge: int, fourier_dim: int, num_node_kinds: int
               ) -> Params:
    """Neural Graphs' input embedding: Fourier features of each bias and weight vector -> linear -> linear,
    plus a learned positional embedding per node kind."""
    k = keys(key, ("bias", "node", "weight", "edge", "pos"))
    return {"bias": linear_init(k["bias"], 2 * fourier_dim, d_node), "node_in": linear_init(k["node"], d_node, d_node),
            "weight": linear_init(k["weight"], 2 * fourier_dim, d_edge),
            "edge_in": linear_init(k["edge"], d_edge, d_edge),
            "pos": jax.random.normal(k["pos"], (num_node_kinds, d_node))}


def embed_apply(p: Params, g: Graphs, bias_projection: Array, weight_projection: Array, edges: Array | None = None
                ) -> tuple[Array, Array]:
    """``(nodes [B, V, d_node], edges [B, E, d_edge])``; ``edges`` replaces ``g.edges`` (e.g. a dense layout)."""
    nodes = linear(p["node_in"], linear(p["bias"], fourier_encode(g.nodes, bias_projection)))
    nodes = nodes + p["pos"][g.node_kind]
    raw = g.edges if edges is None else edges
    return nodes, linear(p["edge_in"], linear(p["weight"], fourier_encode(raw, weight_projection)))


def readout_init(key: PRNGKey, num_outputs_nodes: int, d: int, hidden: int, num_outputs: int) -> Params:
    """Kofinas et al.'s readout: the output neurons' features concatenated -> MLP (two hidden ReLU layers)."""
    return mlp_init(key, [num_outputs_nodes * d, hidden, hidden, num_outputs])


def readout_apply(p: Params, g: Graphs, nodes: Array, activation: Callable[[Array], Array] = jax.nn.relu) -> Array:
    """The MLP on the output neurons' features; ``activation`` after its hidden layers (dropout in training)."""
    out = jnp.take_along_axis(nodes, g.output_nodes[..., None], axis=1)
    return mlp_apply(p, out.reshape(out.shape[0], -1), activation)
