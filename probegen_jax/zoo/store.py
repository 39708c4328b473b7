"""Save and load zoos.

A saved zoo (format version 2) is one folder written by ``io.save_pytree``: ``arrays.bin``
(params, targets, splits) and ``manifest.json`` (every array's dtype, shape and block checksums,
and the zoo's record: format version, architecture spec, how the zoo was made), written under a
temporary name and renamed into place when complete. Loading verifies every checksum; a damaged
file raises ``IntegrityError`` naming it. ``load_zoo(lazy=True)`` leaves the params on disk, read by
rows when used. Zoos of format version 1 (orbax folders) still load, unchecked, with a warning.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from probegen_jax.archs import Arch, arch_from_spec, flatten_params, unregistered_arch_error
from probegen_jax.errors import ZooFormatError
from probegen_jax.io import is_pytree_dir, load_pytree, load_record, read_json, save_pytree
from probegen_jax.stored import is_stored
from probegen_jax.zoo.zoo import Zoo

FORMAT = "probegen_jax.zoo"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
LEGACY_META = Path("meta") / "metadata"  # format 1: orbax's JSON item


def save_zoo(zoo: Zoo, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``zoo`` to the folder ``path`` atomically, with checksums; returns the path."""
    path = Path(path).absolute()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
    arrays = {
        "params": jax.tree.map(np.asarray, zoo.params),  # (a lazily loaded zoo's params read here)
        "targets": dict(zoo.targets),
        "splits": dict(zoo.splits),
    }
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": zoo.arch.spec() if zoo.arch.registered else {"name": zoo.arch.name, "config": {}},
        "arch_registered": zoo.arch.registered,
        "size": len(zoo),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "meta": dict(zoo.meta),
    }
    return save_pytree(path, arrays, record=record)


def _check_record(record: Any, where: Path) -> dict[str, Any]:
    """The zoo record, checked for the fields the loader reads."""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        got = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ZooFormatError(f"{where}: not a probegen_jax zoo (format {got!r})")
    version = record.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ZooFormatError(f"{where}: zoo written by format version {version}, this library reads versions "
                             f"{list(READABLE_VERSIONS)}; re-generate the zoo or upgrade probegen_jax")
    arch = record.get("arch")
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str) or not isinstance(arch.get("config", {}), dict):
        raise ZooFormatError(f"{where}: no architecture spec ('arch': {{'name', 'config'}}); the record is damaged")
    if not isinstance(record.get("meta", {}), dict):
        raise ZooFormatError(f"{where}: 'meta' is not a JSON object; the record is damaged")
    return record


def read_zoo_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The record of a saved zoo (verified against its checksum), checked for format and version."""
    path = Path(path).absolute()
    if not path.is_dir():
        raise ZooFormatError(f"{path}: no saved zoo here (directory not found)")
    if is_pytree_dir(path):
        return _check_record(load_record(path, ZooFormatError), path / "manifest.json")
    legacy = path / LEGACY_META
    if not legacy.exists():
        raise ZooFormatError(f"{path}: not a complete saved zoo (no manifest.json); save it again")
    record = _check_record(read_json(legacy, ZooFormatError), legacy)
    if record["format_version"] != 1:
        raise ZooFormatError(f"{legacy}: format version {record['format_version']} in an orbax folder; damaged")
    return record


def load_zoo(path: str | os.PathLike, *, arch: Arch | None = None, verify: bool = True, lazy: bool = False) -> Zoo:
    """Load a zoo saved by ``save_zoo``. Pass ``arch`` for zoos of unregistered architectures;
    ``verify=False`` skips the checksums. ``lazy=True`` reads targets and splits only: the params
    are ``stored.StoredRows``, read by rows when used (on a multi-process mesh each process reads
    the rows its devices hold); zoos of format version 1 are read whole."""
    path = Path(path).absolute()
    meta = read_zoo_meta(path)
    if arch is None:
        if not meta.get("arch_registered", True):
            raise unregistered_arch_error(f"{path}: zoo", meta["arch"]["name"], f"pj.load_zoo({str(path)!r}, arch=ARCH)")
        arch = arch_from_spec(meta["arch"])
    restored = load_pytree(path, error=ZooFormatError, verify=verify,
                           lazy=(lambda keys: keys[:1] == ("params",)) if lazy else None) \
        if meta["format_version"] >= 2 else _load_v1_arrays(path)
    if not isinstance(restored, dict):
        raise ZooFormatError(f"{path}: the saved arrays are not a zoo's (params, targets, splits)")
    flat = {k: v if is_stored(v) else np.asarray(v) for k, v in flatten_params(restored.get("params", {})).items()}
    params = arch.unflatten(flat, where=f"{path}/params")
    _check_dtypes(arch, params, path)
    return Zoo(arch=arch, params=params, targets=restored.get("targets", {}) or {},
               splits=restored.get("splits", {}) or {}, meta=meta.get("meta", {}))


def _check_dtypes(arch: Arch, params: Any, path: Path) -> None:
    """Refuse params of another kind or narrower than the architecture's (arrays rewritten as
    int32 or float16, say); wider floats (float64 for float32) are kept."""
    for (keys, want), got in zip(jax.tree_util.tree_leaves_with_path(arch.param_shapes()), jax.tree.leaves(params),
                                 strict=True):
        want_dtype, got_dtype = np.dtype(want.dtype), np.dtype(got.dtype)
        if got_dtype.kind != want_dtype.kind or got_dtype.itemsize < want_dtype.itemsize:
            raise ZooFormatError(f"{path}: params{jax.tree_util.keystr(keys)} are {got_dtype}, the "
                                 f"architecture's are {want.dtype}; the zoo's arrays were rewritten or damaged")


def _load_v1_arrays(path: Path) -> dict[str, Any]:
    """The arrays of a format-1 zoo (an orbax composite checkpoint), unchecked."""
    import orbax.checkpoint as ocp

    warnings.warn(f"{path}: zoo of format version 1 has no checksums and loads unchecked; save it again "
                  "(load_zoo then save_zoo) to add them", stacklevel=3)
    try:
        ckpt = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
        return ckpt.restore(path, ocp.args.Composite(arrays=ocp.args.StandardRestore()))["arrays"]
    except Exception as e:  # orbax/tensorstore raise many types for damaged files
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise ZooFormatError(f"{path / 'arrays'}: cannot restore zoo arrays ({type(e).__name__}: {first})") from e
