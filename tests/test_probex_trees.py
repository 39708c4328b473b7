"""Model trees on digits, and ProbeX on them: generation, routing, multi-label experts, zero-shot."""

import dataclasses

import jax
import numpy as np
import pytest

from probegen_jax.archs import make_arch
from probegen_jax.data import load_dataset
from probegen_jax.errors import NoMatchingTreeError
from probegen_jax.methods.probex.experts import train_tree_experts
from probegen_jax.methods.probex.probex import ProbeXConfig, probex_embedder
from probegen_jax.methods.probex.routing import fit_router, route, route_one, routing_accuracy
from probegen_jax.methods.probex.zero_shot import fit_zero_shot, image_class_embeddings, zero_shot_fold
from probegen_jax.training.loop import TrainConfig
from probegen_jax.zoo import Zoo
from probegen_jax.make.trees import (
    LoraTreeConfig,
    TreeConfig,
    load_trees,
    make_lora_tree,
    make_trees,
    split_indices,
)

TINY = dict(arch="mlp", arch_config={"hidden": 16, "depth": 1}, dataset="digits", pool_size=1400,
            pretrain_steps=300, num_children=160, steps=(30, 60), learning_rate=(5e-3, 2e-2), chunk_size=80)
TRAIN = TrainConfig(epochs=100, batch_size=32, learning_rate=1e-3, weight_decay=1e-5, eval_every=20)
PCFG = ProbeXConfig(8, 8, 8)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trees(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("trees")
    configs = [TreeConfig(name="a", seed=0, **TINY), TreeConfig(name="b", seed=1, **TINY)]
    made = make_trees(configs, out, progress=False)
    return out, {n: c for n, (_, c) in made.items()}


def test_children_fine_tune_on_random_class_subsets(trees):
    out, children = trees
    zoo = children["a"]
    k = zoo.target("classes").sum(1)
    assert zoo.target("classes").shape == (160, 10) and k.min() >= 3 and k.max() <= 5
    assert set(np.unique(zoo.target("steps"))) <= set(range(30, 61))
    assert np.all(zoo.target("tree") == 0) and np.all(children["b"].target("tree") == 1)
    assert zoo.target("test_accuracy").mean() > 0.7  # on each child's own classes
    assert sum(len(v) for v in zoo.splits.values()) == 160
    loaded = load_trees(out)
    assert list(loaded) == ["a", "b"]
    np.testing.assert_array_equal(loaded["b"][1].params["dense0"]["kernel"], children["b"].params["dense0"]["kernel"])


def test_tree_does_not_depend_on_the_chunk_size(trees, digits):
    _, children = trees
    cfg = TreeConfig(name="a", seed=0, **{**TINY, "num_children": 10, "chunk_size": 4})
    _, small = make_trees([cfg], None, progress=False)["a"]
    np.testing.assert_allclose(small.params["dense0"]["kernel"], children["a"].params["dense0"]["kernel"][:10],
                               rtol=1e-4, atol=1e-5)


def test_routing_finds_the_tree_and_reports_models_of_no_tree(trees):
    _, children = trees
    # Every child re-initialises its head: routing reads the shared body.
    router = fit_router({n: z.split("train").params for n, z in children.items()}, exclude=("dense1",))
    assert routing_accuracy(router, {n: z.split("test").params for n, z in children.items()}) == 1.0
    one = jax.tree.map(lambda a: a[0], children["b"].split("test").params)
    assert route_one(router, one) == "b"

    # Networks far from both trees (fresh inits, scaled up: on this tiny net a plain fresh init lies
    # about as far from a centroid as the farthest fine-tunes).
    fresh = jax.vmap(children["a"].arch.init)(jax.random.split(jax.random.key(5), 3))
    fresh = jax.tree.map(lambda a: 4 * a, fresh)
    routes = route(router, fresh)
    assert np.all(routes.tree == -1)
    assert "matches no tree" in routes.describe(0) and "distance" in routes.describe(0)
    with pytest.raises(NoMatchingTreeError, match=r"distance [0-9.]+ \(tree radius"):
        route_one(router, jax.tree.map(lambda a: a[0], fresh))
    other = jax.vmap(make_arch("mlp", input_shape=[8, 8, 1], hidden=8, depth=1, out_dim=10).init)(
        jax.random.split(jax.random.key(6), 2))
    assert "no tree has its architecture" in route(router, other).describe(1)


def test_probex_experts_beat_chance_in_every_tree(trees):
    _, children = trees
    out = train_tree_experts(children, TRAIN, PCFG, layers={"b": "dense0/kernel"}, progress=False)
    assert out["layers"]["b"] == "dense0/kernel"
    assert out["layers"]["a"] in out["selection"]["a"] and set(out["selection"]["a"]) == {"dense0/kernel"}
    for name, metrics in out["per_tree"].items():
        assert metrics["test"]["per_label_accuracy"] > 0.6, (name, metrics)  # chance 0.5
    assert [g.members for g in out["result"].groups] == [[0, 1]]  # one layer shape: one stacked run


def test_one_model_across_trees_sees_every_tree_through_one_scaler(trees):
    from probegen_jax.methods.probex.experts import across_tree_splits
    from probegen_jax.methods.probex.layers import layer_matrix

    _, children = trees
    pooled, per_tree = across_tree_splits(children, {"a": "dense0/kernel", "b": "dense0/kernel"}, "classes")
    raw = {n: np.asarray(layer_matrix(z.params, "dense0/kernel")) for n, z in children.items()}
    train = np.concatenate([raw[n][z.indices("train")] for n, z in children.items()])
    mean, scale = train.mean(0), (train - train.mean(0)).std()
    for split in ("train", "val", "test"):
        for n, z in children.items():  # by hand: one mean matrix and one scale for both trees
            x, y = per_tree[n][split]
            np.testing.assert_allclose(x, (raw[n][z.indices(split)] - mean) / scale, rtol=1e-4, atol=1e-4)
            np.testing.assert_array_equal(y, z.target("classes")[z.indices(split)])
        np.testing.assert_array_equal(pooled[split][0], np.concatenate([per_tree[n][split][0] for n in children]))
    # Each tree keeps its own offset (a per-tree expert's scaler would have removed it).
    offsets = [per_tree[n]["train"][0].mean(0) for n in children]
    assert np.abs(offsets[0] - offsets[1]).mean() > 0.1


def test_lora_children_learn_their_class_and_the_alignment_head_reads_it(digits, tmp_path):
    cfg = LoraTreeConfig(dataset="digits", pool_size=1400, hidden=32, pretrain_steps=300, layers=("dense0",),
                         num_children=150, chunk_size=75, seed=0)
    base, zoo = make_lora_tree(cfg, tmp_path / "lora", data=digits, progress=False)
    assert zoo.arch.name == "lora" and zoo.params["dense0"]["lora_a"].shape == (150, 64, 4)
    # A child reconstructs unseen images of its own class best (base loss per class as the scale).
    rng = np.random.default_rng(0)
    images = np.stack([digits.test_images[rng.choice(np.flatnonzero(digits.test_labels == c), 15, replace=False)]
                       for c in range(10)])
    mse = lambda apply, p: jax.vmap(lambda x: ((apply(p, x) - x.reshape(len(x), -1)) ** 2).mean())(images)  # noqa: E731
    relative = jax.vmap(lambda p: mse(zoo.arch.apply, p))(zoo.params) / mse(base.arch.apply, jax.tree.map(lambda a: a[0], base.params))
    assert np.mean(np.argmin(relative, axis=1) == zoo.target("label")) > 0.8  # chance 0.1

    emb = image_class_embeddings(digits.test_images, digits.test_labels, 10, per_class=5)
    fold = fit_zero_shot(zero_shot_fold(zoo, "dense0/lora", [0, 3, 6], num_classes=10),
                         lambda o, i: probex_embedder(o, i, ProbeXConfig(32, 32, 32)), emb, TRAIN, dim=32)
    assert fold["val_seen"] > 0.8 and 0 <= fold["test_unseen"] <= 1, fold  # seen classes, chance 1/7


def test_zero_shot_reaches_held_out_classes_when_weights_follow_their_embeddings():
    """Planted zoo: a layer is a fixed linear image of its class embedding plus noise. Trained on
    20 of 30 classes, the alignment head must name the 10 held-out ones (chance 0.1)."""
    rng = np.random.default_rng(0)
    classes, per_class, dim = 30, 20, 16
    arch = make_arch("mlp", input_shape=[8, 8, 1], hidden=16, depth=1, out_dim=10)
    emb = rng.standard_normal((classes, dim)).astype(np.float32)
    lift = rng.standard_normal((64 * 16, dim)).astype(np.float32) / np.sqrt(dim)
    labels = np.repeat(np.arange(classes), per_class).astype(np.int32)
    params = jax.tree.map(np.asarray, jax.vmap(arch.init)(jax.random.split(jax.random.key(0), len(labels))))
    params["dense0"]["kernel"] = ((emb[labels] @ lift.T).reshape(-1, 64, 16)
                                  + 0.3 * rng.standard_normal((len(labels), 64, 16)).astype(np.float32))
    zoo = Zoo(arch, params, targets={"label": labels}, splits=split_indices(len(labels), (0.6, 0.2), 0))
    fold = zero_shot_fold(zoo, "dense0/kernel", range(0, classes, 3), num_classes=classes)
    embedder = lambda o, i: probex_embedder(o, i, ProbeXConfig(16, 16, 16))  # noqa: E731
    cfg = dataclasses.replace(TRAIN, epochs=50, eval_every=10)
    result = fit_zero_shot(fold, embedder, emb, cfg, dim=16)
    assert result["val_seen"] > 0.9 and result["test_unseen"] > 0.8, result
    shuffled = fit_zero_shot(fold, embedder, emb[rng.permutation(classes)], cfg, dim=16)
    assert shuffled["test_unseen"] < result["test_unseen"] - 0.3, (result, shuffled)


def test_a_resumed_tree_fine_tunes_from_the_saved_base(tmp_path, digits):
    from probegen_jax.make.chunks import work_dir_for
    from probegen_jax.make.trees import make_tree, pretrained_base

    cfg = TreeConfig(name="a", seed=0, **{**TINY, "num_children": 4, "chunk_size": 4, "pretrain_steps": 5})
    arch = make_arch("mlp", input_shape=[8, 8, 1], hidden=16, depth=1, out_dim=10)
    planted = jax.tree.map(lambda a: a + 0.5, arch.init(jax.random.key(7)))  # as if pretrained before a crash
    work_dir = work_dir_for(tmp_path / "a" / "children")
    pretrained_base(work_dir, arch, lambda: (planted, np.float32(1.0)))
    base, children = make_tree(cfg, tmp_path / "a", data=digits, progress=False)
    for a, b in zip(jax.tree.leaves(base.params), jax.tree.leaves(planted)):
        np.testing.assert_array_equal(np.asarray(a)[0], np.asarray(b))
    assert not work_dir.exists()  # removed once the tree is complete



def test_a_tree_of_split_classes_has_many_labels_its_id_and_refuses_too_many_per_child(tmp_path):
    from probegen_jax.errors import ZooFormatError
    from probegen_jax.make.trees import default_trees, make_tree

    cfg = TreeConfig(name="a", seed=0, **{**TINY, "dataset": "digits/3", "num_children": 8, "chunk_size": 8,
                                          "pretrain_steps": 5, "classes_per_child": (10, 15), "steps": (2, 4)})
    base, children = make_trees([cfg], tmp_path, tree_ids=[2], progress=False)["a"]
    # Asked again, the saved tree is loaded; asked with other settings, it is refused, naming them.
    again = make_trees([cfg], tmp_path, tree_ids=[2], progress=False)["a"][1]
    np.testing.assert_array_equal(again.target("classes"), children.target("classes"))
    with pytest.raises(ZooFormatError, match=r"other settings.*'steps': \(\[2, 4\], \[3, 4\]\)"):
        make_trees([dataclasses.replace(cfg, steps=(3, 4))], tmp_path, tree_ids=[2], progress=False)
    k = children.target("classes").sum(1)
    assert children.target("classes").shape == (8, 30) and k.min() >= 10 and k.max() <= 15
    assert children.meta["dataset"] == "digits/3" and children.meta["class_names"][:2] == ["0 0", "0 1"]
    assert children.meta["tree_id"] == 2 and np.all(children.target("tree") == 2) and base.target("tree")[0] == 2
    with pytest.raises(ValueError, match=r"classes_per_child \(20, 40\).*1\.\.30"):
        make_tree(dataclasses.replace(cfg, classes_per_child=(20, 40)), progress=False)
    with pytest.raises(ValueError, match=r"distinct.*ids \[1, 1\]"):
        make_trees([cfg, dataclasses.replace(cfg, name="b")], tree_ids=[1, 1], progress=False)
    with pytest.raises(ValueError, match="distinct names"):
        make_trees([cfg, cfg], progress=False)
    # The experiment's trees take the same fine-tuning overrides (the LoRA tree keeps its own).
    configs = default_trees(dataset="digits/3", fine_tuning={"classes_per_child": (10, 15), "steps": (2, 4)})
    assert [(c.name, c.classes_per_child, c.steps) for c in configs[:3]] == [
        ("vit", (10, 15), (2, 4)), ("mixer", (10, 15), (2, 4)), ("mlp", (10, 15), (2, 4))]
    assert isinstance(configs[3], LoraTreeConfig) and configs[3].dataset == "digits/3"


def test_a_damaged_lora_base_is_refused_naming_the_file(tmp_path):
    import io

    from probegen_jax.archs.lora import _load_base
    from probegen_jax.errors import IntegrityError
    from probegen_jax.io import write_checked_bytes

    buf = io.BytesIO()
    np.savez(buf, w=np.arange(6.0))
    write_checked_bytes(tmp_path / "base.npz", buf.getvalue())
    np.testing.assert_array_equal(_load_base(str(tmp_path / "base.npz"))["w"], np.arange(6.0))
    data = bytearray((tmp_path / "base.npz").read_bytes())
    data[-40] ^= 1  # one bit inside the array data
    (tmp_path / "damaged.npz").write_bytes(bytes(data))
    (tmp_path / "damaged.npz.sha256").write_text((tmp_path / "base.npz.sha256").read_text())
    with pytest.raises(IntegrityError, match="damaged.npz"):
        _load_base(str(tmp_path / "damaged.npz"))


def test_probex_runs_per_tree_reuse_and_load_without_their_zoo(trees, tmp_path):
    """A forest trained twice on one folder is trained once; each tree's run rebuilds from the run
    folder alone (its layer and tensor layout were pinned when it trained)."""
    from probegen_jax.methods.contract import predict
    from probegen_jax.methods.probex.method import train_forest
    from probegen_jax.methods.run import load_run

    _, children = trees
    cfg = dataclasses.replace(TRAIN, epochs=20)
    first = train_forest(children, tmp_path, spec={"rank": 8}, cfg=cfg, progress=False)
    again = train_forest(children, tmp_path, spec={"rank": 8}, cfg=cfg, progress=False)
    assert again["test"] == first["test"] and again["layers"] == first["layers"]
    loaded = load_run(tmp_path / "a")
    assert loaded.spec.layer == first["layers"]["a"] and loaded.spec.layout == "library"
    np.testing.assert_allclose(predict(loaded, children["a"]), predict(first["runs"]["a"], children["a"]),
                               rtol=1e-6, atol=1e-6)
