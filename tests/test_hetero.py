"""Heterogeneous zoos: probing in the zoo's own order, packing, storage, bucketed batches, and a
small CNN Wild Park-style zoo trained and probed end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probegen_jax.archs import make_arch
from probegen_jax.data import load_digits
from probegen_jax.errors import ShapeMismatchError
from probegen_jax.methods.probing.image_sources import image_probe_source
from probegen_jax.methods.contract import evaluate, train
from probegen_jax.training.loop import TrainConfig
from probegen_jax.zoo import Zoo
from probegen_jax.make.cnn import CNNTraining
from probegen_jax.methods.probing.hetero import (
    bucket_batch_order,
    hetero_probing_learner,
    hetero_respond,
    probe_hetero,
)
from probegen_jax.zoo.hetero import HeteroZoo, load_any_zoo, save_hetero_zoo
from probegen_jax.make.wild import WildZooConfig, make_wild_zoo, sample_architectures
from probegen_jax.zoo.zoo import at_epoch

LAYERS = [
    [{"channels": 4, "kernel": 3, "stride": 2, "activation": "relu"}],
    [{"channels": 8, "kernel": 5, "stride": 2, "activation": "tanh"},
     {"channels": 8, "kernel": 3, "stride": 1, "activation": "gelu", "residual": True}],
    [{"channels": 4, "kernel": 7, "stride": 2, "activation": "leaky_relu"},
     {"channels": 16, "kernel": 3, "stride": 2, "activation": "relu"}],
]


@pytest.fixture(scope="module")
def hzoo():
    """Three random-initialised buckets (3, 4, 5 networks) in a shuffled global order."""
    buckets = []
    for b, layers in enumerate(LAYERS):
        arch = make_arch("wild_cnn", layers=layers, input_shape=(8, 8, 1))
        n = 3 + b
        params = jax.vmap(arch.init)(jax.random.split(jax.random.key(b), n))
        buckets.append(Zoo(arch, params, {"score": np.arange(n, dtype=np.float32) + 10 * b}))
    bucket = np.concatenate([np.full(len(z), i) for i, z in enumerate(buckets)])
    position = np.concatenate([np.arange(len(z)) for z in buckets])
    order = np.random.default_rng(0).permutation(len(bucket))
    splits = {"train": np.arange(0, 6), "val": np.arange(6, 9), "test": np.arange(9, 12)}
    return HeteroZoo(tuple(buckets), bucket[order], position[order], splits, {"default_target": "score"})


def alone(hzoo, i, probes):
    zoo = hzoo.buckets[hzoo.bucket[i]]
    params = jax.tree.map(lambda a: a[hzoo.position[i]], zoo.params)
    return np.asarray(zoo.arch.apply(params, probes))


def test_probing_returns_responses_in_the_zoos_order(hzoo):
    probes = jax.random.uniform(jax.random.key(9), (5, 8, 8, 1), minval=-1, maxval=1)
    responses = probe_hetero(hzoo, probes)
    assert responses.shape == (len(hzoo), 5, 10)
    for i in range(len(hzoo)):
        np.testing.assert_allclose(responses[i], alone(hzoo, i, probes), rtol=1e-5, atol=1e-5)
    targets = hzoo.target("score")
    for i in range(len(hzoo)):
        assert targets[i] == hzoo.position[i] + 10 * hzoo.bucket[i]


def test_packed_inputs_give_the_same_responses_for_mixed_batches(hzoo):
    probes = jax.random.uniform(jax.random.key(1), (3, 8, 8, 1), minval=-1, maxval=1)
    idx = np.arange(len(hzoo))
    packed = hzoo.packed(idx)
    assert packed["weights"].shape == (len(hzoo), max(a.num_params() for a in hzoo.archs))
    got = jax.jit(hetero_respond(hzoo.archs))(probes, jax.tree.map(jnp.asarray, packed))
    np.testing.assert_allclose(got, probe_hetero(hzoo, probes), rtol=1e-5, atol=1e-5)


def test_keep_save_load(hzoo, tmp_path):
    mask = np.arange(len(hzoo)) % 3 != 0
    kept = hzoo.keep(mask)
    assert len(kept) == mask.sum()
    np.testing.assert_array_equal(kept.target("score"), hzoo.target("score")[mask])
    for split, idx in kept.splits.items():
        np.testing.assert_array_equal(kept.target("score")[idx],
                                      hzoo.target("score")[hzoo.splits[split][mask[hzoo.splits[split]]]])
    save_hetero_zoo(kept, tmp_path / "h")
    loaded = load_any_zoo(tmp_path / "h")
    assert isinstance(loaded, HeteroZoo)
    np.testing.assert_array_equal(loaded.bucket, kept.bucket)
    np.testing.assert_array_equal(loaded.position, kept.position)
    probes = jnp.ones((2, 8, 8, 1)) * 0.5
    np.testing.assert_allclose(probe_hetero(loaded, probes), probe_hetero(kept, probes), rtol=1e-6)
    with pytest.raises(FileExistsError):
        save_hetero_zoo(kept, tmp_path / "h")


def test_bucket_batch_order_makes_homogeneous_batches():
    buckets = np.repeat(np.arange(4), [8, 8, 8, 8])
    order = bucket_batch_order(buckets)(0, 3, len(buckets), 4)
    assert order.shape == (8, 4)
    assert sorted(order.ravel()) == list(range(32))
    assert all(len(set(buckets[row])) == 1 for row in order)
    np.testing.assert_array_equal(order, bucket_batch_order(buckets)(0, 3, len(buckets), 4))


def test_mismatched_source_is_refused(hzoo):
    with pytest.raises(ShapeMismatchError, match="takes inputs of shape|take inputs of shape"):
        hetero_probing_learner(hzoo, image_probe_source("vanilla", 4, (28, 28, 1)), 1)


def test_wild_zoo_generation_and_training():
    cfg = WildZooConfig(training=CNNTraining(dataset="digits", train_size=256, test_size=64, train_eval_size=64,
                                             epochs=(0, 1), init_std=(0.05, 0.2)),
                        num_architectures=2, networks_per_architecture=5, max_layers=3, seed=2)
    zoo = make_wild_zoo(cfg, data=load_digits(), progress=False)
    archs = sample_architectures(cfg)
    assert len(archs) == 2 and archs[0] != archs[1]
    assert [b.arch.config["layers"] for b in zoo.buckets] == archs
    assert len(zoo) == 2 * 5 * 2 - 2 * zoo.meta["diverged"]["count"]
    np.testing.assert_array_equal(np.unique(zoo.target("network")), np.setdiff1d(np.arange(10),
                                                                                   zoo.meta["diverged"]["networks"]))
    final = at_epoch(zoo)
    run = train("synthetic", final, {"num_probes": 4, "head_hidden": 16, "head_layers": 2},
                TrainConfig(epochs=2, batch_size=2), target="test_accuracy", progress=False)
    assert run.task.name == "regression" and np.isfinite(run.result.val["r2"])


def test_statnn_features_of_a_heterogeneous_zoo_follow_the_zoos_order(hzoo):
    from probegen_jax.methods.baselines import STATS_PER_TENSOR, hetero_statnn_features, statnn_features

    feats = hetero_statnn_features(hzoo)
    slots = max(len(jax.tree.leaves(z.params)) for z in hzoo.buckets)
    assert feats.shape == (len(hzoo), slots * (STATS_PER_TENSOR + 1))
    for i in range(len(hzoo)):
        zoo = hzoo.buckets[hzoo.bucket[i]]
        one = jax.tree.map(lambda a: a[hzoo.position[i]][None], zoo.params)
        own = np.asarray(statnn_features(one))[0].reshape(-1, STATS_PER_TENSOR)
        row = feats[i].reshape(slots, STATS_PER_TENSOR + 1)
        np.testing.assert_allclose(row[: len(own), :-1], own, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(row[:, -1], np.arange(slots) < len(own))


def test_statnn_baselines_learn_on_a_heterogeneous_zoo():
    """Each network's weights are scaled by s in [0.5, 2]; the StatNNs read s from the statistics."""
    from probegen_jax.errors import UnknownNameError

    buckets = []
    for b, layers in enumerate(LAYERS):
        arch = make_arch("wild_cnn", layers=layers, input_shape=(8, 8, 1))
        scale = np.random.default_rng(b).uniform(0.5, 2.0, 40).astype(np.float32)
        params = jax.vmap(arch.init)(jax.random.split(jax.random.key(b), 40))
        params = jax.tree.map(lambda a: a * scale.reshape(-1, *[1] * (a.ndim - 1)), params)
        buckets.append(Zoo(arch, params, {"scale": scale}))
    order = np.random.default_rng(3).permutation(120)
    zoo = HeteroZoo(tuple(buckets), np.repeat(np.arange(3), 40)[order], np.tile(np.arange(40), 3)[order],
                    {"train": np.arange(80), "val": np.arange(80, 100), "test": np.arange(100, 120)}, {})
    for name in ("statnn", "statnn_gbt"):
        run = train(name, zoo, None, TrainConfig(epochs=40, batch_size=16), target="scale", progress=False)
        assert run.task.name == "regression"
        assert run.result.test["r2"] > 0.5 and run.result.test["kendall_tau"] > 0.5, (name, run.result.test)  # chance: 0
        assert evaluate(run, zoo, "test") == pytest.approx(run.result.test)
    with pytest.raises(UnknownNameError, match="one architecture"):
        train("nfn", zoo, target="scale")
