"""Every baseline trains through the method contract (the shared loop, or scikit-learn) on a tiny
digits INR zoo."""

import numpy as np
import pytest

from probegen_jax.errors import UnknownNameError
from probegen_jax.methods.contract import evaluate, predict, train
from probegen_jax.training.loop import TrainConfig
from probegen_jax.zoo import Zoo

BASELINES = {"statnn": {}, "statnn_gbt": {}, "flat": {}, "nfn": {"channels": (8, 8), "head_hidden": 32}}


def _binary(zoo: Zoo, pair=(0, 1)) -> Zoo:
    """Digits ``pair[0]`` vs ``pair[1]`` (the 10-way task is near chance for weight-space baselines
    on a zoo this small)."""
    y = zoo.target("label")
    splits = {s: idx[np.isin(y[idx], pair)] for s, idx in zoo.splits.items()}
    order = np.concatenate([splits[s] for s in ("train", "val", "test")])
    bounds = np.cumsum([0] + [len(splits[s]) for s in ("train", "val", "test")])
    sub = zoo.subset(order, splits={s: np.arange(bounds[i], bounds[i + 1])
                                    for i, s in enumerate(("train", "val", "test"))})
    return Zoo(sub.arch, sub.params, {"label": (sub.target("label") == pair[1]).astype(np.int32)}, sub.splits,
               {"num_classes": 2})


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_trains_on_digits_inrs(digits_zoo, name):
    zoo = _binary(digits_zoo)
    run = train(name, zoo, BASELINES[name], TrainConfig(epochs=4, batch_size=16, learning_rate=1e-3), progress=False)
    assert run.task.name == "classification"
    assert 0.0 <= run.result.test["accuracy"] <= 1.0
    if name != "statnn_gbt":
        assert np.isfinite([h["train_loss"] for h in run.result.history]).all()
    # statnn and flat train their head on features computed once; the run still reads zoo params
    assert evaluate(run, zoo, "test")["accuracy"] == pytest.approx(run.result.test["accuracy"], abs=1e-6)
    test = zoo.indices("test")
    again = run.task.evaluate(predict(run, zoo, indices=test), zoo.target("label")[test])
    assert again["accuracy"] == pytest.approx(run.result.test["accuracy"], abs=1e-6)
    if name.startswith("statnn"):  # per-tensor statistics separate 0s from 1s well above chance
        assert run.result.val["accuracy"] > 0.6


def test_unknown_baseline(digits_zoo):
    with pytest.raises(UnknownNameError, match="unknown method 'nope'"):
        train("nope", digits_zoo)
