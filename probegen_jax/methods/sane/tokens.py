"""SANE's tokeniser and its exact inverse, as the SANE reference code (``tokenize_checkpoint``,
``tokens_to_checkpoint``, ``standardize_data_checkpoints``) defines them.

A network is a sequence of tensors ("layers" of the positions), in forward order:

- a dense or conv layer ``{"kernel": [..., in, out], "bias": [out]}`` is one tensor whose rows are
  PyTorch's ``weight.reshape(out, -1)``: for a conv kernel stored HWIO ``[kh, kw, in, out]`` a row is
  ordered ``(in, kh, kw)`` (torch ``[out, in, kh, kw]``), for a dense kernel it is ``[in]``; the bias
  is appended as the last column;
- a BatchNorm layer ``{"scale": [C], "bias": [C], "mean": [C], "var": [C]}`` (running statistics
  optional) is up to three tensors: ``scale`` with ``bias`` appended (rows of 2), then ``mean`` and
  ``var`` (rows of 1). ``ignore_norm=True`` leaves BatchNorm layers out (the reference's ``ignore_bn``).

Each row is cut into tokens of ``token_size`` values, the last one zero-padded; a mask marks the real
values. A token's position is ``(n, l, k)``: its index in the sequence, its tensor's index and its
row (output channel) within the tensor, the same ``k`` for every piece of a long row. Token size 0
takes the longest row among tensors with a bias (a running statistic counts as 2, as in the
reference's discovery loop); a token size larger than every row just pads.

Per-layer standardisation: one mean and std per tensor, the mean of the networks' row means and
``sqrt`` of the mean of their unbiased variances; the bias is standardised with its weights. As in
the reference code, a running statistic's own name stands in for its bias there: its statistics are
taken over the values twice (``[x, x]``) and ``(x - mean) / std`` is applied twice (undone twice by
``destandardize``). Being affine per tensor, standardisation is applied to params before
tokenising and commutes with the permutations of ``augment``; the statistics are saved beside the
model (``standardization.json``) together with the layout they belong to.

``convention="legacy"`` is the layout of models saved before (rows ordered ``(kh, kw, in)``,
``k`` the token's index within its layer, dense and conv layers only): a saved layout without a
convention reads as legacy, so those models embed and decode as they did.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
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
CONVENTIONS = ("sane", "legacy")
NORM_PARTS = ("scale", "mean", "var")  # the tensors of a BatchNorm layer, in the reference's order
STAT_PARTS = ("mean", "var")


@dataclasses.dataclass(frozen=True)
class LayerSlot:
    """Where one tensor lives in the token sequence.

    ``part`` is ``"kernel"`` (``shape`` ``[..., in, out]``), ``"scale"``, ``"mean"`` or ``"var"``
    (``shape`` ``[C]``); ``has_bias``: the layer's bias is appended to each row.
    """

    name: str
    part: str
    shape: tuple[int, ...]
    has_bias: bool
    first_token: int
    tokens_per_row: int

    @property
    def rows(self) -> int:
        return self.shape[-1] if self.part == "kernel" else self.shape[0]

    @property
    def fan_in(self) -> int:
        return math.prod(self.shape[:-1]) if self.part == "kernel" else 1

    @property
    def row_length(self) -> int:
        return self.fan_in + int(self.has_bias)

    @property
    def num_tokens(self) -> int:
        return self.rows * self.tokens_per_row

    @property
    def leaves(self) -> tuple[str, ...]:
        """The params leaves this tensor holds."""
        return (self.part, "bias") if self.has_bias else (self.part,)


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """The token sequence of one architecture at one token size."""

    token_size: int
    layers: tuple[LayerSlot, ...]
    convention: str = "sane"

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.layers)

    @property
    def num_weights(self) -> int:
        return sum(s.rows * s.row_length for s in self.layers)

    def layer_names(self) -> list[str]:
        """The params entries tokenised, in sequence order."""
        return list(dict.fromkeys(s.name for s in self.layers))

    def positions(self) -> np.ndarray:
        """``[T, 3]`` int32 ``(n, l, k)``: sequence index, tensor index, row (legacy: token) index."""
        layer = np.concatenate([np.full(s.num_tokens, i) for i, s in enumerate(self.layers)])
        if self.convention == "legacy":
            within = np.concatenate([np.arange(s.num_tokens) for s in self.layers])
        else:
            within = np.concatenate([np.repeat(np.arange(s.rows), s.tokens_per_row) for s in self.layers])
        return np.stack([np.arange(self.num_tokens), layer, within], axis=1).astype(np.int32)

    def position_table_sizes(self) -> tuple[int, int, int]:
        """How many values each of ``n``, ``l`` and ``k`` takes."""
        return tuple(int(m) + 1 for m in self.positions().max(axis=0))

    def mask(self) -> np.ndarray:
        """``[T, token_size]`` float32: 1 where a token holds a weight, 0 in padding."""
        rows = [np.pad(np.ones((s.rows, s.row_length), np.float32),
                       ((0, 0), (0, s.tokens_per_row * self.token_size - s.row_length)))
                for s in self.layers]
        return np.concatenate([r.reshape(-1, self.token_size) for r in rows])

    def check(self, params: Params, *, where: str = "params", stacked: bool = False) -> None:
        """Raise ``ShapeMismatchError`` naming the layer when ``params`` does not fit this layout."""
        lead = 1 if stacked else 0
        names = self.layer_names()
        missing = [n for n in names if not isinstance(params, Mapping) or not isinstance(params.get(n), Mapping)]
        if missing:
            got = sorted(k for k, v in params.items() if isinstance(v, Mapping)) if isinstance(params, Mapping) else []
            raise ShapeMismatchError(f"{where}: the tokeniser's layout has layers {names}, the checkpoint has {got}")
        for s in self.layers:
            layer = params[s.name]
            want = {s.part: s.shape, **({"bias": (s.rows,)} if s.has_bias else {})}
            got = {k: tuple(np.shape(layer[k]))[lead:] if k in layer else None for k in want}
            if got != want:
                raise ShapeMismatchError(f"{where}: layer {s.name!r} has {got}; the tokeniser's layout expects {want}")

    def to_json(self) -> dict[str, Any]:
        return {"token_size": self.token_size, "convention": self.convention,
                "layers": [{"name": s.name, "part": s.part, "shape": list(s.shape), "bias": s.has_bias}
                           for s in self.layers]}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> TokenLayout:
        """The layout ``to_json`` wrote; a record without ``convention`` is a legacy (older) layout."""
        if "convention" not in record:
            specs = [(d["name"], "kernel", tuple(d["kernel_shape"]), True) for d in record["layers"]]
            return _layout(specs, int(record["token_size"]), "legacy")
        specs = [(d["name"], d["part"], tuple(d["shape"]), bool(d["bias"])) for d in record["layers"]]
        return _layout(specs, int(record["token_size"]), record["convention"])


def _shape(leaf: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in (leaf if isinstance(leaf, tuple) else np.shape(leaf)))


def _is_norm(layer: Any) -> bool:
    return isinstance(layer, Mapping) and "scale" in layer and "bias" in layer and "kernel" not in layer


def token_order(params: Params) -> list[str]:
    """Forward order of the tokenised layers: the ``(kernel, bias)`` layers in ``layer_order``, each
    BatchNorm layer (``bn0``, ``norm1``, ...) right after the conv (else dense) layer of its number."""
    order = layer_order(params)
    for name in sorted((k for k, v in params.items() if _is_norm(v)), reverse=True):
        match = re.fullmatch(r"[A-Za-z_]*?(\d+)", name)
        after = [n for n in order if match and n in (f"conv{match.group(1)}", f"dense{match.group(1)}")]
        if not after:
            raise ShapeMismatchError(f"BatchNorm layer {name!r}: cannot place it in the sequence (no conv or dense "
                                     "layer of its number); pass the order explicitly")
        order.insert(order.index(after[0]) + 1, name)
    return order


def _specs(params: Params, order: Sequence[str], ignore_norm: bool) -> list[tuple[str, str, tuple[int, ...], bool]]:
    specs = []
    for name in order:
        layer = params[name]
        if "kernel" in layer:
            shape = _shape(layer["kernel"])
            if len(shape) < 2:
                raise ShapeMismatchError(f"layer {name!r}: kernel must be [..., in, out], got shape {shape}")
            specs.append((name, "kernel", shape, "bias" in layer))
        elif not ignore_norm:
            specs += [(name, part, _shape(layer[part]), part == "scale") for part in NORM_PARTS if part in layer]
    return specs


def discover_token_size(specs: Sequence[tuple[str, str, tuple[int, ...], bool]]) -> int:
    """The reference's token size 0: the longest row among tensors with a bias (running statistics
    count as 2, their own name standing in for a bias there)."""
    size = 0
    for _, part, shape, has_bias in specs:
        if part in STAT_PARTS:
            size = max(size, 2)
        elif has_bias:
            size = max(size, (math.prod(shape[:-1]) if part == "kernel" else 1) + 1)
    if size == 0:
        raise ShapeMismatchError("token size 0 (automatic) needs at least one layer with a bias")
    return size


def _layout(specs, token_size: int, convention: str) -> TokenLayout:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown token convention {convention!r}; known: {list(CONVENTIONS)}")
    if token_size < 0:
        raise ValueError(f"token size must be positive (or 0: automatic), got {token_size}")
    token_size = token_size or discover_token_size(specs)
    slots, first = [], 0
    for name, part, shape, has_bias in specs:
        row_length = (math.prod(shape[:-1]) if part == "kernel" else 1) + int(has_bias)
        slot = LayerSlot(name, part, shape, has_bias, first, -(-row_length // token_size))
        slots.append(slot)
        first += slot.num_tokens
    return TokenLayout(token_size, tuple(slots), convention)


def token_layout(params: Params, token_size: int, *, order: Sequence[str] | None = None, convention: str = "sane",
                 ignore_norm: bool = False) -> TokenLayout:
    """The layout of one network's params (arrays or shape tuples); non-layer leaves are ignored.

    ``token_size=0`` finds the size as the reference code does; ``order`` overrides ``token_order``.
    """
    if convention == "legacy" and (token_size < 1 or any(_is_norm(v) for v in params.values())):
        raise ValueError("the legacy token layout has dense and conv layers only and a positive token size")
    names = list(order) if order is not None else token_order(params)
    return _layout(_specs(params, names, ignore_norm or convention == "legacy"), token_size, convention)


def _kernel_rows(kernel: Array, slot: LayerSlot, convention: str) -> Array:
    if convention == "legacy":
        return kernel.reshape(-1, slot.rows).T
    return jnp.moveaxis(kernel, (-1, -2), (0, 1)).reshape(slot.rows, -1)  # torch [out, in, *spatial]


def _kernel_from_rows(rows: Array, slot: LayerSlot, convention: str) -> Array:
    if convention == "legacy":
        return rows.T.reshape(slot.shape)
    torch_shape = (slot.shape[-1], slot.shape[-2], *slot.shape[:-2])
    return jnp.moveaxis(rows.reshape(torch_shape), (0, 1), (-1, -2))


def layer_rows(params: Params, slot: LayerSlot, convention: str = "sane") -> Array:
    """``[rows, row_length]``: the tensor's rows with the bias appended."""
    layer = params[slot.name]
    value = layer[slot.part]
    rows = _kernel_rows(value, slot, convention) if slot.part == "kernel" else value[:, None]
    return jnp.concatenate([rows, layer["bias"][:, None]], axis=1) if slot.has_bias else rows


