"""INR files (PyTorch state dicts of linear layers) parsed into SIREN params: one file, or a
chunk of files as stacked arrays. Free of JAX, so the worker processes of a large import start
quickly (see ``common.map_file_chunks``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from probegen_jax.errors import ShapeMismatchError, ZooFormatError
from probegen_jax.zoo.formats import torchfile
from probegen_jax.zoo.formats.common import FlatStack, PathName, as_state_dict, load_torch, to_numpy


def linear_layers(state_dict: Mapping[str, Any], *, where: str,
                  stacked: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(W [out, in], b [out]), ...]`` in key order; keys not ending in weight/bias are ignored.
    ``stacked``: the tensors carry a leading axis over files written alike."""
    keys = [k for k in state_dict if isinstance(k, str) and k.rsplit(".", 1)[-1] in ("weight", "bias")]
    lead = int(stacked)
    layers = []
    i = 0
    while i < len(keys):
        key = keys[i]
        prefix, kind = key.rsplit(".", 1) if "." in key else ("", key)
        bias_key = f"{prefix}.bias" if prefix else "bias"
        if kind != "weight":
            raise ZooFormatError(f"{where}: tensor {key!r} has no weight before it (keys {keys})")
        if i + 1 >= len(keys) or keys[i + 1] != bias_key:
            raise ZooFormatError(f"{where}: missing key {bias_key!r} after {key!r} (keys {keys})")
        w = to_numpy(state_dict[key], where=f"{where}/{key}")
        b = to_numpy(state_dict[bias_key], where=f"{where}/{bias_key}")
        if w.ndim != 2 + lead or b.shape[lead:] != w.shape[lead:lead + 1]:
            raise ShapeMismatchError(f"{where}: {key!r} {tuple(w.shape[lead:])} and {bias_key!r} "
                                     f"{tuple(b.shape[lead:])} are not a linear layer ([out, in] and [out])")
        layers.append((w, b))
        i += 2
    if not layers:
        raise ZooFormatError(f"{where}: no weight/bias tensors found (keys {list(state_dict)[:20]})")
    return layers


def siren_flat(layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """``{"dense0/kernel": W.T, "dense0/bias": b, ...}`` (the ``siren`` arch's flat params; stacked
    layers give stacked params)."""
    flat = {}
    for i, (w, b) in enumerate(layers):
        flat[f"dense{i}/kernel"] = np.swapaxes(w, -1, -2)
        flat[f"dense{i}/bias"] = b
    return flat


def file_labels(obj: Mapping[str, Any], count: int, *, where: str) -> list[int | None]:
    """The integer under the ``label`` key of each of ``count`` files whose object is ``obj`` (one
    scalar for all, or a tensor stacked over them), None without one."""
    if "label" not in obj:
        return [None] * count
    values = np.asarray(obj["label"])
    if values.ndim == 0:
        values = np.broadcast_to(values, count)
    if values.shape != (count,) or values.dtype.kind not in "iub" and not (
            values.dtype.kind == "f" and np.all(values == np.round(values))):
        raise ZooFormatError(f"{where}: 'label' is not an integer ({obj['label']!r:.60})")
    return [int(v) for v in values]


def read_inr_file(path: PathName, data: bytes | None = None, *,
                  trust_pickle: bool = False) -> tuple[list[tuple[np.ndarray, np.ndarray]], int | None]:
    """One INR file's linear layers and its ``label`` key (None without one); ``data``: its bytes
    when already read."""
    obj = as_state_dict(load_torch(path, trust_pickle=trust_pickle, data=data), where=str(path))
    return linear_layers(obj, where=str(path)), file_labels(obj, 1, where=str(path))[0]


def read_inr_chunk(paths: Sequence[PathName], contents: Iterable[bytes | None], *,
                   shapes: Mapping[str, tuple[int, ...]], like: str,
                   trust_pickle: bool) -> tuple[dict[str, np.ndarray], list[int | None]]:
    """INR files as stacked SIREN params ``{name: [len(paths), ...]}`` (``shapes``: those of the
    file ``like``) and the label each file holds (None without one).

    Files written like one read before are replayed together (``torchfile.load_stacked``: one
    vectorised layout check, CRC-32 checks, one copy per tensor for the whole group); the others
    are parsed one by one, the first of each kind making the template for its likes."""
    stack = FlatStack(len(paths), shapes)
    labels: list[int | None] = [None] * len(paths)

    def put(rows: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]], row_labels: list[int | None],
            where: str) -> None:
        if 2 * len(layers) != len(shapes):
            raise ShapeMismatchError(f"{where}: {len(layers)} layers, expected {len(shapes) // 2} like {like}")
        stack.put_many(rows, siren_flat(layers), where=where)
        for row, label in zip(rows, row_labels):
            labels[row] = label

    contents = list(contents)
    pending = np.arange(len(paths))
    while len(pending):
        ready = np.asarray([i for i in pending if contents[i] is not None] if not trust_pickle else [], np.intp)
        for rows, obj in torchfile.load_stacked([contents[i] for i in ready]):
            rows = ready[rows]
            where = f"{paths[rows[0]]} (and {len(rows) - 1} files written alike)"
            obj = as_state_dict(obj, where=where)
            put(rows, linear_layers(obj, where=where, stacked=True), file_labels(obj, len(rows), where=where), where)
            pending = np.setdiff1d(pending, rows, assume_unique=True)
        if len(pending):  # the first of its kind (or unreadable, or damaged): parsed alone
            first = pending[0]
            layers, label = read_inr_file(paths[first], contents[first], trust_pickle=trust_pickle)
            put(pending[:1], [(w[None], b[None]) for w, b in layers], [label], str(paths[first]))
            pending = pending[1:]
    return stack.arrays, labels
