"""Helpers shared by the public-format readers and writers: PyTorch files, stacking many small
networks into preallocated arrays (one network in memory at a time), skip counts, path checks."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from probegen_jax.errors import (
    DataFileError,
    MissingDependencyError,
    NonFiniteWeightsError,
    ShapeMismatchError,
    ZooFormatError,
)
from probegen_jax import io
from probegen_jax.progress import progress as progress_of
from probegen_jax.io import atomic_write
from probegen_jax.parallel import usable_cores

PathName = str | os.PathLike  # a file path: a string or a Path
READ_THREADS = 4  # read tasks in flight: enough to keep a disk's queue full; more contend for the GIL
READ_WINDOW = 256  # files read ahead of the parser
READ_BATCH = 64  # consecutive files per read task
TORCH_HINT = "pip install 'probegen_jax[torch]' (or pip install torch==2.13.0)"


def require_torch(what: str) -> Any:
    """The ``torch`` module, or a ``MissingDependencyError`` saying how to install it."""
    try:
        import torch
    except ImportError as e:
        raise MissingDependencyError(f"{what} needs PyTorch, which is not installed; {TORCH_HINT}") from e
    return torch


def load_torch(path: str | os.PathLike, *, trust_pickle: bool = False, data: bytes | None = None) -> Any:
    """The object a PyTorch file holds, on the CPU.

    Plain files (tensors in dicts and lists, Python scalars) are parsed directly, tensors as
    numpy arrays (``torchfile``, several times faster than ``torch.load`` and torch-free); other
    files go through ``torch.load`` with ``weights_only`` unless ``trust_pickle``. Every failure
    becomes a ``ZooFormatError`` (``DataFileError`` if the file is missing) naming the file.
    """
    from probegen_jax.zoo.formats import torchfile

    path = Path(path)
    if data is None and not path.is_file():
        raise DataFileError(f"{path}: file not found")
    refused = ""  # the global the fast reader refused, if that is why torch.load is tried
    if not trust_pickle:
        try:
            return torchfile.load(path, data=data)
        except torchfile.Unsupported as e:
            refused = str(e) if str(e).startswith("global ") else ""
        except Exception as e:  # a damaged zip or pickle: DamagedFile, pickle and decoding errors
            raise ZooFormatError(f"{path}: cannot read PyTorch file ({type(e).__name__}: {_first_line(e)})") from e
    torch = require_torch(f"reading {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, zipfile errors...
        hint = ""
        if not trust_pickle and ("Unsupported global" in str(e) or refused):  # an intact file naming a class
            hint = (f"; the file holds Python objects beyond tensors and configs{f' ({refused})' if refused else ''}: "
                    "if it comes from a source you trust, pass trust_pickle=True (--trust-pickle)")
        raise ZooFormatError(f"{path}: cannot read PyTorch file ({type(e).__name__}: {_first_line(e)}){hint}") from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` atomically."""
    torch = require_torch(f"writing {path}")
    atomic_write(path, lambda f: torch.save(obj, f))


