"""Readers and writers of the public zoo formats, by name.

    zoo = import_zoo("dwsnets", "mnist-inrs/")            # -> Zoo
    buckets = import_zoo("wild-park", "cnn_park/")         # -> list[Zoo] (one per architecture)
    export_zoo("small-cnn-zoo", zoo, "out/small_cnn_zoo")

| name            | reads                                              | writes | returns     |
|-----------------|----------------------------------------------------|--------|-------------|
| dwsnets         | MNIST/FMNIST-INR (folder layout or splits JSON)    | yes    | Zoo         |
| nfn-siren       | NFN's SIREN folders (``<prefix>_<label>s/netN.pth``) | no   | Zoo         |
| small-cnn-zoo   | weights.npy + metrics.csv.gz + layout.csv          | yes    | Zoo         |
| wild-park       | CNN Wild Park checkpoints (+ splits JSON)          | no     | list[Zoo]   |
| model-zoos      | Model Zoos folders (params.json, result.json, ...) | no     | list[Zoo]   |
| model-j         | Model-J safetensors trees                          | no     | list[Zoo]   |

Readers of zoos whose networks differ in architecture (Wild Park, Model Zoos) return a list of
homogeneous buckets, largest first; each bucket's ``meta["order"]`` gives its members' positions
in the format's global order. Model-J gives one zoo per model tree.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probegen_jax.errors import UnknownNameError

if TYPE_CHECKING:  # imported where used: the JAX-free submodules (inr_files) must not pull JAX in
    from probegen_jax.zoo.zoo import Zoo


@dataclasses.dataclass(frozen=True)
class ZooFormat:
    """A public format: ``module:function`` names of its reader and writer (imported lazily), and
    the reader option that sets its splits (named when a split is empty)."""

    name: str
    description: str
    reader: str | None
    writer: str | None = None
    splits_option: str = ""

    def splits_set_by(self) -> str:
        """What sets the splits of a zoo read in this format, said to a user."""
        if self.splits_option.startswith("("):
            return f"the {self.name} layout {self.splits_option}"
        option, _, explained = self.splits_option.partition(" ")
        return (f"the {self.name} import option {option} {explained}: `probegen-jax zoo import {self.name} PATH "
                f"--option {option}` (Python: import_zoo({self.name!r}, PATH, {option}))")

    def _load(self, ref: str) -> Callable[..., Any]:
        module, fn = ref.split(":")
        return getattr(importlib.import_module(f"probegen_jax.zoo.formats.{module}"), fn)

    @property
    def read(self) -> Callable[..., Zoo | list[Zoo]] | None:
        return self._load(self.reader) if self.reader else None

    @property
    def write(self) -> Callable[..., Path] | None:
        return self._load(self.writer) if self.writer else None


FORMATS: dict[str, ZooFormat] = {f.name: f for f in [
    ZooFormat("dwsnets", "DWSNets MNIST/FMNIST-INR SIRENs (torch state dicts + splits JSON)",
              "dwsnets:read_dwsnets", "dwsnets:write_dwsnets",
              "val_size=N (validation INRs drawn from the training ones), or a splits JSON as the path"),
    ZooFormat("nfn-siren", "NFN SIREN zoos (<prefix>_<label>s/net<idx>.pth)", "dwsnets:read_nfn_siren",
              splits_option="split_points=[A,B] (train: net0 to net<A-1>, val: A to B-1, test: B on; "
                            "default [45000,50000])"),
    ZooFormat("small-cnn-zoo", "Small CNN Zoo (weights.npy, metrics.csv.gz, layout.csv)",
              "small_cnn_zoo:read_small_cnn_zoo", "small_cnn_zoo:write_small_cnn_zoo",
              "split_file=F (the row order whose first half is train+val, second half test)"),
    ZooFormat("wild-park", "CNN Wild Park (torch dicts with model and config)", "wild_park:read_wild_park",
              splits_option="splits_file=F (a splits JSON; without one networks are split 80/10/10)"),
    ZooFormat("model-zoos", "Model Zoos (params.json, result.json, checkpoint_N/checkpoints)",
              "model_zoos:read_model_zoos", splits_option="(none: models are split 70/15/15)"),
    ZooFormat("model-j", "Model-J trees (one safetensors file per model, classes in its metadata)",
              "model_j:read_model_j", splits_option="(none: the split folders of each tree)"),
]}


def get_format(name: str, *, need: str = "read") -> ZooFormat:
    """The registered format ``name``, checked to have a reader (or writer)."""
    if name not in FORMATS:
        raise UnknownNameError(f"unknown zoo format {name!r}; known formats: {', '.join(sorted(FORMATS))}")
    fmt = FORMATS[name]
    if (fmt.reader if need == "read" else fmt.writer) is None:
        able = sorted(n for n, f in FORMATS.items() if (f.reader if need == "read" else f.writer))
        raise UnknownNameError(f"zoo format {name!r} cannot be {need}; formats that can: {', '.join(able)}")
    return fmt


def import_zoo(format: str, path: str | os.PathLike, **options: Any) -> Zoo | list[Zoo]:
    """Read a zoo stored in a public ``format`` (see ``FORMATS``). The temporary folder of an
    export that did not complete is refused. A split left empty is said in a warning naming the
    format's option that sets the splits (``ZooFormat.splits_set_by``)."""
    from probegen_jax.errors import ZooFormatError
    from probegen_jax.io import is_temp_path

    fmt = get_format(format, need="read")
    for part in (Path(path).absolute(), *Path(path).absolute().parents):
        if is_temp_path(part):
            raise ZooFormatError(f"{path}: inside {part.name}, the temporary folder of a write that did not complete "
                                 "(killed, or the disk filled); export the zoo again")
    result = fmt.read(path, **options)
    warn_empty_splits(result, fmt, path)
    return result


