"""INR files (PyTorch state dicts of linear layers) parsed into SIREN params: one file, or a
chunk of files as stacked arrays. Free of JAX, so the worker processes of a large import start
quickly (see ``common.map_file_chunks``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probegen_jax.errors import ShapeMismatchError, ZooFormatError
from probegen_jax.zoo.formats.common import FlatStack, as_state_dict, load_torch, to_numpy


def linear_layers(state_dict: Mapping[str, Any], *, where: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(W [out, in], b [out]), ...]`` in key order; keys not ending in weight/bias are ignored."""
    keys = [k for k in state_dict if isinstance(k, str) and k.rsplit(".", 1)[-1] in ("weight", "bias")]
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
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise ShapeMismatchError(f"{where}: {key!r} {tuple(w.shape)} and {bias_key!r} {tuple(b.shape)} "
                                     "are not a linear layer ([out, in] and [out])")
        layers.append((w, b))
        i += 2
    if not layers:
        raise ZooFormatError(f"{where}: no weight/bias tensors found (keys {list(state_dict)[:20]})")
    return layers


def siren_flat(layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """``{"dense0/kernel": W.T, "dense0/bias": b, ...}`` (the ``siren`` arch's flat params)."""
    flat = {}
    for i, (w, b) in enumerate(layers):
        flat[f"dense{i}/kernel"] = w.T
        flat[f"dense{i}/bias"] = b
    return flat


def file_label(obj: Mapping[str, Any], *, where: str) -> int | None:
    """The integer under the file's ``label`` key, None without one."""
    if "label" not in obj:
        return None
    value = obj["label"]
    try:
        return int(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError) as e:
        raise ZooFormatError(f"{where}: 'label' is not an integer ({value!r})") from e


def read_inr_file(path: Path, data: bytes | None = None, *,
                  trust_pickle: bool = False) -> tuple[list[tuple[np.ndarray, np.ndarray]], int | None]:
    """One INR file's linear layers and its ``label`` key (None without one); ``data``: its bytes
    when already read."""
    obj = as_state_dict(load_torch(path, trust_pickle=trust_pickle, data=data), where=str(path))
    return linear_layers(obj, where=str(path)), file_label(obj, where=str(path))


def read_inr_chunk(paths: Sequence[Path], contents: Iterable[bytes | None], *,
                   shapes: Mapping[str, tuple[int, ...]], like: str,
                   trust_pickle: bool) -> tuple[dict[str, np.ndarray], list[int | None]]:
    """INR files as stacked SIREN params ``{name: [len(paths), ...]}`` (``shapes``: those of the
    file ``like``) and the label each file holds (None without one)."""
    stack = FlatStack(len(paths), shapes)
    labels = []
    for i, (path, data) in enumerate(zip(paths, contents, strict=True)):
        layers, label = read_inr_file(path, data, trust_pickle=trust_pickle)
        if 2 * len(layers) != len(shapes):
            raise ShapeMismatchError(f"{path}: {len(layers)} layers, expected {len(shapes) // 2} like {like}")
        stack.put(i, siren_flat(layers), where=str(path))
        labels.append(label)
    return stack.arrays, labels
