"""Property prediction from model representations: ridge regression, penalty chosen on validation.

The paper's protocol: a linear (ridge) probe on embeddings, s(W) layer statistics, or raw weights;
R^2 on the test split for test accuracy, epoch and the generalisation gap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from probegen_jax.training import metrics

ALPHAS = tuple(10.0 ** np.arange(-4, 5))


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Weights and intercept of ridge regression (features centred; the intercept is not penalised)."""
    mx, my = x.mean(0), y.mean()
    xc = x - mx
    d = x.shape[1]
    if d <= x.shape[0]:
        w = np.linalg.solve(xc.T @ xc + alpha * np.eye(d), xc.T @ (y - my))
    else:  # the dual form for wide features (raw weights)
        w = xc.T @ np.linalg.solve(xc @ xc.T + alpha * np.eye(len(x)), y - my)
    return w, float(my - mx @ w)


class RidgeProbe(NamedTuple):
    """The chosen probe: ``(features - mean) / std @ w + b``, its penalty and validation score."""

    mean: np.ndarray
    std: np.ndarray
    w: np.ndarray  # [F, outputs]
    b: np.ndarray  # [outputs]
    alpha: float
    val_score: float

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, np.float64) - self.mean) / self.std) @ self.w + self.b


def fit_ridge_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                    val_score: Callable[[np.ndarray], float], alphas: Sequence[float] = ALPHAS) -> RidgeProbe:
    """Ridge on train features (standardised with their mean and std) for each penalty, one
    regression per column of ``y_train [N, outputs]``; kept: the highest ``val_score(predictions)``."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    x_train = ((x_train - mean) / std).astype(np.float64)
    y_train = np.asarray(y_train, np.float64)
    best = None
    for alpha in alphas:
        fitted = [ridge_fit(x_train, y_train[:, j], alpha) for j in range(y_train.shape[1])]
        probe = RidgeProbe(mean, std, np.stack([w for w, _ in fitted], axis=1), np.asarray([b for _, b in fitted]),
                           float(alpha), 0.0)
        probe = probe._replace(val_score=float(val_score(probe(x_val))))
        if best is None or probe.val_score > best.val_score:
            best = probe
    return best


def ridge_probe(features: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray],
                alphas: Sequence[float] = ALPHAS) -> dict[str, float]:
    """Fit on ``train`` for each penalty, pick the best val R^2, report test R^2 at it.

    Features are standardised with the train split's mean and std first.
    """
    y = {k: np.asarray(v, np.float64) for k, v in targets.items()}
    probe = fit_ridge_probe(features["train"], y["train"][:, None], features["val"],
                            lambda p: metrics.r2(p[:, 0], y["val"]), alphas)
    return {"alpha": probe.alpha, "val_r2": probe.val_score,
            "test_r2": float(metrics.r2(probe(features["test"])[:, 0], y["test"]))}