def warn_empty_splits(result: Zoo | list[Zoo], fmt: ZooFormat, path: str | os.PathLike) -> None:
    """Warn, naming ``fmt``'s split option, where a split (train, val or test; over all buckets)
    of an imported zoo holds no network."""
    import warnings

    from probegen_jax.zoo.zoo import SPLITS

    zoos = result if isinstance(result, list) else [result]
    empty = [s for s in SPLITS if not any(len(z.splits.get(s, ())) for z in zoos)]
    if empty:
        warnings.warn(f"{path}: the imported zoo's {' and '.join(repr(s) for s in empty)} split"
                      f"{'s are' if len(empty) > 1 else ' is'} empty ({sum(len(z) for z in zoos)} networks); "
                      f"methods train on 'train' and select on 'val'; the splits are set by {fmt.splits_set_by()}",
                      stacklevel=3)


def export_zoo(format: str, zoo: Zoo | list[Zoo], path: str | os.PathLike, *, overwrite: bool = False,
               **options: Any) -> Path:
    """Write ``zoo`` in a public ``format`` that the reference implementations read unchanged.

    The files are written into a temporary folder beside ``path``, renamed to ``path`` once
    complete: a killed or failed export leaves no ``path`` (its temporary folder is removed by
    the next export there, and refused by ``import_zoo``)."""
    import inspect

    from probegen_jax.io import staged_dir

    writer = get_format(format, need="write").write
    path = Path(path).absolute()
    if path.exists() and (not path.is_dir() or any(path.iterdir())) and not overwrite:
        raise FileExistsError(f"{path}: already exists and is not empty; pass overwrite=True (--overwrite)")
    if "final_dir" in inspect.signature(writer).parameters:
        options["final_dir"] = path
    with staged_dir(path) as tmp:
        writer(zoo, tmp, **options)
    return path


def reader_options(format: str) -> list[str]:
    """Keyword options the reader of ``format`` takes (beyond the path)."""
    import inspect

    params = inspect.signature(get_format(format, need="read").read).parameters
    return [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]


BUCKETS_FILE = "buckets.json"


def to_hetero(buckets: list[Zoo]) -> Any:
    """Buckets read from a heterogeneous format as one ``HeteroZoo`` in the format's global
    order (``meta["order"]``), with the buckets' splits mapped onto that order."""
    import numpy as np

    from probegen_jax.zoo.hetero import HeteroZoo

    n = sum(len(b) for b in buckets)
    bucket, position = np.empty(n, np.int64), np.empty(n, np.int64)
    orders = [np.asarray(b.meta.get("order", []), np.int64) for b in buckets]
    if sorted(np.concatenate(orders).tolist()) != list(range(n)):
        raise ValueError("buckets carry no complete global order (meta['order'])")
    rank = np.argsort(np.concatenate(orders), kind="stable")  # global position -> stacked row
    stacked_bucket = np.concatenate([np.full(len(b), i) for i, b in enumerate(buckets)])
    stacked_pos = np.concatenate([np.arange(len(b)) for b in buckets])
    bucket[:], position[:] = stacked_bucket[rank], stacked_pos[rank]
    splits = {}
    for name in sorted({s for b in buckets for s in b.splits}):
        splits[name] = np.sort(np.concatenate([o[b.splits[name]] for b, o in zip(buckets, orders) if name in b.splits]))
    meta = {k: v for k, v in buckets[0].meta.items() if k != "order"}
    return HeteroZoo(tuple(buckets), bucket, position, splits, meta)


