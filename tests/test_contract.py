"""The method contract: every method trains, saves, loads, evaluates and predicts the same way,
and the command line trains exactly what Python trains."""

from __future__ import annotations

import dataclasses
import json
import warnings

import jax
import numpy as np
import optax
import pytest

import probegen_jax as pj
from probegen_jax.archs import make_arch
from probegen_jax.cli import main
from probegen_jax.errors import CheckpointError, UnknownNameError
from probegen_jax.methods.registry import get_method
from probegen_jax.zoo.zoo import TaskDefaults, task_defaults

ARCH = make_arch("siren", in_dim=2, hidden=8, depth=2, out_dim=1)
QUICK = pj.TrainConfig(epochs=2, batch_size=8, eval_batch_size=16)
SMALL = {"probegen": {"num_probes": 4, "head_hidden": 16, "head_layers": 2},
         "vanilla": {"num_probes": 4, "head_hidden": 16, "head_layers": 2},
         "synthetic": {"num_probes": 4, "head_hidden": 16, "head_layers": 2},
         "statnn": {"hidden": 16, "layers": 2}, "flat": {"hidden": 16, "layers": 2}, "statnn_gbt": {"max_iter": 20},
         "nfn": {"channels": (4,), "head_hidden": 16, "head_layers": 2}}
# One method of each way of keeping state: params only (probing), standardisation constants (flat;
# statnn shares its code), fitted-tree constants, per-layer scales. The other probing sources are
# trained below through the CLI and the reuse test; every baseline in test_baselines_train.py.
ROUND_TRIP = ("probegen", "flat", "statnn_gbt", "nfn")