def to_numpy(value: Any, *, where: str) -> np.ndarray:
    """A tensor (torch or numpy) as a float32 numpy array; anything else is a format error."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype).startswith("torch.bfloat16"):
            value = value.float()
        value = value.numpy()
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        raise ZooFormatError(f"{where}: expected a numeric tensor, got {type(value).__name__}")
    return value.astype(np.float32, copy=False)


def as_state_dict(obj: Any, *, where: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ZooFormatError(f"{where}: expected a state dict (a mapping of names to tensors), got "
                             f"{type(obj).__name__}")
    return obj


def get_key(mapping: Any, key: str, *, where: str) -> Any:
    """``mapping[key]`` or a ``ZooFormatError`` naming the missing key and those present."""
    if not isinstance(mapping, Mapping):
        raise ZooFormatError(f"{where}: expected a mapping with key {key!r}, got {type(mapping).__name__}")
    if key not in mapping:
        raise ZooFormatError(f"{where}: missing key {key!r}; present: {sorted(map(str, mapping))[:20]}")
    return mapping[key]


def check_shape(array: np.ndarray, shape: Sequence[int], *, where: str) -> None:
    if tuple(array.shape) != tuple(shape):
        raise ShapeMismatchError(f"{where}: expected shape {tuple(shape)}, got {tuple(array.shape)}")


def all_finite(flat: Mapping[str, np.ndarray]) -> bool:
    return all(bool(np.isfinite(v).all()) for v in flat.values())


def require_finite(flat: Mapping[str, np.ndarray], *, where: str) -> None:
    bad = [k for k, v in flat.items() if not np.isfinite(v).all()]
    if bad:
        raise NonFiniteWeightsError(f"{where}: NaN or inf weights in {bad}")


def read_json(path: Path) -> Any:
    """A format's JSON file: missing raises ``DataFileError``, damaged ``ZooFormatError``."""
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    return io.read_json(path, ZooFormatError)


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataFileError(f"{path}: {what} not found (expected a directory)")
    return path


@dataclasses.dataclass
class SkipLog:
    """What a reader left out, counted by reason, with a few examples (file names and details)."""

    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    examples: list[str] = dataclasses.field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def add(self, reason: str, example: str | None = None, *, n: int = 1) -> None:
        """Count ``n`` members skipped for ``reason`` (a short phrase shared by like skips)."""
        self.counts[reason] = self.counts.get(reason, 0) + n
        if len(self.examples) < 10:
            self.examples.append(example or reason)

    def as_meta(self) -> dict[str, Any]:
        """What ``meta["skipped"]`` holds: ``count``, ``reasons`` (reason -> count), ``examples``."""
        return {"count": self.count, "reasons": dict(self.counts), "examples": list(self.examples)}


def describe_skipped(skipped: Any) -> str | None:
    """One line for ``meta["skipped"]`` (None when nothing was skipped)."""
    if not isinstance(skipped, Mapping) or not skipped.get("count"):
        return None
    reasons = skipped.get("reasons")
    if isinstance(reasons, Mapping) and reasons:
        return f"skipped {skipped['count']}: " + ", ".join(f"{n} {reason}" for reason, n in reasons.items())
    examples = skipped.get("examples") or ["?"]
    return f"skipped {skipped['count']}, e.g. {examples[0]}"