def tokenize(params: Params, layout: TokenLayout) -> Array:
    """``[T, token_size]`` tokens of one network (vmap for a zoo)."""
    pieces = []
    for s in layout.layers:
        rows = layer_rows(params, s, layout.convention)
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
        value = _kernel_from_rows(rows[:, : s.fan_in], s, layout.convention) if s.part == "kernel" else rows[:, 0]
        layer = {**params.get(s.name, {}), s.part: value}
        if s.has_bias:
            layer["bias"] = rows[:, s.fan_in]
        params[s.name] = layer
    return params


def layer_params(params: Params, layout: TokenLayout) -> Params:
    """Only the tensors the layout tokenises (drops leaves such as ``activation_id``)."""
    out: dict[str, dict[str, Any]] = {}
    for s in layout.layers:
        out.setdefault(s.name, {}).update({k: params[s.name][k] for k in s.leaves})
    return out


# ----------------------------------------------------------------------------- standardisation


@dataclasses.dataclass(frozen=True)
class Standardization:
    """Per-tensor mean and std (``[L]`` each, in layout order)."""

    mean: np.ndarray
    std: np.ndarray


def _stat_values(zoo_params: Params, slot: LayerSlot) -> np.ndarray:
    """``[N, M]``: each network's values of one tensor as the reference code gathers them."""
    layer = zoo_params[slot.name]
    values = [np.asarray(layer[k], np.float64).reshape(len(layer[k]), -1) for k in slot.leaves]
    if slot.part in STAT_PARTS:  # the reference appends the statistic to itself
        values = values * 2
    return np.concatenate(values, axis=1)