def save_imported(result: Zoo | list[Zoo], out: str | os.PathLike, *, overwrite: bool = False) -> list[Path]:
    """Save an imported zoo to ``out``. Buckets are saved as one heterogeneous zoo (``zoo.hetero``)
    when they share input and output shapes, else as ``out/bucket_000``... with an index
    ``out/buckets.json`` (written last); ``load_imported`` reads either."""
    from probegen_jax.errors import ShapeMismatchError
    from probegen_jax.io import staged_dir, write_json
    from probegen_jax.zoo.store import save_zoo
    from probegen_jax.zoo.zoo import Zoo

    out = Path(out).absolute()
    if isinstance(result, Zoo):
        return [save_zoo(result, out, overwrite=overwrite)]
    try:
        from probegen_jax.zoo.hetero import save_hetero_zoo

        return [save_hetero_zoo(to_hetero(result), out, overwrite=overwrite)]
    except (ImportError, ShapeMismatchError, ValueError):
        pass
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists; pass overwrite=True (--overwrite) to replace it")
    with staged_dir(out) as tmp:
        names = [save_zoo(z, tmp / f"bucket_{i:03d}").name for i, z in enumerate(result)]
        write_json(tmp / BUCKETS_FILE, {"buckets": names, "sizes": [len(z) for z in result],
                                        "archs": [z.arch.spec() for z in result]})
    return [out / name for name in names]


def load_imported(path: str | os.PathLike) -> Any:
    """What ``save_imported`` (or ``save_zoo``) wrote: a zoo, a heterogeneous zoo, or buckets."""
    from probegen_jax.errors import ZooFormatError
    from probegen_jax.zoo.formats.common import read_json
    from probegen_jax.zoo.store import load_zoo

    path = Path(path)
    if (path / "hetero.json").is_file():
        from probegen_jax.zoo.hetero import load_hetero_zoo

        return load_hetero_zoo(path)
    if (path / BUCKETS_FILE).is_file():
        index = read_json(path / BUCKETS_FILE)
        names = index.get("buckets") if isinstance(index, dict) else None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and "/" not in n for n in names):
            raise ZooFormatError(f"{path / BUCKETS_FILE}: no list of bucket folders ('buckets'); the index is damaged")
        return [load_zoo(path / name) for name in names]
    return load_zoo(path)


def describe(result: Any) -> str:
    """Size, architecture(s), targets, splits (and what a reader skipped) of a zoo, a
    heterogeneous zoo or a list of buckets."""
    from probegen_jax.zoo.formats.common import describe_skipped
    from probegen_jax.zoo.zoo import Zoo

    zoos = [result] if isinstance(result, Zoo) else list(getattr(result, "buckets", result))
    lines = []
    if not isinstance(result, Zoo):
        lines.append(result.describe() if hasattr(result, "describe") else
                     f"{len(zoos)} architecture buckets, {sum(len(z) for z in zoos)} networks in all")
    for i, zoo in enumerate(zoos):
        if isinstance(result, Zoo):
            lines.append(zoo.describe())
        else:
            lines.append(f"  bucket {i}: {len(zoo)} x {zoo.arch.name} ({zoo.arch.num_params()} params) "
                         f"{json.dumps(zoo.arch.config, sort_keys=True)[:160]}")
    meta = zoos[0].meta if zoos else {}
    if meta.get("format"):
        lines.append(f"imported from {meta['format']}: {meta.get('source', '?')}")
    skipped = describe_skipped(meta.get("skipped"))
    if skipped:
        lines.append(skipped)
    return "\n".join(lines)


__all__ = ["FORMATS", "ZooFormat", "describe", "export_zoo", "get_format", "import_zoo", "load_imported",
           "reader_options", "save_imported", "to_hetero"]
