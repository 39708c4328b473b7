"""A ``Learner`` is what the training loop trains: ``init(key) -> params`` and
``apply(params, inputs) -> predictions`` over a batch whose leading axis is the zoo axis, and,
where its head takes dropout, ``apply_train(params, inputs, key, rate) -> predictions``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from probegen_jax.types import Array, Params, PRNGKey, PyTree


class Learner(NamedTuple):
    init: Callable[[PRNGKey], Params]
    apply: Callable[[Params, PyTree], Array]
    apply_train: Callable[[Params, PyTree, PRNGKey, float], Array] | None = None  # with dropout at a rate


def learner_from_nnx(make_module: Callable[[Any], Any]) -> Learner:
    """Wrap a Flax NNX module factory ``rngs -> module`` whose ``__call__(inputs)`` predicts.

    Its ``nnx.Param`` state is the params pytree; the module is rebuilt by ``nnx.merge``.
    """
    return Learner(*nnx_pure_functions(make_module))


def nnx_pure_functions(make_module: Callable[[Any], Any]) -> tuple[Callable, Callable]:
    """``(init(key) -> pure param dict, apply(params, x) -> module(x))`` for an NNX module factory."""
    init, methods = nnx_pure_methods(make_module, ("__call__",))
    return init, methods["__call__"]


def nnx_pure_methods(make_module: Callable[[Any], Any], names: tuple[str, ...]) -> tuple[Callable, dict[str, Callable]]:
    """``(init(key) -> pure param dict, {name: fn(params, *args, **kw) -> module.name(*args, **kw)})``.

    The module is rebuilt from the pure dict by ``nnx.merge`` inside each call, so every function
    is pure (jit, vmap and grad apply) and the params are a plain pytree.
    """
    import jax
    from flax import nnx

    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: make_module(nnx.Rngs(0))))

    def init(key: PRNGKey) -> Params:
        return nnx.to_pure_dict(nnx.split(make_module(nnx.Rngs(key)))[1])

    def method(name: str) -> Callable:
        def fn(params: Params, *args: Any, **kwargs: Any) -> Any:
            state = jax.tree.map(lambda a: a, abstract)
            nnx.replace_by_pure_dict(state, params)
            return getattr(nnx.merge(graphdef, state), name)(*args, **kwargs)

        return fn

    return init, {name: method(name) for name in names}
