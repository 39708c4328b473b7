"""Metrics on numpy arrays: accuracy, Kendall tau-b (and its ceiling under test-set noise), R^2,
per-label binary accuracy."""

from __future__ import annotations

import numpy as np


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``logits[N, C]`` against int ``labels[N]``."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def kendall_tau(pred: np.ndarray, target: np.ndarray) -> float:
    """Kendall's tau-b (ties handled), the CNN-zoo benchmarks' metric; 0 where it is undefined
    (fewer than two networks, or constant predictions or targets)."""
    pred, target = np.ravel(pred), np.ravel(target)
    if pred.size < 2:
        return 0.0
    import scipy.stats  # here, not at import: scipy.stats costs a run's start-up a second on 2 cores

    tau = scipy.stats.kendalltau(pred, target, variant="b").statistic
    return float(np.nan_to_num(tau))


def tau_noise_ceiling(accuracy: np.ndarray, test_images: int, *, draws: int = 200, seed: int = 0) -> float:
    """The Kendall tau-b a perfect predictor of expected accuracy would score, on average, against
    accuracies measured on ``test_images`` images.

    A network's measured test accuracy is a binomial proportion: networks closer than its noise are
    ranked by chance, which caps every method's tau below 1 on a zoo scored on few test images. The
    measured ``accuracy`` stands in for the expected one; its spread includes the noise, so the
    ceiling computed is, if anything, slightly high.
    """
    accuracy = np.ravel(np.asarray(accuracy, np.float64))
    if accuracy.size and not np.all((accuracy >= 0) & (accuracy <= 1)):
        raise ValueError(f"tau_noise_ceiling: accuracies must lie in [0, 1], got {accuracy.min()} to {accuracy.max()}")
    if test_images < 1:
        raise ValueError(f"tau_noise_ceiling: test_images must be at least 1, got {test_images}")
    rng = np.random.default_rng(seed)
    return float(np.mean([kendall_tau(accuracy, rng.binomial(test_images, accuracy) / test_images)
                          for _ in range(draws)]))


def r2(pred: np.ndarray, target: np.ndarray) -> float:
    """Coefficient of determination, 1 - SS_res / SS_tot."""
    pred, target = np.ravel(pred), np.ravel(target)
    ss_tot = np.sum((target - target.mean()) ** 2)
    return float(1.0 - np.sum((target - pred) ** 2) / max(ss_tot, 1e-12))


def per_label_accuracy(logits: np.ndarray, multi_hot: np.ndarray) -> float:
    """Mean binary accuracy over labels at p > 0.5 (logit > 0); chance is 0.5."""
    return float(np.mean((logits > 0) == (multi_hot > 0.5)))
