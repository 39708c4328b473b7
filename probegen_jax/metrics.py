"""Metrics on numpy arrays: accuracy, Kendall tau-b, R^2, per-label binary accuracy."""

from __future__ import annotations

import numpy as np
import scipy.stats


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``logits[N, C]`` against int ``labels[N]``."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def kendall_tau(pred: np.ndarray, target: np.ndarray) -> float:
    """Kendall's tau-b (ties handled), the CNN-zoo benchmarks' metric; 0 where it is undefined
    (fewer than two networks, or constant predictions or targets)."""
    pred, target = np.ravel(pred), np.ravel(target)
    if pred.size < 2:
        return 0.0
    tau = scipy.stats.kendalltau(pred, target, variant="b").statistic
    return float(np.nan_to_num(tau))


def r2(pred: np.ndarray, target: np.ndarray) -> float:
    """Coefficient of determination, 1 - SS_res / SS_tot."""
    pred, target = np.ravel(pred), np.ravel(target)
    ss_tot = np.sum((target - target.mean()) ** 2)
    return float(1.0 - np.sum((target - pred) ** 2) / max(ss_tot, 1e-12))


def per_label_accuracy(logits: np.ndarray, multi_hot: np.ndarray) -> float:
    """Mean binary accuracy over labels at p > 0.5 (logit > 0); chance is 0.5."""
    return float(np.mean((logits > 0) == (multi_hot > 0.5)))
