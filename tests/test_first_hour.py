"""A new user's first hour: their own architecture saved and loaded in a new process, a zoo of
another architecture given to a run, a run stopped before it learnt, and what ``--help`` says."""

from __future__ import annotations

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probegen_jax as pj
from probegen_jax.cli import build_parser, main
from probegen_jax.errors import ShapeMismatchError, UnknownNameError
from probegen_jax.methods.contract import warn_if_unlearnt
from probegen_jax.training.loop import TrainResult
from probegen_jax.training.tasks import classification, regression

from test_contract import QUICK, SMALL, tiny_zoo


def tanh_layer() -> pj.Arch:
    def init(key):
        return {"w": jax.random.normal(key, (2, 3)), "b": jnp.zeros(3)}

    def apply(params, x):
        return jnp.tanh(x @ params["w"] + params["b"])

    return pj.arch_from_function(apply, init, (2,), name="my_tanh_layer")


def test_own_architecture_loads_with_arch_passed_and_the_error_names_the_call(tmp_path):
    arch = tanh_layer()
    params = jax.vmap(arch.init)(jax.random.split(jax.random.key(0), 60))
    order = np.random.default_rng(0).permutation(60)
    zoo = pj.Zoo(arch, params, {"label": np.arange(60, dtype=np.int32) % 3},
                 {"train": order[:40], "val": order[40:50], "test": order[50:]})
    pj.save_zoo(zoo, tmp_path / "zoo")
    run = pj.train("probegen", zoo, SMALL["probegen"], QUICK, progress=False)
    pj.save_run(run, tmp_path / "run")

    with pytest.raises(UnknownNameError) as err:
        pj.load_zoo(tmp_path / "zoo")
    assert f"pj.load_zoo({str(tmp_path / 'zoo')!r}, arch=ARCH)" in str(err.value) and "factory=" in str(err.value)
    with pytest.raises(UnknownNameError) as err:
        pj.load_run(tmp_path / "run")
    assert f"pj.load_run({str(tmp_path / 'run')!r}, arch=ARCH)" in str(err.value) and "my_tanh_layer" in str(err.value)

    loaded = pj.load_zoo(tmp_path / "zoo", arch=arch)  # what a new process does, given the arch
    again = pj.load_run(tmp_path / "run", arch=arch)
    np.testing.assert_allclose(pj.predict(again, loaded), pj.predict(run, zoo), rtol=1e-6, atol=1e-6)


def test_a_zoo_of_another_architecture_is_blamed_naming_both(tmp_path, capsys):
    ours = tiny_zoo(60)
    other_arch = pj.make_arch("siren", in_dim=2, hidden=8, depth=2, out_dim=3)
    other = pj.Zoo(other_arch, jax.vmap(other_arch.init)(jax.random.split(jax.random.key(1), 60)),
                   {"label": np.arange(60, dtype=np.int32) % 4}, ours.splits)
    run = pj.train("probegen", ours, SMALL["probegen"], QUICK, progress=False)
    with pytest.raises(ShapeMismatchError) as err:
        pj.predict(run, other)
    message = str(err.value)
    assert message.startswith("the zoo's networks (siren(") and "out_dim=3" in message and "out_dim=1" in message
    assert "head/dense0/kernel is [4, 16] in the run, [12, 16] for these networks" in message

    pj.save_run(run, tmp_path / "run")
    pj.save_zoo(other, tmp_path / "other")
    assert main(["predict", "--run", str(tmp_path / "run"), "--zoo", str(tmp_path / "other"),
                 "--out", str(tmp_path / "p.csv")]) == 2
    err_line = capsys.readouterr().err.strip()
    assert err_line.startswith("probegen-jax: error: the zoo's networks") and "it was saved for" not in err_line

    pj.save_zoo(ours, tmp_path / "ours")
    assert main(["eval", "--run", str(tmp_path / "run"), "--zoo", str(tmp_path / "ours")]) == 0
    shown = json.loads(capsys.readouterr().out)  # eval names the run it evaluated
    assert shown["run"] == str(tmp_path / "run") and shown["method"] == "probegen" and "accuracy" in shown["test"]


def history(epochs: int) -> list[dict[str, float]]:
    return [{"epoch": e, "train_loss": 1.0, "val_accuracy": 0.1 * e} for e in range(epochs)]


def test_a_run_stopped_before_it_learnt_is_said():
    cfg = pj.TrainConfig(epochs=30)
    flat = TrainResult(None, 3, {}, {}, history(30), 1.0)
    targets = np.linspace(0, 1, 20)
    with pytest.warns(UserWarning, match=r"almost constant \(std 0\.001.*epochs, now 30.*learning rate, now 0\.0003"):
        warn_if_unlearnt("probegen", flat, 0.5 + 0.001 * np.sign(targets - 0.5)[:, None], targets, regression(), cfg)
    with pytest.warns(UserWarning, match="one class for every val network"):
        warn_if_unlearnt("probegen", flat, np.tile([0.1, 0.9], (20, 1)), np.arange(20) % 2, classification(2), cfg)
    with pytest.warns(UserWarning, match=r"best validation epoch is the last \(30 of 30\)"):
        warn_if_unlearnt("probegen", TrainResult(None, 29, {}, {}, history(30), 1.0), targets[:, None] * 2, targets,
                         regression(), cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a run that learnt: nothing said
        warn_if_unlearnt("probegen", flat, targets[:, None] * 0.9, targets, regression(), cfg)
        warn_if_unlearnt("probegen", flat, np.eye(2)[np.arange(20) % 2], np.arange(20) % 2, classification(2), cfg)
        warn_if_unlearnt("probegen", TrainResult(None, 1, {}, {}, history(2), 1.0), targets[:, None], targets,
                         regression(), cfg)  # two epochs: the last is best by chance


def test_help_says_defaults_once_and_describes_settings(capsys):
    def shown(*command: str) -> str:
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        return " ".join(capsys.readouterr().out.split())

    for command in (("zoo", "make", "inr"), ("zoo", "make", "small-cnn"), ("zoo", "make", "trees"),
                    ("sane", "sample"), ("zoo", "import"), ("train", "probegen"), ("train", "ng_gnn")):
        text = shown(*command)
        assert "(default: None)" not in text and "(default: False)" not in text, command
        assert all(part.count("(default") <= 1 for part in text.split(" --")), command  # one default per option
    inr = shown("zoo", "make", "inr")
    assert "--data-dir DATA_DIR folder of Fashion-MNIST IDX files (default: /usr/share/datasets/fashion-mnist" in inr
    assert "--out OUT directory to save the zoo to (resumes if interrupted) --train" in inr
    assert "--response {raw,softmax} what the head reads" in shown("train", "probegen")
    graph = shown("train", "ng_gnn")
    assert "--d-hid D_HID width of the node and edge features" in graph
    assert "--fourier-sigma FOURIER_SIGMA standard deviation of the random Fourier features' frequencies" in graph
