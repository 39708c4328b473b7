"""The training loop on the digits INR zoo: learning, resumption, checkpoint safety, data parallelism."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probegen_jax.training.loop as train
from probegen_jax.errors import CheckpointError, MissingSplitError, ShapeMismatchError
from probegen_jax.parallel import zoo_mesh
from probegen_jax.methods.probing.probegen import probing_learner
from probegen_jax.methods.probing.sources import coordinate_probe_source
from probegen_jax.training.tasks import classification
from probegen_jax.training.loop import TrainConfig, batch_order, evaluate, fit

TASK = classification(10)
# A small head keeps the mechanics tests quick; the learning test uses ProbeGen's own head.
SMALL_HEAD = dict(head_hidden=64, head_layers=3)
SHORT = TrainConfig(epochs=4, batch_size=32, learning_rate=1e-3, seed=0)


@pytest.fixture(scope="module")
def splits(digits_zoo):
    return digits_zoo.split_arrays("label")


def small_learner(zoo, kind="probegen"):
    return probing_learner(zoo.arch, coordinate_probe_source(kind, 32), 10, **SMALL_HEAD)


def assert_trees_close(a, b, **tol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def test_probegen_learns_to_classify_digit_inrs(digits_zoo, splits):
    learner = probing_learner(digits_zoo.arch, coordinate_probe_source("probegen", 32), 10)
    result = fit(learner, TASK, splits, TrainConfig(epochs=10, learning_rate=1e-3, seed=0), progress=False)

    assert result.test["accuracy"] > 0.5  # chance is 0.1
    assert result.val["accuracy"] > 0.5
    assert 0 <= result.best_epoch < 10 and len(result.history) == 10
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.val["accuracy"] == max(h["val_accuracy"] for h in result.history)
    assert result.history[result.best_epoch]["val_accuracy"] == result.val["accuracy"]

    # The reported test accuracy is that of the returned params, computed here by hand.
    test_params, test_labels = splits["test"]
    logits = np.asarray(learner.apply(result.params, test_params))
    assert logits.shape == (len(test_labels), 10)
    assert result.test["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == test_labels), abs=1e-9)


def test_evaluate_in_blocks_equals_one_call(digits_zoo, splits):
    learner = small_learner(digits_zoo)
    params = learner.init(jax.random.key(1))
    inputs, labels = splits["val"]  # 150 rows: blocks of 64 leave a remainder
    want = np.asarray(learner.apply(params, inputs))
    got = train.predict(learner.apply, params, inputs, batch_size=64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    metrics = evaluate(learner, TASK, params, splits["val"], batch_size=64)
    assert metrics["accuracy"] == pytest.approx(np.mean(want.argmax(-1) == labels))


def test_batch_order_depends_only_on_seed_and_epoch():
    a = batch_order(0, 3, 100, 32)
    assert a.shape == (3, 32) and len(np.unique(a)) == 96 and a.max() < 100
    np.testing.assert_array_equal(a, batch_order(0, 3, 100, 32))
    assert not np.array_equal(a, batch_order(0, 4, 100, 32))
    assert not np.array_equal(a, batch_order(1, 3, 100, 32))


def test_interrupted_training_resumes_to_the_same_result(digits_zoo, splits, tmp_path, monkeypatch):
    learner = small_learner(digits_zoo)
    full = fit(learner, TASK, splits, SHORT, checkpoint_dir=tmp_path / "full", progress=False)

    real = train.batch_order
    seen = []

    def interrupting(seed, epoch, n, batch_size):
        seen.append(epoch)
        if epoch == 2:
            raise KeyboardInterrupt
        return real(seed, epoch, n, batch_size)

    monkeypatch.setattr(train, "batch_order", interrupting)
    with pytest.raises(KeyboardInterrupt):
        fit(learner, TASK, splits, SHORT, checkpoint_dir=tmp_path / "run", progress=False)
    assert seen == [0, 1, 2]
    monkeypatch.undo()

    seen.clear()
    monkeypatch.setattr(train, "batch_order", lambda *a: (seen.append(a[1]), real(*a))[1])
    resumed = fit(learner, TASK, splits, SHORT, checkpoint_dir=tmp_path / "run", progress=False)
    assert seen == [2, 3], "resumption must start at the first unfinished epoch"

    assert resumed.best_epoch == full.best_epoch
    assert_trees_close(resumed.params, full.params, rtol=1e-6, atol=1e-6)
    assert resumed.test == full.test and resumed.val == full.val
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    for a, b in zip(resumed.history, full.history):
        assert a["val_accuracy"] == b["val_accuracy"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)


def test_finished_run_is_not_trained_again(digits_zoo, splits, tmp_path, monkeypatch):
    learner = small_learner(digits_zoo)
    cfg = dataclasses.replace(SHORT, epochs=2)
    first = fit(learner, TASK, splits, cfg, checkpoint_dir=tmp_path / "ckpt", progress=False)

    def no_training(*args):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(train, "batch_order", no_training)
    again = fit(learner, TASK, splits, cfg, checkpoint_dir=tmp_path / "ckpt", progress=False)
    assert again.best_epoch == first.best_epoch and again.test == first.test
    assert_trees_close(again.params, first.params, rtol=0, atol=0)


def test_checkpoint_of_other_settings_is_refused(digits_zoo, splits, tmp_path):
    learner = small_learner(digits_zoo)
    cfg = dataclasses.replace(SHORT, epochs=1)
    fit(learner, TASK, splits, cfg, checkpoint_dir=tmp_path / "ckpt", progress=False)

    with pytest.raises(CheckpointError) as err:
        fit(learner, TASK, splits, dataclasses.replace(cfg, learning_rate=3e-4), checkpoint_dir=tmp_path / "ckpt",
            progress=False)
    assert str((tmp_path / "ckpt").absolute()) in str(err.value)
    assert "learning_rate" in str(err.value)

    other = probing_learner(digits_zoo.arch, coordinate_probe_source("probegen", 32), 10, head_hidden=32,
                            head_layers=3)
    with pytest.raises(CheckpointError) as err:
        fit(other, TASK, splits, cfg, checkpoint_dir=tmp_path / "ckpt", progress=False)
    assert str((tmp_path / "ckpt").absolute()) in str(err.value)


def test_training_on_8_devices_equals_one_device(digits_zoo, splits, eight_devices):
    learner = small_learner(digits_zoo)
    cfg = dataclasses.replace(SHORT, epochs=2, batch_size=32)
    single = fit(learner, TASK, splits, cfg, progress=False)
    sharded = fit(learner, TASK, splits, cfg, mesh=zoo_mesh(8), progress=False)
    assert_trees_close(sharded.params, single.params, rtol=1e-4, atol=1e-4)
    assert sharded.best_epoch == single.best_epoch
    assert sharded.val["accuracy"] == pytest.approx(single.val["accuracy"], abs=1 / 150 + 1e-9)
    assert sharded.test["accuracy"] == pytest.approx(single.test["accuracy"], abs=1 / 200 + 1e-9)
    for a, b in zip(sharded.history, single.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    # and the training did something: params moved away from their initialisation
    init = learner.init(jax.random.key(cfg.seed))
    moved = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(init)))
    assert moved > 1e-3


def test_batch_not_divisible_by_mesh_is_refused(digits_zoo, splits, eight_devices):
    with pytest.raises(ValueError, match="multiple"):
        fit(small_learner(digits_zoo), TASK, splits, dataclasses.replace(SHORT, batch_size=12),
            mesh=zoo_mesh(8), progress=False)


def test_missing_val_split_is_refused(digits_zoo, splits):
    no_val = {k: v for k, v in splits.items() if k != "val"}
    with pytest.raises(MissingSplitError) as err:
        fit(small_learner(digits_zoo), TASK, no_val, SHORT, progress=False)
    assert "'val'" in str(err.value) and "train" in str(err.value)


def test_split_with_mismatched_sizes_is_refused(digits_zoo, splits):
    params, labels = splits["val"]
    bad = {**splits, "val": (params, labels[:-1])}
    with pytest.raises(ShapeMismatchError, match="'val'"):
        fit(small_learner(digits_zoo), TASK, bad, SHORT, progress=False)


@pytest.mark.parametrize("kind", ["probegen", "vanilla"])
def test_scanned_and_looped_epochs_take_the_same_steps(digits_zoo, splits, kind):
    learner = small_learner(digits_zoo, kind)
    inputs, targets = splits["train"]
    n = len(targets)
    optimizer = train.make_optimizer(SHORT, n // 32)
    order = jnp.asarray(batch_order(0, 1, n, 32))
    results = []
    for scan in (True, False):
        init = learner.init(jax.random.key(0))
        state = train.TrainState(init, optimizer.init(init))
        epoch = train.epoch_function(learner, TASK, optimizer, scan=scan)
        results.append(epoch(state, (inputs, jnp.asarray(targets)), order, jnp.asarray(1)))
    (scanned, loss_s), (looped, loss_l) = results
    assert_trees_close(scanned.params, looped.params, rtol=1e-4, atol=1e-5)
    assert float(loss_s) == pytest.approx(float(loss_l), rel=1e-5)
    init = learner.init(jax.random.key(0))  # the epochs donated theirs
    moved = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(scanned.params), jax.tree.leaves(init)))
    assert moved > 1e-4


def test_epochs_are_scanned_unless_a_cpu_step_convolves(digits_zoo, splits):
    from probegen_jax.archs import make_arch
    from probegen_jax.methods.probing.spec import ProbingSpec

    def step_args(arch, learner, n=4):
        params = jax.vmap(arch.init)(jax.random.split(jax.random.key(0), n))
        objective = jax.value_and_grad(train.supervised_objective(learner, TASK))
        return objective, (learner.init(jax.random.key(1)), (params, jnp.zeros(n, jnp.int32)), jax.random.key(2))

    cnn = make_arch("small_cnn", input_shape=(8, 8, 1))
    image_generator = step_args(cnn, ProbingSpec(source="probegen", num_probes=4).make_learner(cnn, 10)[0])
    image_vanilla = step_args(cnn, ProbingSpec(source="vanilla", num_probes=4).make_learner(cnn, 10)[0])
    inr = step_args(digits_zoo.arch, small_learner(digits_zoo))
    assert not train.prefers_scan(image_generator[0], *image_generator[1], platform="cpu")  # transposed convs
    assert train.prefers_scan(image_generator[0], *image_generator[1], platform="gpu")
    assert train.prefers_scan(image_vanilla[0], *image_vanilla[1], platform="cpu")  # CPU convs are kernel taps
    assert train.prefers_scan(inr[0], *inr[1], platform="cpu")
    assert not train.prefers_scan(inr[0], *inr[1], platform="cpu", devices=2)  # cross-device sums in a loop body
    assert train.prefers_scan(inr[0], *inr[1], platform="tpu", devices=8)