def fit_standardization(zoo_params: Params, layout: TokenLayout, *, eps: float = 1e-8) -> Standardization:
    """Each tensor's mean (of the networks' means) and std (``sqrt`` of the mean of the networks'
    unbiased variances), over stacked networks ``[N, ...]``."""
    layout.check(zoo_params, where="standardisation params", stacked=True)
    values = [_stat_values(zoo_params, s) for s in layout.layers]
    means = [v.mean(axis=1).mean() for v in values]
    stds = [max(float(np.sqrt(v.var(axis=1, ddof=1).mean())), eps) for v in values]
    return Standardization(np.asarray(means, np.float32), np.asarray(stds, np.float32))


def _repeats(slot: LayerSlot, layout: TokenLayout) -> int:
    return 2 if slot.part in STAT_PARTS and layout.convention == "sane" else 1


def _affine(params: Params, layout: TokenLayout, fn) -> Params:
    out: dict[str, dict[str, Any]] = {}
    for i, s in enumerate(layout.layers):
        for k in s.leaves:
            value = params[s.name][k]
            for _ in range(_repeats(s, layout)):
                value = fn(value, i)
            out.setdefault(s.name, {})[k] = value
    return out


def standardize(params: Params, stats: Standardization, layout: TokenLayout) -> Params:
    """``(w - mean_l) / std_l`` per tensor (any leading axes)."""
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
