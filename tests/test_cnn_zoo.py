"""Small CNN zoos: the architecture's layout and padding, determinism, chunking, resumption,
divergence, and ProbeGen predicting the networks' test accuracy."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import zoo_shared_by_workers

from probegen_jax.archs import make_arch
from probegen_jax.data import ImageDataset, load_digits
from probegen_jax.methods.contract import train
from probegen_jax.training.loop import TrainConfig
from probegen_jax.make import cnn
from probegen_jax.zoo import Zoo, load_zoo, save_zoo
from probegen_jax.make.cnn import CNNTraining, SmallCNNZooConfig, make_small_cnn_zoo, zoo_training_data
from probegen_jax.zoo.zoo import at_epoch

TINY = SmallCNNZooConfig(
    training=CNNTraining(dataset="digits", train_size=256, test_size=128, train_eval_size=128, epochs=(0, 1, 2)),
    num_networks=8, chunk_size=4, seed=5)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def tiny_zoo(digits, tmp_path_factory):
    return zoo_shared_by_workers(tmp_path_factory, "cnn_tiny_zoo",
                                 lambda: make_small_cnn_zoo(TINY, data=digits, progress=False))


def assert_zoos_equal(a, b, **tol):
    check = (lambda x, y: np.testing.assert_allclose(x, y, **tol)) if tol else np.testing.assert_array_equal
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        check(np.asarray(x), np.asarray(y))
    assert a.targets.keys() == b.targets.keys()
    for k in a.targets:
        check(a.targets[k], b.targets[k])
    for k in a.splits:
        np.testing.assert_array_equal(a.splits[k], b.splits[k])


def test_small_cnn_has_the_unterthiner_layout():
    arch = make_arch("small_cnn")
    shapes = jax.tree.map(lambda s: s.shape, arch.param_shapes())
    assert shapes == {"conv0": {"kernel": (3, 3, 1, 16), "bias": (16,)}, "conv1": {"kernel": (3, 3, 16, 16), "bias": (16,)},
                      "conv2": {"kernel": (3, 3, 16, 16), "bias": (16,)}, "dense0": {"kernel": (16, 10), "bias": (10,)}}
    assert arch.num_params() == 4970
    x = jax.random.uniform(jax.random.key(0), (5, 28, 28, 1), minval=-1, maxval=1)
    assert arch.apply(arch.init(jax.random.key(1)), x).shape == (5, 10)


def test_per_network_activation_leaf_selects_the_activation():
    mixed = make_arch("small_cnn", input_shape=(8, 8, 1), activation=["relu", "tanh"])
    params = mixed.init(jax.random.key(0))
    weights = {k: v for k, v in params.items() if k != "activation_id"}
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
    for i, name in enumerate(["relu", "tanh"]):
        plain = make_arch("small_cnn", input_shape=(8, 8, 1), activation=name)
        got = mixed.apply({**weights, "activation_id": jnp.int32(i)}, x)
        np.testing.assert_allclose(got, plain.apply(weights, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("size,kernel,stride", [(8, 3, 2), (7, 3, 1), (28, 5, 2), (9, 7, 2), (10, 3, 3), (6, (3, 5), 2)])
def test_convolution_by_kernel_taps_matches_xla_in_values_and_gradients(size, kernel, stride, padding):
    from probegen_jax.archs.cnn import conv2d
    from probegen_jax.errors import UnknownNameError

    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = jax.random.normal(jax.random.key(0), (3, size, size + 1, 4))
    w = jax.random.normal(jax.random.key(1), (kh, kw, 4, 5))
    conv = jax.jit(conv2d, static_argnums=2, static_argnames=("impl", "padding"))
    taps, xla = (conv(x, w, stride, padding=padding, impl=impl) for impl in ("taps", "xla"))
    out = ((-(-size // stride), -(-(size + 1) // stride)) if padding == "same"
           else ((size - kh) // stride + 1, (size + 1 - kw) // stride + 1))  # TF's output sizes
    assert taps.shape == xla.shape == (3, *out, 5)
    np.testing.assert_allclose(taps, xla, rtol=1e-4, atol=1e-4)
    probe = jax.random.normal(jax.random.key(2), xla.shape)
    grads = [jax.jit(jax.grad(lambda x, w, i=impl: jnp.sum(conv2d(x, w, stride, padding=padding, impl=i) * probe),
                              (0, 1)))(x, w)
             for impl in ("taps", "xla")]
    for g_taps, g_xla in zip(*grads, strict=True):
        np.testing.assert_allclose(g_taps, g_xla, rtol=1e-4, atol=1e-4)
    with pytest.raises(UnknownNameError, match="unknown convolution implementation 'fft'"):
        conv2d(x, w, stride, impl="fft")
    with pytest.raises(UnknownNameError, match="unknown convolution padding 'full'"):
        conv2d(x, w, stride, padding="full")


def test_small_cnn_padding_sets_the_feature_map_sizes():
    """valid: 28 -> 13 -> 6 -> 2 and 32 -> 15 -> 7 -> 3 (the published zoo); same: 28 -> 14 -> 7 -> 4.
    Global average pooling over the last map: a kernel that is zero off-centre on a constant input
    shows how many positions (and so which padding) the network used."""
    from probegen_jax.archs.cnn import conv_layers_of, conv_output_sizes
    from probegen_jax.errors import ShapeMismatchError, UnknownNameError

    for size, padding, sizes in ((28, "valid", [13, 6, 2]), (32, "valid", [15, 7, 3]), (28, "same", [14, 7, 4])):
        arch = make_arch("small_cnn", input_shape=(size, size, 1), padding=padding)
        assert conv_output_sizes(size, conv_layers_of(arch)) == sizes and arch.num_params() == 4970
    # One input pixel at the bottom-right corner: a valid stack on 28x28 never reads row/column 27
    # (13 windows of 3 at stride 2 cover 0..26), a same stack does.
    x = np.zeros((1, 28, 28, 1), np.float32)
    x[0, 27, 27, 0] = 1.0
    outputs = {}
    for padding in ("valid", "same"):
        arch = make_arch("small_cnn", input_shape=(28, 28, 1), padding=padding, activation="tanh")
        params = arch.init(jax.random.key(0))
        outputs[padding] = np.asarray(arch.apply(params, x) - arch.apply(params, np.zeros_like(x)))
    assert np.abs(outputs["valid"]).max() == 0.0 and np.abs(outputs["same"]).max() > 0.0
    with pytest.raises(ShapeMismatchError, match=r"small_cnn: input \(8, 8, 1\) is too small for three stride-2 3x3 "
                                                 r"valid convolutions"):
        make_arch("small_cnn", input_shape=(8, 8, 1), padding="valid")
    with pytest.raises(UnknownNameError, match="unknown convolution padding 'full'"):
        make_arch("small_cnn", padding="full")


def test_zoos_saved_before_padding_was_recorded_load_as_same(tmp_path):
    arch = make_arch("small_cnn", input_shape=(8, 8, 1), padding="same")
    params = jax.vmap(arch.init)(jax.random.split(jax.random.key(0), 3))
    old = dataclasses.replace(arch, config={k: v for k, v in arch.config.items() if k != "padding"})
    save_zoo(Zoo(arch=old, params=params, targets={}), tmp_path / "old")
    loaded = load_zoo(tmp_path / "old")
    assert loaded.arch.config["padding"] == "same"
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    np.testing.assert_array_equal(loaded.arch.apply(jax.tree.map(lambda a: a[1], loaded.params), x),
                                  arch.apply(jax.tree.map(lambda a: a[1], params), x))


def test_generator_pads_valid_where_the_input_allows_and_same_on_digits(tiny_zoo):
    assert tiny_zoo.arch.config["padding"] == "same"  # 8x8 digits: too small for valid
    assert tiny_zoo.meta["padding"]["padding"] == "same" and "8x8 inputs are too small" in tiny_zoo.meta["padding"]["reason"]
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (96, 16, 16, 1)).astype(np.float32)
    data = ImageDataset("noise16", images[:64], rng.integers(0, 3, 64), images[64:], rng.integers(0, 3, 32),
                        ("a", "b", "c"))
    cfg = SmallCNNZooConfig(training=CNNTraining(dataset="noise16", train_size=64, test_size=32, train_eval_size=32,
                                                 epochs=(0, 1), batch_size=16), num_networks=3, chunk_size=3, seed=1)
    zoo = make_small_cnn_zoo(cfg, data=data, progress=False)
    assert zoo.arch.config["padding"] == "valid" and zoo.meta["padding"]["padding"] == "valid"
    # The accuracies training recorded are those of the saved arch (valid) on the test images.
    tdata = cnn.training_data(data, cfg.training, cfg.seed)
    logits = jax.vmap(zoo.arch.apply, in_axes=(0, None))(zoo.params, jnp.asarray(tdata.test_images))
    accuracy = (np.argmax(np.asarray(logits), -1) == tdata.test_labels).mean(1)
    np.testing.assert_allclose(accuracy, zoo.targets["test_accuracy"], atol=1e-6)
    forced = make_small_cnn_zoo(dataclasses.replace(cfg, padding="same", num_networks=1, chunk_size=1), data=data,
                                progress=False)
    assert forced.arch.config["padding"] == "same" and forced.meta["padding"]["reason"] == "chosen in the zoo's config"


def test_zoo_layout_checkpoints_and_splits(tiny_zoo):
    epochs = TINY.training.epochs
    assert len(tiny_zoo) == TINY.num_networks * len(epochs) - tiny_zoo.meta["diverged"]["count"] * len(epochs)
    meta = tiny_zoo.meta  # how long generation took, and how many cores it kept busy
    assert 0 < meta["generation_cpu_seconds"] and 0 < meta["cores_busy"] <= os.cpu_count() + 0.5
    assert abs(meta["cores_busy"] * meta["generation_seconds"] - meta["generation_cpu_seconds"]) < 0.05 * meta["generation_cpu_seconds"] + 0.02
    t = tiny_zoo.targets
    for name in ("network", "epoch", "test_accuracy", "train_accuracy", "test_loss", "train_loss", "learning_rate",
                 "optimizer", "activation", "init_std", "l2", "dropout", "train_fraction"):
        assert t[name].shape == (len(tiny_zoo),)
    np.testing.assert_array_equal(t["epoch"][: len(epochs)], epochs)
    # Accuracies are counts of the test images the meta records, which are the zoo's own test images.
    test_images = tiny_zoo.meta["test_images"]
    assert test_images == len(zoo_training_data(tiny_zoo).test_labels)
    correct = t["test_accuracy"] * test_images
    np.testing.assert_allclose(correct, np.round(correct), atol=1e-3)
    # All checkpoints of a network are in one split; splits are disjoint and cover the zoo.
    owner = {}
    for split, idx in tiny_zoo.splits.items():
        for net in np.unique(t["network"][idx]):
            assert owner.setdefault(int(net), split) == split
    assert sorted(np.concatenate(list(tiny_zoo.splits.values()))) == list(range(len(tiny_zoo)))
    final = at_epoch(tiny_zoo)
    assert set(final.targets["epoch"]) == {epochs[-1]}
    for split, idx in final.splits.items():
        assert set(final.targets["network"][idx]) == set(t["network"][tiny_zoo.splits[split]])
    assert np.all((t["test_accuracy"] >= 0) & (t["test_accuracy"] <= 1))


def test_training_improves_over_initialisation(digits):
    cfg = dataclasses.replace(TINY, training=dataclasses.replace(
        TINY.training, learning_rate=(1e-2, 1e-2), optimizers=("adam",), dropout=(0.0, 0.0),
        init_std=(0.1, 0.1), train_fractions=(1.0,)), num_networks=4)
    zoo = make_small_cnn_zoo(cfg, data=digits, progress=False)
    acc = zoo.targets["test_accuracy"].reshape(4, -1)
    assert acc[:, 0].mean() < 0.25 and acc[:, -1].mean() > acc[:, 0].mean() + 0.2, acc


def test_same_zoo_for_any_chunk_size_and_after_resuming(tiny_zoo, digits, tmp_path, monkeypatch):
    out = tmp_path / "zoo"
    real = cnn.train_network_chunk
    calls = []

    def crash_on_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    cfg = dataclasses.replace(TINY, chunk_size=3)  # 3 + 3 + 2 networks
    monkeypatch.setattr(cnn, "train_network_chunk", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        make_small_cnn_zoo(cfg, out, data=digits, progress=False)
    assert not out.exists() and len(list((tmp_path / "zoo.partial").glob("chunk_*"))) == 1
    monkeypatch.setattr(cnn, "train_network_chunk", real)
    resumed = make_small_cnn_zoo(cfg, out, data=digits, progress=False)
    assert_zoos_equal(resumed, make_small_cnn_zoo(cfg, data=digits, progress=False))  # bit for bit
    assert_zoos_equal(load_zoo(out), resumed)
    # Chunks of 3 vs 4: the same networks; XLA may round the vmapped sums differently in the last bit.
    assert_zoos_equal(resumed, tiny_zoo, rtol=1e-4, atol=1e-5)


def test_diverged_networks_are_excluded_and_recorded(digits):
    cfg = dataclasses.replace(TINY, training=dataclasses.replace(
        TINY.training, learning_rate=(1e-3, 1e8), optimizers=("sgd",), epochs=(0, 1)), num_networks=8)
    zoo = make_small_cnn_zoo(cfg, data=digits, progress=False)
    diverged = zoo.meta["diverged"]
    assert 0 < diverged["count"] < 8
    assert len(diverged["networks"]) == diverged["count"]
    assert not set(diverged["networks"]) & set(zoo.targets["network"].tolist())
    assert len(zoo) == (8 - diverged["count"]) * 2
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(zoo.params))


def test_probegen_ranks_cnn_test_accuracy(digits):
    cfg = SmallCNNZooConfig(training=CNNTraining(dataset="digits", train_size=512, test_size=128,
                                                 train_eval_size=128, epochs=(0, 2)),
                            num_networks=120, chunk_size=120, seed=1)
    zoo = at_epoch(make_small_cnn_zoo(cfg, data=digits, progress=False))
    run = train("probegen", zoo, {"num_probes": 16, "head_hidden": 64, "head_layers": 3, "response": "raw"},
                TrainConfig(epochs=25, batch_size=16, learning_rate=1e-3), target="test_accuracy", checkpoint="all",
                progress=False)
    assert run.task.name == "regression"
    assert run.result.test["kendall_tau"] > 0.3, run.result.test
