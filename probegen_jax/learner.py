"""A ``Learner`` is what the training loop trains: ``init(key) -> params`` and
``apply(params, inputs) -> predictions`` over a batch whose leading axis is the zoo axis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from probegen_jax.types import Array, Params, PRNGKey, PyTree


class Learner(NamedTuple):
    init: Callable[[PRNGKey], Params]
    apply: Callable[[Params, PyTree], Array]


def learner_from_nnx(make_module: Callable[[Any], Any]) -> Learner:
    """Wrap a Flax NNX module factory ``rngs -> module`` whose ``__call__(inputs)`` predicts.

    Its ``nnx.Param`` state is the params pytree; the module is rebuilt by ``nnx.merge``.
    """
    return Learner(*nnx_pure_functions(make_module))


def nnx_pure_functions(make_module: Callable[[Any], Any]) -> tuple[Callable, Callable]:
    """``(init(key) -> pure param dict, apply(params, x) -> module(x))`` for an NNX module factory."""
    import jax
    from flax import nnx

    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: make_module(nnx.Rngs(0))))

    def init(key: PRNGKey) -> Params:
        return nnx.to_pure_dict(nnx.split(make_module(nnx.Rngs(key)))[1])

    def apply(params: Params, inputs: PyTree) -> Array:
        state = jax.tree.map(lambda a: a, abstract)
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state)(inputs)

    return init, apply
