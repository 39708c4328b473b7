"""A fast, restricted reader of PyTorch's zip checkpoint files, for the plain case: nested
dicts/lists of tensors and Python scalars (state dicts, ``{"model": ..., "config": {...}}``).

``torch.load(..., weights_only=True)`` costs about a millisecond per small file, and even
``zipfile`` spends most of its time on bookkeeping, which makes a zoo of 70,000 INR files
CPU-bound far below disk speed. This reader takes the file in one read and parses PyTorch's
zip layout directly (``<archive>/data.pkl`` plus one stored, uncompressed
``<archive>/data/<key>`` entry per storage; CRC-32 checked), with an unpickler that admits only
``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the numeric storage types.
Tensors come back as numpy arrays (bounds-checked, copied out of the file's bytes).

Anything valid but beyond that (other classes, legacy non-zip files, compressed entries,
bfloat16, big-endian files) raises ``Unsupported`` and the caller falls back to ``torch.load``;
a damaged file raises ``DamagedFile``.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # central directory file header
_LOCAL = struct.Struct("<4s5H3L2H")  # local file header
_SATURATED = 0xFFFFFFFF


class Unsupported(Exception):
    """The file needs ``torch.load`` (it holds more than tensors and plain containers)."""


class DamagedFile(ValueError):
    """The file's zip structure or contents are inconsistent (truncated, overwritten...)."""


def _unpack(fmt: struct.Struct, data: bytes, offset: int, what: str) -> tuple:
    if offset < 0 or offset + fmt.size > len(data):
        raise DamagedFile(f"{what} at byte {offset} lies outside the file ({len(data)} bytes)")
    return fmt.unpack_from(data, offset)


def _zip64_value(extra: bytes, index: int) -> int:
    """The ``index``-th 8-byte value of the zip64 extra field (id 0x0001)."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<2H", extra, pos)
        if tag == 1 and 8 * (index + 1) <= size and pos + 4 + size <= len(extra):
            return struct.unpack_from("<Q", extra, pos + 4 + 8 * index)[0]
        pos += 4 + size
    raise DamagedFile("a saturated zip field has no zip64 extra record")


def zip_entries(data: bytes) -> dict[str, memoryview]:
    """``{name: contents}`` of a zip file whose entries are all stored (PyTorch's writer)."""
    if data[:4] != b"PK\x03\x04":
        raise Unsupported("not a zip file")
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - _EOCD.size - 0xFFFF))
    if end < 0:
        raise DamagedFile("no end-of-central-directory record (truncated?)")
    _, _, _, _, count, cd_size, cd_offset, _ = _unpack(_EOCD, data, end, "end of central directory")
    if _SATURATED in (cd_size, cd_offset) or count == 0xFFFF:
        sig, _, z64_offset, _ = _unpack(_ZIP64_LOCATOR, data, end - _ZIP64_LOCATOR.size, "zip64 locator")
        fields = _unpack(_ZIP64_EOCD, data, z64_offset, "zip64 end of central directory")
        if sig != b"PK\x06\x07" or fields[0] != b"PK\x06\x06":
            raise DamagedFile("damaged zip64 end-of-central-directory record")
        count, cd_size, cd_offset = fields[6], fields[7], fields[8]
    view, entries, pos = memoryview(data), {}, cd_offset
    for _ in range(count):
        (sig, _, _, _, method, _, _, crc, size, raw_size, name_len, extra_len, comment_len,
         _, _, _, offset) = _unpack(_CENTRAL, data, pos, "central directory entry")
        if sig != b"PK\x01\x02":
            raise DamagedFile(f"bad central directory signature at byte {pos}")
        name = data[pos + _CENTRAL.size: pos + _CENTRAL.size + name_len].decode("utf-8", "replace")
        extra = data[pos + _CENTRAL.size + name_len: pos + _CENTRAL.size + name_len + extra_len]
        pos += _CENTRAL.size + name_len + extra_len + comment_len
        saturated = [v == _SATURATED for v in (raw_size, size, offset)]
        raw_size, size, offset = (_zip64_value(extra, sum(saturated[:i])) if sat else v
                                  for i, (sat, v) in enumerate(zip(saturated, (raw_size, size, offset))))
        if method != 0:
            raise Unsupported(f"compressed zip entry {name}")
        local = _unpack(_LOCAL, data, offset, f"local header of {name}")
        if local[0] != b"PK\x03\x04":
            raise DamagedFile(f"bad local header of {name} at byte {offset}")
        start = offset + _LOCAL.size + local[9] + local[10]
        if start + size > len(data) or size != raw_size:
            raise DamagedFile(f"zip entry {name} ({size} bytes at {start}) runs past the file's end")
        contents = view[start: start + size]
        if zlib.crc32(contents) != crc:
            raise DamagedFile(f"CRC-32 mismatch in zip entry {name}")
        entries[name] = contents
    return entries


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(STORAGE_DTYPES[name])


def _rebuild_tensor_v2(storage: np.ndarray, offset: Any, size: Any, stride: Any, *_: Any) -> np.ndarray:
    """The tensor ``storage[offset:]`` viewed with ``size``/``stride`` (in elements), copied."""
    if not (isinstance(offset, int) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) and all(isinstance(d, int) and d >= 0 for d in size + stride)
            and offset >= 0):
        raise Unsupported("malformed tensor record")
    numel = math.prod(size)
    if numel == 0:
        return np.zeros(size, storage.dtype)
    extent = offset + sum((d - 1) * s for d, s in zip(size, stride)) + 1
    if extent > storage.size:
        raise Unsupported(f"tensor reaches element {extent} of a storage of {storage.size}")
    if stride == _contiguous_strides(size):
        return storage[offset: offset + numel].reshape(size).copy()
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=[s * item for s in stride],
                                           writeable=False)
    return np.array(view)


def _contiguous_strides(size: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for d in reversed(size):
        strides.append(step)
        step *= d
    return tuple(reversed(strides))


class _Unpickler(pickle.Unpickler):
    def __init__(self, entries: dict[str, memoryview], prefix: str):
        super().__init__(io.BytesIO(entries[f"{prefix}/data.pkl"]))
        self.entries = entries
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
            raw = self.entries.get(f"{self.prefix}/data/{key}")
            if raw is None:
                raise DamagedFile(f"missing storage {key}")
            dtype = storage_type.dtype
            if len(raw) % dtype.itemsize or (isinstance(numel, int) and len(raw) // dtype.itemsize < numel):
                raise DamagedFile(f"storage {key} holds {len(raw)} bytes, fewer than {numel} {dtype}")
            self.storages[key] = np.frombuffer(raw, dtype)
        return self.storages[key]


def load(path: str | Path, *, data: bytes | None = None) -> Any:
    """The object a plain PyTorch zip file holds (its bytes ``data`` when already read), tensors
    as numpy arrays; ``Unsupported`` when it needs ``torch.load``, ``DamagedFile`` (or a
    ``pickle`` error) for a damaged file."""
    entries = zip_entries(Path(path).read_bytes() if data is None else data)
    pkl = [n for n in entries if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise Unsupported("not a single-archive torch zip file")
    prefix = pkl[0].split("/")[0]
    byteorder = entries.get(f"{prefix}/byteorder")  # files from before this record are little-endian
    if byteorder is not None and bytes(byteorder).strip() != b"little":
        raise Unsupported("big-endian file")
    return _Unpickler(entries, prefix).load()
