"""ProbeX as pure functions: the Tucker identity, stacking, padding, layer access, alignment."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probegen_jax.archs import make_arch
from probegen_jax.errors import ShapeMismatchError, UnknownNameError
from probegen_jax.methods.probex import (
    ProbeXConfig,
    alignment_learner,
    expert_learner,
    layer_matrix,
    layer_names,
    pad_matrix,
    probex_embed,
    probex_embedder,
    probex_init,
    stack,
    unstack,
)
from probegen_jax.methods.probex.experts import shape_groups, stack_splits, train_experts
from probegen_jax.training.tasks import multilabel, zero_shot
from probegen_jax.training.loop import TrainConfig

CFG = ProbeXConfig(rank_u=5, rank_v=4, rank_t=6)


def test_probex_without_relu_is_the_tucker_factorised_dense_expert():
    kx, kp = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (7, 9, 11))  # [B, d_out, d_in]
    params = probex_init(kp, 9, 11, CFG)
    got = probex_embed(params, x, relu=False)

    # The dense expert's weights W[o, i, k] = sum_uv V[o, v] U[i, u] M[(u, v), k], applied as one map.
    m = params["encoder"]["kernel"].reshape(CFG.rank_u, CFG.rank_v, CFG.rank_t)
    w = jnp.einsum("ov,iu,uvk->oik", params["projection"], params["probes"], m)
    want = jnp.einsum("boi,oik->bk", x, w) + params["encoder"]["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # With the ReLU the map is no longer linear in X.
    relu = probex_embed(params, x, relu=True)
    assert not np.allclose(relu, want, atol=1e-3)
    assert not np.allclose(probex_embed(params, -x) + relu, 2 * params["encoder"]["bias"], atol=1e-3)


def test_stacked_experts_equal_experts_applied_one_by_one():
    learner = expert_learner("probex", 6, 5, 3, CFG)
    stacked = stack(learner, 4)
    params = stacked.init(jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (8, 4, 6, 5))  # [B, E, d_out, d_in]
    out = stacked.apply(params, x)
    assert out.shape == (8, 4, 3)
    for e in range(4):
        np.testing.assert_allclose(out[:, e], learner.apply(unstack(params, e), x[:, e]), rtol=1e-5, atol=1e-6)
    # Each expert starts from its own init.
    assert not np.allclose(unstack(params, 0)["expert"]["probes"], unstack(params, 1)["expert"]["probes"])


def test_zero_padding_a_layer_changes_nothing():
    params = probex_init(jax.random.key(3), 10, 12, CFG)
    x = jax.random.normal(jax.random.key(4), (5, 7, 9))
    small = {**params, "probes": params["probes"][:9], "projection": params["projection"][:7]}
    np.testing.assert_allclose(probex_embed(params, pad_matrix(x, 10, 12)), probex_embed(small, x), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ShapeMismatchError):
        pad_matrix(x, 6, 12)


def test_stack_splits_cycles_smaller_experts_and_refuses_mixed_shapes():
    a = {"train": (np.arange(4.0)[:, None, None] * np.ones((4, 3, 5)), np.zeros((4, 2)))}
    b = {"train": (np.arange(2.0)[:, None, None] * np.ones((2, 3, 5)), np.ones((2, 2)))}
    x, y = stack_splits([a, b])["train"]
    assert x.shape == (4, 2, 3, 5) and y.shape == (4, 2, 2)
    np.testing.assert_array_equal(x[:, 1, 0, 0], [0, 1, 0, 1])  # b's two networks, cycled
    np.testing.assert_array_equal(y[:, 1], 1.0)
    with pytest.raises(ShapeMismatchError, match="one layer shape"):
        stack_splits([a, {"train": (np.ones((2, 6, 4)), np.ones((2, 2)))}])


def _label_splits(seed: int, d_out: int, d_in: int, n: int = 384) -> dict:
    """Layers whose first row's first 3 entries are the signs of 3 labels."""
    x = np.random.default_rng(seed).normal(size=(n, d_out, d_in)).astype(np.float32)
    y = (x[:, 0, :3] > 0).astype(np.float32)
    return {"train": (x[:256], y[:256]), "val": (x[256:320], y[256:320]), "test": (x[320:], y[320:])}


