"""The registry of methods: every method is one ``Method`` of pure functions, registered by name
(see ``methods.contract`` for what each function does and how ``train`` runs them)."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from probegen_jax.errors import UnknownNameError
from probegen_jax.training.learner import Learner
from probegen_jax.training.loop import TrainConfig, TrainResult
from probegen_jax.training.tasks import Task
from probegen_jax.types import PyTree

Constants = PyTree


def member_params(spec: Any, zoo: Any, indices: np.ndarray) -> PyTree:
    """The default inputs: the members' own params (packed rows for a heterogeneous zoo)."""
    return zoo.inputs(indices)


def no_constants(spec: Any, zoo: Any, train_indices: np.ndarray, train_targets: np.ndarray, task: Task
                 ) -> Constants:
    return {}


@dataclasses.dataclass(frozen=True)
class FitRequest:
    """Everything a custom ``Method.fit`` may use: the learner, task, split inputs and options."""

    learner: Learner
    task: Task
    splits: Mapping[str, tuple[PyTree, np.ndarray]]
    cfg: TrainConfig
    options: Mapping[str, Any]
    spec: Any = None
    zoo: Any = None
    constants: Constants = None


class Method(NamedTuple):
    """A weight-space learning method: its name, settings (``spec_type``, a frozen dataclass of
    JSON-able fields with defaults) and pure functions (see the module docstring)."""

    name: str
    description: str
    spec_type: type
    learner: Callable[[Any, Any, Task, Constants], Learner]
    prepare: Callable[[Any, Any, np.ndarray, np.ndarray, Task], Constants] = no_constants
    inputs: Callable[[Any, Any, np.ndarray], PyTree] = member_params
    fit: Callable[[FitRequest], TrainResult] | None = None  # default: the one loop
    resolve: Callable[[Any, Any, str, Task, TrainConfig, bool], Any] | None = None  # settle open settings
    heterogeneous: bool = False  # reads zoos of several architectures
    reads_stored_rows: bool = False  # ``inputs`` may stay unread (``stored.StoredRows``) until placed on a mesh
    train_config: TrainConfig = TrainConfig()  # the method's default optimisation settings

    def __repr__(self) -> str:
        return f"Method({self.name!r}: {self.description})"


_REGISTRY: dict[str, Method] = {}
# The modules whose import registers the library's methods, with the names each registers: a
# lookup by name imports only its own family, so a run loads only that family's dependencies
# (``methods()`` imports them all; a test holds this table to what the modules register).
METHOD_FAMILIES: dict[str, tuple[str, ...]] = {
    "probegen_jax.methods.probing.method": ("nonlinear", "probegen", "probegen5", "synthetic", "vanilla"),
    "probegen_jax.methods.baselines.method": ("flat", "nfn", "statnn", "statnn_gbt"),
    "probegen_jax.methods.graphs": ("nfn_hnp", "nft", "ng_gnn", "ng_t", "scalegmn"),
    "probegen_jax.methods.probex.method": ("dense_expert", "probex"),
    "probegen_jax.methods.sane.method": ("sane",),
}
METHOD_MODULES = list(METHOD_FAMILIES)


def register(method: Method) -> Method:
    """Add ``method`` to the registry (a second method of the same name replaces the first)."""
    _REGISTRY[method.name] = method
    return method


def _import_families(modules: list[str]) -> dict[str, Method]:
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
    return _REGISTRY


def _load_registry() -> dict[str, Method]:
    return _import_families(METHOD_MODULES)


def methods() -> dict[str, Method]:
    """Every registered method by name."""
    return dict(sorted(_load_registry().items()))


def get_method(name: str | Method) -> Method:
    """The method registered as ``name`` (a ``Method`` is returned as it is)."""
    if isinstance(name, Method):
        return name
    if name in _REGISTRY:
        return _REGISTRY[name]
    registry = _import_families([m for m, names in METHOD_FAMILIES.items() if name in names])
    if name not in registry:
        registry = _load_registry()
    if name not in registry:
        raise UnknownNameError(f"unknown method {name!r}; available: {sorted(registry)}")
    return registry[name]



def make_spec(method: Method, spec: Any = None, **overrides: Any) -> Any:
    """``method``'s spec: ``spec`` (an instance or a dict of fields), with ``overrides`` applied."""
    if spec is None:
        spec = method.spec_type()
    elif isinstance(spec, Mapping):
        known = {f.name for f in dataclasses.fields(method.spec_type)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise UnknownNameError(f"method {method.name!r}: unknown settings {unknown}; available: {sorted(known)}")
        spec = method.spec_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
    elif not isinstance(spec, method.spec_type):
        raise TypeError(f"method {method.name!r} takes a {method.spec_type.__name__}, got {type(spec).__name__}")
    return dataclasses.replace(spec, **overrides) if overrides else spec
