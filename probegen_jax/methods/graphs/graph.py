"""Neural graphs (Kofinas et al., ICLR 2024): a network as a graph of its neurons.

One node per neuron (the inputs, every hidden unit or channel, the outputs) carrying its bias (0 for
inputs); one edge per weight, from the neuron it reads to the neuron it feeds. A convolution's
``kh x kw`` kernel between two channels is one edge whose features are the kernel's values,
zero-padded (centred) to the largest kernel of the zoo; a dense layer is a ``1 x 1`` kernel. A
residual connection ``y = act(conv(x)) + x`` is an edge from each input channel to the output
channel of the same index, flagged by the last edge feature. Node kinds encode position: each input
and each output neuron is its own kind (they are not interchangeable), the hidden neurons of a layer
share one kind (they are).

Graphs have static structure per architecture, so a batch of networks is node features
``[B, nodes, 1]``, edge features ``[B, edges, F]`` and integer structure ``[B, edges]`` padded to the
largest architecture of the zoo; every method jits and vmaps over it. A heterogeneous zoo's packed
rows (``{"bucket": [B], "weights": [B, P_max]}``) become graphs bucket by bucket.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from probegen_jax.archs import Arch, layer_order
from probegen_jax.errors import ShapeMismatchError
from probegen_jax.nn.dropout import with_head_dropout
from probegen_jax.training.learner import Learner
from probegen_jax.types import Array, Params, PyTree


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """One ``(kernel, bias)`` layer: ``n_in -> n_out`` neurons, a ``kh x kw`` kernel, a residual edge set."""

    name: str
    n_in: int
    n_out: int
    kh: int = 1
    kw: int = 1
    residual: bool = False


@dataclasses.dataclass(frozen=True)
class GraphLayout:
    """The static graph of one architecture (node order: inputs, then each layer's outputs)."""

    layers: tuple[LayerInfo, ...]

    @property
    def widths(self) -> list[int]:
        return [self.layers[0].n_in] + [layer.n_out for layer in self.layers]

    @property
    def num_nodes(self) -> int:
        return sum(self.widths)

    @property
    def num_edges(self) -> int:
        return sum(l.n_in * l.n_out + (l.n_in if l.residual else 0) for l in self.layers)

    @property
    def node_offsets(self) -> list[int]:
        return list(np.cumsum([0] + self.widths[:-1]))

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(senders, receivers, layer)`` of every edge: each layer's weights (input-major), then its residual edges."""
        send, recv, kind = [], [], []
        offsets = self.node_offsets
        for i, layer in enumerate(self.layers):
            src, dst = offsets[i] + np.arange(layer.n_in), offsets[i + 1] + np.arange(layer.n_out)
            send.append(np.repeat(src, layer.n_out))
            recv.append(np.tile(dst, layer.n_in))
            kind.append(np.full(layer.n_in * layer.n_out, i))
            if layer.residual:
                send.append(src)
                recv.append(offsets[i + 1] + np.arange(layer.n_in))
                kind.append(np.full(layer.n_in, i))
        return tuple(np.concatenate(a).astype(np.int32) for a in (send, recv, kind))

    def node_kinds(self, max_in: int, max_out: int) -> np.ndarray:
        """Input ``j`` -> ``j``; output ``k`` -> ``max_in + k``; hidden layer ``l`` (1-based) -> ``max_in + max_out + l - 1``."""
        widths = self.widths
        hidden = [np.full(w, max_in + max_out + l) for l, w in enumerate(widths[1:-1])]
        return np.concatenate([np.arange(widths[0]), *hidden, max_in + np.arange(widths[-1])]).astype(np.int32)


def layout_of(arch: Arch) -> GraphLayout:
    """The graph layout of an architecture of ``(kernel, bias)`` layers (dense ``[in, out]`` or HWIO conv).

    Residual connections are read from conv-stack archs (``small_cnn``, ``wild_cnn``). Raises
    ``ShapeMismatchError`` when consecutive layers' neuron counts disagree.
    """
    from probegen_jax.archs.cnn import conv_layers_of

    shapes = arch.param_shapes()
    names = layer_order(shapes)
    residual = ([bool(l["residual"]) for l in conv_layers_of(arch)] if arch.name in ("small_cnn", "wild_cnn")
                else [])
    layers = []
    for i, name in enumerate(names):
        k = shapes[name]["kernel"].shape
        if len(k) not in (2, 4):
            raise ShapeMismatchError(f"neural graph: layer {name!r} of {arch.name!r} has kernel shape {k}; "
                                     "expected [in, out] or [kh, kw, in, out]")
        kh, kw = (k[0], k[1]) if len(k) == 4 else (1, 1)
        layers.append(LayerInfo(name, k[-2], k[-1], kh, kw, residual[i] if i < len(residual) else False))
    for prev, layer in itertools.pairwise(layers):
        if layer.n_in != prev.n_out:
            raise ShapeMismatchError(f"neural graph: layer {layer.name!r} takes {layer.n_in} inputs but "
                                     f"{prev.name!r} has {prev.n_out} outputs")
    return GraphLayout(tuple(layers))


class Graphs(NamedTuple):
    """A batch of neural graphs padded to common sizes.

    ``nodes [B, V, 1]`` biases; ``edges [B, E, F]`` kernel values (``F - 1`` of them) and the residual
    flag; ``senders``/``receivers [B, E]`` node indices (padding edges point at node ``V``, outside
    the graph); ``node_kind [B, V]``, ``edge_kind [B, E]`` (layer index) positional ids;
    ``node_mask [B, V]``, ``edge_mask [B, E]``; ``output_nodes [B, O]`` the output neurons in order.
    """

    nodes: Array
    edges: Array
    senders: Array
    receivers: Array
    node_kind: Array
    edge_kind: Array
    node_mask: Array
    edge_mask: Array
    output_nodes: Array


@dataclasses.dataclass(frozen=True)
class GraphSpace:
    """Everything static about the graphs of a zoo: one layout per bucket and the padded sizes.

    ``weight_scale[b][l]``/``bias_scale[b][l]`` divide layer ``l``'s weights and biases of bucket ``b``
    (root mean squares over the training split; a scalar per tensor keeps every symmetry).
    """

    layouts: tuple[GraphLayout, ...]
    weight_scale: tuple[tuple[float, ...], ...]
    bias_scale: tuple[tuple[float, ...], ...]

    @property
    def kernel_size(self) -> tuple[int, int]:
        return (max(l.kh for g in self.layouts for l in g.layers), max(l.kw for g in self.layouts for l in g.layers))

    @property
    def edge_dim(self) -> int:
        kh, kw = self.kernel_size
        return kh * kw + 1

    @property
    def max_nodes(self) -> int:
        return max(g.num_nodes for g in self.layouts)

    @property
    def max_edges(self) -> int:
        return max(g.num_edges for g in self.layouts)

    @property
    def max_in(self) -> int:
        return max(g.widths[0] for g in self.layouts)

    @property
    def max_out(self) -> int:
        return max(g.widths[-1] for g in self.layouts)

    @property
    def max_layers(self) -> int:
        return max(len(g.layers) for g in self.layouts)

    @property
    def num_node_kinds(self) -> int:
        return self.max_in + self.max_out + max(len(g.layers) - 1 for g in self.layouts)

    def structure(self) -> dict[str, np.ndarray]:
        """Per-bucket padded integer structure, each ``[buckets, ...]``."""
        v, e = self.max_nodes, self.max_edges
        out = {k: [] for k in ("senders", "receivers", "edge_kind", "node_kind", "node_mask", "edge_mask",
                               "output_nodes")}
        for g in self.layouts:
            send, recv, kind = g.edges()
            pad = e - len(send)
            out["senders"].append(np.pad(send, (0, pad), constant_values=v))
            out["receivers"].append(np.pad(recv, (0, pad), constant_values=v))
            out["edge_kind"].append(np.pad(kind, (0, pad)))
            out["edge_mask"].append(np.arange(e) < len(send))
            out["node_kind"].append(np.pad(g.node_kinds(self.max_in, self.max_out), (0, v - g.num_nodes)))
            out["node_mask"].append(np.arange(v) < g.num_nodes)
            out["output_nodes"].append(g.num_nodes - g.widths[-1] + np.arange(g.widths[-1]))
        if len({len(o) for o in out["output_nodes"]}) != 1:
            raise ShapeMismatchError("neural graph: every architecture of a zoo needs the same number of outputs")
        return {k: np.stack(a) for k, a in out.items()}


def _centred(kernel: Array, size: tuple[int, int]) -> Array:
    """``kernel [B, kh, kw, in, out]`` zero-padded to ``[B, *size, in, out]``, centred."""
    ph, pw = size[0] - kernel.shape[1], size[1] - kernel.shape[2]
    return jnp.pad(kernel, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0), (0, 0)))


