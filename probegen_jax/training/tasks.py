"""Tasks: what is predicted about each network, the loss and the metrics reported.

``select`` names the metric (higher is better) that picks the best validation epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax.numpy as jnp
import numpy as np
import optax

from probegen_jax.training import metrics
from probegen_jax.types import Array

Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    num_outputs: int
    loss: Callable[[Array, Array], Array]
    metrics: Mapping[str, Metric]
    select: str

    def evaluate(self, predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        return {name: fn(predictions, targets) for name, fn in self.metrics.items()}


def classification(num_classes: int) -> Task:
    """Cross-entropy on integer labels; top-1 accuracy."""
    return Task(
        "classification",
        num_classes,
        lambda logits, y: optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(),
        {"accuracy": metrics.accuracy},
        "accuracy",
    )


def regression() -> Task:
    """MSE on a scalar target (e.g. test accuracy in [0, 1]); Kendall tau-b and R^2."""
    return Task(
        "regression",
        1,
        lambda pred, y: jnp.mean((pred[:, 0] - y) ** 2),
        {"kendall_tau": lambda p, y: metrics.kendall_tau(p[:, 0], y), "r2": lambda p, y: metrics.r2(p[:, 0], y)},
        "kendall_tau",
    )


def multilabel(num_labels: int) -> Task:
    """Binary cross-entropy with logits on multi-hot targets; mean per-label accuracy."""
    return Task(
        "multilabel",
        num_labels,
        lambda logits, y: optax.sigmoid_binary_cross_entropy(logits, y).mean(),
        {"per_label_accuracy": metrics.per_label_accuracy},
        "per_label_accuracy",
    )


def zero_shot(num_classes: int, temperature: float = 1.0) -> Task:
    """Cross-entropy over cosine logits against class embeddings (ProbeX's alignment head; the
    paper uses no temperature: 1.0); top-1 accuracy among the classes scored."""
    return Task(
        "zero_shot",
        num_classes,
        lambda cosine, y: optax.softmax_cross_entropy_with_integer_labels(cosine / temperature, y).mean(),
        {"accuracy": metrics.accuracy},
        "accuracy",
    )


TASKS: dict[str, Callable[[int], Task]] = {
    "classification": classification,
    "regression": lambda num_outputs=1: regression(),
    "multilabel": multilabel,
    "zero_shot": zero_shot,
}


def task_record(task: Task) -> dict[str, object]:
    """A task as JSON (``task_from_record`` rebuilds it)."""
    return {"name": task.name, "num_outputs": task.num_outputs}


def task_from_record(record: Mapping[str, object]) -> Task:
    """The task ``task_record`` wrote."""
    from probegen_jax.errors import UnknownNameError

    name = str(record["name"])
    if name not in TASKS:
        raise UnknownNameError(f"unknown task {name!r}; available: {sorted(TASKS)}")
    return TASKS[name](int(record["num_outputs"]))


def task_for(zoo, target: str) -> Task:
    """The task of predicting ``target`` of a zoo's members: multi-label for multi-hot rows,
    classification for integer targets (classes from the zoo's ``num_classes``), else regression."""
    y = np.asarray(zoo.target(target))
    if y.ndim == 2:
        return multilabel(int(y.shape[1]))
    if np.issubdtype(y.dtype, np.integer):
        return classification(int(zoo.meta.get("num_classes", int(y.max()) + 1)))
    return regression()
