"""OmegaConf configs inside a pickle, read as plain dicts and lists without OmegaConf.

Reference trainers (CNN Wild Park's) save their Hydra config in every checkpoint as an
``omegaconf.DictConfig``. OmegaConf 2.x pickles each container and node as its class built with
no arguments (``NEWOBJ``) followed by its state (``BUILD``):

- containers ``omegaconf.dictconfig.DictConfig``, ``omegaconf.listconfig.ListConfig`` (and
  ``omegaconf.tupleconfig.TupleConfig``): ``{"_metadata": ..., "_parent": ..., "_content": c}``
  with ``c`` a dict of key -> node, a list of nodes, ``None``, or a string (``???``, ``${...}``);
- value nodes ``omegaconf.nodes.{Any,String,Integer,Float,Boolean,Bytes}Node``:
  ``{"_metadata": ..., "_parent": ..., "_val": value}``; ``omegaconf.base.UnionNode`` keeps a
  node or a value under ``_content``;
- ``omegaconf.base.Metadata`` / ``ContainerMetadata``: dataclasses whose fields hold type hints
  (``typing.Any``, ``builtins.dict``, ...) and ``resolver_cache``, a ``collections.defaultdict(dict)``.

``find_class`` admits exactly these names, each as an inert stand-in that only keeps its state
(type hints as names, never the types themselves); ``to_plain`` then turns containers into dicts
and lists and nodes into their values. Interpolations and missing values stay the strings they
were written as. Every other global stays refused: an enum's class (``EnumNode``), a structured
config's dataclass, ``pathlib`` (``PathNode``).
"""

from __future__ import annotations

import _compat_pickle
import dataclasses
from typing import Any


class _StandIn:
    """An object a pickle builds from an admitted class: it keeps its state and nothing else."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Container(_StandIn):
    """DictConfig, ListConfig or TupleConfig."""


class _Node(_StandIn):
    """A value node (``_val``) or a union node (``_content``)."""


class _Metadata(_StandIn):
    """A node's or container's metadata (dropped)."""


@dataclasses.dataclass(frozen=True)
class TypeHint:
    """A type named in a node's metadata, kept as its name (never called)."""

    name: str


def _empty_cache(*_: Any) -> dict:
    """``collections.defaultdict(dict)``, the metadata's resolver cache, as an empty dict."""
    return {}


STAND_INS: dict[tuple[str, str], Any] = {
    **{("omegaconf.dictconfig", "DictConfig"): _Container, ("omegaconf.listconfig", "ListConfig"): _Container,
       ("omegaconf.tupleconfig", "TupleConfig"): _Container, ("omegaconf.base", "UnionNode"): _Node,
       ("omegaconf.base", "Metadata"): _Metadata, ("omegaconf.base", "ContainerMetadata"): _Metadata,
       ("collections", "defaultdict"): _empty_cache},
    **{("omegaconf.nodes", f"{kind}Node"): _Node for kind in ("Any", "String", "Integer", "Float", "Boolean", "Bytes")},
    **{(module, name): TypeHint(f"{module}.{name}") for module, names in
       (("typing", ("Any", "Dict", "List", "Tuple")),
        ("builtins", ("dict", "list", "tuple", "int", "float", "str", "bool", "bytes", "object")))
       for name in names},
}


def find(module: str, name: str) -> Any | None:
    """The stand-in for global ``module.name`` (Python 2 names mapped as pickle maps them), or None
    when it is not an admitted OmegaConf name."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return STAND_INS.get((module, name))


def _content(stand_in: _StandIn, key: str) -> Any:
    state = stand_in.state
    if not isinstance(state, dict) or key not in state:
        raise ValueError(f"an OmegaConf {type(stand_in).__name__.strip('_').lower()} without {key!r} in its state")
    return state[key]


def to_plain(obj: Any) -> Any:
    """``obj`` with every OmegaConf container a dict or list and every node its value; other
    containers keep their type, other values (tensors) are returned as they are."""
    if isinstance(obj, _Container):
        content = _content(obj, "_content")
        if isinstance(content, dict):
            return {to_plain(k): to_plain(v) for k, v in content.items()}
        return [to_plain(v) for v in content] if isinstance(content, (list, tuple)) else to_plain(content)
    if isinstance(obj, _Node):
        state = obj.state if isinstance(obj.state, dict) else {}
        return to_plain(_content(obj, "_val" if "_val" in state else "_content"))
    if isinstance(obj, _StandIn):
        raise ValueError("OmegaConf metadata where a value was expected")
    if isinstance(obj, dict):
        return type(obj)((k, to_plain(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_plain(v) for v in obj)
    return obj