def test_experts_of_one_shape_train_together_and_other_shapes_apart():
    experts = [_label_splits(0, 6, 5), _label_splits(1, 4, 7), _label_splits(2, 6, 5)]
    assert shape_groups(experts) == [[0, 2], [1]]
    cfg = TrainConfig(epochs=20, batch_size=32, learning_rate=0.1, eval_every=5)
    res = train_experts("dense", experts, multilabel(3), cfg, progress=False)
    assert [g.members for g in res.groups] == [[0, 2], [1]] and [g.shape for g in res.groups] == [(6, 5), (4, 7)]
    assert res.seconds == pytest.approx(sum(g.train.seconds for g in res.groups))
    for e, splits in enumerate(experts):
        assert res.per_expert[e]["test"]["per_label_accuracy"] > 0.8, (e, res.per_expert[e])  # chance 0.5
        got = res.learner(e).apply(res.params(e), jnp.asarray(splits["test"][0]))
        np.testing.assert_allclose(np.mean((np.asarray(got) > 0) == (splits["test"][1] > 0.5)),
                                   res.per_expert[e]["test"]["per_label_accuracy"])
    with pytest.raises(IndexError, match="3 experts"):
        res.params(3)
    # A shape trained alone is the same run as within a mixed call.
    alone = train_experts("dense", experts[1:2], multilabel(3), cfg, progress=False)
    assert alone.per_expert[0] == res.per_expert[1]


def test_layer_matrix_reads_kernels_as_out_by_in():
    arch = make_arch("mlp", input_shape=[4], hidden=6, depth=1, out_dim=3)
    params = jax.vmap(arch.init)(jax.random.split(jax.random.key(0), 2))
    assert layer_names(params) == ["dense0/kernel", "dense1/kernel"]
    x = layer_matrix(params, "dense0/kernel")
    assert x.shape == (2, 6, 4)
    np.testing.assert_array_equal(x[1], params["dense0"]["kernel"][1].T)
    np.testing.assert_array_equal(layer_matrix(jax.tree.map(lambda a: a[0], params), "dense1/kernel", stacked=False),
                                  params["dense1"]["kernel"][0].T)


def test_bad_layer_name_lists_the_available_layers():
    arch = make_arch("vit", input_shape=[8, 8, 1], patch=4, dim=8, mlp_dim=16)
    params = jax.vmap(arch.init)(jax.random.split(jax.random.key(0), 2))
    with pytest.raises(UnknownNameError, match="block0/mlp1/kernel") as info:
        layer_matrix(params, "block0/mlp9/kernel")
    assert "'block0/mlp9/kernel'" in str(info.value) and "head/kernel" in str(info.value)
    with pytest.raises(ShapeMismatchError, match=r"block0/mlp1/bias.*rank 1"):
        layer_matrix(params, "block0/mlp1/bias")


def test_lora_layer_is_read_as_its_dense_update(tmp_path):
    base = make_arch("mlp", input_shape=[5], hidden=4, depth=1, out_dim=3)
    flat = {"dense0/kernel": np.ones((5, 4), np.float32), "dense0/bias": np.zeros(4, np.float32),
            "dense1/kernel": np.ones((4, 3), np.float32), "dense1/bias": np.zeros(3, np.float32)}
    np.savez(tmp_path / "base.npz", **flat)
    arch = make_arch("lora", base=base.spec(), base_params=str(tmp_path / "base.npz"), layers=["dense0"], rank=2)
    params = {"dense0": {"lora_a": jax.random.normal(jax.random.key(0), (3, 5, 2)),
                         "lora_b": jax.random.normal(jax.random.key(1), (3, 2, 4))}}
    assert layer_names(params) == ["dense0/lora"]
    update = layer_matrix(params, "dense0/lora")
    assert update.shape == (3, 4, 5)
    b, a = params["dense0"]["lora_b"][0].T, params["dense0"]["lora_a"][0].T  # [out, r], [r, in]
    np.testing.assert_allclose(update[0], b @ a, rtol=1e-5)
    # The LoRA network is the base with kernel + lora_a @ lora_b.
    x = jax.random.normal(jax.random.key(2), (2, 5))
    one = jax.tree.map(lambda v: v[0], params)
    merged = {"dense0": {"kernel": flat["dense0/kernel"] + update[0].T, "bias": flat["dense0/bias"]},
              "dense1": {"kernel": flat["dense1/kernel"], "bias": flat["dense1/bias"]}}
    np.testing.assert_allclose(arch.apply(one, x), base.apply(merged, x), rtol=1e-5)
    with pytest.raises(ShapeMismatchError, match="dense layers"):
        make_arch("lora", base=base.spec(), base_params=str(tmp_path / "base.npz"), layers=["dense7"])


