"""Atomic file writes (a reader never sees a half-written file) and reads that name the file at fault."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True).encode()))


def read_json(path: str | os.PathLike, error: type[Exception], *, missing: str = "file not found") -> Any:
    """The JSON in ``path``; a missing file raises ``error("<path>: <missing>")``, a damaged one
    ``error("<path>: not valid JSON (...)")``."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {missing}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise error(f"{path}: not valid JSON ({e})") from e


def write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def save_pytree(path: str | os.PathLike, tree: Any) -> None:
    """Save a pytree of arrays as an orbax checkpoint directory (replacing one already there)."""
    import orbax.checkpoint as ocp

    ocp.Checkpointer(ocp.StandardCheckpointHandler()).save(Path(path).absolute(), args=ocp.args.StandardSave(tree),
                                                           force=True)


def load_pytree(path: str | os.PathLike, abstract: Any) -> Any:
    """Restore a pytree saved by ``save_pytree`` into the structure of ``abstract`` (shape/dtype structs).

    Raises ``CheckpointError`` naming the directory when it is missing, damaged or of another model.
    """
    import orbax.checkpoint as ocp

    from probegen_jax.errors import CheckpointError

    path = Path(path).absolute()
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory missing")
    try:
        return ocp.Checkpointer(ocp.StandardCheckpointHandler()).restore(path, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax raises many types for damaged or mismatched checkpoints
        raise CheckpointError(f"{path}: cannot restore params ({type(e).__name__}: {e})") from e
