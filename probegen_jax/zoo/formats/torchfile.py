"""A fast, restricted reader of PyTorch's zip checkpoint files, for the plain case: nested
dicts/lists of tensors and Python scalars (state dicts, ``{"model": ..., "config": {...}}``).

``torch.load(..., weights_only=True)`` costs about a millisecond per small file, which makes a
zoo of 70,000 INR files CPU-bound far below disk speed. This reader parses the same zip layout
(``<archive>/data.pkl`` plus one ``<archive>/data/<key>`` entry per storage) with an unpickler
that admits only ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the
numeric storage types, and turns every tensor into a numpy array (bounds-checked views copied
out of the storage bytes). Anything else (other classes, legacy non-zip files, bfloat16,
big-endian files) raises ``Unsupported`` and the caller falls back to ``torch.load``.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class Unsupported(Exception):
    """The file needs ``torch.load`` (it holds more than tensors and plain containers)."""


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(STORAGE_DTYPES[name])


def _rebuild_tensor_v2(storage: np.ndarray, offset: Any, size: Any, stride: Any, *_: Any) -> np.ndarray:
    """The tensor ``storage[offset:]`` viewed with ``size``/``stride`` (in elements), copied."""
    if not (isinstance(offset, int) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) and all(isinstance(d, int) and d >= 0 for d in size + stride)
            and offset >= 0):
        raise Unsupported("malformed tensor record")
    if math.prod(size) == 0:
        return np.zeros(size, storage.dtype)
    extent = offset + sum((d - 1) * s for d, s in zip(size, stride)) + 1
    if extent > storage.size:
        raise Unsupported(f"tensor reaches element {extent} of a storage of {storage.size}")
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=[s * item for s in stride],
                                           writeable=False)
    return np.array(view)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.prefix = prefix
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise Unsupported(f"global {module}.{name}")

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)):
            raise Unsupported(f"persistent id {pid!r:.80}")
        _, storage_type, key, _, numel = pid
        if key not in self.storages:
            try:
                raw = self.archive.read(f"{self.prefix}/data/{key}")
            except KeyError as e:
                raise Unsupported(f"missing storage {key}") from e
            dtype = storage_type.dtype
            if len(raw) % dtype.itemsize or (isinstance(numel, int) and len(raw) // dtype.itemsize < numel):
                raise Unsupported(f"storage {key} holds {len(raw)} bytes")
            self.storages[key] = np.frombuffer(raw, dtype)
        return self.storages[key]


def load(path: str | Path) -> Any:
    """The object a plain PyTorch zip file holds, tensors as numpy arrays; ``Unsupported``
    when it needs ``torch.load`` (``zipfile``/``pickle`` errors mean a damaged file)."""
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise Unsupported("not a single-archive torch zip file")
        prefix = pkl[0].split("/")[0]
        try:
            if archive.read(f"{prefix}/byteorder").strip() != b"little":
                raise Unsupported("big-endian file")
        except KeyError:
            pass  # files from before the byteorder record are little-endian
        return _Unpickler(archive.read(pkl[0]), archive, prefix).load()