def test_alignment_head_scores_any_classes_with_the_same_params():
    emb = probex_embedder(6, 5, CFG)
    train_classes = jax.random.normal(jax.random.key(0), (4, 10))
    heldout = jax.random.normal(jax.random.key(1), (3, 10))
    params = alignment_learner(emb, train_classes, CFG.rank_t).init(jax.random.key(2))
    x = jax.random.normal(jax.random.key(3), (5, 6, 5))
    seen = alignment_learner(emb, train_classes, CFG.rank_t).apply(params, x)
    unseen = alignment_learner(emb, heldout, CFG.rank_t).apply(params, x)
    assert seen.shape == (5, 4) and unseen.shape == (5, 3)
    assert float(jnp.abs(seen).max()) <= 1.0 + 1e-5  # cosine similarities
    # Scoring against all classes at once gives the same cosines.
    both = alignment_learner(emb, jnp.concatenate([train_classes, heldout]), CFG.rank_t).apply(params, x)
    np.testing.assert_allclose(both, jnp.concatenate([seen, unseen], 1), rtol=1e-5, atol=1e-6)
    task = zero_shot(4)
    assert float(task.loss(seen, jnp.array([0, 1, 2, 3, 0]))) > 0


def test_dense_expert_is_one_linear_map():
    learner = expert_learner("dense", 3, 4, 2)
    params = learner.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (5, 3, 4))
    np.testing.assert_allclose(learner.apply(params, x),
                               x.reshape(5, 12) @ params["kernel"] + params["bias"], rtol=1e-5)
    with pytest.raises(ValueError, match="available"):
        expert_learner("sparse", 3, 4, 2)


def reference_reader(w: np.ndarray) -> np.ndarray:
    """ProbeX's reference reader, from its description: squeeze tensors of rank > 2, a 4-D result
    reshaped in memory to ``[-1, out]``; a 1-D tensor as a column; a matrix as it is."""
    if w.ndim == 1:
        return w[:, None]
    if w.ndim == 2:
        return w
    w = np.squeeze(w)
    return np.squeeze(w.reshape(-1, w.shape[0])) if w.ndim == 4 else w


@pytest.mark.parametrize("shape", [(6, 5), (1, 7, 4), (6, 5, 3, 3), (6, 5, 1, 1), (9,), (1, 3, 2, 2, 2)])
def test_torch_layout_tensors_read_as_the_reference_reader_reads_them(shape):
    w = np.random.default_rng(0).normal(size=(3, *shape)).astype(np.float32)  # three networks
    x = np.asarray(layer_matrix({"t": w}, "t", layout="torch"))
    for n in range(3):
        np.testing.assert_array_equal(x[n], reference_reader(w[n]))


def test_torch_layout_tensor_that_is_no_matrix_is_named():
    with pytest.raises(ShapeMismatchError, match=r"tensor 't' of shape \(2, 3, 4\)"):
        layer_matrix({"t": np.zeros((5, 2, 3, 4))}, "t", layout="torch")
    with pytest.raises(UnknownNameError, match="no tensor 'u'"):
        layer_matrix({"t": np.zeros((5, 2, 3))}, "u", layout="torch")


def test_probex_probes_act_along_the_second_axis_of_the_stored_matrix():
    """A Model-J weight ``X[out, in]`` as stored: ProbeX's probes are ``[in, r_U]`` (``x @ probes``), its
    shared projection reads ``out``, as in the reference forward pass written out here."""
    x = np.random.default_rng(1).normal(size=(4, 6, 5)).astype(np.float32)  # [B, out=6, in=5]
    matrices = np.asarray(layer_matrix({"w": x}, "w", layout="torch"))
    params = probex_init(jax.random.key(0), *matrices.shape[1:], CFG)
    assert params["probes"].shape == (5, CFG.rank_u) and params["projection"].shape == (6, CFG.rank_v)
    responses = matrices @ np.asarray(params["probes"])  # [B, out, r_U]
    projected = np.maximum(np.swapaxes(responses, 1, 2) @ np.asarray(params["projection"]), 0)  # [B, r_U, r_V]
    want = projected.reshape(4, -1) @ np.asarray(params["encoder"]["kernel"]) + np.asarray(params["encoder"]["bias"])
    np.testing.assert_allclose(np.asarray(probex_embed(params, jnp.asarray(matrices))), want, rtol=1e-4, atol=1e-5)
