"""What a function computes, read from its abstractly traced program (nothing is run)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax


def equations(fn: Callable, *args) -> Iterator[Any]:
    """Every equation of ``fn(*args)`` traced abstractly (``args`` may be ``ShapeDtypeStruct``s),
    those of nested calls included: jit, scan, cond, custom derivatives, remat."""
    def nested(value):
        if hasattr(value, "eqns"):
            yield value
        elif hasattr(getattr(value, "jaxpr", None), "eqns"):
            yield value.jaxpr
        elif isinstance(value, (tuple, list)):
            for v in value:
                yield from nested(v)

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            yield eqn
            for value in eqn.params.values():
                for sub in nested(value):
                    yield from walk(sub)

    yield from walk(jax.make_jaxpr(fn)(*args).jaxpr)


def contains_convolution(fn: Callable, *args) -> bool:
    """Whether ``fn(*args)`` runs a convolution anywhere."""
    return any(eqn.primitive.name == "conv_general_dilated" for eqn in equations(fn, *args))


def largest_array_bytes(fn: Callable, *args) -> int:
    """Bytes of the largest array ``fn(*args)`` creates (0 when it creates none)."""
    return max((v.aval.size * v.aval.dtype.itemsize for eqn in equations(fn, *args) for v in eqn.outvars
                if hasattr(v.aval, "size")), default=0)
