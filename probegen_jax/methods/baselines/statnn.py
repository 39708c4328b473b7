"""StatNN (Unterthiner et al. 2020): per-tensor statistics of a network's weights.

For every tensor: mean, variance and the 0/25/50/75/100% quantiles (7 numbers). The features
feed an MLP head trained by ``train.fit`` (``statnn_learner``) or gradient-boosted trees
(``fit_statnn_gbt``; scikit-learn, trained outside ``fit`` because trees have no gradient step).
Heterogeneous zoos (buckets of different architectures) get zero-padded statistics with a
presence flag per tensor slot (``padded_statnn_features``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from probegen_jax.methods.baselines.common import Standardizer, features_learner, precompute_features, weight_leaves
from probegen_jax.errors import ShapeMismatchError
from probegen_jax.training.learner import Learner
from probegen_jax.types import Array, Params

QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)
STATS_PER_TENSOR = 2 + len(QUANTILES)
STAT_NAMES = ("mean", "var", *(f"q{int(q * 100)}" for q in QUANTILES))


def tensor_stats(x: Array) -> Array:
    """``[N, ...] -> [N, 7]``: mean, variance, quantiles (0, 25, 50, 75, 100) of each row."""
    flat = x.reshape(x.shape[0], -1)
    quantiles = jnp.quantile(flat, jnp.asarray(QUANTILES), axis=1).T  # linear interpolation, as numpy
    return jnp.concatenate([flat.mean(1, keepdims=True), flat.var(1, keepdims=True), quantiles], axis=1)


def statnn_features(params: Params) -> Array:
    """``[N, 7 * T]`` statistics of the ``T`` tensors of a stacked zoo (leading axis ``N``).

    Pure and traceable (``jit``, ``vmap`` over an extra axis); tensors are taken in
    ``jax.tree.leaves`` order (floating-point tensors only), seven numbers each in ``STAT_NAMES``
    order.
    """
    return jnp.concatenate([tensor_stats(leaf) for leaf in weight_leaves(params, where="statnn_features")], axis=1)


def statnn_feature_names(params: Params) -> list[str]:
    """Column names of ``statnn_features(params)``, e.g. ``"dense0/kernel:q50"``."""
    from probegen_jax.archs import flatten_params

    return [f"{path}:{stat}" for path, leaf in flatten_params(params).items()
            if jnp.issubdtype(jnp.result_type(leaf), jnp.floating) for stat in STAT_NAMES]


def padded_statnn_features(buckets: Sequence[Params], num_tensors: int | None = None) -> Array:
    """Statistics of several homogeneous buckets in one ``[sum N_b, 8 * T_max]`` array.

    Tensor slot ``t`` of a network holds its ``t``-th tensor's seven statistics and a flag 1;
    slots beyond a bucket's tensor count are zeros with flag 0. ``num_tensors`` fixes ``T_max``
    (so features of later zoos line up); by default it is the largest bucket's count.
    """
    counts = [len(weight_leaves(b, where="padded_statnn_features")) for b in buckets]
    width = max(counts) if num_tensors is None else num_tensors
    if max(counts) > width:
        raise ShapeMismatchError(f"padded_statnn_features: a bucket has {max(counts)} tensors, more than "
                                 f"num_tensors={width}")
    rows = []
    for params, count in zip(buckets, counts, strict=True):
        stats = statnn_features(params).reshape(-1, count, STATS_PER_TENSOR)
        stats = jnp.concatenate([stats, jnp.ones((*stats.shape[:2], 1), stats.dtype)], axis=2)
        stats = jnp.pad(stats, ((0, 0), (0, width - count), (0, 0)))
        rows.append(stats.reshape(stats.shape[0], -1))
    return jnp.concatenate(rows, axis=0)


def statnn_learner(train_params: Params, num_outputs: int, *, hidden: int = 256, layers: int = 4) -> Learner:
    """StatNN with an MLP head: standardised statistics -> ``layers`` linear layers, ReLU.

    ``train_params`` (the training split's stacked params) fix the feature standardisation.
    """
    return features_learner(statnn_features, train_params, num_outputs, hidden=hidden, layers=layers)


def hetero_statnn_features(zoo) -> np.ndarray:
    """:func:`padded_statnn_features` of a ``HeteroZoo``'s members, in the zoo's order."""
    feats = np.asarray(padded_statnn_features([bucket.params for bucket in zoo.buckets]))
    return zoo.gather(np.split(feats, np.cumsum([len(bucket) for bucket in zoo.buckets])[:-1]))


def gbt_predictor(x: np.ndarray, y: np.ndarray, task, *, seed: int = 0, max_iter: int = 300
                  ) -> Callable[[np.ndarray], np.ndarray]:
    """Gradient-boosted trees (scikit-learn ``HistGradientBoosting``, early stopping on an internal
    hold-out) fitted on features ``x [N, F]``; returns ``features -> predictions`` in the task's
    form (log-probabilities ``[n, classes]`` or ``[n, 1]``). Deterministic for a given seed."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    x, y = np.asarray(x), np.asarray(y)
    if task.name == "classification":
        model = HistGradientBoostingClassifier(max_iter=max_iter, early_stopping=True, random_state=seed).fit(x, y)

        def predict(f):
            proba = np.zeros((len(f), task.num_outputs), np.float32)
            proba[:, model.classes_] = model.predict_proba(np.asarray(f))
            return np.log(proba + 1e-12)
    else:
        model = HistGradientBoostingRegressor(max_iter=max_iter, early_stopping=True, random_state=seed).fit(x, y)

        def predict(f):
            return model.predict(np.asarray(f))[:, None].astype(np.float32)
    return predict


def fit_gbt(
    splits: Mapping[str, tuple[Array, np.ndarray]], task, *, seed: int = 0, max_iter: int = 300,
) -> dict[str, dict[str, float]]:
    """:func:`gbt_predictor` trained on ``splits["train"]``; the task's metrics on every split,
    ``{"val": {...}, "test": {...}, ...}``."""
    predict = gbt_predictor(splits["train"][0], splits["train"][1], task, seed=seed, max_iter=max_iter)
    return {name: task.evaluate(predict(f), np.asarray(y)) for name, (f, y) in splits.items()}


def fit_statnn_gbt(
    splits: Mapping[str, tuple[Params, np.ndarray]], task, *, seed: int = 0, max_iter: int = 300,
) -> dict[str, dict[str, float]]:
    """:func:`fit_gbt` on the StatNN features of each split's stacked params."""
    return fit_gbt(precompute_features(statnn_features, splits), task, seed=seed, max_iter=max_iter)


__all__ = ["QUANTILES", "STAT_NAMES", "Standardizer", "fit_gbt", "gbt_predictor", "fit_statnn_gbt", "hetero_statnn_features",
           "padded_statnn_features",
           "statnn_feature_names", "statnn_features", "statnn_learner", "tensor_stats"]