def tiny_zoo(n: int = 120, *, seed: int = 0, meta: dict | None = None) -> pj.Zoo:
    """Random SIRENs whose label is the scale their weights were drawn at (learnable, not noise)."""
    labels = np.arange(n, dtype=np.int32) % 4
    scales = np.asarray([0.5, 1.0, 2.0, 4.0], np.float32)[labels]
    params = jax.tree.map(lambda a: a * scales.reshape(-1, *[1] * (a.ndim - 1)),
                          jax.vmap(ARCH.init)(jax.random.split(jax.random.key(seed), n)))
    order = np.random.default_rng(seed).permutation(n)
    splits = {"train": order[: n * 2 // 3], "val": order[n * 2 // 3: n * 5 // 6], "test": order[n * 5 // 6:]}
    return pj.Zoo(ARCH, params, {"label": labels}, splits, {"num_classes": 4, **(meta or {})})


@pytest.fixture(scope="module")
def zoo() -> pj.Zoo:
    return tiny_zoo()


def leaves_equal(a, b) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_methods_save_load_evaluate_and_predict_alike(zoo, tmp_path, name):
    run = pj.train(name, zoo, SMALL[name], QUICK, progress=False)
    assert run.method == name and run.task.name == "classification" and run.target == "label"
    assert pj.evaluate(run, zoo, "test") == pytest.approx(run.result.test)  # test reported at the kept params
    pj.save_run(run, tmp_path / "run")
    loaded = pj.load_run(tmp_path / "run")  # no zoo needed: the architecture is registered
    assert loaded.spec == run.spec and loaded.result.test == run.result.test
    leaves_equal(loaded.params, run.params)
    np.testing.assert_allclose(pj.predict(loaded, zoo), pj.predict(run, zoo), rtol=1e-6, atol=1e-6)
    new_networks = pj.Zoo(ARCH, jax.vmap(ARCH.init)(jax.random.split(jax.random.key(7), 5)), {})
    assert pj.predict(loaded, new_networks).shape == (5, 4)  # networks the run never saw, no targets


def test_a_method_learns_the_tiny_zoo(zoo):
    run = pj.train("statnn", zoo, {"hidden": 32, "layers": 2},
                   dataclasses.replace(QUICK, epochs=30, learning_rate=3e-3), progress=False)
    assert run.result.test["accuracy"] > 0.5  # four classes: chance is 0.25


def test_cli_trains_exactly_what_python_trains(zoo, tmp_path, capsys):
    pj.save_zoo(zoo, tmp_path / "zoo")
    args = ["train", "vanilla", "--zoo", str(tmp_path / "zoo"), "--out", str(tmp_path / "cli"), "--probes", "4",
            "--head-hidden", "16", "--head-layers", "2", "--epochs", "2", "--batch-size", "8"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    python = pj.train("vanilla", pj.load_zoo(tmp_path / "zoo"), {"num_probes": 4, "head_hidden": 16, "head_layers": 2},
                      dataclasses.replace(get_method("vanilla").train_config, epochs=2, batch_size=8),
                      progress=False)
    cli = pj.load_run(tmp_path / "cli")
    leaves_equal(cli.params, python.params)
    assert printed["test"] == python.result.test and cli.spec == python.spec

    assert main(["predict", "--run", str(tmp_path / "cli"), "--out", str(tmp_path / "p.csv")]) == 0
    table = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(table[:, 2:], pj.predict(python, zoo), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(table[:, 1], pj.predict(python, zoo).argmax(-1))

    assert main(args) == 0  # the same settings again: reused, with a notice
    assert "reusing the finished run" in capsys.readouterr().err
    assert main([*args[:-2], "--batch-size", "4"]) == 2  # other settings on the same folder: refused
    err = capsys.readouterr().err
    assert "other settings" in err and "batch_size" in err and "Traceback" not in err


def test_finished_run_is_reused_not_retrained(zoo, tmp_path):
    first = pj.train("synthetic", zoo, SMALL["synthetic"], QUICK, out=str(tmp_path / "r"), progress=False)
    again = pj.train("synthetic", zoo, SMALL["synthetic"], QUICK, out=str(tmp_path / "r"), progress=False)
    leaves_equal(first.params, again.params)
    with pytest.raises(CheckpointError, match="num_probes"):
        pj.train("synthetic", zoo, {**SMALL["synthetic"], "num_probes": 6}, QUICK, out=str(tmp_path / "r"))


def test_fit_takes_any_optax_transformation(zoo):
    """The generator and the head at different rates: a zero rate leaves that part untouched."""
    def rates(source: float, head: float):
        labels = lambda params: {k: k for k in params}  # noqa: E731
        return optax.multi_transform({"source": optax.adam(source), "head": optax.adam(head)}, labels)

    init = get_method("probegen").learner(get_method("probegen").spec_type(**SMALL["probegen"]), zoo,
                                          pj.task_for(zoo, "label"), {}).init(jax.random.key(QUICK.seed))
    frozen = pj.train("probegen", zoo, SMALL["probegen"], QUICK, optimizer=rates(0.0, 1e-2), progress=False)
    leaves_equal(frozen.params["source"], init["source"])
    assert not np.allclose(jax.tree.leaves(frozen.params["head"])[0], jax.tree.leaves(init["head"])[0])
    both = pj.train("probegen", zoo, SMALL["probegen"], QUICK, optimizer=lambda steps: rates(1e-2, 1e-2),
                    progress=False)
    assert not np.allclose(jax.tree.leaves(both.params["source"])[0], jax.tree.leaves(init["source"])[0])


def test_zoo_task_defaults_recorded_or_inferred():
    plain = tiny_zoo(24)
    assert task_defaults(plain) == TaskDefaults("label", "raw", "all")
    cnn_like = pj.Zoo(plain.arch, plain.params, {"test_accuracy": np.linspace(0, 1, 24, dtype=np.float32),
                                                 "epoch": np.repeat(np.arange(3), 8).astype(np.int32)},
                      meta={"default_target": "test_accuracy"})
    assert task_defaults(cnn_like) == TaskDefaults("test_accuracy", "raw", "final")  # one output: no softmax
    recorded = dataclasses.replace(plain, meta={"task_defaults": {"response": "softmax"}})
    assert task_defaults(recorded).response == "softmax"


def test_unknown_names_and_small_splits_are_said_clearly(zoo):
    with pytest.raises(UnknownNameError, match="available"):
        pj.train("no-such-method", zoo)
    with pytest.raises(UnknownNameError, match="num_probes"):
        pj.train("probegen", zoo, {"probes": 4})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pj.train("statnn_gbt", tiny_zoo(60), SMALL["statnn_gbt"], QUICK)
    assert any("fewer than 20 networks" in str(w.message) for w in caught)


def test_reprs_are_short(zoo):
    run = pj.train("statnn_gbt", zoo, SMALL["statnn_gbt"], QUICK)
    for text in (repr(zoo), repr(run), repr(get_method("probegen"))):
        assert len(text) < 300 and "array" not in text


def test_probing_runs_saved_before_the_run_format_still_load(zoo, tmp_path):
    from probegen_jax.io import save_pytree, write_json

    run = pj.train("vanilla", zoo, SMALL["vanilla"], QUICK, progress=False)
    pj.save_zoo(zoo, tmp_path / "zoo")
    save_pytree(tmp_path / "old" / "params", run.params)  # the record as the earlier save_run wrote it:
    write_json(tmp_path / "old" / "run.json", {"method": "probing", "zoo": str(tmp_path / "zoo"), "target": "label",
                                               "epoch": "all", "spec": dataclasses.asdict(run.spec),
                                               "train": dataclasses.asdict(QUICK), "result": run.result.summary()})
    old = pj.load_run(tmp_path / "old")  # its zoo read from the recorded path to rebuild the task
    assert old.method == "vanilla" and old.task.name == "classification"
    assert pj.evaluate(old, zoo, "test") == pytest.approx(run.result.test)
    assert main(["eval", "--run", str(tmp_path / "old")]) == 0