def graph_features(layout: GraphLayout, params: Params, size: tuple[int, int], weight_scale: Sequence[float],
                   bias_scale: Sequence[float], max_nodes: int, max_edges: int) -> tuple[Array, Array]:
    """``(nodes [B, max_nodes, 1], edges [B, max_edges, kh*kw + 1])`` of stacked params of one layout."""
    b = jax.tree.leaves(params)[0].shape[0]
    nodes = [jnp.zeros((b, layout.widths[0]))]
    edges = []
    for layer, ws, bs in zip(layout.layers, weight_scale, bias_scale, strict=True):
        kernel = params[layer.name]["kernel"].reshape(b, layer.kh, layer.kw, layer.n_in, layer.n_out) / ws
        flat = _centred(kernel, size).reshape(b, size[0] * size[1], layer.n_in * layer.n_out)
        values = jnp.swapaxes(flat, 1, 2)
        edges.append(jnp.concatenate([values, jnp.zeros((*values.shape[:2], 1))], -1))
        if layer.residual:
            flag = jnp.zeros((b, layer.n_in, size[0] * size[1] + 1)).at[..., -1].set(1.0)
            edges.append(flag)
        nodes.append(params[layer.name]["bias"] / bs)
    nodes, edges = jnp.concatenate(nodes, 1), jnp.concatenate(edges, 1)
    nodes = jnp.pad(nodes, ((0, 0), (0, max_nodes - nodes.shape[1])))[..., None]
    return nodes, jnp.pad(edges, ((0, 0), (0, max_edges - edges.shape[1]), (0, 0)))


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a)))) or 1.0