class FlatStack:
    """Preallocated ``[N, ...]`` arrays filled one network at a time (bounded memory)."""

    def __init__(self, size: int, shapes: Mapping[str, Sequence[int]]):
        self.arrays = {k: np.empty((size, *s), np.float32) for k, s in shapes.items()}
        self.shapes = {k: tuple(s) for k, s in shapes.items()}

    def put(self, i: int, flat: Mapping[str, np.ndarray], *, where: str) -> None:
        self.put_many(np.asarray([i]), {k: np.asarray(v)[None] for k, v in flat.items()}, where=where)

    def put_many(self, rows: np.ndarray, flat: Mapping[str, np.ndarray], *, where: str) -> None:
        """Networks ``rows`` at once from params stacked over them (``[len(rows), ...]``)."""
        for key, shape in self.shapes.items():
            value = flat[key]
            if value.shape[1:] != shape:
                raise ShapeMismatchError(f"{where}/{key}: expected shape {shape}, got {tuple(value.shape[1:])}")
            self.arrays[key][rows] = value

    def put_rows(self, start: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Rows ``start:start + n`` from arrays stacked alike (shapes checked when they were stacked)."""
        for key, array in self.arrays.items():
            array[start:start + len(arrays[key])] = arrays[key]

    def require_finite(self, name_of: Callable[[int], str]) -> None:
        """Raise ``NonFiniteWeightsError`` naming (``name_of(row)``) the first network with NaN or
        inf weights: one vectorised pass once every network is in, not one per network."""
        finite = np.ones(len(next(iter(self.arrays.values()))), bool)
        for array in self.arrays.values():
            finite &= np.isfinite(array.reshape(len(array), -1)).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            require_finite({k: v[row] for k, v in self.arrays.items()}, where=name_of(row))

    def take(self, rows: np.ndarray | slice) -> dict[str, np.ndarray]:
        return {k: v[rows] for k, v in self.arrays.items()}


def _shown(progress: bool) -> bool:
    """A progress bar is drawn by the main process only (JAX imported only when one is asked for)."""
    if not progress:
        return False
    from probegen_jax.parallel import is_main_process

    return is_main_process()


def progress_iter(items: Iterable, *, total: int | None, desc: str, progress: bool) -> Iterable:
    return progress_of(items, total=total, desc=desc, disable=not _shown(progress), unit="net", mininterval=0.5)


def resolve_listed_path(listed: str, listing_file: Path) -> Path | None:
    """A path as written in a splits file: as given, relative to the splits file, or (when the
    dataset was moved) its last components relative to the splits file's folder."""
    p = Path(listed)
    candidates = [p] if p.is_absolute() else [listing_file.parent / p, p]
    candidates += [listing_file.parent / Path(*p.parts[-k:]) for k in (4, 3, 2) if len(p.parts) > k]
    return next((c for c in candidates if c.is_file()), None)


def encode_categories(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Integer codes and the sorted vocabulary of a categorical column."""
    vocab = sorted({v for v in values}, key=str)
    index = {v: i for i, v in enumerate(vocab)}
    return np.asarray([index[v] for v in values], np.int32), vocab


def default_workers() -> int:
    """Reader processes for a large import: one per two cores this process may use, at most 8.
    One process parses INR files at about 100 MB/s (files written alike are replayed in groups),
    the speed of a plain disk; more pay off only with more cores and a faster disk."""
    return max(1, min(8, usable_cores() // 2))


def read_ahead(paths: Sequence[PathName], *, threads: int = READ_THREADS, window: int = READ_WINDOW,
               batch: int = READ_BATCH) -> Iterator[bytes | None]:
    """Each file's bytes in order (None where the read fails: the caller's own open then reports
    it), read by ``threads`` threads, ``batch`` consecutive files per task, at most ``window``
    files ahead. File reads release the GIL, so a cold disk's latency hides behind the caller's
    parsing, and memory stays bounded; batches keep the hand-over cost off warm files."""

    def read(batch_paths: Sequence[PathName]) -> list[bytes | None]:
        contents = []
        for path in batch_paths:
            try:
                with open(path, "rb") as f:
                    contents.append(f.read())
            except OSError:
                contents.append(None)
        return contents

    tasks = (paths[i:i + batch] for i in range(0, len(paths), batch))
    with ThreadPoolExecutor(threads) as pool:
        pending = collections.deque(pool.submit(read, t) for t in itertools.islice(tasks, max(1, window // batch)))
        while pending:
            done = pending.popleft().result()
            for task in itertools.islice(tasks, 1):
                pending.append(pool.submit(read, task))
            yield from done


def _chunk_in_worker(fn: Callable[[Sequence[PathName], Iterable[bytes | None]], Any], paths: Sequence[PathName]) -> Any:
    return fn(paths, read_ahead(paths))


def map_file_chunks(fn: Callable[[Sequence[PathName], Iterable[bytes | None]], Any], paths: Sequence[PathName], *,
                    workers: int = 1, chunk: int = 256) -> Iterator[Any]:
    """``fn(chunk_paths, their_contents)`` for consecutive chunks of ``chunk`` files, in order; the
    contents (None where a read failed) are read ahead by threads (``read_ahead``). With
    ``workers > 1`` chunks are parsed in that many worker processes (parsing small files is
    CPU-bound Python), at most ``2 * workers`` chunks in flight, so memory stays bounded. ``fn``
    must be picklable (a module-level function or a ``functools.partial`` of one), and a script
    that asks for workers needs the usual ``if __name__ == "__main__":`` guard (workers are spawned)."""
    if workers <= 1 or len(paths) <= chunk:
        contents = read_ahead(paths)
        for start in range(0, len(paths), chunk):
            part = paths[start:start + chunk]
            yield fn(part, itertools.islice(contents, len(part)))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        window: collections.deque = collections.deque()
        for start in range(0, len(paths), chunk):
            window.append(pool.submit(_chunk_in_worker, fn, paths[start:start + chunk]))
            if len(window) >= 2 * workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def progress_bar(*, total: int, desc: str, progress: bool, unit: str = "net") -> Any:
    """A bar advanced by hand (``update(n)``), for work that arrives in chunks."""
    return progress_of(total=total, desc=desc, disable=not _shown(progress), unit=unit, mininterval=0.5)


class Buckets:
    """Networks of several architectures gathered into homogeneous zoos, one per architecture."""

    def __init__(self) -> None:
        self._buckets: dict[str, dict[str, Any]] = {}

    def add(self, arch: Any, flat: Mapping[str, np.ndarray], targets: Mapping[str, Any], split: str | None,
            order: int) -> None:
        key = json.dumps(arch.spec(), sort_keys=True)
        b = self._buckets.setdefault(key, {"arch": arch, "flats": [], "targets": [], "splits": [], "order": []})
        b["flats"].append(dict(flat))
        b["targets"].append(dict(targets))
        b["splits"].append(split)
        b["order"].append(order)

    def __len__(self) -> int:
        return sum(len(b["order"]) for b in self._buckets.values())

    def zoos(self, meta: Mapping[str, Any], *, encode: Sequence[str] = ()) -> list[Any]:
        """One ``Zoo`` per architecture, largest first; ``encode`` names categorical targets
        (integer-coded over all buckets, vocabulary in ``meta["categories"]``)."""
        from probegen_jax.zoo.zoo import Zoo

        vocab = {name: sorted({t[name] for b in self._buckets.values() for t in b["targets"]}, key=str)
                 for name in encode}
        zoos = []
        for b in sorted(self._buckets.values(), key=lambda b: -len(b["order"])):
            keys = b["flats"][0].keys()
            flat = {k: np.stack([f[k] for f in b["flats"]]) for k in keys}
            targets = {}
            for name in b["targets"][0]:
                values = [t[name] for t in b["targets"]]
                if name in vocab:
                    targets[name] = np.asarray([vocab[name].index(v) for v in values], np.int32)
                else:
                    targets[name] = np.asarray(values, np.int64 if isinstance(values[0], (int, np.integer))
                                               else np.float32)
            names = np.asarray(b["splits"], dtype=object)
            splits = {s: np.flatnonzero(names == s) for s in dict.fromkeys(b["splits"]) if s}
            zoos.append(Zoo(arch=b["arch"], params=b["arch"].unflatten(flat), targets=targets, splits=splits,
                            meta={**meta, "order": list(b["order"]),
                                  "categories": {k: [str(x) for x in v] for k, v in vocab.items()}}))
        return zoos


def split_by_group(groups: Sequence[Any], fractions: Sequence[float], seed: int) -> dict[Any, str]:
    """``{group: split}``: groups (networks) shuffled with ``random.Random(seed)`` after sorting,
    then cut into train/val/test by ``fractions``."""
    import random

    unique = sorted(set(groups), key=str)
    random.Random(seed).shuffle(unique)
    n_train = int(fractions[0] * len(unique))
    n_val = int(fractions[1] * len(unique))
    return {g: ("train" if i < n_train else "val" if i < n_train + n_val else "test") for i, g in enumerate(unique)}


def as_int(value: Any, *, where: str) -> int:
    """``int(value)`` or a ``ZooFormatError`` naming where the value came from."""
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError(f"{value!r} is not an integer")
        return int(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise ZooFormatError(f"{where}: expected an integer, got {value!r:.60}") from e


def as_float(value: Any, *, where: str) -> float:
    """``float(value)`` (``None`` gives NaN) or a ``ZooFormatError`` naming where it came from."""
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise ZooFormatError(f"{where}: expected a number, got {value!r:.60}") from e
