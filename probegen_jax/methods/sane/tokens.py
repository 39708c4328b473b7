"""SANE's tokeniser and its exact inverse.

Each ``(kernel, bias)`` layer, in forward order, becomes rows ``[out, fan_in + 1]``: the kernel
``[..., in, out]`` (dense or HWIO conv) reshaped output-major with the bias appended as the last
column. Each row is cut into tokens of ``token_size`` values, the last one zero-padded; a mask marks
the real values. Every token has a position ``(n, l, k)``: its index in the sequence, its layer and
its index within the layer (row-major: row, then piece).

Per-layer standardisation (one mean and std per layer, over the training networks' weights and
biases) is affine per layer, so it is applied to params before tokenising and commutes with the
function-preserving permutations of ``augment``. The statistics are saved beside the model
(``standardization.json``) together with the layout they belong to.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.archs.base import layer_order
from probegen_jax.errors import DataFileError, ShapeMismatchError
from probegen_jax.io import write_json
from probegen_jax.types import Array, Params

STANDARDIZATION_FILE = "standardization.json"


@dataclasses.dataclass(frozen=True)
class LayerSlot:
    """Where one layer lives in the token sequence."""

    name: str
    kernel_shape: tuple[int, ...]
    first_token: int
    tokens_per_row: int

    @property
    def rows(self) -> int:
        return self.kernel_shape[-1]

    @property
    def row_length(self) -> int:  # fan-in plus the bias
        return math.prod(self.kernel_shape[:-1]) + 1

    @property
    def num_tokens(self) -> int:
        return self.rows * self.tokens_per_row


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """The token sequence of one architecture at one token size."""

    token_size: int
    layers: tuple[LayerSlot, ...]

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.layers)

    @property
    def num_weights(self) -> int:
        return sum(s.rows * s.row_length for s in self.layers)

    def positions(self) -> np.ndarray:
        """``[T, 3]`` int32 ``(n, l, k)``: sequence index, layer index, token index within the layer."""
        layer = np.concatenate([np.full(s.num_tokens, i) for i, s in enumerate(self.layers)])
        within = np.concatenate([np.arange(s.num_tokens) for s in self.layers])
        return np.stack([np.arange(self.num_tokens), layer, within], axis=1).astype(np.int32)

    def mask(self) -> np.ndarray:
        """``[T, token_size]`` float32: 1 where a token holds a weight, 0 in padding."""
        rows = [np.pad(np.ones((s.rows, s.row_length), np.float32),
                       ((0, 0), (0, s.tokens_per_row * self.token_size - s.row_length)))
                for s in self.layers]
        return np.concatenate([r.reshape(-1, self.token_size) for r in rows])

    def max_tokens_per_layer(self) -> int:
        return max(s.num_tokens for s in self.layers)

    def check(self, params: Params, *, where: str = "params", stacked: bool = False) -> None:
        """Raise ``ShapeMismatchError`` naming the layer when ``params`` does not fit this layout."""
        lead = 1 if stacked else 0
        names = [s.name for s in self.layers]
        got = layer_order(params) if isinstance(params, Mapping) else []
        if got != names:
            raise ShapeMismatchError(f"{where}: the tokeniser's layout has layers {names}, the checkpoint has {got}")
        for s in self.layers:
            kernel, bias = params[s.name]["kernel"], params[s.name]["bias"]
            if tuple(kernel.shape[lead:]) != s.kernel_shape or tuple(bias.shape[lead:]) != (s.rows,):
                raise ShapeMismatchError(
                    f"{where}: layer {s.name!r} has kernel {tuple(kernel.shape[lead:])} and bias "
                    f"{tuple(bias.shape[lead:])}; the tokeniser's layout expects kernel {s.kernel_shape} and "
                    f"bias ({s.rows},)")

    def to_json(self) -> dict[str, Any]:
        return {"token_size": self.token_size,
                "layers": [{"name": s.name, "kernel_shape": list(s.kernel_shape)} for s in self.layers]}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> TokenLayout:
        shapes = {d["name"]: {"kernel": tuple(d["kernel_shape"]), "bias": (d["kernel_shape"][-1],)}
                  for d in record["layers"]}
        return token_layout(shapes, record["token_size"], order=[d["name"] for d in record["layers"]])


def token_layout(params: Params, token_size: int, *, order: Sequence[str] | None = None) -> TokenLayout:
    """The layout of one network's params (arrays or shape tuples); non-layer leaves are ignored."""
    if token_size < 1:
        raise ValueError(f"token size must be positive, got {token_size}")
    names = list(order) if order is not None else layer_order(params)
    slots, first = [], 0
    for name in names:
        kernel = params[name]["kernel"]
        shape = tuple(int(d) for d in (kernel if isinstance(kernel, tuple) else kernel.shape))
        if len(shape) < 2:
            raise ShapeMismatchError(f"layer {name!r}: kernel must be [..., in, out], got shape {shape}")
        slot = LayerSlot(name, shape, first, -(-(math.prod(shape[:-1]) + 1) // token_size))
        slots.append(slot)
        first += slot.num_tokens
    layout = TokenLayout(token_size, tuple(slots))
    if token_size > layout.num_weights:
        raise ValueError(f"token size {token_size} is larger than the whole network ({layout.num_weights} weights)")
    return layout


def layer_rows(params: Params, slot: LayerSlot) -> Array:
    """``[out, fan_in + 1]``: kernel rows with the bias appended."""
    layer = params[slot.name]
    kernel = layer["kernel"].reshape(-1, slot.rows).T
    return jnp.concatenate([kernel, layer["bias"][:, None]], axis=1)


def tokenize(params: Params, layout: TokenLayout) -> Array:
    """``[T, token_size]`` tokens of one network (vmap for a zoo)."""
    pieces = []
    for s in layout.layers:
        rows = layer_rows(params, s)
        rows = jnp.pad(rows, ((0, 0), (0, s.tokens_per_row * layout.token_size - s.row_length)))
        pieces.append(rows.reshape(s.num_tokens, layout.token_size))
    return jnp.concatenate(pieces)


def detokenize(tokens: Array, layout: TokenLayout, extras: Params | None = None) -> Params:
    """The params of ``tokens`` ``[T, token_size]`` (the exact inverse of ``tokenize``); ``extras``
    (non-layer leaves such as an activation index) are added unchanged."""
    if tokens.shape[-2:] != (layout.num_tokens, layout.token_size):
        raise ShapeMismatchError(f"tokens: expected [{layout.num_tokens}, {layout.token_size}], got {tokens.shape}")
    params = dict(extras or {})
    for s in layout.layers:
        block = tokens[s.first_token: s.first_token + s.num_tokens]
        rows = block.reshape(s.rows, s.tokens_per_row * layout.token_size)[:, : s.row_length]
        kernel = rows[:, :-1].T.reshape(s.kernel_shape)
        params[s.name] = {"kernel": kernel, "bias": rows[:, -1]}
    return params


def layer_params(params: Params, layout: TokenLayout) -> Params:
    """Only the layers the layout tokenises (drops leaves such as ``activation_id``)."""
    return {s.name: {"kernel": params[s.name]["kernel"], "bias": params[s.name]["bias"]} for s in layout.layers}


# ----------------------------------------------------------------------------- standardisation


@dataclasses.dataclass(frozen=True)
class Standardization:
    """Per-layer mean and std (``[L]`` each, in layout order)."""

    mean: np.ndarray
    std: np.ndarray


def fit_standardization(zoo_params: Params, layout: TokenLayout, *, eps: float = 1e-8) -> Standardization:
    """Mean and std of each layer's weights and biases together, over stacked networks ``[N, ...]``."""
    layout.check(zoo_params, where="standardisation params", stacked=True)
    means, stds = [], []
    for s in layout.layers:
        values = np.concatenate([np.asarray(zoo_params[s.name][k]).reshape(-1) for k in ("kernel", "bias")])
        means.append(values.mean())
        stds.append(max(float(values.std()), eps))
    return Standardization(np.asarray(means, np.float32), np.asarray(stds, np.float32))


def _affine(params: Params, layout: TokenLayout, fn) -> Params:
    return {s.name: {k: fn(params[s.name][k], i) for k in ("kernel", "bias")} for i, s in enumerate(layout.layers)}


def standardize(params: Params, stats: Standardization, layout: TokenLayout) -> Params:
    """``(w - mean_l) / std_l`` per layer (any leading axes)."""
    return _affine(params, layout, lambda w, i: (w - stats.mean[i]) / stats.std[i])


def destandardize(params: Params, stats: Standardization, layout: TokenLayout) -> Params:
    """The inverse of ``standardize``."""
    return _affine(params, layout, lambda w, i: w * stats.std[i] + stats.mean[i])


def save_standardization(directory: str | os.PathLike, stats: Standardization, layout: TokenLayout) -> Path:
    path = Path(directory) / STANDARDIZATION_FILE
    write_json(path, {"layout": layout.to_json(), "mean": stats.mean.tolist(), "std": stats.std.tolist()})
    return path


def load_standardization(directory: str | os.PathLike) -> tuple[Standardization, TokenLayout]:
    """The statistics and layout saved beside a SANE model; a missing or damaged file is named."""
    path = Path(directory) / STANDARDIZATION_FILE
    if not path.is_file():
        raise DataFileError(f"{path}: standardisation file missing; it is written beside the model by "
                            "`train_sane` (`probegen-jax train sane`), and decoding needs it")
    try:
        record = json.loads(path.read_text())
        layout = TokenLayout.from_json(record["layout"])
        stats = Standardization(np.asarray(record["mean"], np.float32), np.asarray(record["std"], np.float32))
    except (ValueError, KeyError, TypeError) as e:
        raise DataFileError(f"{path}: damaged standardisation file ({type(e).__name__}: {e})") from e
    if stats.mean.shape != (len(layout.layers),) or stats.std.shape != (len(layout.layers),):
        raise DataFileError(f"{path}: expected {len(layout.layers)} per-layer statistics, got "
                            f"{stats.mean.shape} and {stats.std.shape}")
    return stats, layout


def tokenize_zoo(zoo_params: Params, layout: TokenLayout) -> Array:
    """``[N, T, token_size]`` tokens of stacked networks."""
    return jax.vmap(lambda p: tokenize(p, layout))(zoo_params)
