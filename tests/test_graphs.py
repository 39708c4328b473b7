"""Graph and equivariant metanetworks: symmetries kept (and, for NG-GNN, scaling symmetries not
kept), learning on a toy zoo, and neural graphs of heterogeneous zoos built as the networks connect."""

import dataclasses
import itertools
from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probegen_jax.archs import make_arch
from probegen_jax.methods.graphs import GRAPH_METHODS, NFNHNPSpec, NFTSpec, NGGNNSpec, NGTSpec, ScaleGMNSpec
from probegen_jax.methods.graphs import graph
from probegen_jax.methods.graphs.graph import graph_builder, graph_constants, graph_space, layout_of
from probegen_jax.training.loop import TrainConfig, fit
from probegen_jax.training.tasks import classification
from probegen_jax.zoo.hetero import HeteroZoo
from probegen_jax.zoo.zoo import Zoo

SPECS = {"ng_gnn": NGGNNSpec.small(), "ng_t": NGTSpec.small(), "scalegmn": ScaleGMNSpec.small(),
         "nfn_hnp": NFNHNPSpec.small(), "nft": NFTSpec.small()}
# one layer each (NG-T: two; NFT: one block, no latent self-attention), to keep compilation short in the training tests
LEARN_SPECS = {"ng_gnn": NGGNNSpec(d_hid=16, num_layers=1, fourier_dim=16),
               "ng_t": NGTSpec.small(),
               "scalegmn": dataclasses.replace(ScaleGMNSpec.small(), num_layers=1),
               "nfn_hnp": NFNHNPSpec(channels=(16,), fourier_features=0, head_hidden=64),
               "nft": dataclasses.replace(NFTSpec.small(), num_blocks=1, self_per_cross=0)}


def _splits(n: int) -> dict[str, np.ndarray]:
    a, b = int(0.6 * n), int(0.8 * n)
    return {"train": np.arange(a), "val": np.arange(a, b), "test": np.arange(b, n)}


def _stacked(arch, n: int, seed: int = 0, scale=None):
    params = jax.vmap(arch.init)(jax.random.split(jax.random.key(seed), n))
    if scale is not None:  # per-network multiplier of every weight
        params = jax.tree.map(lambda a: a * scale.reshape(-1, *[1] * (a.ndim - 1)), params)
    return jax.tree.map(np.asarray, params)


@cache
def _siren_zoo() -> Zoo:
    arch = make_arch("siren", hidden=8)
    params = _stacked(arch, 12)
    return Zoo(arch, params, {"label": np.arange(12) % 2}, _splits(12))


@cache
def _apply(name: str, spec=None, zoo_fn=_siren_zoo):
    spec = spec or SPECS[name]
    learner = GRAPH_METHODS[name][1](spec, zoo_fn(), 3)
    return jax.jit(learner.apply), learner.init(jax.random.key(1))


def permute_hidden(params, rng):
    """Permute the units of every hidden layer (dense layers ``dense0..``), keeping each function."""
    out = {k: dict(v) for k, v in params.items()}
    names = sorted(out)
    for this, nxt in itertools.pairwise(names):
        perm = rng.permutation(out[this]["bias"].shape[1])
        out[this]["kernel"], out[this]["bias"] = out[this]["kernel"][..., perm], out[this]["bias"][:, perm]
        out[nxt]["kernel"] = out[nxt]["kernel"][:, perm]
    return out


def rescale_hidden(params, rng, *, sign: bool):
    """Multiply each hidden unit's incoming weights and bias by ``q`` and its outgoing weights by ``1/q``
    (``q = +-1`` for odd activations, ``q > 0`` for ReLU): the same function."""
    out = {k: dict(v) for k, v in params.items()}
    names = sorted(out)
    for this, nxt in itertools.pairwise(names):
        shape = (out[this]["bias"].shape[0], out[this]["bias"].shape[1])
        q = rng.choice([-1.0, 1.0], shape) if sign else rng.uniform(0.3, 3.0, shape)
        q = q.astype(np.float32)
        out[this]["kernel"], out[this]["bias"] = out[this]["kernel"] * q[:, None], out[this]["bias"] * q
        out[nxt]["kernel"] = out[nxt]["kernel"] / q[:, :, None]
    return out


