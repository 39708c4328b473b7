"""Save and load zoos as orbax checkpoints.

A saved zoo is one directory written atomically by orbax (a temporary directory renamed into
place on commit), holding two items: ``arrays`` (params, targets, splits; OCDBT/tensorstore, so a
70k-network zoo loads at disk speed) and ``meta`` (JSON: format version, architecture spec, how
the zoo was made).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from probegen_jax.archs import Arch, arch_from_spec, flatten_params
from probegen_jax.errors import UnknownNameError, ZooFormatError
from probegen_jax.io import read_json
from probegen_jax.zoo.zoo import Zoo

FORMAT = "probegen_jax.zoo"
FORMAT_VERSION = 1


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp, ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def save_zoo(zoo: Zoo, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``zoo`` to the directory ``path`` atomically; returns the path."""
    path = Path(path).absolute()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
    ocp, ckpt = _checkpointer()
    arrays = {
        "params": jax.tree.map(np.asarray, zoo.params),
        "targets": dict(zoo.targets),
        "splits": dict(zoo.splits),
    }
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": zoo.arch.spec() if zoo.arch.registered else {"name": zoo.arch.name, "config": {}},
        "arch_registered": zoo.arch.registered,
        "size": len(zoo),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "meta": dict(zoo.meta),
    }
    ckpt.save(path, ocp.args.Composite(arrays=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)),
              force=overwrite)
    return path


def read_zoo_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON record of a saved zoo, checked for format and version."""
    path = Path(path)
    meta_file = path / "meta" / "metadata"
    if not path.is_dir():
        raise ZooFormatError(f"{path}: no saved zoo here (directory not found)")
    meta = read_json(meta_file, ZooFormatError, missing=f"missing; {path} is not a complete saved zoo")
    if meta.get("format") != FORMAT:
        raise ZooFormatError(f"{meta_file}: not a probegen_jax zoo (format {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ZooFormatError(
            f"{path}: zoo written by format version {meta.get('format_version')}, this library reads "
            f"version {FORMAT_VERSION}; re-generate or convert the zoo"
        )
    return meta


def load_zoo(path: str | os.PathLike, *, arch: Arch | None = None) -> Zoo:
    """Load a zoo saved by ``save_zoo``. Pass ``arch`` for zoos of unregistered architectures."""
    path = Path(path).absolute()
    meta = read_zoo_meta(path)
    if arch is None:
        if not meta.get("arch_registered", True):
            raise UnknownNameError(
                f"{path}: zoo of unregistered architecture {meta['arch']['name']!r}; pass arch= to load_zoo"
            )
        arch = arch_from_spec(meta["arch"])
    ocp, ckpt = _checkpointer()
    try:
        restored = ckpt.restore(path, ocp.args.Composite(arrays=ocp.args.StandardRestore()))["arrays"]
    except Exception as e:  # orbax/tensorstore raise many types for damaged files
        raise ZooFormatError(f"{path / 'arrays'}: cannot restore zoo arrays ({type(e).__name__}: {e})") from e
    flat = {k: np.asarray(v) for k, v in flatten_params(restored.get("params", {})).items()}
    params = arch.unflatten(flat, where=f"{path}/arrays/params")
    return Zoo(arch=arch, params=params, targets=restored.get("targets", {}) or {},
               splits=restored.get("splits", {}) or {}, meta=meta["meta"])
