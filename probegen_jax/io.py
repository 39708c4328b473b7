"""The one storage layer of the library: every pytree and JSON record it writes goes through here.

* ``write_json`` / ``read_json``: a JSON record written atomically, with a ``<name>.sha256``
  checksum file beside it (``sha256sum -c`` reads it); a record that no longer matches its
  checksum raises ``IntegrityError`` naming the file.
* ``save_pytree`` / ``load_pytree``: a pytree of arrays as a folder holding ``arrays.bin`` (the
  leaves' bytes, 64-byte aligned) and ``manifest.json`` (each leaf's path, dtype, shape, offset
  and one checksum per 1 MiB block, see ``block_digest``; itself checksummed), plus an optional
  JSON ``record`` kept in the manifest. ``StoredLeaf.read_rows`` reads and verifies only the
  blocks holding the rows asked for (each process of a pod reads its own share). The folder is written under a temporary name and renamed into place when complete, so a reader
  sees the old version or the new one, never a mix. Loading checks every leaf's checksum, and its
  dtype and shape against the manifest and the caller's template.
* ``staged_dir``: the same write-then-rename for any folder (exports); temporary folders left by
  killed processes are removed by the next save to the same place.

Folders saved by orbax (zoo format 1, older run params) still load, without checksums.

In a multi-process JAX run every process calls the same writes: the main process does them and
the others wait for it (``process_local_writes`` for work each process writes to its own paths).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import xxhash

from probegen_jax.errors import CheckpointError, IntegrityError

PYTREE_FORMAT = "probegen_jax.pytree"
PYTREE_VERSION = 2
READABLE_PYTREE_VERSIONS = (1, 2)  # 1: one checksum per leaf (read whole); 2: one per block (rows readable alone)
MANIFEST = "manifest.json"
DATA = "arrays.bin"
CHECKSUM_SUFFIX = ".sha256"
ALIGN = 64
BLOCK_WORDS, BLOCK_ROWS = 512, 256  # a checksum block: up to 256 rows of 512 little-endian 64-bit words
BLOCK_BYTES = 8 * BLOCK_WORDS * BLOCK_ROWS  # 1 MiB, read and hashed while in cache
CHECKSUM_V1 = "blocksums-sha256"  # format version 1's whole-leaf checksum field
DIGESTS = "block_digests"  # format version 2: the hex of each block's ``block_digest``, in order
DIGEST = "xxh3_128"  # the hash of each block (recorded in the manifest)
DIGEST_BYTES = 16
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[^.]+$")


# ----------------------------------------------------------------------------- files


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-{os.getpid()}-"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders that killed processes left while writing ``path``
    (named ``.<name>.tmp-<pid>-*`` beside it, ``pid`` no longer running); returns them."""
    if not (_local_writes[0] or _writes_here()):  # another host's pids are not running here
        return []
    path = Path(path).absolute()
    removed = []
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            m = _TEMP.match(entry.name)
            if m is None or m["name"] != path.name or _pid_alive(int(m["pid"])):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    for entry in removed:
        warnings.warn(f"removed {entry}, left incomplete by a process that was killed while writing {path}",
                      stacklevel=3)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_temp_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` is one of this module's temporary files or folders (an incomplete write)."""
    return _TEMP.match(Path(path).absolute().name) is not None


_nested_writes = [0]
_local_writes = [0]


def _writes_here() -> bool:
    """Whether this process writes files: the only one, or the main one of a multi-process JAX run."""
    if "jax" not in sys.modules:  # no JAX, no multi-process run
        return True
    from probegen_jax.parallel import is_main_process

    return is_main_process()


def _barrier(name: str) -> None:
    if "jax" in sys.modules:  # no JAX, no multi-process run
        from probegen_jax.parallel import barrier

        barrier(name)


@contextlib.contextmanager
def _one_writer() -> Iterator[bool]:
    """Around every write: yields whether this process writes it. In a multi-process JAX run only
    the main process writes, and every process waits at the start of the outermost write (all
    have looked at what was there before) and at its end (the file is there to read)."""
    if _local_writes[0]:
        yield True
        return
    outermost = _nested_writes[0] == 0
    if outermost:
        _barrier("probegen_jax.io write starts")
    _nested_writes[0] += 1
    try:
        yield _writes_here()
    finally:
        _nested_writes[0] -= 1
    if outermost:
        _barrier("probegen_jax.io write ends")


@contextlib.contextmanager
def process_local_writes() -> Iterator[None]:
    """Within this block every process writes its own files, without waiting for the others (work
    split across processes, each writing its share to its own paths)."""
    _local_writes[0] += 1
    try:
        yield
    finally:
        _local_writes[0] -= 1


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it into place (mode as
    for any new file: 0666 less the umask); in a multi-process run, from the main process only."""
    with _one_writer() as writes:
        if writes:
            _atomic_write(path, write)


def _atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path))
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f, _naming(path):
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise an ``OSError`` that names no file (a failed write or fsync) as one naming ``path``."""
    try:
        yield
    except OSError as e:
        if e.filename:
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e


@contextlib.contextmanager
def staged_dir(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """A fresh temporary folder beside ``path``, renamed to ``path`` when the block completes
    (replacing a folder there when ``overwrite``) and removed if it fails. Temporary folders
    of killed writes to ``path`` are removed first. In a multi-process run the other processes
    get a private folder that is dropped (the main process writes ``path``)."""
    with _one_writer() as writes:
        if writes:
            with _staged_dir(path, overwrite=overwrite) as tmp:
                yield tmp
        else:
            with tempfile.TemporaryDirectory() as tmp:
                yield Path(tmp)


@contextlib.contextmanager
def _staged_dir(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path)))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        _fsync_dir(tmp)
        if path.exists() or path.is_symlink():
            if not overwrite:
                raise FileExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path)))
            os.replace(path, old / "old")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_bytes(path: str | os.PathLike, error: type[Exception], *, missing: str = "file not found") -> bytes:
    """The bytes of ``path``; a missing or unreadable file raises ``error`` naming it and why."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError as e:
        raise error(f"{path}: {missing}") from e
    except IsADirectoryError as e:
        raise error(f"{path}: is a folder, expected a file") from e
    except PermissionError as e:
        raise error(f"{path}: cannot read it (permission denied); check the file's permissions") from e
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror or e})") from e


# ----------------------------------------------------------------------------- JSON records


def checksum_file(path: str | os.PathLike) -> Path:
    """Where the checksum of the record ``path`` is kept."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_json(path: str | os.PathLike, obj: Any, *, checksum: bool = True) -> None:
    """Write ``obj`` as JSON to ``path`` atomically, and (``checksum``) its SHA-256 beside it."""
    write_checked_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode(), checksum=checksum)


def write_checked_bytes(path: str | os.PathLike, data: bytes, *, checksum: bool = True) -> None:
    """Write ``data`` to ``path`` atomically, and (``checksum``) its SHA-256 beside it, which
    ``read_checked_bytes`` verifies."""
    path = Path(path)
    for target in (path, checksum_file(path)):
        remove_stale_temps(target)
    if checksum:
        atomic_write(checksum_file(path), lambda f: f.write(f"{_sha256(data)}  {path.name}\n".encode()))
    atomic_write(path, lambda f: f.write(data))


def verify_checksum(path: Path, data: bytes, error: type[Exception], *, required: bool = False) -> None:
    """Check ``data`` (the contents of ``path``) against its checksum file; a missing checksum
    file is accepted (records of older versions, hand-written files) unless ``required``."""
    sidecar = checksum_file(path)
    if not sidecar.exists():
        if required:
            raise IntegrityError(f"{path}: its checksum file {sidecar.name} is missing; the save is incomplete "
                                 "or damaged: write it again")
        return
    fields = read_bytes(sidecar, error).split()
    if not fields or fields[0].decode(errors="replace") != _sha256(data):
        raise IntegrityError(f"{path}: contents do not match the checksum in {sidecar.name}: the file is damaged "
                             f"(or was edited by hand: delete {sidecar.name} to accept the edit)")


def read_checked_bytes(path: str | os.PathLike, error: type[Exception], *, missing: str = "file not found") -> bytes:
    """The bytes of ``path``, verified against its checksum file when there is one."""
    data = read_bytes(path, error, missing=missing)
    verify_checksum(Path(path), data, error)
    return data


def read_json(path: str | os.PathLike, error: type[Exception], *, missing: str = "file not found",
              require_checksum: bool = False, fields: Mapping[str, type | tuple[type, ...]] | None = None) -> Any:
    """The JSON in ``path``, checked against its checksum file when there is one (``IntegrityError``
    on a mismatch) and, given ``fields``, to be an object with those keys of those types. A missing
    file raises ``error("<path>: <missing>")``, an unreadable, damaged or malformed one ``error``
    saying why."""
    path = Path(path)
    data = read_bytes(path, error, missing=missing)
    verify_checksum(path, data, error, required=require_checksum)
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as e:
        raise error(f"{path}: not valid JSON ({e})") from e
    if fields is not None:
        check_fields(obj, fields, path, error)
    return obj


def check_fields(obj: Any, fields: Mapping[str, type | tuple[type, ...]], where: str | os.PathLike,
                 error: type[Exception]) -> None:
    """Raise ``error`` naming ``where`` unless ``obj`` is a JSON object whose ``fields`` have their types
    (``int`` fields refuse booleans)."""
    if not isinstance(obj, dict):
        raise error(f"{where}: expected a JSON object, got {type(obj).__name__}; the record is damaged")
    for key, kind in fields.items():
        value, kinds = obj.get(key), kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = "/".join(k.__name__ for k in kinds)
            raise error(f"{where}: field {key!r} is missing or not {names} (got {value!r:.60}); the record is damaged")


def write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


# ----------------------------------------------------------------------------- pytrees


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _dtype_name(dtype: np.dtype) -> str:
    return dtype.name if dtype.kind == "V" else dtype.str  # bfloat16 & co. by name, others with byte order


def _parse_dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:
        import jax.numpy as jnp

        return np.dtype(jnp.dtype(name))


def _block_sums(block: memoryview) -> bytes:
    """A block's row sums and column sums (mod 2^64) as 64-bit words in rows of ``BLOCK_WORDS``
    (the last block zero-padded to whole rows): the checksum of format version 1. Any change
    confined to one word, and any one or two flipped bits, changes a sum."""
    if len(block) % (8 * BLOCK_WORDS):
        padded = np.zeros(-(-len(block) // (8 * BLOCK_WORDS)) * 8 * BLOCK_WORDS, np.uint8)
        padded[:len(block)] = np.frombuffer(block, np.uint8)
        block = memoryview(padded)
    words = np.frombuffer(block, "<u8").reshape(-1, BLOCK_WORDS)
    return words.sum(axis=1, dtype=np.uint64).tobytes() + words.sum(axis=0, dtype=np.uint64).tobytes()


def block_digest(block: memoryview) -> bytes:
    """The checksum of one block of an array's bytes (format version 2): its XXH3-128 hash, one per
    ``BLOCK_BYTES`` of a leaf, in order, so that any rows of a leaf can be read and verified alone.
    Computed while the block just read is in cache, it costs a few percent of the read (SHA-256
    runs at about a twentieth of its speed); truncation and reordering change the sequence."""
    return xxhash.xxh3_128_digest(block)


def _leaf_checksum_v1(view: memoryview) -> str:
    """The whole-leaf checksum of format version 1: the SHA-256 of every block's sums and the size."""
    sha = hashlib.sha256()
    for start in range(0, len(view), BLOCK_BYTES):
        sha.update(_block_sums(view[start:start + BLOCK_BYTES]))
    sha.update(len(view).to_bytes(8, "little"))
    return sha.hexdigest()


def _blocks(nbytes: int) -> range:
    return range(0, nbytes, BLOCK_BYTES)


def _leaf_bytes(leaf: Any) -> tuple[np.ndarray, memoryview]:
    array = np.asarray(leaf)
    if array.dtype.hasobject:
        raise TypeError(f"cannot save a leaf of dtype object ({array!r:.80})")
    array = np.asarray(array, dtype=array.dtype.newbyteorder("="), order="C")  # (ascontiguousarray makes 0-d 1-d)
    return array, memoryview(array.reshape(-1).view(np.uint8))


def save_pytree(path: str | os.PathLike, tree: Any, *, record: Any = None) -> Path:
    """Save a pytree of arrays (and an optional JSON ``record``) to the folder ``path``, replacing
    one already there; every leaf's checksum goes into the checksummed manifest (in a multi-process
    run, from the main process only). Returns the path."""
    with _one_writer() as writes:
        if writes:
            _save_pytree(path, tree, record)
    return Path(path).absolute()


def _save_pytree(path: str | os.PathLike, tree: Any, record: Any) -> Path:
    import jax

    path = Path(path).absolute()
    flat, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))
    leaves, offset = [], 0
    with staged_dir(path) as tmp:
        with open(tmp / DATA, "wb") as f, _naming(path / DATA):
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            for keys, leaf in flat:
                array, data = _leaf_bytes(leaf)
                pad = -offset % ALIGN
                f.write(b"\0" * pad)
                offset += pad
                f.write(data)
                leaves.append({"path": [_key_name(k) for k in keys], "dtype": _dtype_name(array.dtype),
                               "shape": list(array.shape), "offset": offset, "nbytes": len(data),
                               DIGESTS: b"".join(block_digest(data[b:b + BLOCK_BYTES])
                                                 for b in _blocks(len(data))).hex()})
                offset += len(data)
            f.flush()
            os.fsync(f.fileno())
        write_json(tmp / MANIFEST, {"format": PYTREE_FORMAT, "version": PYTREE_VERSION, "data": DATA,
                                    "block_bytes": BLOCK_BYTES, "block_digest": DIGEST, "size": offset, "leaves": leaves, "record": record})
    return path


def is_pytree_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a pytree saved by ``save_pytree`` (not an older orbax folder)."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | os.PathLike, error: type[Exception] = CheckpointError) -> dict[str, Any]:
    """The verified manifest of a folder written by ``save_pytree``."""
    path = Path(path)
    if not path.is_dir():
        raise error(f"{path}: not found (expected a folder saved by this library)")
    file = path / MANIFEST
    if not file.exists():
        raise IntegrityError(f"{file}: missing; {path} is an incomplete or damaged save")
    manifest = read_json(file, error, require_checksum=True)
    if not isinstance(manifest, dict) or manifest.get("format") != PYTREE_FORMAT:
        raise error(f"{file}: not a manifest of this library's saved arrays")
    if manifest.get("version") not in READABLE_PYTREE_VERSIONS:
        raise error(f"{file}: saved arrays of format version {manifest.get('version')}; this library reads "
                    f"versions {list(READABLE_PYTREE_VERSIONS)}: upgrade probegen_jax")
    if manifest.get("block_bytes", BLOCK_BYTES) != BLOCK_BYTES or manifest.get("block_digest", DIGEST) != DIGEST:
        raise error(f"{file}: checksums {manifest.get('block_digest')} of {manifest.get('block_bytes')}-byte blocks; "
                    f"this library reads {DIGEST} of {BLOCK_BYTES}-byte blocks: upgrade probegen_jax")
    if not isinstance(manifest.get("leaves"), list):
        raise error(f"{file}: no list of leaves")
    return manifest


@dataclasses.dataclass(frozen=True)
class StoredLeaf:
    """One array of a folder written by ``save_pytree``, as its manifest records it: read whole or
    by rows (``read_rows``), each block read verified against its checksum."""

    file: Path
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int
    digests: bytes | None  # format 2: one per block
    checksum_v1: str | None = None  # format 1: one for the whole leaf

    @classmethod
    def from_manifest(cls, file: Path, leaf: Any, error: type[Exception]) -> StoredLeaf:
        try:
            name = "/".join(map(str, leaf.get("path", [])))
            dtype, shape = _parse_dtype(leaf["dtype"]), tuple(int(s) for s in leaf["shape"])
            offset, nbytes = int(leaf["offset"]), int(leaf["nbytes"])
            digests = bytes.fromhex(leaf[DIGESTS]) if DIGESTS in leaf else None
            checksum = None if digests is not None else str(leaf[CHECKSUM_V1])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise error(f"{file.parent / MANIFEST}: damaged leaf entry {leaf!r:.120}") from e
        if int(np.prod(shape)) * dtype.itemsize != nbytes:
            raise error(f"{file.parent / MANIFEST}: leaf {name}: {nbytes} bytes do not make a {dtype} array of "
                        f"shape {shape}")
        if digests is not None and len(digests) != DIGEST_BYTES * len(_blocks(nbytes)):
            raise error(f"{file.parent / MANIFEST}: leaf {name}: {len(digests)} bytes of block checksums for "
                        f"{len(_blocks(nbytes))} blocks; the manifest is damaged")
        return cls(file, name, dtype, shape, offset, nbytes, digests, checksum)

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:])) * self.dtype.itemsize

    def read(self, *, verify: bool = True) -> np.ndarray:
        """The whole array."""
        array = np.empty(self.shape, self.dtype)
        view = memoryview(array.reshape(-1).view(np.uint8))
        self._read_blocks(view, range(len(_blocks(self.nbytes))), verify=verify and self.digests is not None)
        if verify and self.checksum_v1 is not None and _leaf_checksum_v1(view) != self.checksum_v1:
            raise IntegrityError(f"{self.file}: leaf {self.name} fails its checksum: the file is damaged")
        return array

    def read_rows(self, rows: np.ndarray, *, verify: bool = True) -> np.ndarray:
        """Rows ``rows`` (indices into the leading axis, any order, repeats allowed), reading from
        the file only the checksum blocks that hold them and verifying those (a leaf of format
        version 1 has one checksum for the whole leaf: it is read whole)."""
        rows = np.asarray(rows, np.int64).reshape(-1)
        if not self.shape:
            raise ValueError(f"{self.file}: leaf {self.name} is a scalar; it has no rows to read")
        if rows.size and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"{self.file}: leaf {self.name}: rows out of range [0, {self.shape[0]})")
        if self.digests is None or self.row_bytes == 0:
            return self.read(verify=verify)[rows]
        wanted, inverse = np.unique(rows, return_inverse=True)
        first, last = wanted * self.row_bytes // BLOCK_BYTES, ((wanted + 1) * self.row_bytes - 1) // BLOCK_BYTES
        cover = np.zeros(len(_blocks(self.nbytes)) + 1, np.int64)  # blocks any wanted row touches
        np.add.at(cover, first, 1)
        np.add.at(cover, last + 1, -1)
        blocks = np.flatnonzero(np.cumsum(cover)[:-1] > 0)
        buffer = np.empty(len(blocks) * BLOCK_BYTES, np.uint8)
        self._read_blocks(memoryview(buffer), blocks, verify=verify)
        slot = np.full(len(cover), -1, np.int64)
        slot[blocks] = np.arange(len(blocks))
        starts = slot[first] * BLOCK_BYTES + wanted * self.row_bytes - first * BLOCK_BYTES
        out = np.empty((len(wanted), self.row_bytes), np.uint8)
        breaks = np.flatnonzero(np.diff(starts) != self.row_bytes) + 1  # runs of rows adjacent in the buffer
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(wanted)], strict=True):
            out[lo:hi] = buffer[starts[lo]:starts[lo] + (hi - lo) * self.row_bytes].reshape(hi - lo, -1)
        return out.view(self.dtype).reshape(len(wanted), *self.shape[1:])[inverse]

    def _read_blocks(self, buffer: memoryview, blocks: Sequence[int], *, verify: bool) -> None:
        """Read checksum blocks ``blocks`` (sorted) one after another into ``buffer``, each verified
        while it is in cache."""
        try:
            with open(self.file, "rb") as f:
                position = None
                for i, block in enumerate(map(int, blocks)):
                    start = block * BLOCK_BYTES
                    length = min(BLOCK_BYTES, self.nbytes - start)
                    if position != start:
                        f.seek(self.offset + start)
                    into = buffer[i * BLOCK_BYTES:i * BLOCK_BYTES + length]
                    if f.readinto(into) != length:
                        raise IntegrityError(f"{self.file}: truncated (leaf {self.name} runs past the end of the "
                                             "file): the save is damaged")
                    position = start + length
                    if verify and block_digest(into) != self.digests[DIGEST_BYTES * block:DIGEST_BYTES * (block + 1)]:
                        raise IntegrityError(f"{self.file}: leaf {self.name} fails its checksum (bytes {start}-"
                                             f"{start + length} of the leaf): the file is damaged")
        except FileNotFoundError as e:
            raise IntegrityError(f"{self.file}: missing; {self.file.parent} is an incomplete or damaged save") from e


def stored_leaves(path: str | os.PathLike, manifest: dict[str, Any],
                  error: type[Exception] = CheckpointError) -> list[StoredLeaf]:
    """The leaves a verified manifest lists, after checking that ``arrays.bin`` has the recorded size."""
    file = Path(path) / DATA
    try:
        size = file.stat().st_size
    except FileNotFoundError as e:
        raise IntegrityError(f"{file}: missing; {file.parent} is an incomplete or damaged save") from e
    except OSError as e:
        raise error(f"{file}: cannot read it ({e.strerror or e})") from e
    if size != manifest.get("size", size):
        raise IntegrityError(f"{file}: {size} bytes, the manifest records {manifest['size']}: the file is truncated "
                             "or damaged")
    return [StoredLeaf.from_manifest(file, leaf, error) for leaf in manifest["leaves"]]


def read_leaves(path: str | os.PathLike, manifest: dict[str, Any], error: type[Exception] = CheckpointError, *,
                verify: bool = True, lazy: Callable[[tuple[str, ...]], bool] | None = None
                ) -> list[tuple[tuple[str, ...], Any]]:
    """``[(path, array)]`` of every leaf the manifest lists, each checked against its checksums;
    leaves (not scalars) whose path ``lazy`` accepts come back unread, as ``stored.StoredRows``."""
    def read(keys: tuple[str, ...], leaf: StoredLeaf) -> Any:
        if lazy is not None and lazy(keys) and leaf.shape:
            from probegen_jax.stored import StoredRows  # (imports JAX: only when asked for)

            return StoredRows(leaf, verify=verify)
        return leaf.read(verify=verify)

    leaves = stored_leaves(path, manifest, error)
    keys = [tuple(map(str, entry.get("path", []))) for entry in manifest["leaves"]]
    try:
        return [(k, read(k, leaf)) for k, leaf in zip(keys, leaves, strict=True)]
    except OSError as e:
        raise error(f"{Path(path) / DATA}: cannot read it ({e.strerror or e})") from e


def _nested(leaves: list[tuple[tuple[str, ...], np.ndarray]], where: Path, error: type[Exception]) -> Any:
    if len(leaves) == 1 and leaves[0][0] == ():
        return leaves[0][1]
    out: dict[str, Any] = {}
    for keys, array in leaves:
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise error(f"{where / MANIFEST}: leaf paths overlap at {'/'.join(keys)}")
        node[keys[-1] if keys else ""] = array
    return out


def _fill(abstract: Any, leaves: list[tuple[tuple[str, ...], np.ndarray]], where: Path,
          error: type[Exception]) -> Any:
    """The arrays in the structure of ``abstract``, each checked for path, dtype and shape."""
    import jax

    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    expected = [tuple(_key_name(k) for k in keys) for keys, _ in flat]
    saved = [keys for keys, _ in leaves]
    if expected != saved:
        missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
        raise error(f"{where}: saved arrays do not match the model (missing {['/'.join(k) for k in missing][:5]}, "
                    f"unexpected {['/'.join(k) for k in extra][:5]}); it was saved for a different model or "
                    "settings")
    out = []
    for (keys, want), (_, array) in zip(flat, leaves, strict=True):
        shape = tuple(want.shape) if hasattr(want, "shape") else np.shape(want)
        dtype = np.dtype(want.dtype) if hasattr(want, "dtype") else np.asarray(want).dtype
        if array.shape != shape or array.dtype != dtype:
            raise error(f"{where}: array {'/'.join(_key_name(k) for k in keys)} is {array.dtype}{list(array.shape)}, "
                        f"the model expects {dtype}{list(shape)}; it was saved for a different model or settings")
        out.append(jax.numpy.asarray(array) if isinstance(want, (jax.Array, jax.ShapeDtypeStruct)) else array)
    return jax.tree_util.tree_unflatten(treedef, out)


def load_pytree(path: str | os.PathLike, abstract: Any = None, *, error: type[Exception] = CheckpointError,
                verify: bool = True, lazy: Callable[[tuple[str, ...]], bool] | None = None) -> Any:
    """Restore a pytree saved by ``save_pytree``: into the structure of ``abstract`` (arrays or
    shape/dtype structs; each leaf's dtype and shape checked), or as nested dicts when it is None.

    Raises ``error`` naming the folder when it is missing or saved for another model, and
    ``IntegrityError`` when a file fails its checksum. ``verify=False`` skips the leaves' checksums.
    Leaves whose key path ``lazy`` accepts are not read: they come back as ``stored.StoredRows``
    (read by rows when needed; nested dicts only). Older folders saved by orbax load through orbax,
    unchecked.
    """
    path = Path(path).absolute()
    if path.is_dir() and not (path / MANIFEST).exists() and _is_orbax_dir(path):
        return _load_orbax(path, abstract, error)
    leaves = read_leaves(path, read_manifest(path, error), error, verify=verify, lazy=lazy)
    return _nested(leaves, path, error) if abstract is None else _fill(abstract, leaves, path, error)


def load_record(path: str | os.PathLike, error: type[Exception] = CheckpointError) -> Any:
    """The JSON record saved with a pytree (``save_pytree(..., record=...)``), verified."""
    return read_manifest(path, error).get("record")


# ----------------------------------------------------------------------------- older orbax folders


def _is_orbax_dir(path: Path) -> bool:
    return any((path / name).exists() for name in ("_CHECKPOINT_METADATA", "_METADATA", "manifest.ocdbt"))


def _load_orbax(path: Path, abstract: Any, error: type[Exception]) -> Any:
    """A pytree from a folder written by orbax (``StandardSave``), unchecked: no checksums there."""
    import orbax.checkpoint as ocp

    warnings.warn(f"{path}: saved by an older version without checksums; it loads unchecked (save it again to "
                  "add them)", stacklevel=3)
    try:
        handler = ocp.Checkpointer(ocp.StandardCheckpointHandler())
        args = ocp.args.StandardRestore(abstract) if abstract is not None else ocp.args.StandardRestore()
        return handler.restore(path, args=args)
    except Exception as e:  # orbax raises many types for damaged or mismatched checkpoints
        raise error(f"{path}: cannot restore these arrays ({type(e).__name__}: {_first_line(e)}); the folder is "
                    "damaged or was saved for a different model") from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""
