"""Arrays of a saved pytree read by rows, when and where they are needed (partial reads).

``load_zoo(path, lazy=True)`` gives a zoo whose params are ``StoredRows``: a NumPy-compatible
stand-in for a saved ``[N, ...]`` array that holds no data. Selecting members (``take``, as
``Zoo.inputs`` and ``Zoo.subset`` do) stays lazy; placing it on a mesh (``parallel.place_on_mesh``)
reads, on each process, only the rows its own devices hold, verifying only the checksum blocks
that hold them. Anything else (``np.asarray``, indexing) reads the rows selected, then. So on a pod
each host reads about the zoo's size over the process count, and ``reads`` says which rows it did.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from probegen_jax.errors import NonFiniteWeightsError
from probegen_jax.io import StoredLeaf
from probegen_jax.types import PyTree


class StoredRows:
    """Rows ``rows`` of the saved array ``leaf`` (all of them by default), read when asked for.

    ``reads`` (shared by every selection of the same leaf) lists the source rows each read took,
    in order. Every read is verified (unless ``verify=False``) and refused with
    ``NonFiniteWeightsError`` when it holds NaN or inf.
    """

    def __init__(self, leaf: StoredLeaf, rows: np.ndarray | None = None, *, verify: bool = True,
                 reads: list[np.ndarray] | None = None) -> None:
        if not leaf.shape:
            raise ValueError(f"{leaf.file}: leaf {leaf.name} is a scalar; it has no rows")
        self.leaf = leaf
        self.rows = np.arange(leaf.shape[0]) if rows is None else np.asarray(rows, np.int64)
        self.verify = verify
        self.reads = [] if reads is None else reads

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.leaf.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.leaf.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"StoredRows({self.leaf.name}: {self.dtype}{list(self.shape)} of {self.leaf.file})"

    def take(self, indices: np.ndarray | slice) -> StoredRows:
        """Rows ``indices`` of this selection (an index array or slice), still unread."""
        return StoredRows(self.leaf, self.rows[indices], verify=self.verify, reads=self.reads)

    def read(self, indices: Any = slice(None)) -> np.ndarray:
        """Rows ``indices`` of this selection, read from the file now."""
        rows = np.atleast_1d(self.rows[indices])
        array = self.leaf.read_rows(rows, verify=self.verify)
        self.reads.append(rows)
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            bad = int((~np.isfinite(array.reshape(len(array), -1))).any(axis=1).sum())
            raise NonFiniteWeightsError(f"{self.leaf.file}: leaf {self.leaf.name}: NaN or inf weights in {bad} of "
                                        f"the {len(array)} networks read")
        return array

    def __getitem__(self, key: Any) -> np.ndarray:
        """NumPy indexing; the first index selects rows, read now."""
        first, *rest = key if isinstance(key, tuple) and key else (key,)
        if isinstance(first, (int, np.integer)):
            return self.read(first)[0][tuple(rest)]
        return self.read(first)[(slice(None), *rest)]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        array = self.read()
        return array if dtype is None else array.astype(dtype, copy=False)


def is_stored(leaf: Any) -> bool:
    return isinstance(leaf, StoredRows)


def take_rows(tree: PyTree, indices: np.ndarray) -> PyTree:
    """Rows ``indices`` of every leaf: still unread for ``StoredRows``, indexed for arrays."""
    return jax.tree.map(lambda a: a.take(indices) if is_stored(a) else a[indices], tree)


def in_memory(tree: PyTree) -> PyTree:
    """``tree`` with every ``StoredRows`` leaf read into a NumPy array (other leaves as they are)."""
    return jax.tree.map(lambda a: np.asarray(a) if is_stored(a) else a, tree)


def has_stored(tree: PyTree) -> bool:
    return any(is_stored(a) for a in jax.tree.leaves(tree))


def rows_read(tree: PyTree) -> dict[str, np.ndarray]:
    """``{leaf name: sorted unique source rows read so far}`` of the ``StoredRows`` in ``tree``."""
    return {a.leaf.name: np.unique(np.concatenate(a.reads)) if a.reads else np.zeros(0, np.int64)
            for a in jax.tree.leaves(tree) if is_stored(a)}
