"""A ``Zoo``: one architecture, a params pytree stacked on a leading zoo axis, targets and splits."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from probegen_jax.archs import Arch, check_finite
from probegen_jax.errors import MissingSplitError, ShapeMismatchError
from probegen_jax.stored import has_stored, in_memory, is_stored, take_rows
from probegen_jax.types import Params
from probegen_jax.zoo.formats import FORMATS

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Zoo:
    """A homogeneous model zoo.

    Attributes:
      arch: the architecture every member shares.
      params: pytree of arrays ``[N, ...]`` matching ``arch.init``'s pytree.
      targets: named arrays ``[N, ...]`` (``label``, ``test_accuracy``, ``psnr``, ...).
      splits: named int index arrays into the zoo axis (``train``, ``val``, ``test``).
      meta: JSON-serialisable record of how the zoo was made.
    """

    arch: Arch
    params: Params
    targets: Mapping[str, np.ndarray]
    splits: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.arch.check_params(self.params, stacked=True, where="zoo params")
        check_finite(jax.tree.map(lambda a: None if is_stored(a) else a, self.params), where="zoo params")  # stored rows: when read
        object.__setattr__(self, "targets", {k: np.asarray(v) for k, v in self.targets.items()})
        object.__setattr__(self, "splits", {k: np.asarray(v, np.int64) for k, v in self.splits.items()})
        for name, value in self.targets.items():
            if value.shape[:1] != (n,):
                raise ShapeMismatchError(f"zoo target {name!r}: expected leading size {n}, got {value.shape}")
        for name, idx in self.splits.items():
            if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() >= n)):
                raise ShapeMismatchError(f"zoo split {name!r}: indices must be 1-D in [0, {n}), got {idx}")

    def __len__(self) -> int:
        return int(jax.tree.leaves(self.params)[0].shape[0])

    def __repr__(self) -> str:
        return (f"Zoo({len(self)} x {self.arch.name}, targets={sorted(self.targets)}, "
                f"splits={ {k: len(v) for k, v in self.splits.items()} })")

    # The zoo protocol (shared with ``HeteroZoo``): what methods read of any zoo.

    @property
    def archs(self) -> tuple[Arch, ...]:
        return (self.arch,)

    packs_inputs = False  # ``inputs`` are the members' own params pytree

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.arch.input_shape)

    @property
    def output_dim(self) -> int:
        return self.arch.output_dim

    def inputs(self, indices: np.ndarray) -> Params:
        """What a method reads of members ``indices``: their stacked params."""
        return take_rows(self.params, np.asarray(indices))

    def buckets_of(self, indices: np.ndarray) -> np.ndarray:
        """The architecture bucket of each of members ``indices`` (one bucket: zeros)."""
        return np.zeros(len(np.asarray(indices)), np.int32)

    def target(self, name: str) -> np.ndarray:
        if name not in self.targets:
            raise MissingSplitError(f"zoo has no target {name!r}; available: {sorted(self.targets)}")
        return self.targets[name]

    def indices(self, split: str) -> np.ndarray:
        if split not in self.splits:
            raise MissingSplitError(
                f"zoo has no split {split!r}; available: {sorted(self.splits) or 'none'}"
            )
        return self.splits[split]

    def subset(self, indices: np.ndarray, *, splits: Mapping[str, np.ndarray] | None = None) -> Zoo:
        """Members ``indices`` (in that order), with new ``splits`` (default: none)."""
        indices = np.asarray(indices)
        return Zoo(
            arch=self.arch,
            params=take_rows(self.params, indices),
            targets={k: v[indices] for k, v in self.targets.items()},
            splits=dict(splits or {}),
            meta=dict(self.meta),
        )

    def keep(self, mask: np.ndarray) -> Zoo:
        """The members where the boolean ``mask`` holds, in order, with every split restricted to them."""
        mask = np.asarray(mask, bool)
        if mask.shape != (len(self),):
            raise ShapeMismatchError(f"zoo keep mask: expected shape ({len(self)},), got {mask.shape}")
        new_index = np.cumsum(mask) - 1
        splits = {k: new_index[v[mask[v]]] for k, v in self.splits.items()}
        return self.subset(np.flatnonzero(mask), splits=splits)

    def split(self, name: str) -> Zoo:
        """The members of one split, as a zoo of its own."""
        return self.subset(self.indices(name))

    def split_arrays(self, target: str, splits: tuple[str, ...] = SPLITS) -> dict[str, tuple[Params, np.ndarray]]:
        """``{split: (params, targets)}``: the form the training loop takes."""
        y = self.target(target)
        return {s: (self.inputs(self.indices(s)), y[self.indices(s)]) for s in splits}

    def in_memory(self) -> Zoo:
        """This zoo with every param read (a zoo loaded with ``lazy=True`` reads its rows here; any
        other zoo is returned as it is, not checked again)."""
        return dataclasses.replace(self, params=in_memory(self.params)) if has_stored(self.params) else self

    def describe(self) -> str:
        """A few lines: size, architecture, targets, splits."""
        lines = [
            f"zoo of {len(self)} networks, architecture {self.arch.name} "
            f"({self.arch.num_params()} params each, input {self.arch.input_shape}, output {self.arch.output_dim})",
            "targets: " + ", ".join(f"{k} {v.dtype}{list(v.shape[1:])}" for k, v in self.targets.items()),
            "splits: " + (", ".join(f"{k} {len(v)}" for k, v in self.splits.items()) or "none"),
        ]
        made = self.meta.get("generator")
        if made:
            lines.append(f"made by: {made} {self.meta.get('config', {})}")
        return "\n".join(lines)


def empty_splits(zoo: Any) -> list[str]:
    """The splits of ``SPLITS`` that hold no network (absent ones included), in that order."""
    return [s for s in SPLITS if not len(zoo.splits.get(s, ()))]


def splits_set_by(meta: Mapping[str, Any]) -> str:
    """What sets a zoo's splits, read from its record: the option of the format it was imported
    from, the settings it was made with, or the ``splits`` it was built with."""
    if meta.get("format") in FORMATS:
        return FORMATS[meta["format"]].splits_set_by()
    config = meta.get("config") if isinstance(meta.get("config"), Mapping) else {}
    settings = [f"{k}={config[k]}" for k in ("num_train", "num_val", "num_test", "split_fractions") if k in config]
    if settings:
        return f"the settings the zoo was made with ({', '.join(settings)}); make it again with others"
    return "the splits the zoo was built with (Zoo(arch, params, targets, splits={'train': ..., 'val': ..., ...}))"


@dataclasses.dataclass(frozen=True)
class TaskDefaults:
    """What a zoo is for, unless told otherwise: the target predicted, how probing reads each
    network's outputs (``raw`` | ``softmax``) and which checkpoint per network (``all`` |
    ``final`` | an epoch) is used."""

    target: str = "label"
    response: str = "raw"
    checkpoint: str = "all"


def task_defaults(zoo: Any) -> TaskDefaults:
    """The zoo's recorded ``meta["task_defaults"]``, else inferred as earlier zoos were used: the
    ``default_target`` (``test_accuracy`` for CNN zoos) or the first of ``label``, ``classes``
    (model trees), ``test_accuracy`` it holds; ``softmax`` for zoos of
    classifiers scored by accuracy (their logit scales differ by orders of magnitude), else
    ``raw``; the ``final`` checkpoint where networks were checkpointed per epoch, else ``all``."""
    recorded = dict(zoo.meta.get("task_defaults") or {})
    targets = zoo.targets
    usual = next((t for t in ("label", "classes", "test_accuracy") if t in targets), "label")
    inferred = TaskDefaults(
        target=str(zoo.meta.get("default_target", usual)),
        response="softmax" if "test_accuracy" in targets and zoo.output_dim > 1 else "raw",
        checkpoint="final" if "epoch" in targets else "all",
    )
    return dataclasses.replace(inferred, **{k: v for k, v in recorded.items()
                                            if k in {f.name for f in dataclasses.fields(TaskDefaults)}})


def at_epoch(zoo: Any, epoch: int | str = "final") -> Any:
    """The members checkpointed at ``epoch`` (``"final"``: the last; ``"all"``: every one), splits kept.

    For zoos with several checkpoints per network (an ``epoch`` target); works on any zoo with
    ``target`` and ``keep`` (``Zoo``, ``HeteroZoo``).
    """
    if epoch == "all":
        return zoo
    epochs = zoo.target("epoch")
    e = int(epochs.max()) if epoch == "final" else int(epoch)
    if not np.any(epochs == e):
        raise ValueError(f"zoo has no checkpoints at epoch {e}; epochs: {sorted(set(epochs.tolist()))}")
    return zoo.keep(epochs == e)


def shrink_split(zoo: Any, split: str, size: int, *, seed: int = 0) -> Any:
    """The zoo with ``split`` cut to ``size`` of its members (the others dropped); other splits kept.

    The members kept are the first ``size`` of a ``seed``-drawn order of the split, so a smaller size
    keeps a subset of a larger one's: a learning curve over sizes adds networks, never swaps them.
    Works on any zoo with ``indices`` and ``keep`` (``Zoo``, ``HeteroZoo``).
    """
    members = zoo.indices(split)
    if not 1 <= size <= len(members):
        raise ShapeMismatchError(f"zoo split {split!r}: cannot keep {size} of its {len(members)} members "
                                 f"(expected 1 to {len(members)})")
    dropped = np.random.default_rng(seed).permutation(members)[size:]
    mask = np.ones(len(zoo), bool)
    mask[dropped] = False
    return zoo.keep(mask)
