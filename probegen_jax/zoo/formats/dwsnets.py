"""INR zoos in the DWSNets and NFN layouts: one SIREN per image, one PyTorch state dict per file.

DWSNets (MNIST-INR, FMNIST-INR):
  * MNIST folder: ``<root>/mnist_png_{training,testing}_<label>_<n>/checkpoints/model_final.pth``
    (this library's exports name the folders by their dataset, ``digits_training_3_00012``; any
    ``<dataset>_{training,testing}_<label>_<n>`` folder reads alike); the split comes from
    ``training``/``testing`` in the folder name and the label from its second-to-last ``_`` field. DWSNets draws a 5,000-INR validation set from the training INRs
    without a seed; here it is a seeded permutation (``val_size``, ``seed``); pass a splits file to
    use a particular split.
  * splits JSON: ``{split: {"path": [...], "label": [...]}}`` (as DWSNets' split scripts write it),
    or the raw FMNIST-INR ``{split: [path, ...]}`` whose files carry a ``label`` key.
  * files: ``seq.{0,1,2}.{weight,bias}``, weights ``[out, in]``; ``sin(30 (W x + b))`` after the
    first two layers and ``+ 0.5`` on the output. Coordinates are fed as ``(x, y)`` = (column,
    row) (``np.meshgrid`` default); this library's ``coordinate_grid`` feeds (row, column), so an
    imported INR rendered on that grid shows its image transposed (``meta["coordinates"]``).
NFN SIREN (``siren_mnist_wts``, ``siren_fashion_wts``...): ``<root>/<prefix>_<label>s/net<idx>.pth``
  with keys ``net.{0,1}.linear.{weight,bias}``, ``net.2.{weight,bias}``; no output offset;
  coordinates (row, column) (``torch.meshgrid`` 'ij'); split by index at ``split_points``
  (train ``[0, a)``, val ``[a, b)``, test ``[b, N)``; NFN uses (45000, 50000)).

Both readers take layers positionally (each ``*.weight`` followed by its ``*.bias``), as the
reference loaders do, and ignore other keys such as ``label``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probegen_jax.archs import Arch, flatten_params, make_arch
from probegen_jax.errors import DataFileError, ShapeMismatchError, ZooFormatError
from probegen_jax.io import write_json
from probegen_jax.zoo.formats.common import (
    FlatStack,
    map_file_chunks,
    progress_bar,
    progress_iter,
    read_json,
    require_dir,
    require_torch,
    resolve_listed_path,
    save_torch,
)
from probegen_jax.zoo.formats.inr_files import read_inr_chunk, read_inr_file, siren_flat
from probegen_jax.zoo.zoo import Zoo

DWSNETS_W0 = 30.0
DWSNETS_OFFSET = 0.5
SPLIT_ORDER = ("train", "val", "test")
EXPORT_RECORD = "zoo_meta.json"  # written by ``write_dwsnets``: how many INRs it wrote and listed
# folders of one INR each: DWSNets' ``mnist_png_<split>_<label>_<n>`` (any ``mnist_png_`` folder,
# checked when read), or this library's exports ``<dataset>_{training,testing}_<label>_<n>``
INR_FOLDER = re.compile(r"mnist_png_|.+_(training|testing)_\d+_\d+$")


@dataclasses.dataclass(frozen=True)
class Listing:
    """Files of an INR zoo (paths as strings, far cheaper than ``Path`` objects by the 70,000),
    their labels (``None``: read from the file) and split indices."""

    paths: list[str]
    labels: list[int | None]
    splits: dict[str, np.ndarray]
    source: Path


# ----------------------------------------------------------------------------- state dicts


def siren_arch_for(layers: Sequence[tuple[np.ndarray, np.ndarray]], *, output_offset: float,
                   where: str) -> Arch:
    """The ``siren`` arch whose widths match ``layers`` (as read from the first file)."""
    hidden = {w.shape[0] for w, _ in layers[:-1]}
    if len(layers) < 2 or len(hidden) != 1:
        raise ShapeMismatchError(f"{where}: layer widths {[w.shape for w, _ in layers]} are not a SIREN "
                                 "with equal hidden widths")
    return make_arch("siren", in_dim=int(layers[0][0].shape[1]), hidden=hidden.pop(),
                     depth=len(layers) - 1, out_dim=int(layers[-1][0].shape[0]), w0=DWSNETS_W0,
                     output_offset=output_offset)


# ----------------------------------------------------------------------------- listings


def _int_label(value: Any, *, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as e:
        raise ZooFormatError(f"{where}: label {value!r} is not an integer") from e


def _splits_from_sizes(sizes: Mapping[str, int]) -> dict[str, np.ndarray]:
    bounds = np.cumsum([0, *sizes.values()])
    return {s: np.arange(bounds[i], bounds[i + 1]) for i, s in enumerate(sizes)}


def list_splits_json(path: Path) -> Listing:
    """Files named by a DWSNets splits JSON (``{split: {path, label}}`` or ``{split: [path]}``)."""
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise ZooFormatError(f"{path}: expected {{split: {{'path': [...], 'label': [...]}}}}")
    paths: list[str] = []
    labels: list[int | None] = []
    sizes: dict[str, int] = {}
    missing: list[str] = []
    for split in sorted(data, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 9, s)):
        entry = data[split]
        if isinstance(entry, list):
            listed, split_labels = entry, [None] * len(entry)
        elif isinstance(entry, dict) and "path" in entry:
            listed = entry["path"]
            split_labels = entry.get("label", [None] * len(listed))
            if len(split_labels) != len(listed):
                raise ZooFormatError(f"{path}: split {split!r} lists {len(listed)} paths but "
                                     f"{len(split_labels)} labels")
        else:
            raise ZooFormatError(f"{path}: split {split!r} must be a list of paths or "
                                 "{'path': [...], 'label': [...]}")
        for p, lab in zip(listed, split_labels):
            found = resolve_listed_path(str(p), path)
            if found is None:
                missing.append(f"{split}: {p}")
                continue
            paths.append(str(found))
            labels.append(None if lab is None else _int_label(lab, where=f"{path} ({split})"))
        sizes[split] = len(listed)
    if missing:
        raise DataFileError(f"{path}: {len(missing)} listed model files do not exist, e.g. {missing[:3]}")
    return Listing(paths, labels, _splits_from_sizes(sizes), path)


def _files_under(root: Path, folder_name: re.Pattern, suffix: str) -> list[tuple[str, str]]:
    """Sorted ``(folder, file)`` for ``root/<folder>/**/*<suffix>`` with ``folder`` matching
    ``folder_name``: ``os.scandir`` on strings, whose entries know whether they are folders without
    a ``stat`` (several times faster than ``Path.glob`` on tens of thousands of folders)."""
    found = []
    with os.scandir(root) as tops:
        folders = [(e.name, e.path) for e in tops if folder_name.match(e.name) and e.is_dir()]
    for name, top in folders:
        todo = [top]
        while todo:
            with os.scandir(todo.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
                    elif entry.name.endswith(suffix):
                        found.append((name, entry.path))
    found.sort(key=lambda f: f[1].split(os.sep))  # Path order
    return found


def list_mnist_folder(root: Path, *, val_size: int = 5000, seed: int = 0) -> Listing:
    """DWSNets' MNIST-INR folder; validation: ``min(val_size, n_train // 10)`` seeded train INRs."""
    files = _files_under(root, INR_FOLDER, ".pth")
    if not files:
        raise DataFileError(f"{root}: no DWSNets INRs here (expected mnist_png_*/**/*.pth, or "
                            "<dataset>_{training,testing}_<label>_<n>/**/*.pth)")
    by_split: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for folder, f in files:
        fields = folder.split("_")
        if len(fields) < 4:
            raise ZooFormatError(f"{f}: folder {folder!r} does not read mnist_png_<split>_<label>_<n>")
        split = "train" if "train" in folder else "test"
        by_split[split].append((f, _int_label(fields[-2], where=str(f))))
    train = by_split["train"]
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = min(val_size, len(train) // 10)
    val_set = set(order[:n_val].tolist())
    groups = {"train": [t for i, t in enumerate(train) if i not in val_set],
              "val": [train[i] for i in sorted(val_set)], "test": by_split["test"]}
    paths = [p for g in groups.values() for p, _ in g]
    labels: list[int | None] = [lab for g in groups.values() for _, lab in g]
    return Listing(paths, labels, _splits_from_sizes({s: len(g) for s, g in groups.items()}), root)


def list_nfn_siren(root: Path, *, prefix: str = "randinit_smaller",
                   split_points: tuple[int, int] = (45000, 50000)) -> Listing:
    """NFN's SIREN folder: ``<prefix>_<label>s/net<idx>.pth``, split by index."""
    by_index: dict[int, tuple[str, int]] = {}
    for f in root.glob(f"{prefix}_*/*.pth"):
        idx, lab = re.search(r"net(\d+)\.pth$", f.name), re.search(r"_(\d)s$", f.parent.name)
        if idx is None or lab is None:
            raise ZooFormatError(f"{f}: name does not read {prefix}_<label>s/net<index>.pth")
        by_index[int(idx.group(1))] = (str(f), int(lab.group(1)))
    if not by_index:
        raise DataFileError(f"{root}: no NFN SIRENs here (expected {prefix}_<label>s/net<index>.pth)")
    n = len(by_index)
    gaps = sorted(set(range(n)) - set(by_index))
    if gaps:
        raise DataFileError(f"{root}: NFN indexes SIRENs 0..{n - 1}, but net{gaps[0]}.pth "
                            f"({len(gaps)} indices in all) is missing")
    a, b = (min(int(p), n) for p in split_points)
    return Listing([by_index[i][0] for i in range(n)], [by_index[i][1] for i in range(n)],
                   {"train": np.arange(0, a), "val": np.arange(a, b), "test": np.arange(b, n)}, root)


# ----------------------------------------------------------------------------- reading


def read_inr_listing(listing: Listing, *, output_offset: float, meta: Mapping[str, Any],
                     progress: bool = True, trust_pickle: bool = False, workers: int = 1) -> Zoo:
    """Read every file of ``listing`` into one SIREN zoo (a chunk of files in memory at a time);
    ``workers > 1`` parses chunks in that many processes (see ``map_file_chunks``)."""
    first = listing.paths[0]
    first_layers, _ = read_inr_file(first, trust_pickle=trust_pickle)
    arch = siren_arch_for(first_layers, output_offset=output_offset, where=str(first))
    shapes = {k: v.shape for k, v in siren_flat(first_layers).items()}
    stack = FlatStack(len(listing.paths), shapes)
    labels = np.empty(len(listing.paths), np.int32)
    read = functools.partial(read_inr_chunk, shapes=shapes, like=str(first), trust_pickle=trust_pickle)
    start = 0
    with progress_bar(total=len(listing.paths), desc="reading INRs", progress=progress) as bar:
        for arrays, in_files in map_file_chunks(read, listing.paths, workers=workers):
            stack.put_rows(start, arrays)
            for i, in_file in enumerate(in_files, start):
                listed, path = listing.labels[i], listing.paths[i]
                label = listed if listed is not None else in_file
                if label is None:
                    raise ZooFormatError(f"{path}: no label (neither in {listing.source} nor a 'label' key)")
                if listed is not None and in_file is not None and listed != in_file:
                    raise ZooFormatError(f"{path}: label {in_file} in the file but {listed} in {listing.source}")
                labels[i] = label
            start += len(in_files)
            bar.update(len(in_files))
    stack.require_finite(lambda row: str(listing.paths[row]))
    params = arch.unflatten(stack.arrays, where=str(listing.source))
    return Zoo(arch=arch, params=params, targets={"label": labels}, splits=listing.splits,
               meta={**meta, "source": str(listing.source), "num_classes": int(labels.max()) + 1,
                     "files": len(listing.paths)})


def check_export_record(root: Path, listing: Listing) -> None:
    """Refuse a folder written by ``write_dwsnets`` whose files are not all there (an export that
    did not complete, or lost files): its ``zoo_meta.json`` says how many INRs it listed."""
    record_file = root / EXPORT_RECORD
    if not record_file.exists():
        return
    record = read_json(record_file)
    listed = record.get("listed", record.get("size")) if isinstance(record, dict) else None
    if not isinstance(listed, int):
        raise ZooFormatError(f"{record_file}: no count of the INRs written; the export record is damaged")
    if listing.source == root:
        raise ZooFormatError(f"{root}: an export by probegen_jax without its splits.json: the export did not "
                             "complete; export the zoo again")
    if len(listing.paths) != listed:
        raise ZooFormatError(f"{listing.source}: lists {len(listing.paths)} INRs, but {record_file} records "
                             f"{listed}: the export is incomplete or damaged; export the zoo again")


def read_dwsnets(path: str | os.PathLike, *, val_size: int = 5000, seed: int = 0, progress: bool = True,
                 trust_pickle: bool = False, workers: int = 1) -> Zoo:
    """A DWSNets INR zoo from a splits JSON, a folder holding one (``splits.json`` first), or the
    MNIST-INR folder layout."""
    path = Path(path)
    if path.is_file():
        listing = list_splits_json(path)
    else:
        require_dir(path, "DWSNets INR folder or splits JSON")
        jsons = sorted(path.glob("*splits*.json"), key=lambda p: (p.name != "splits.json", p.name))
        if jsons:
            listing = list_splits_json(jsons[0])
        else:
            listing = list_mnist_folder(path, val_size=val_size, seed=seed)
        check_export_record(path, listing)
    meta = {"format": "dwsnets", "coordinates": "xy (column, row)"}
    return read_inr_listing(listing, output_offset=DWSNETS_OFFSET, meta=meta, progress=progress,
                            trust_pickle=trust_pickle, workers=workers)


def read_nfn_siren(path: str | os.PathLike, *, prefix: str = "randinit_smaller",
                   split_points: tuple[int, int] = (45000, 50000), progress: bool = True,
                   trust_pickle: bool = False, workers: int = 1) -> Zoo:
    """An NFN SIREN zoo (``<prefix>_<label>s/net<idx>.pth``)."""
    root = require_dir(Path(path), "NFN SIREN folder")
    listing = list_nfn_siren(root, prefix=prefix, split_points=split_points)
    meta = {"format": "nfn-siren", "coordinates": "ij (row, column)", "prefix": prefix}
    return read_inr_listing(listing, output_offset=0.0, meta=meta, progress=progress,
                            trust_pickle=trust_pickle, workers=workers)


# ----------------------------------------------------------------------------- writing


def dwsnets_state_dicts(zoo: Zoo) -> tuple[dict[str, np.ndarray], int]:
    """Stacked DWSNets tensors ``{"seq.0.weight": [N, out, in], ...}`` of a ``siren`` zoo.

    DWSNets' SIREN fixes ``w0 = 30`` and adds 0.5 to its output: a zoo with another ``w0`` or
    offset is rescaled exactly (``sin(w0 z) = sin(30 (w0 / 30) z)``; the offset moves into the
    last bias), so the written networks compute the same functions.
    """
    if zoo.arch.name != "siren":
        raise ZooFormatError(f"the DWSNets format holds SIRENs; this zoo's architecture is {zoo.arch.name!r}")
    cfg = zoo.arch.config
    scale = float(cfg["w0"]) / DWSNETS_W0
    flat = {k: np.asarray(v, np.float32) for k, v in flatten_params(zoo.params).items()}
    n_layers = int(cfg["depth"]) + 1
    tensors = {}
    for i in range(n_layers):
        w = np.swapaxes(flat[f"dense{i}/kernel"], 1, 2)
        b = flat[f"dense{i}/bias"]
        if i < n_layers - 1:
            w, b = w * scale, b * scale
        else:
            b = b + (float(cfg["output_offset"]) - DWSNETS_OFFSET)
        tensors[f"seq.{i}.weight"], tensors[f"seq.{i}.bias"] = w, b
    return tensors, n_layers


def export_folder_prefix(meta: Mapping[str, Any]) -> str:
    """How an export names its INR folders: by the zoo's dataset (``digits``, ``fashion_mnist``),
    ``mnist_png`` for MNIST as DWSNets does, ``inr`` when the zoo records none."""
    dataset = re.sub(r"[^A-Za-z0-9]+", "_", str(meta.get("dataset") or "inr")).strip("_").lower() or "inr"
    return "mnist_png" if dataset == "mnist" else dataset


def _split_of(zoo: Zoo) -> np.ndarray:
    names = np.full(len(zoo), "", dtype=object)
    for split, idx in zoo.splits.items():
        names[idx] = split
    return names


def write_dwsnets(zoo: Zoo, out: str | os.PathLike, *, overwrite: bool = False, progress: bool = True,
                  final_dir: str | os.PathLike | None = None) -> Path:
    """Write ``zoo`` as DWSNets INRs: the MNIST-INR folder layout plus ``splits.json``.

    Files: ``<out>/<dataset>_{training,testing}_<label>_<i>/checkpoints/model_final.pth`` (train
    and val INRs under ``training``, test under ``testing``; ``<dataset>`` from ``meta["dataset"]``,
    ``mnist_png`` as DWSNets names MNIST's), each a state dict
    ``seq.{i}.{weight,bias}`` plus its integer ``label``; ``splits.json`` lists absolute paths and
    labels per split (under ``final_dir`` when ``out`` is a temporary folder to be renamed to it,
    as ``export_zoo`` does); ``zoo_meta.json`` records how many INRs were written and listed, which
    the reader checks.
    """
    torch = require_torch("writing DWSNets INRs")
    out = Path(out).absolute()
    final = Path(final_dir).absolute() if final_dir is not None else out
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: already exists and is not empty; pass overwrite=True (--overwrite)")
    labels = np.asarray(zoo.target("label")).astype(np.int64)
    tensors, _ = dwsnets_state_dicts(zoo)
    split_of = _split_of(zoo)
    listing: dict[str, dict[str, list]] = {s: {"path": [], "label": []} for s in zoo.splits}
    digits = max(5, len(str(len(zoo))))
    dataset = export_folder_prefix(zoo.meta)
    for i in progress_iter(range(len(zoo)), total=len(zoo), desc="writing INRs", progress=progress):
        kind = "testing" if split_of[i] == "test" else "training"
        name = Path(f"{dataset}_{kind}_{labels[i]}_{i:0{digits}d}") / "checkpoints" / "model_final.pth"
        state = {k: torch.from_numpy(np.array(v[i])) for k, v in tensors.items()}
        state["label"] = int(labels[i])
        save_torch(state, out / name)
        if split_of[i]:
            listing[split_of[i]]["path"].append(str(final / name))
            listing[split_of[i]]["label"].append(int(labels[i]))
    write_json(out / "splits.json", listing)
    write_json(out / EXPORT_RECORD, {"meta": json.loads(json.dumps(dict(zoo.meta), default=str)),
                                     "arch": zoo.arch.spec(), "size": len(zoo),
                                     "listed": sum(len(v["path"]) for v in listing.values())})
    return out