def layer_scales(layout: GraphLayout, params: Params) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Root mean square of each layer's kernel and bias over stacked params."""
    return (tuple(_rms(np.asarray(params[l.name]["kernel"])) for l in layout.layers),
            tuple(_rms(np.asarray(params[l.name]["bias"])) for l in layout.layers))


def bucket_params(zoo, indices: np.ndarray) -> list[Params]:
    """Stacked params of members ``indices`` per architecture bucket (one entry for a ``Zoo``)."""
    indices = np.asarray(indices)
    if not zoo.packs_inputs:
        return [zoo.inputs(indices)]
    return [jax.tree.map(lambda a, r=zoo.position[indices[zoo.bucket[indices] == b]]: np.asarray(a)[r], bucket.params)
            for b, bucket in enumerate(zoo.buckets)]


def graph_constants(zoo, train_indices: np.ndarray) -> dict[str, np.ndarray]:
    """``{"weight_scale", "bias_scale"}: [buckets, max_layers]`` root mean squares of each layer over the
    training members (1 where a bucket has no training member or fewer layers)."""
    layouts = [layout_of(a) for a in zoo.archs]
    depth = max(len(g.layers) for g in layouts)
    out = {k: np.ones((len(layouts), depth), np.float32) for k in ("weight_scale", "bias_scale")}
    for b, (g, params) in enumerate(zip(layouts, bucket_params(zoo, train_indices), strict=True)):
        if len(jax.tree.leaves(params)[0]):
            w, s = layer_scales(g, params)
            out["weight_scale"][b, :len(w)], out["bias_scale"][b, :len(s)] = w, s
    return out


def graph_space(archs: Sequence[Arch], constants: dict[str, np.ndarray]) -> GraphSpace:
    """The graph space of a zoo's architectures with its ``graph_constants``."""
    layouts = tuple(layout_of(a) for a in archs)
    scale = lambda k: tuple(tuple(float(x) for x in np.asarray(constants[k])[b, :len(g.layers)])
                            for b, g in enumerate(layouts))
    return GraphSpace(layouts, scale("weight_scale"), scale("bias_scale"))


def _unravel(arch: Arch):
    template = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), arch.param_shapes())
    flat, unravel = ravel_pytree(template)
    return int(flat.size), unravel


def _graphs(structure: dict[str, Array], nodes: Array, edges: Array) -> Graphs:
    s = structure
    return Graphs(nodes * s["node_mask"][..., None], edges * s["edge_mask"][..., None], s["senders"], s["receivers"],
                  s["node_kind"], s["edge_kind"], s["node_mask"], s["edge_mask"], s["output_nodes"])


