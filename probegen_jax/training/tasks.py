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