def _same_function(arch, a, b):
    x = jnp.linspace(-1, 1, 10).reshape(5, 2)
    f = jax.vmap(arch.apply, in_axes=(0, None))
    np.testing.assert_allclose(f(a, x), f(b, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(SPECS))
def test_hidden_permutations_leave_every_method_unchanged(name):
    zoo = _siren_zoo()
    permuted = permute_hidden(zoo.params, np.random.default_rng(3))
    _same_function(zoo.arch, zoo.params, permuted)
    apply, theta = _apply(name)
    before, after = np.asarray(apply(theta, zoo.params)), np.asarray(apply(theta, permuted))
    assert before.shape == (12, 3) and np.all(np.isfinite(before))
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)


def test_sign_flips_leave_scalegmn_unchanged_but_change_ng_gnn():
    zoo = _siren_zoo()
    flipped = rescale_hidden(zoo.params, np.random.default_rng(4), sign=True)
    _same_function(zoo.arch, zoo.params, flipped)
    apply, theta = _apply("scalegmn")
    before = np.asarray(apply(theta, zoo.params))
    np.testing.assert_allclose(apply(theta, flipped), before, rtol=1e-4, atol=1e-5)
    apply, theta = _apply("ng_gnn")
    before, after = np.asarray(apply(theta, zoo.params)), np.asarray(apply(theta, flipped))
    assert np.abs(after - before).max() > 1e-2 * np.abs(before).max()


@cache
def _relu_zoo() -> Zoo:
    arch = make_arch("mlp", hidden=8)
    return Zoo(arch, _stacked(arch, 12), {"label": np.arange(12) % 2}, _splits(12))


def test_positive_rescaling_leaves_relu_scalegmn_unchanged():
    zoo = _relu_zoo()
    scaled = rescale_hidden(zoo.params, np.random.default_rng(5), sign=False)
    _same_function(zoo.arch, zoo.params, scaled)
    apply, theta = _apply("scalegmn", ScaleGMNSpec.small("scale"), _relu_zoo)
    before = np.asarray(apply(theta, zoo.params))
    np.testing.assert_allclose(apply(theta, scaled), before, rtol=1e-4, atol=1e-5)
    # not invariant to what is not a symmetry: scaling a hidden unit's incoming weights alone
    broken = {k: dict(v) for k, v in zoo.params.items()}
    broken["dense0"]["kernel"] = broken["dense0"]["kernel"] * 2.0
    assert np.abs(np.asarray(apply(theta, broken)) - before).max() > 1e-3
    # zero biases (a fresh CNN's) give zero node states: the canonicalisation keeps gradients finite
    zeroed = {k: {**v, "bias": np.zeros_like(v["bias"])} for k, v in zoo.params.items()}
    grads = jax.grad(lambda t: apply(t, zeroed).sum())(theta)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("name", list(SPECS))
def test_each_method_learns_a_toy_zoo(name):
    """Class = the scale the network's weights were drawn at (x0.5 or x2): invariant to every symmetry."""
    arch = make_arch("siren", hidden=8)
    n = 160
    label = np.arange(n) % 2
    zoo = Zoo(arch, _stacked(arch, n, seed=7, scale=np.where(label, 2.0, 0.5).astype(np.float32)),
              {"label": label}, _splits(n))
    learner = GRAPH_METHODS[name][1](LEARN_SPECS[name], zoo, 2)
    cfg = TrainConfig(epochs=4, batch_size=8, learning_rate=3e-3, seed=0)
    result = fit(learner, classification(2), zoo.split_arrays("label"), cfg, progress=False)
    assert result.test["accuracy"] >= 0.8, result.test