def graph_builder(space: GraphSpace, archs: Sequence[Arch] | None = None):
    """``inputs -> Graphs``: stacked params of one architecture, or (with ``archs``, one per layout)
    a heterogeneous zoo's packed ``{"bucket", "weights"}`` rows."""
    table = {k: jnp.asarray(v) for k, v in space.structure().items()}
    size, v, e = space.kernel_size, space.max_nodes, space.max_edges

    def features(b: int, params: Params) -> tuple[Array, Array]:
        return graph_features(space.layouts[b], params, size, space.weight_scale[b], space.bias_scale[b], v, e)

    def assemble(bucket: Array, nodes: Array, edges: Array) -> Graphs:
        return _graphs({k: a[bucket] for k, a in table.items()}, nodes, edges)

    if archs is None:
        if len(space.layouts) != 1:
            raise ShapeMismatchError("neural graph: a zoo of several architectures needs their archs")

        shared = {k: a[0] for k, a in space.structure().items()}

        def build(params: Params) -> Graphs:
            # One architecture: every graph has the structure of the first, a static constant (a
            # broadcast view, so segment and gather_nodes take their shared-structure paths).
            nodes, edges = features(0, params)
            return _graphs({k: np.broadcast_to(a, (nodes.shape[0], *a.shape)) for k, a in shared.items()},
                           nodes, edges)

        return build

    unravels = [_unravel(a) for a in archs]

    def build_packed(inputs: PyTree) -> Graphs:
        bucket, weights = inputs["bucket"], inputs["weights"]
        chex.assert_rank([bucket, weights], [1, 2])
        nodes = edges = None
        for b, (n, unravel) in enumerate(unravels):
            nb, eb = features(b, jax.vmap(unravel)(weights[:, :n]))
            mine = (bucket == b)[:, None, None]
            nodes = nb if nodes is None else jnp.where(mine, nb, nodes)
            edges = eb if edges is None else jnp.where(mine, eb, edges)
        return assemble(bucket, nodes, edges)

    return build_packed


def zoo_graphs(zoo, constants: dict[str, np.ndarray] | None = None):
    """``(space, build)`` for a ``Zoo`` (inputs: stacked params) or ``HeteroZoo`` (inputs: packed rows);
    ``constants`` default to ``graph_constants`` of the zoo's training split."""
    constants = graph_constants(zoo, zoo.indices("train")) if constants is None else constants
    space = graph_space(zoo.archs, constants)
    return space, graph_builder(space, zoo.archs if zoo.packs_inputs else None)


def graph_learner(init_params: Callable, forward: Callable, spec: Any, zoo, num_outputs: int,
                  constants: dict[str, np.ndarray] | None = None) -> Learner:
    """A graph metanetwork as a ``Learner``: ``init_params(spec, space, num_outputs, key)`` and
    ``forward(spec, space, params, graphs, activation)`` over the zoo's graphs (``zoo_graphs``);
    ``activation``, its head's, takes dropout in training."""
    space, build = zoo_graphs(zoo, constants)

    def apply(params: Params, inputs: PyTree, activation: Callable[[Array], Array] = jax.nn.relu) -> Array:
        return forward(spec, space, params, build(inputs), activation=activation)

    return Learner(jax.jit(lambda key: init_params(spec, space, num_outputs, key)), apply, with_head_dropout(apply))


# ----------------------------------------------------------------------------- message passing helpers


def shared_index(index: Array) -> np.ndarray | None:
    """The one row of a static ``[B, E]`` index every graph of the batch shares (a NumPy view that
    broadcasts one row), else ``None``: structure traced, or different per graph."""
    if isinstance(index, np.ndarray) and index.ndim == 2 and index.strides[0] == 0:
        return index[0]
    return None


def segment(op: str, data: Array, receivers: Array, num_nodes: int) -> Array:
    """Per-graph aggregation of edge data ``[B, E, D]`` at ``receivers [B, E]`` -> ``[B, num_nodes, D]``.

    Indices ``num_nodes`` (padding) fall into a dropped extra segment; empty segments give 0. Where
    every graph shares its structure (``shared_index``) each edge's ``[B, D]`` slab is scattered as
    one row, a third of the time of scattering ``B * E`` rows of ``D`` on a CPU (same values).
    """
    fn = {"sum": jax.ops.segment_sum, "max": jax.ops.segment_max, "min": jax.ops.segment_min}[op]
    shared = shared_index(receivers)
    if shared is not None:
        edges_first = jnp.swapaxes(data, 0, 1)
        if op == "sum":
            out = fn(edges_first, shared, num_segments=num_nodes + 1)
        else:
            out = _shared_extremum(fn, shared, num_nodes + 1)(edges_first)
        out = jnp.swapaxes(out, 0, 1)
    else:
        b = data.shape[0]
        ids = (receivers + jnp.arange(b)[:, None] * (num_nodes + 1)).reshape(-1)
        out = fn(data.reshape(-1, data.shape[-1]), ids, num_segments=b * (num_nodes + 1))
        out = out.reshape(b, num_nodes + 1, -1)
    return jnp.where(jnp.isfinite(out), out, 0.0)[:, :num_nodes]


