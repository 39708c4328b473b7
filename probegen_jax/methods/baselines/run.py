"""Baselines by name, trained on a zoo's splits with the shared training loop.

    result, learner, task = train_baseline(zoo, "nfn", TrainConfig(epochs=30))
    result.test["accuracy"]

``"statnn_gbt"`` (gradient-boosted trees) is fitted by scikit-learn instead of ``train.fit``; it
returns a ``TrainResult`` of the same form with ``params=None`` and no learner.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from probegen_jax.methods.baselines.common import feature_head, on_zoo_params, precompute_features
from probegen_jax.methods.baselines.flat import flat_learner, flatten_weights
from probegen_jax.methods.baselines.nfn import NFNConfig, nfn_learner
from probegen_jax.methods.baselines.statnn import fit_gbt, hetero_statnn_features, statnn_features, statnn_learner
from probegen_jax.errors import UnknownNameError
from probegen_jax.training.learner import Learner
from probegen_jax.training.tasks import Task
from probegen_jax.training.loop import TrainConfig, TrainResult, fit
from probegen_jax.types import Params

BASELINE_NAMES = {
    "statnn": "StatNN (MLP head)",
    "statnn_gbt": "StatNN (gradient-boosted trees)",
    "flat": "Flat-weights MLP",
    "nfn": "NFN-NP",
}

FEATURE_MAPS = {"statnn": statnn_features, "flat": flatten_weights}  # baselines that are features -> MLP head


def baseline_learner(name: str, train_params: Params, num_outputs: int, *, nfn: NFNConfig = NFNConfig(),
                     hidden: int = 256, layers: int = 4) -> Learner:
    """The learner of a gradient-trained baseline; ``train_params`` fix its input standardisation."""
    makers: dict[str, Callable[[], Learner]] = {
        "statnn": lambda: statnn_learner(train_params, num_outputs, hidden=hidden, layers=layers),
        "flat": lambda: flat_learner(train_params, num_outputs, hidden=hidden, layers=layers),
        "nfn": lambda: nfn_learner(train_params, num_outputs, nfn),
    }
    if name not in makers:
        raise UnknownNameError(f"unknown trained baseline {name!r}; available: {sorted(makers)} "
                               "(and 'statnn_gbt' through train_baseline)")
    return makers[name]()


HETERO_BASELINES = ("statnn", "statnn_gbt")  # padded statistics; the others need one architecture


def train_baseline(
    zoo, name: str, cfg: TrainConfig = TrainConfig(), *, target: str = "label", task: Task | None = None,
    nfn: NFNConfig = NFNConfig(), mesh=None, progress: bool = True,
) -> tuple[TrainResult, Learner | None, Task]:
    """Train baseline ``name`` (one of ``BASELINE_NAMES``) on a zoo's train/val/test splits.

    ``zoo`` is a ``Zoo`` or, for ``HETERO_BASELINES``, a ``HeteroZoo`` (StatNN on statistics padded
    to the deepest bucket). The task defaults to ``runs.task_for(zoo, target)`` (classification for
    integer targets, regression otherwise). Test metrics are at the best validation epoch.
    Fixed feature maps (StatNN, flat weights) are computed once and only their head trains; the
    returned learner applies ``result.params`` to zoo params. It is ``None`` for gradient-boosted
    trees and on heterogeneous zoos.
    """
    from probegen_jax.runs import task_for
    from probegen_jax.zoo.hetero import HeteroZoo
    from probegen_jax.zoo.zoo import SPLITS

    if name not in BASELINE_NAMES:
        raise UnknownNameError(f"unknown baseline {name!r}; available: {sorted(BASELINE_NAMES)}")
    hetero = isinstance(zoo, HeteroZoo)
    if hetero and name not in HETERO_BASELINES:
        raise UnknownNameError(f"baseline {name!r} needs a zoo of one architecture; a heterogeneous zoo takes "
                               f"{list(HETERO_BASELINES)}")
    task = task or task_for(zoo, target)
    if hetero:
        feats, y = hetero_statnn_features(zoo), zoo.target(target)
        features = {s: (feats[zoo.indices(s)], y[zoo.indices(s)]) for s in SPLITS}
        mapping = None  # padded statistics of packed buckets: no learner reads zoo params
    else:
        splits = zoo.split_arrays(target)
        mapping = statnn_features if name == "statnn_gbt" else FEATURE_MAPS.get(name)
        features = precompute_features(mapping, splits) if mapping else None
    if name == "statnn_gbt":
        start = time.perf_counter()
        metrics = fit_gbt(features, task, seed=cfg.seed)
        return (TrainResult(None, -1, metrics["val"], metrics.get("test", {}), [],
                            round(time.perf_counter() - start, 3)), None, task)
    if features is not None:  # a fixed feature map: only the head trains, on features computed once
        head = feature_head(features["train"][0], task.num_outputs)
        result = fit(head, task, features, cfg, mesh=mesh, progress=progress, desc=name)
        return result, on_zoo_params(head, mapping) if mapping else None, task
    learner = baseline_learner(name, splits["train"][0], task.num_outputs, nfn=nfn)
    return fit(learner, task, splits, cfg, mesh=mesh, progress=progress, desc=name), learner, task