# ----------------------------------------------------------------------------- graphs of heterogeneous zoos

LAYERS_A = [{"channels": 2, "kernel": 3, "stride": 2}, {"channels": 2, "kernel": 1, "residual": True}]
LAYERS_B = [{"channels": 3, "kernel": 5, "stride": 2}]


def _hetero() -> HeteroZoo:
    buckets = []
    for b, layers in enumerate((LAYERS_A, LAYERS_B)):
        arch = make_arch("wild_cnn", layers=layers, input_shape=(8, 8, 1), num_classes=3)
        params = _stacked(arch, 3, seed=b)
        params = jax.tree.map(lambda a: a + 0.1, params)  # nonzero biases
        buckets.append(Zoo(arch, params, {"label": np.arange(3) % 2}))
    return HeteroZoo.concat(buckets, splits={"train": np.arange(6)})


def test_heterogeneous_graph_matches_the_networks_connectivity():
    zoo = _hetero()
    layout = layout_of(zoo.archs[0])
    # nodes: 1 input channel, 2 + 2 hidden channels, 3 outputs; edges: 1x2 conv, 2x2 conv, 2 residual, 2x3 dense
    assert layout.num_nodes == 8 and layout.num_edges == 2 + 4 + 2 + 6
    send, recv, kind = layout.edges()
    expected = ([(0, 1), (0, 2)] + [(i, o) for i in (1, 2) for o in (3, 4)] + [(1, 3), (2, 4)]
                + [(i, o) for i in (3, 4) for o in (5, 6, 7)])
    assert list(zip(send.tolist(), recv.tolist())) == expected
    assert kind.tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]

    space = graph_space(zoo.archs, {k: np.ones_like(v) for k, v in graph_constants(zoo, np.arange(6)).items()})
    assert space.kernel_size == (5, 5) and space.edge_dim == 26 and space.max_nodes == 8
    g = jax.jit(graph_builder(space, zoo.archs))(zoo.inputs(np.arange(6)))
    p = zoo.buckets[0].params
    # member 0 (bucket A): biases on its hidden and output nodes, inputs carry none
    np.testing.assert_allclose(g.nodes[0, :, 0], np.concatenate([[0.0], p["conv0"]["bias"][0], p["conv1"]["bias"][0],
                                                                 p["dense0"]["bias"][0]]), rtol=1e-6)
    # the 3x3 kernel between input 0 and channel 1 sits centred in the 5x5 edge features
    grid = np.asarray(g.edges[0, 1, :25]).reshape(5, 5)
    np.testing.assert_allclose(grid[1:4, 1:4], p["conv0"]["kernel"][0, :, :, 0, 1], rtol=1e-6)
    assert np.all(grid[0] == 0) and np.all(grid[:, 4] == 0) and g.edges[0, 1, 25] == 0
    # the 1x1 kernel from channel 2 to channel 4 at the centre; residual edges flagged, no weights
    assert g.edges[0, 5, 12] == pytest.approx(float(p["conv1"]["kernel"][0, 0, 0, 1, 1]))
    assert np.all(g.edges[0, 6:8, -1] == 1) and np.all(g.edges[0, 6:8, :-1] == 0)
    # kinds: the input (0), the outputs (1, 2, 3, each its own), each hidden layer's units one shared kind
    assert np.all(g.edge_mask[0]) and g.node_kind[0].tolist() == [0, 4, 4, 5, 5, 1, 2, 3]
    # member 3 (bucket B, 1 -> 3 channels -> 3 outputs): 7 nodes and 3 + 9 edges, padded to 8 and 14
    q = zoo.buckets[1].params
    assert g.node_mask[3].tolist() == [True] * 7 + [False] and g.edge_mask[3].tolist() == [True] * 12 + [False] * 2
    assert g.senders[3, 12:].tolist() == [8, 8] and g.output_nodes[3].tolist() == [4, 5, 6]
    np.testing.assert_allclose(np.asarray(g.edges[3, 2, :25]).reshape(5, 5), q["conv0"]["kernel"][0, :, :, 0, 2],
                               rtol=1e-6)


