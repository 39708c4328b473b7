"""Baselines by name, trained on a zoo's splits with the shared training loop.

    result, learner, task = train_baseline(zoo, "nfn", TrainConfig(epochs=30))
    result.test["accuracy"]

``"statnn_gbt"`` (gradient-boosted trees) is fitted by scikit-learn instead of ``train.fit``; it
returns a ``TrainResult`` of the same form with ``params=None`` and no learner.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from probegen_jax.baselines.flat import flat_learner
from probegen_jax.baselines.nfn import NFNConfig, nfn_learner
from probegen_jax.baselines.statnn import fit_statnn_gbt, statnn_learner
from probegen_jax.errors import UnknownNameError
from probegen_jax.learner import Learner
from probegen_jax.tasks import Task
from probegen_jax.train import TrainConfig, TrainResult, fit
from probegen_jax.types import Params

BASELINE_NAMES = {
    "statnn": "StatNN (MLP head)",
    "statnn_gbt": "StatNN (gradient-boosted trees)",
    "flat": "Flat-weights MLP",
    "nfn": "NFN-NP",
}


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


def train_baseline(
    zoo, name: str, cfg: TrainConfig = TrainConfig(), *, target: str = "label", task: Task | None = None,
    nfn: NFNConfig = NFNConfig(), mesh=None, progress: bool = True,
) -> tuple[TrainResult, Learner | None, Task]:
    """Train baseline ``name`` (one of ``BASELINE_NAMES``) on a zoo's train/val/test splits.

    ``zoo`` is a ``Zoo``; the task defaults to ``runs.task_for(zoo, target)`` (classification for
    integer targets, regression otherwise). Test metrics are at the best validation epoch.
    """
    from probegen_jax.runs import task_for

    if name not in BASELINE_NAMES:
        raise UnknownNameError(f"unknown baseline {name!r}; available: {sorted(BASELINE_NAMES)}")
    task = task or task_for(zoo, target)
    splits = zoo.split_arrays(target)
    if name == "statnn_gbt":
        start = time.perf_counter()
        metrics = fit_statnn_gbt(splits, task, seed=cfg.seed)
        return (TrainResult(None, -1, metrics["val"], metrics.get("test", {}), [],
                            round(time.perf_counter() - start, 3)), None, task)
    learner = baseline_learner(name, splits["train"][0], task.num_outputs, nfn=nfn)
    result = fit(learner, task, splits, cfg, mesh=mesh, progress=progress, desc=name)
    return result, learner, task
