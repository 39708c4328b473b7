"""Recipes: named training settings, built through optax and the step key, recorded and resumed."""

import dataclasses
import json

import jax
import numpy as np
import optax
import pytest

import probegen_jax as pj
from probegen_jax.cli import main
from probegen_jax.methods.graphs import NGGNNSpec
from probegen_jax.methods.run import load_run, read_run_record
from probegen_jax.training import loop
from probegen_jax.training.loop import (
    TrainConfig,
    config_from_record,
    config_record,
    learning_rate_schedule,
    make_optimizer,
    supervised_objective,
)
from probegen_jax.training.learner import Learner
from probegen_jax.training.recipes import recipe_config, recipe_names
from probegen_jax.training.tasks import classification, regression
from probegen_jax.zoo.store import save_zoo

SPEC = dataclasses.asdict(NGGNNSpec(d_hid=8, num_layers=2, fourier_dim=8))
OLD_FIELDS = ["epochs", "batch_size", "learning_rate", "schedule", "optimizer", "weight_decay", "eval_every",
              "eval_batch_size", "seed"]


@pytest.fixture(scope="module")
def tiny_zoo():
    """64 random SIRENs with random labels: enough to run every part of a recipe in seconds."""
    arch = pj.make_arch("siren", hidden=8)
    params = jax.vmap(arch.init)(jax.random.split(jax.random.key(0), 64))
    labels = np.random.default_rng(0).integers(0, 4, 64)
    splits = {"train": np.arange(40), "val": np.arange(40, 52), "test": np.arange(52, 64)}
    return pj.Zoo(arch, jax.tree.map(np.asarray, params), {"label": labels}, splits, {"num_classes": 4})


def short(name, method="ng_gnn", **changes):
    return dataclasses.replace(recipe_config(method, name), **{"epochs": 4, "steps": 0, "batch_size": 8,
                                                               "warmup_steps": 6, **changes})


def test_default_settings_build_the_optimiser_and_record_of_before():
    cfg = TrainConfig()
    assert list(config_record(cfg)) == OLD_FIELDS
    assert config_from_record(config_record(cfg)) == cfg
    params = {"w": np.ones(3, np.float32)}
    before = optax.adam(optax.cosine_decay_schedule(cfg.learning_rate, 10))
    assert jax.tree.structure(make_optimizer(cfg, 10).init(params)) == jax.tree.structure(before.init(params))


def test_official_recipes_are_the_reference_settings():
    ng = recipe_config("ng_gnn", "official")
    assert (ng.optimizer, ng.amsgrad, ng.weight_decay, ng.warmup_steps, ng.clip_norm, ng.dropout, ng.batch_size,
            ng.epochs) == ("adamw", True, 5e-4, 1000, 10.0, 0.2, 128, 200)
    assert ng.augment == pj.WeightAugment.reference() and ng.augment.rotation == 45.0
    assert recipe_config("nfn_hnp", "official").steps == 200_000
    assert recipe_config("probegen", "default") == pj.get_method("probegen").train_config
    assert "official" not in recipe_names("statnn") and "dwsnets" not in recipe_names("statnn")
    with pytest.raises(pj.errors.UnknownNameError, match="available"):
        recipe_config("statnn", "official")


def test_warmup_clipping_and_amsgrad_come_from_optax():
    cfg = TrainConfig(learning_rate=1.0, schedule="constant", warmup_steps=4, clip_norm=1.0, amsgrad=True,
                      optimizer="adamw", weight_decay=0.5)
    np.testing.assert_allclose([learning_rate_schedule(cfg, 100)(i) for i in range(6)], [.25, .5, .75, 1, 1, 1])
    opt = make_optimizer(cfg, 100)
    params = {"w": np.zeros(4, np.float32)}
    state = opt.init(params)
    assert any(isinstance(s, optax.ScaleByAmsgradState) for s in jax.tree.leaves(
        state, is_leaf=lambda s: isinstance(s, optax.ScaleByAmsgradState)))
    updates, _ = opt.update({"w": np.full(4, 1e6, np.float32)}, state, params)
    assert np.all(np.isfinite(updates["w"]))


def test_smoothing_needs_classification_and_dropout_a_head_that_takes_it():
    learner = Learner(lambda key: {}, lambda p, x: x)
    with pytest.raises(ValueError, match="classification"):
        supervised_objective(learner, regression(), TrainConfig(label_smoothing=0.1))
    with pytest.raises(ValueError, match="dropout"):
        supervised_objective(learner, classification(3), TrainConfig(dropout=0.1))


def test_recipe_run_records_its_recipe_and_resumes_to_the_same_result(tiny_zoo, tmp_path, monkeypatch):
    cfg = short("official")
    full = pj.train("ng_gnn", tiny_zoo, SPEC, cfg, out=str(tmp_path / "full"), progress=False)
    record = read_run_record(tmp_path / "full")
    assert record["train"]["recipe"] == "official" and record["train"]["augment"]["translation"] == 0.25
    assert load_run(tmp_path / "full").train_config == cfg

    real = loop.batch_order

    def interrupting(seed, epoch, n, batch_size):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(seed, epoch, n, batch_size)

    monkeypatch.setattr(loop, "batch_order", interrupting)
    with pytest.raises(KeyboardInterrupt):
        pj.train("ng_gnn", tiny_zoo, SPEC, cfg, out=str(tmp_path / "run"), progress=False)
    monkeypatch.undo()
    resumed = pj.train("ng_gnn", tiny_zoo, SPEC, cfg, out=str(tmp_path / "run"), progress=False)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), resumed.params, full.params)
    assert resumed.result.history == full.result.history


def test_shamsian_recipe_trains_with_aligned_mixup(tiny_zoo):
    run = pj.train("nfn", tiny_zoo, {"channels": [4], "head_hidden": 8}, short("shamsian", "nfn", epochs=2, label_smoothing=0.1),
                   progress=False)
    assert run.train_config.augment.mixup == "aligned"
    assert all(np.isfinite(h["train_loss"]) for h in run.result.history)


def test_recipe_flag_parses_and_eval_shows_it(tiny_zoo, tmp_path, capsys):
    save_zoo(tiny_zoo, tmp_path / "zoo")
    assert main(["train", "nfn", "--zoo", str(tmp_path / "zoo"), "--out", str(tmp_path / "run"), "--recipe", "official",
                 "--epochs", "2", "--batch-size", "8", "--channels", "4", "--head-hidden", "8"]) == 0
    capsys.readouterr()
    assert main(["eval", "--run", str(tmp_path / "run")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["recipe"] == "official" and "accuracy" in shown["test"]
    cfg = load_run(tmp_path / "run").train_config
    assert (cfg.epochs, cfg.steps, cfg.dropout, cfg.warmup_steps) == (2, 0, 0.5, 10_000)
    with pytest.raises(SystemExit):  # argparse: statnn has only its default recipe
        main(["train", "statnn", "--zoo", str(tmp_path / "zoo"), "--out", str(tmp_path / "x"), "--recipe", "official"])
