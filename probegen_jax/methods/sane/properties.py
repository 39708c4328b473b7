"""Property prediction from model representations: ridge regression, penalty chosen on validation.

The paper's protocol: a linear (ridge) probe on embeddings, s(W) layer statistics, or raw weights;
R^2 on the test split for test accuracy, epoch and the generalisation gap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


def ridge_probe(features: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray],
                alphas: Sequence[float] = ALPHAS) -> dict[str, float]:
    """Fit on ``train`` for each penalty, pick the best val R^2, report test R^2 at it.

    Features are standardised with the train split's mean and std first.
    """
    mean, std = features["train"].mean(0), features["train"].std(0) + 1e-8
    x = {k: ((v - mean) / std).astype(np.float64) for k, v in features.items()}
    y = {k: np.asarray(v, np.float64) for k, v in targets.items()}
    best = None
    for alpha in alphas:
        w, b = ridge_fit(x["train"], y["train"], alpha)
        val = metrics.r2(x["val"] @ w + b, y["val"])
        if best is None or val > best[0]:
            best = (val, alpha, w, b)
    val, alpha, w, b = best
    return {"alpha": float(alpha), "val_r2": float(val), "test_r2": float(metrics.r2(x["test"] @ w + b, y["test"]))}
