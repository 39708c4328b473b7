"""Heterogeneous zoos: several architectures, stored as homogeneous buckets.

A ``HeteroZoo`` is a list of ``Zoo`` buckets (one architecture each) plus the zoo's own order:
member ``i`` is row ``position[i]`` of bucket ``bucket[i]``. Targets and splits are in that
global order. ``packed`` feeds members to a learner as one row of its bucket's weights,
zero-padded to the widest bucket. Probing such a zoo lives in ``methods.probing.hetero``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from probegen_jax.archs import Arch
from probegen_jax.errors import MissingSplitError, ShapeMismatchError, ZooFormatError
from probegen_jax.io import (
    check_fields,
    checksum_file,
    load_pytree,
    read_json,
    save_pytree,
    staged_dir,
    write_json,
)
from probegen_jax.types import PyTree
from probegen_jax.zoo.store import load_zoo, save_zoo
from probegen_jax.zoo.zoo import SPLITS, Zoo

HETERO_FORMAT = "probegen_jax.hetero_zoo"
HETERO_FORMAT_VERSION = 2  # 2: checksummed (order saved by io.save_pytree); 1 (order.npz) still read
HETERO_RECORD = "hetero.json"


@dataclasses.dataclass(frozen=True)
class HeteroZoo:
    """A zoo of several architectures: homogeneous ``buckets`` and the global member order.

    Attributes:
      buckets: one ``Zoo`` per architecture (their own targets; their splits are unused).
      bucket: ``[N]`` bucket of each member, in the zoo's order.
      position: ``[N]`` row of each member inside its bucket.
      splits: named index arrays into the global order.
      meta: JSON-serialisable record of how the zoo was made.
    """

    buckets: tuple[Zoo, ...]
    bucket: np.ndarray
    position: np.ndarray
    splits: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "buckets", tuple(self.buckets))
        object.__setattr__(self, "bucket", np.asarray(self.bucket, np.int64))
        object.__setattr__(self, "position", np.asarray(self.position, np.int64))
        object.__setattr__(self, "splits", {k: np.asarray(v, np.int64) for k, v in self.splits.items()})
        n = len(self.bucket)
        if self.position.shape != (n,):
            raise ShapeMismatchError(f"hetero zoo position: expected shape ({n},), got {self.position.shape}")
        sizes = np.asarray([len(b) for b in self.buckets])
        if n and (self.bucket.min() < 0 or self.bucket.max() >= len(self.buckets)):
            raise ShapeMismatchError(f"hetero zoo bucket ids must lie in [0, {len(self.buckets)})")
        if n and np.any(self.position >= sizes[self.bucket]):
            raise ShapeMismatchError("hetero zoo position: a member points past the end of its bucket")
        if len(np.unique(self.bucket * (sizes.max(initial=0) + 1) + self.position)) != n or n != sizes.sum():
            raise ShapeMismatchError("hetero zoo order: every bucket row must appear exactly once")
        if len({b.arch.input_shape for b in self.buckets}) > 1:
            raise ShapeMismatchError(f"hetero zoo buckets take different input shapes: "
                                     f"{sorted({b.arch.input_shape for b in self.buckets})}")
        if len({b.arch.output_dim for b in self.buckets}) > 1:
            raise ShapeMismatchError("hetero zoo buckets have different output sizes")
        for name, idx in self.splits.items():
            if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() >= n)):
                raise ShapeMismatchError(f"hetero zoo split {name!r}: indices must be 1-D in [0, {n})")

    @classmethod
    def concat(cls, buckets: Sequence[Zoo], *, splits: Mapping[str, np.ndarray] | None = None,
               meta: Mapping[str, Any] | None = None) -> HeteroZoo:
        """Members in bucket order: all of bucket 0, then bucket 1, ..."""
        bucket = np.concatenate([np.full(len(b), i) for i, b in enumerate(buckets)])
        position = np.concatenate([np.arange(len(b)) for b in buckets])
        return cls(tuple(buckets), bucket, position, dict(splits or {}), dict(meta or {}))

    def __len__(self) -> int:
        return len(self.bucket)

    def __repr__(self) -> str:
        return (f"HeteroZoo({len(self)} networks in {len(self.buckets)} architectures, "
                f"targets={sorted(self.targets)}, splits={ {k: len(v) for k, v in self.splits.items()} })")

    packs_inputs = True  # ``inputs`` are ``packed`` rows, whatever the number of buckets

    def inputs(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """What a method reads of members ``indices``: ``packed`` rows."""
        return self.packed(indices)

    def buckets_of(self, indices: np.ndarray) -> np.ndarray:
        """The architecture bucket of each of members ``indices``."""
        return self.bucket[np.asarray(indices)].astype(np.int32)

    @property
    def archs(self) -> tuple[Arch, ...]:
        return tuple(b.arch for b in self.buckets)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.buckets[0].arch.input_shape

    @property
    def output_dim(self) -> int:
        return self.buckets[0].arch.output_dim

    @property
    def targets(self) -> dict[str, np.ndarray]:
        """Targets in the zoo's order (gathered from the buckets; present in every bucket)."""
        names = set.intersection(*(set(b.targets) for b in self.buckets)) if self.buckets else set()
        return {k: self.gather([b.targets[k] for b in self.buckets]) for k in sorted(names)}

    def target(self, name: str) -> np.ndarray:
        targets = self.targets
        if name not in targets:
            raise MissingSplitError(f"zoo has no target {name!r}; available: {sorted(targets)}")
        return targets[name]

    def indices(self, split: str) -> np.ndarray:
        if split not in self.splits:
            raise MissingSplitError(f"zoo has no split {split!r}; available: {sorted(self.splits) or 'none'}")
        return self.splits[split]

    def gather(self, per_bucket: Sequence[np.ndarray]) -> np.ndarray:
        """Per-bucket rows (``per_bucket[b][i]``: member ``i`` of bucket ``b``) in the zoo's order."""
        out = np.empty((len(self), *per_bucket[0].shape[1:]), np.result_type(*per_bucket))
        for b, values in enumerate(per_bucket):
            rows = self.bucket == b
            out[rows] = np.asarray(values)[self.position[rows]]
        return out

    def in_memory(self) -> HeteroZoo:
        """The zoo protocol's ``in_memory``: a heterogeneous zoo is always read whole."""
        return self

    def keep(self, mask: np.ndarray) -> HeteroZoo:
        """The members where ``mask`` holds, in order, with the splits restricted to them."""
        mask = np.asarray(mask, bool)
        if mask.shape != (len(self),):
            raise ShapeMismatchError(f"hetero zoo keep mask: expected shape ({len(self)},), got {mask.shape}")
        buckets, new_pos = [], np.zeros(len(self), np.int64)
        for b, zoo in enumerate(self.buckets):
            rows = np.flatnonzero((self.bucket == b) & mask)
            local = np.zeros(len(zoo), bool)
            local[self.position[rows]] = True
            buckets.append(zoo.keep(local))
            new_pos[rows] = np.cumsum(local)[self.position[rows]] - 1
        new_index = np.cumsum(mask) - 1
        splits = {k: new_index[v[mask[v]]] for k, v in self.splits.items()}
        return HeteroZoo(tuple(buckets), self.bucket[mask], new_pos[mask], splits, dict(self.meta))

    def describe(self) -> str:
        sizes = [len(b) for b in self.buckets]
        params = [b.arch.num_params() for b in self.buckets]
        lines = [
(f"heterogeneous zoo of {len(self)} networks in {len(self.buckets)} architecture buckets "
            f"({min(sizes)}-{max(sizes)} members each, {min(params)}-{max(params)} params, input "
            f"{self.input_shape}, output {self.output_dim})"),
            "targets: " + ", ".join(f"{k} {v.dtype}" for k, v in self.targets.items()),
            "splits: " + (", ".join(f"{k} {len(v)}" for k, v in self.splits.items()) or "none"),
        ]
        if self.meta.get("generator"):
            lines.append(f"made by: {self.meta['generator']} {self.meta.get('config', {})}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ training inputs

    def packed(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """``{"bucket": [n], "weights": [n, P_max]}`` for members ``indices``: the learner's inputs."""
        indices = np.asarray(indices)
        width = max(b.arch.num_params() for b in self.buckets)
        weights = np.zeros((len(indices), width), np.float32)
        for b, zoo in enumerate(self.buckets):
            rows = np.flatnonzero(self.bucket[indices] == b)
            if rows.size:
                members = self.position[indices[rows]]
                flat = np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(
                    jax.tree.map(lambda a, m=members: a[m], zoo.params)))
                weights[rows, : flat.shape[1]] = flat
        return {"bucket": self.bucket[indices].astype(np.int32), "weights": weights}

    def split_arrays(self, target: str, splits: tuple[str, ...] = SPLITS) -> dict[str, tuple[PyTree, np.ndarray]]:
        """``{split: (packed inputs, targets)}``, members ordered by bucket inside each split."""
        y = self.target(target)
        out = {}
        for s in splits:
            idx = self.indices(s)
            idx = idx[np.argsort(self.bucket[idx], kind="stable")]
            out[s] = (self.packed(idx), y[idx])
        return out


# ----------------------------------------------------------------------------- storage


def save_hetero_zoo(zoo: HeteroZoo, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``zoo`` to directory ``path`` (one saved ``Zoo`` per bucket, the order, the record),
    with checksums, under a temporary name renamed into place when complete."""
    path = Path(path).absolute()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
    with staged_dir(path) as tmp:
        for b, bucket in enumerate(zoo.buckets):
            save_zoo(bucket, tmp / f"bucket_{b:04d}")
        save_pytree(tmp / "order", {"bucket": zoo.bucket, "position": zoo.position, "splits": dict(zoo.splits)})
        write_json(tmp / HETERO_RECORD, {"format": HETERO_FORMAT, "format_version": HETERO_FORMAT_VERSION,
                                         "num_buckets": len(zoo.buckets), "size": len(zoo), "meta": dict(zoo.meta)})
    return path


def is_hetero_zoo(path: str | os.PathLike) -> bool:
    return (Path(path) / HETERO_RECORD).is_file()


def _hetero_record(path: Path) -> dict[str, Any]:
    """The verified, checked ``hetero.json`` of a saved heterogeneous zoo."""
    file = path / HETERO_RECORD
    record = read_json(file, ZooFormatError, missing=f"missing; {path} is not a saved heterogeneous zoo")
    if not isinstance(record, dict) or record.get("format") != HETERO_FORMAT \
            or record.get("format_version") not in (1, HETERO_FORMAT_VERSION):
        raise ZooFormatError(f"{file}: not a heterogeneous zoo of format version 1 or {HETERO_FORMAT_VERSION}")
    check_fields(record, {"num_buckets": int, "meta": dict}, file, ZooFormatError)
    if record["format_version"] >= 2 and not checksum_file(file).exists():
        raise ZooFormatError(f"{file}: its checksum file is missing; the zoo is incomplete or damaged")
    return record


def _load_order(path: Path, version: int) -> dict[str, Any]:
    """``{"bucket", "position", "splits"}`` of a saved heterogeneous zoo (format 1: ``order.npz``)."""
    if version >= 2:
        order = load_pytree(path / "order", error=ZooFormatError)
        if not isinstance(order, dict) or not {"bucket", "position"} <= set(order):
            raise ZooFormatError(f"{path / 'order'}: not a heterogeneous zoo's order (bucket, position)")
        return {"splits": {}, **order}
    try:
        with np.load(path / "order.npz") as f:
            arrays = {k: f[k] for k in f.files}
        return {"bucket": arrays["bucket"], "position": arrays["position"],
                "splits": {k[len("split_"):]: v for k, v in arrays.items() if k.startswith("split_")}}
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise ZooFormatError(f"{path / 'order.npz'}: missing or corrupt ({e})") from e


def load_hetero_zoo(path: str | os.PathLike, *, archs: Sequence[Arch] | None = None) -> HeteroZoo:
    """Load a zoo written by ``save_hetero_zoo``, every file checked against its checksum;
    ``archs``: one per bucket, for buckets of unregistered architectures."""
    path = Path(path).absolute()
    record = _hetero_record(path)
    if archs is not None and len(archs) != record["num_buckets"]:
        raise ShapeMismatchError(f"{path}: {record['num_buckets']} architecture buckets, but {len(archs)} archs given")
    buckets = tuple(load_zoo(path / f"bucket_{b:04d}", arch=None if archs is None else archs[b])
                    for b in range(record["num_buckets"]))
    order = _load_order(path, record["format_version"])
    try:
        return HeteroZoo(buckets, order["bucket"], order["position"], order["splits"], record.get("meta", {}))
    except ShapeMismatchError as e:
        raise ZooFormatError(f"{path}: the saved order does not fit the buckets ({e})") from e


def load_any_zoo(path: str | os.PathLike, *, arch: Arch | Sequence[Arch] | None = None,
                 lazy: bool = False) -> Zoo | HeteroZoo:
    """A saved ``Zoo`` or ``HeteroZoo``, whichever ``path`` holds. ``arch``: the architecture of a
    zoo of an unregistered one (of a heterogeneous zoo, one per bucket); ``lazy``: see ``load_zoo``
    (a heterogeneous zoo is read whole)."""
    if is_hetero_zoo(path):
        return load_hetero_zoo(path, archs=[arch] if isinstance(arch, Arch) else arch)
    if arch is not None and not isinstance(arch, Arch):
        raise TypeError(f"{path}: a zoo of one architecture takes one Arch as arch=, got {type(arch).__name__}")
    return load_zoo(path, arch=arch, lazy=lazy)