def _shared_extremum(fn: Callable, index: np.ndarray, num_segments: int) -> Callable[[Array], Array]:
    """``fn`` (segment max or min) of ``[E, ...]`` rows at a static ``index``, whose gradient goes
    to the rows that attain each segment's extremum, shared equally among ties (what autodiff of
    ``fn`` gives), as one gather and one segment sum instead of autodiff's scatters."""

    @jax.custom_vjp
    def extremum(rows: Array) -> Array:
        return fn(rows, index, num_segments=num_segments)

    def forward(rows: Array) -> tuple[Array, tuple[Array, Array]]:
        out = extremum(rows)
        return out, (rows, out)

    def backward(residuals: tuple[Array, Array], grad: Array) -> tuple[Array]:
        rows, out = residuals
        attains = (rows == out[index]).astype(rows.dtype)
        ties = jax.ops.segment_sum(attains, index, num_segments=num_segments)
        return (attains * (grad / jnp.maximum(ties, 1.0))[index],)

    extremum.defvjp(forward, backward)
    return extremum


def gather_nodes(nodes: Array, index: Array) -> Array:
    """``nodes [B, V, D]`` at ``index [B, E]`` (index ``V``, padding, reads zeros)."""
    padded = jnp.pad(nodes, ((0, 0), (0, 1), (0, 0)))
    shared = shared_index(index)
    if shared is not None:
        return padded[:, shared]
    return jnp.take_along_axis(padded, index[..., None], axis=1)


def in_degree(g: Graphs, num_nodes: int) -> Array:
    """``[B, V, 1]`` number of incoming (real) edges of each node."""
    shared = shared_index(g.receivers)
    if shared is not None and isinstance(g.edge_mask, np.ndarray):  # a constant of the structure
        counts = np.bincount(shared[g.edge_mask[0]], minlength=num_nodes + 1)[:num_nodes]
        return np.broadcast_to(counts.astype(np.float32)[:, None], (g.receivers.shape[0], num_nodes, 1))
    return segment("sum", g.edge_mask[..., None].astype(jnp.float32), g.receivers, num_nodes)


def mean_log_degree(space: GraphSpace) -> float:
    """PNA's ``delta``: the mean of ``log(d + 1)`` over every node of every layout."""
    logs = []
    for g in space.layouts:
        _, recv, _ = g.edges()
        logs.append(np.log(np.bincount(recv, minlength=g.num_nodes) + 1.0))
    return float(np.mean(np.concatenate(logs))) or 1.0


def dense_edges(g: Graphs, edges: Array, num_nodes: int) -> Array:
    """Edge list features ``[B, E, D]`` scattered into ``[B, V, V, D]`` (sender, receiver); absent pairs 0."""
    b = edges.shape[0]
    out = jnp.zeros((b, num_nodes + 1, num_nodes + 1, edges.shape[-1]), edges.dtype)
    senders, receivers = shared_index(g.senders), shared_index(g.receivers)
    if senders is not None and receivers is not None:  # one [B, D] slab per edge, as in segment
        out = out.at[:, senders, receivers].add(edges * g.edge_mask[..., None])
    else:
        out = out.at[jnp.arange(b)[:, None], g.senders, g.receivers].add(edges * g.edge_mask[..., None])
    return out[:, :num_nodes, :num_nodes]


__all__ = [
    "GraphLayout",
    "GraphSpace",
    "Graphs",
    "LayerInfo",
    "bucket_params",
    "dense_edges",
    "gather_nodes",
    "graph_builder",
    "graph_constants",
    "graph_features",
    "graph_space",
    "in_degree",
    "layer_scales",
    "layout_of",
    "mean_log_degree",
    "segment",
    "shared_index",
    "zoo_graphs",
]
