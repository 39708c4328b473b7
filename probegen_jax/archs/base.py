"""An architecture is a pair of pure functions, ``init(key) -> params`` and
``apply(params, x) -> y``, plus the shapes that make it checkable and a spec that
rebuilds it by name (so a saved zoo knows what its networks are)."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.errors import NonFiniteWeightsError, ShapeMismatchError, UnknownNameError
from probegen_jax.types import Array, Params, PRNGKey


@dataclasses.dataclass(frozen=True)
class Arch:
    """A zoo member's architecture.

    Attributes:
      name: registry name (``make_arch(name, **config)`` rebuilds it), or a free label for
        architectures built from a user's own function or Flax module.
      init: ``key -> params`` for one network.
      apply: ``(params, x) -> y`` with ``x: [B, *input_shape]`` and ``y: [B, output_dim]``.
      input_shape: shape of one input (``(2,)`` for coordinates, ``(H, W, C)`` for images).
      output_dim: size of one output.
      config: keyword arguments of the registered factory; empty for unregistered archs.
      factory: ``"module:function"``, an importable function that returns this arch when called
        with ``config``: a user's own architecture that saved zoos and runs (and the command
        line) can rebuild without a registry entry.
    """

    name: str
    init: Callable[[PRNGKey], Params]
    apply: Callable[[Params, Array], Array]
    input_shape: tuple[int, ...]
    output_dim: int
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    factory: str | None = None

    @property
    def registered(self) -> bool:
        """Whether ``arch_from_spec(self.spec())`` rebuilds it (by registry name or factory)."""
        return self.factory is not None or self.name in _REGISTRY

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable description that ``arch_from_spec`` turns back into this arch."""
        spec = {"name": self.name, "config": dict(self.config)}
        return spec | {"factory": self.factory} if self.factory else spec

    def __repr__(self) -> str:
        return f"Arch({self.name!r}, input {tuple(self.input_shape)}, output {self.output_dim})"

    def param_shapes(self) -> Params:
        """``jax.ShapeDtypeStruct`` pytree of one network's params."""
        return jax.eval_shape(self.init, jax.random.key(0))

    def stacked_zeros(self, n: int = 1) -> Params:
        """``n`` all-zero networks stacked on a leading zoo axis: what fixes layer shapes for
        learners built from an architecture alone."""
        return jax.tree.map(lambda s: np.zeros((n, *s.shape), s.dtype), self.param_shapes())

    def num_params(self) -> int:
        return sum(math.prod(s.shape) for s in jax.tree.leaves(self.param_shapes()))

    def check_params(self, params: Params, *, stacked: bool, where: str = "params") -> int | None:
        """Raise ``ShapeMismatchError`` naming the tensor whose shape is off.

        With ``stacked=True`` every leaf carries one leading zoo axis of a common size,
        which is returned.
        """
        expected = self.param_shapes()
        exp_paths = dict(_leaves_with_paths(expected))
        got_paths = dict(_leaves_with_paths(params))
        missing = sorted(set(exp_paths) - set(got_paths))
        extra = sorted(set(got_paths) - set(exp_paths))
        if missing or extra:
            raise ShapeMismatchError(
                f"{where}: tensors do not match architecture {self.name!r}; "
                f"missing {missing or 'none'}, unexpected {extra or 'none'}"
            )
        zoo_size = None
        for path, exp in exp_paths.items():
            shape = tuple(np.shape(got_paths[path]))
            lead, tail = (shape[:1], shape[1:]) if stacked else ((), shape)
            if stacked and not lead:
                raise ShapeMismatchError(f"{where}/{path}: expected a leading zoo axis, got a scalar")
            if tail != tuple(exp.shape):
                want = ("N, " if stacked else "") + ", ".join(map(str, exp.shape))
                raise ShapeMismatchError(
                    f"{where}/{path}: expected shape ({want}) for architecture {self.name!r}, got {shape}"
                )
            if stacked:
                if zoo_size is None:
                    zoo_size = lead[0]
                elif lead[0] != zoo_size:
                    raise ShapeMismatchError(
                        f"{where}/{path}: zoo axis {lead[0]} differs from other tensors' {zoo_size}"
                    )
        return zoo_size

    def unflatten(self, flat: Mapping[str, Any], *, where: str = "params") -> Params:
        """Rebuild this arch's params pytree from ``{"dense0/kernel": array, ...}`` (see ``flatten_params``)."""
        expected = self.param_shapes()
        paths = [tree_path_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(expected)]
        missing = [p for p in paths if p not in flat]
        if missing:
            raise ShapeMismatchError(
                f"{where}: tensors {missing} missing for architecture {self.name!r}; got {sorted(flat)}"
            )
        return jax.tree.unflatten(jax.tree.structure(expected), [flat[p] for p in paths])

    def check_input(self, x: Array, *, where: str = "probes") -> None:
        """Raise ``ShapeMismatchError`` unless ``x`` is ``[B, *input_shape]``."""
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ShapeMismatchError(
                f"{where}: expected shape (K, {', '.join(map(str, self.input_shape))}) for the input of "
                f"architecture {self.name!r}, got {tuple(x.shape)}"
            )


