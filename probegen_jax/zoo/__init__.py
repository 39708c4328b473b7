"""Model zoos: the ``Zoo`` container, its storage and the public formats (generation lives in ``probegen_jax.make``).

Names are imported on first use, so a process that only needs a submodule without JAX (a worker
parsing zoo files, ``zoo.formats.inr_files``) does not import JAX."""

import importlib
from typing import Any

_NAMES = {"FORMAT_VERSION": "store", "load_zoo": "store", "read_zoo_meta": "store", "save_zoo": "store",
          "SPLITS": "zoo", "Zoo": "zoo"}


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_NAMES))


__all__ = ["FORMAT_VERSION", "SPLITS", "Zoo", "load_zoo", "read_zoo_meta", "save_zoo"]
