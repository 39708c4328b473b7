"""Weight baselines behind the contract: StatNN (MLP head or gradient-boosted trees), the
flat-weights MLP and NFN-NP."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import numpy as np

from probegen_jax.methods.baselines.common import Standardizer, fit_standardizer
from probegen_jax.methods.baselines.flat import flatten_weights
from probegen_jax.methods.baselines.nfn import LayerScales, NFNConfig, fit_layer_scales, layer_order, nfn_learner, weight_space
from probegen_jax.methods.baselines.statnn import gbt_predictor, hetero_statnn_features, statnn_features
from probegen_jax.methods.registry import FitRequest, Method, register
from probegen_jax.methods.probing.probegen import mlp_head
from probegen_jax.training.learner import Learner
from probegen_jax.training.loop import TrainResult, evaluate
from probegen_jax.training.tasks import Task
from probegen_jax.types import Array, Params


BASELINE_NAMES = {  # table labels
    "statnn": "StatNN (MLP head)",
    "statnn_gbt": "StatNN (gradient-boosted trees)",
    "flat": "Flat-weights MLP",
    "nfn": "NFN-NP",
}


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """The MLP head of a feature baseline."""

    hidden: int = 256
    layers: int = 4


@dataclasses.dataclass(frozen=True)
class GBTSpec:
    """scikit-learn ``HistGradientBoosting`` settings."""

    max_iter: int = 300
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class FeatureInputs:
    """``Method.inputs`` of a fixed feature map: its features of the members, computed once per call
    under ``jit`` (padded StatNN statistics on zoos of several architectures). ``features`` stays
    traceable, for counting a method's FLOPs from the params on."""

    features: Callable[[Params], Array]

    def __call__(self, spec, zoo, indices: np.ndarray) -> np.ndarray:
        if zoo.packs_inputs:
            return hetero_statnn_features(zoo)[np.asarray(indices)]
        return np.asarray(_jitted(self.features)(zoo.inputs(indices)))


@functools.cache
def _jitted(fn):
    return jax.jit(fn)


def feature_inputs(features: Callable[[Params], Array]) -> FeatureInputs:
    return FeatureInputs(features)


def standardizer_constants(inputs):
    def prepare(spec, zoo, train_indices: np.ndarray, train_targets: np.ndarray, task: Task
                ) -> dict[str, np.ndarray]:
        scaler = fit_standardizer(inputs(spec, zoo, train_indices))
        return {"mean": np.asarray(scaler.mean), "scale": np.asarray(scaler.scale)}

    return prepare


def head_learner(spec: HeadSpec, zoo, task: Task, constants) -> Learner:
    """Standardised features -> ReLU MLP head."""
    scaler = Standardizer(constants["mean"], constants["scale"])
    head = mlp_head(int(np.shape(constants["mean"])[0]), task.num_outputs, hidden=spec.hidden, layers=spec.layers)
    return Learner(head.init, lambda params, features: head.apply(params, scaler(features)))


def feature_method(name: str, description: str, features: Callable[[Params], Array], *,
                   heterogeneous: bool = False) -> Method:
    inputs = feature_inputs(features)
    return Method(name, description, HeadSpec, head_learner, standardizer_constants(inputs), inputs,
                  heterogeneous=heterogeneous)


# ----------------------------------------------------------------------------- gradient-boosted trees

_GBT_CACHE: dict[tuple, Callable[[np.ndarray], np.ndarray]] = {}


def gbt_prepare(spec: GBTSpec, zoo, train_indices: np.ndarray, train_targets: np.ndarray, task: Task
                ) -> dict[str, np.ndarray]:
    """The trees are fitted on the training split's features: those and their targets are the
    constants, so a saved run refits the same trees (deterministic for the seed) wherever it loads."""
    return {"train_features": feature_inputs(statnn_features)(spec, zoo, train_indices),
            "train_targets": np.asarray(train_targets)}


def _gbt(spec: GBTSpec, task: Task, x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The fitted trees (deterministic for the seed; fitted once per process and cached)."""
    key = (spec, task.name, task.num_outputs, x.tobytes(), y.tobytes())
    if key not in _GBT_CACHE:
        _GBT_CACHE[key] = gbt_predictor(x, y, task, seed=spec.seed, max_iter=spec.max_iter)
    return _GBT_CACHE[key]


def gbt_learner(spec: GBTSpec, zoo, task: Task, constants) -> Learner:
    """Trees on StatNN features; no trainable params (``apply`` calls scikit-learn on the host)."""
    x, y = np.asarray(constants["train_features"]), np.asarray(constants["train_targets"])
    trees = functools.cache(lambda: _gbt(spec, task, x, y))  # looked up once per learner, not per block

    def apply(params: Params, features: Array) -> Array:
        shape = jax.ShapeDtypeStruct((features.shape[0], task.num_outputs), np.float32)
        return jax.pure_callback(lambda f: trees()(np.asarray(f)), shape, features)

    return Learner(lambda key: {}, apply)


def gbt_fit(request: FitRequest) -> TrainResult:
    """No gradient steps: metrics of the fitted trees on val and test."""
    import time

    start = time.perf_counter()
    metrics = {s: evaluate(request.learner, request.task, {}, split)
               for s, split in request.splits.items() if s != "train"}
    return TrainResult({}, -1, metrics.get("val", {}), metrics.get("test", {}), [],
                       round(time.perf_counter() - start, 3))


# ----------------------------------------------------------------------------- NFN-NP


def nfn_prepare(spec: NFNConfig, zoo, train_indices: np.ndarray, train_targets: np.ndarray, task: Task
                ) -> dict[str, np.ndarray]:
    train = zoo.inputs(train_indices)
    return {k: np.asarray(v, np.float32) for k, v in fit_layer_scales(weight_space(train, layer_order(train)))
            ._asdict().items()}


def nfn_method_learner(spec: NFNConfig, zoo, task: Task, constants) -> Learner:
    scales = LayerScales(**{k: tuple(float(v) for v in np.asarray(constants[k])) for k in LayerScales._fields})
    return nfn_learner(zoo.archs[0].stacked_zeros(), task.num_outputs, spec, scales=scales)


register(feature_method("statnn", "StatNN: per-tensor statistics -> MLP head", statnn_features, heterogeneous=True))
register(feature_method("flat", "flat-weights MLP", flatten_weights))
register(Method("statnn_gbt", "StatNN: per-tensor statistics -> gradient-boosted trees", GBTSpec, gbt_learner,
                gbt_prepare, feature_inputs(statnn_features), fit=gbt_fit, heterogeneous=True))
register(Method("nfn", "NFN-NP: permutation-invariant neural functional", NFNConfig, nfn_method_learner,
                nfn_prepare))
