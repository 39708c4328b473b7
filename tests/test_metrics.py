"""Metrics and task losses against references computed another way."""

import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import r2_score

from probegen_jax.training import metrics
from probegen_jax.training.tasks import classification, multilabel, regression


def brute_force_tau_b(x, y):
    """Kendall's tau-b over all pairs: (concordant - discordant) / sqrt((n0 - ties_x)(n0 - ties_y))."""
    concordant = discordant = ties_x = ties_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        ties_x += sx == 0
        ties_y += sy == 0
        concordant += sx * sy > 0
        discordant += sx * sy < 0
    n0 = len(x) * (len(x) - 1) // 2
    denom = math.sqrt((n0 - ties_x) * (n0 - ties_y))
    return (concordant - discordant) / denom if denom else 0.0


@pytest.mark.parametrize("seed", range(4))
def test_kendall_tau_b_with_ties_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 40
    x = rng.integers(0, 6, n).astype(float)  # many ties in both
    y = 0.5 * x + rng.integers(0, 4, n)
    want = brute_force_tau_b(x, y)
    got = metrics.kendall_tau(x, y)
    assert got == pytest.approx(want, abs=1e-12)
    assert 0.0 < got < 1.0  # positively related, not perfectly


def test_kendall_tau_extremes_and_shapes():
    x = np.arange(10.0)
    assert metrics.kendall_tau(x, x) == pytest.approx(1.0)
    assert metrics.kendall_tau(x, -x) == pytest.approx(-1.0)
    assert metrics.kendall_tau(x[:, None], 2 * x) == pytest.approx(1.0)  # [N, 1] predictions
    assert metrics.kendall_tau(np.ones(10), x) == 0.0  # undefined (constant) reported as 0
    assert metrics.kendall_tau(x[:1], x[:1]) == 0.0  # undefined (one network) reported as 0
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=25), rng.normal(size=25)  # no ties: tau-b is tau-a
    assert metrics.kendall_tau(a, b) == pytest.approx(brute_force_tau_b(a, b), abs=1e-12)


def test_tau_noise_ceiling_of_two_networks_is_the_exact_expectation():
    """Two networks: tau is +1 when the measurements keep their order, -1 when they swap, 0 on a tie."""
    from scipy.stats import binom

    p, n = np.array([0.5, 0.6]), 20
    pmf = [binom.pmf(np.arange(n + 1), n, q) for q in p]
    joint = np.outer(pmf[0], pmf[1])  # joint[i, j] = P(X1 = i, X2 = j)
    exact = np.triu(joint, 1).sum() - np.tril(joint, -1).sum()
    assert metrics.tau_noise_ceiling(p, n, draws=4000) == pytest.approx(exact, abs=0.05)


def test_tau_noise_ceiling_rises_with_test_images_and_refuses_bad_input():
    acc = np.random.default_rng(0).uniform(0.1, 0.9, 300)
    few, many = metrics.tau_noise_ceiling(acc, 100, draws=20), metrics.tau_noise_ceiling(acc, 100_000, draws=20)
    assert few < 0.95 < many <= 1.0
    assert metrics.tau_noise_ceiling(acc, 100, draws=20, seed=1) == pytest.approx(few, abs=0.02)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        metrics.tau_noise_ceiling(acc * 2, 100)
    with pytest.raises(ValueError, match="at least 1"):
        metrics.tau_noise_ceiling(acc, 0)


@pytest.mark.parametrize("seed", range(3))
def test_r2_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    target = rng.uniform(size=50)
    pred = target + rng.normal(scale=0.2, size=50)
    assert metrics.r2(pred, target) == pytest.approx(r2_score(target, pred), rel=1e-9, abs=1e-12)
    assert metrics.r2(pred[:, None], target) == pytest.approx(r2_score(target, pred), rel=1e-9, abs=1e-12)
    assert metrics.r2(target, target) == pytest.approx(1.0)
    assert metrics.r2(np.full(50, target.mean()), target) == pytest.approx(0.0, abs=1e-12)


def test_accuracy_by_hand():
    logits = np.array([[2.0, 1.0, 0.0],   # predicts 0
                       [0.1, 0.3, 0.2],   # predicts 1
                       [-1.0, -2.0, 5.0],  # predicts 2
                       [0.0, 3.0, 1.0],   # predicts 1
                       [4.0, 0.0, 0.0]])  # predicts 0
    labels = np.array([0, 1, 1, 1, 2])
    assert metrics.accuracy(logits, labels) == pytest.approx(3 / 5)
    assert metrics.accuracy(logits, np.array([0, 1, 2, 1, 0])) == 1.0


def test_per_label_accuracy_by_hand():
    logits = np.array([[1.0, -1.0, 0.5],
                       [-0.2, 2.0, -3.0]])
    multi_hot = np.array([[1, 0, 0],
                          [1, 1, 0]], dtype=np.float32)
    # decisions (logit > 0): [[1, 0, 1], [0, 1, 0]]; matches: [[y, y, n], [n, y, y]] -> 4 of 6
    assert metrics.per_label_accuracy(logits, multi_hot) == pytest.approx(4 / 6)
    assert metrics.per_label_accuracy(-logits, multi_hot) == pytest.approx(2 / 6)


def test_task_losses_and_metrics_match_hand_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    task = classification(4)
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -np.mean(log_softmax[np.arange(6), labels])
    assert float(task.loss(jnp.asarray(logits), jnp.asarray(labels))) == pytest.approx(want, rel=1e-5)
    assert task.evaluate(logits, labels) == {"accuracy": metrics.accuracy(logits, labels)}
    assert task.num_outputs == 4 and task.select == "accuracy"

    pred, target = rng.normal(size=(6, 1)), rng.uniform(size=6)
    reg = regression()
    assert float(reg.loss(jnp.asarray(pred), jnp.asarray(target))) == pytest.approx(
        np.mean((pred[:, 0] - target) ** 2), rel=1e-5)
    got = reg.evaluate(pred, target)
    assert got["kendall_tau"] == pytest.approx(brute_force_tau_b(pred[:, 0], target), abs=1e-12)
    assert got["r2"] == pytest.approx(r2_score(target, pred[:, 0]), rel=1e-9)

    multi_logits = rng.normal(size=(5, 3)).astype(np.float32)
    multi_hot = (rng.uniform(size=(5, 3)) > 0.5).astype(np.float32)
    p = 1 / (1 + np.exp(-multi_logits))
    bce = -np.mean(multi_hot * np.log(p) + (1 - multi_hot) * np.log(1 - p))
    ml = multilabel(3)
    assert float(ml.loss(jnp.asarray(multi_logits), jnp.asarray(multi_hot))) == pytest.approx(bce, rel=1e-5)
    assert ml.evaluate(multi_logits, multi_hot)["per_label_accuracy"] == pytest.approx(
        np.mean((p > 0.5) == (multi_hot > 0.5)))