@pytest.mark.parametrize("name", ["ng_gnn", "scalegmn"])
def test_graph_methods_run_on_heterogeneous_zoos_and_ignore_padding(name):
    """A member's prediction does not depend on which other architectures share its batch."""
    zoo = _hetero()
    learner = GRAPH_METHODS[name][1](SPECS[name], zoo, 2)
    theta, apply = learner.init(jax.random.key(0)), jax.jit(learner.apply)
    both = np.asarray(apply(theta, zoo.inputs(np.arange(6))))
    alone = np.asarray(apply(theta, zoo.inputs(np.arange(3))))
    assert both.shape == (6, 2) and np.all(np.isfinite(both))
    np.testing.assert_allclose(both[:3], alone, rtol=1e-4, atol=1e-5)


def test_shared_structure_helpers_equal_the_per_graph_helpers():
    """A static structure shared by the batch (a view of one row) scatters and gathers whole
    ``[B, D]`` slabs per edge; the same index materialised per graph takes the per-graph path:
    values and gradients of every helper agree, padding index included."""
    rng = np.random.default_rng(0)
    b, e, v, d = 5, 40, 12, 3
    receivers, senders = (np.broadcast_to(rng.integers(0, v + 1, e), (b, e)) for _ in range(2))
    assert graph.shared_index(receivers) is not None and graph.shared_index(np.array(receivers)) is None
    data = jnp.asarray(rng.normal(size=(b, e, d)), jnp.float32)
    nodes = jnp.asarray(rng.normal(size=(b, v, d)), jnp.float32)
    mask = np.broadcast_to(rng.random(e) < 0.8, (b, e))
    g = graph.Graphs(nodes, data, senders, receivers, None, None, None, mask, None)
    per_graph = g._replace(senders=np.array(senders), receivers=np.array(receivers), edge_mask=np.array(mask))
    cases = {op: (lambda x, g, op=op: graph.segment(op, x, g.receivers, v), data) for op in ("sum", "min", "max")}
    cases |= {"gather": (lambda x, g: graph.gather_nodes(x, g.senders), nodes),
              "dense_edges": (lambda x, g: graph.dense_edges(g, x, v), data),
              "in_degree": (lambda x, g: graph.in_degree(g, v) * x[:, :1], nodes)}
    for name, (fn, x) in cases.items():
        want = jax.value_and_grad(lambda x: jnp.sum(jnp.sin(fn(x, per_graph))))(x)
        got = jax.value_and_grad(lambda x: jnp.sum(jnp.sin(fn(x, g))))(x)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-7, err_msg=name)


def test_one_architectures_graphs_share_their_structure_and_predict_as_traced_ones():
    """NG-GNN end to end: graphs of one architecture carry their structure as constants (the
    shared path); passed as a jit argument (traced, as a heterogeneous zoo's are) they take the
    per-graph path; predictions and gradients agree."""
    from probegen_jax.methods.graphs import ng_gnn

    zoo, spec = _siren_zoo(), SPECS["ng_gnn"]
    space = graph_space(zoo.archs, graph_constants(zoo, zoo.indices("train")))
    graphs = graph_builder(space)(zoo.params)
    assert graph.shared_index(graphs.receivers) is not None
    theta = ng_gnn.init_params(spec, space, 3, jax.random.key(0))

    def loss(theta, g):
        return jnp.sum(jnp.sin(ng_gnn.forward(spec, space, theta, g)))

    shared = jax.jit(lambda t: jax.value_and_grad(loss)(t, graphs))(theta)  # structure: constants
    traced = jax.jit(jax.value_and_grad(loss))(theta, graphs)
    np.testing.assert_allclose(shared[0], traced[0], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(shared[1]), jax.tree.leaves(traced[1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