def tree_path_name(path: tuple) -> str:
    """'dense0/kernel' for a ``jax.tree_util`` key path."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def _leaves_with_paths(tree: Params) -> list[tuple[str, Any]]:
    return [(tree_path_name(p), leaf) for p, leaf in jax.tree_util.tree_leaves_with_path(tree)]


def flatten_params(params: Params) -> dict[str, Any]:
    """``{"dense0/kernel": array, ...}``; ``Arch.unflatten`` is the inverse."""
    return dict(_leaves_with_paths(params))



def _layer_key(name: str) -> tuple:
    match = re.fullmatch(r"([A-Za-z_]*?)(\d+)", name)
    prefix, index = (match.group(1), int(match.group(2))) if match else (name, -1)
    return (0 if prefix == "conv" else 1, prefix, index)


def layer_order(params: Params) -> list[str]:
    """Names of the ``{"kernel", "bias"}`` layers in forward order: ``conv0, conv1, ..., dense0, ...``.

    Entries that are not layers (such as a per-network activation index) are left out.
    """
    if not isinstance(params, Mapping):
        raise ShapeMismatchError(f"expected a dict of layers, got {type(params).__name__}")
    names = [k for k, v in params.items() if isinstance(v, Mapping) and {"kernel", "bias"} <= set(v)]
    if not names:
        raise ShapeMismatchError(f"no (kernel, bias) layers among {sorted(params)}")
    return sorted(names, key=_layer_key)

def check_finite(params: Params, *, where: str = "params") -> None:
    """Raise ``NonFiniteWeightsError`` naming each tensor holding NaN or inf (and how many nets)."""
    bad = []
    for path, leaf in _leaves_with_paths(params):
        leaf = np.asarray(leaf)
        finite = np.isfinite(leaf)
        if not finite.all():
            rows = (~finite).reshape(leaf.shape[0], -1).any(axis=1) if leaf.ndim else ~finite
            bad.append(f"{path} ({int(np.sum(rows))} of {leaf.shape[0] if leaf.ndim else 1} networks)")
    if bad:
        raise NonFiniteWeightsError(f"{where}: NaN or inf weights in " + ", ".join(bad))


# ----------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[..., Arch]] = {}


def register_arch(name: str) -> Callable[[Callable[..., Arch]], Callable[..., Arch]]:
    """Decorator: register a factory ``(**config) -> Arch`` under ``name``."""

    def deco(factory: Callable[..., Arch]) -> Callable[..., Arch]:
        _REGISTRY[name] = factory
        return factory

    return deco


def make_arch(name: str, **config: Any) -> Arch:
    """Build a registered architecture, e.g. ``make_arch("siren", hidden=32)``."""
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown architecture {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**config)


def arch_from_spec(spec: Mapping[str, Any]) -> Arch:
    """Inverse of ``Arch.spec``: the registered arch of that name, or the ``factory`` called."""
    if spec.get("factory"):
        return dataclasses.replace(arch_factory(spec["factory"])(**spec.get("config", {})), factory=spec["factory"])
    return make_arch(spec["name"], **spec.get("config", {}))


def arch_factory(path: str) -> Callable[..., Arch]:
    """The function ``"package.module:function"`` names; ``UnknownNameError`` if it cannot be imported."""
    import importlib

    module, _, function = path.partition(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError, ValueError) as e:
        raise UnknownNameError(f"architecture factory {path!r} cannot be imported ({e}); give it as "
                               "'package.module:function' importable here") from e


def unregistered_arch_error(what: str, name: str, call: str) -> UnknownNameError:
    """The error for ``what`` (a saved zoo or run) of an architecture this process cannot rebuild:
    it names the ``call`` that passes the architecture, and the ``factory`` that makes it loadable
    anywhere."""
    return UnknownNameError(
        f"{what} of the unregistered architecture {name!r}, which this process cannot rebuild by itself: pass it, "
        f"{call} with ARCH the Arch you saved it with; or record, before saving, the importable function that "
        f"builds it, arch = dataclasses.replace(arch, factory='your_module:function', config={{...}}), and any "
        f"process rebuilds it, the command line included (your module on PYTHONPATH)")


def registered_archs() -> list[str]:
    return sorted(_REGISTRY)


# ----------------------------------------------------------------------------- adapters


def _infer_output_dim(init, apply, input_shape) -> int:
    params = jax.eval_shape(init, jax.random.key(0))
    out = jax.eval_shape(apply, params, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
    return int(math.prod(out.shape[1:]))


def arch_from_function(
    apply: Callable[[Params, Array], Array],
    init: Callable[[PRNGKey], Params],
    input_shape: tuple[int, ...],
    *,
    name: str = "function",
) -> Arch:
    """Wrap a user's own pure ``apply``/``init`` pair. To save zoos of it that load anywhere (and
    use them from the command line), build it in an importable function and record that:
    ``dataclasses.replace(arch, factory="mypackage.nets:my_arch", config={...})``."""
    input_shape = tuple(input_shape)
    return Arch(name, init, apply, input_shape, _infer_output_dim(init, apply, input_shape))


def arch_from_linen(module: Any, input_shape: tuple[int, ...], *, name: str | None = None,
                    apply_kwargs: Mapping[str, Any] | None = None) -> Arch:
    """Wrap a ``flax.linen`` module. Params are its ``"params"`` collection, or, for modules with
    other state (``batch_stats`` of BatchNorm), every collection ``{"params": ..., "batch_stats":
    ...}``; ``apply_kwargs`` go to ``module.apply`` (e.g. ``{"train": False}`` so BatchNorm uses
    its running averages)."""
    input_shape = tuple(input_shape)
    apply_kwargs = dict(apply_kwargs or {})
    collections = tuple(jax.eval_shape(functools.partial(module.init, **apply_kwargs), jax.random.key(0),
                                       jnp.zeros((1, *input_shape))))
    only_params = collections == ("params",)

    def init(key: PRNGKey) -> Params:
        variables = module.init(key, jnp.zeros((1, *input_shape)), **apply_kwargs)
        return variables["params"] if only_params else dict(variables)

    def apply(params: Params, x: Array) -> Array:
        return module.apply({"params": params} if only_params else params, x, **apply_kwargs)

    return arch_from_function(apply, init, input_shape, name=name or type(module).__name__)


def arch_from_nnx(
    make_module: Callable[[Any], Any], input_shape: tuple[int, ...], *, name: str | None = None
) -> Arch:
    """Wrap a Flax NNX module factory ``rngs -> module``; params are its pure ``nnx.Param`` dict."""
    from flax import nnx

    from probegen_jax.training.learner import nnx_pure_functions

    init, apply = nnx_pure_functions(make_module)
    label = name or type(nnx.eval_shape(lambda: make_module(nnx.Rngs(0)))).__name__
    return arch_from_function(apply, init, tuple(input_shape), name=label)
