"""Low-rank (LoRA) fine-tunes of a fixed base network.

A member's params are only its low-rank factors: for each adapted layer ``L`` (a dense layer
of the base, ``L/kernel`` of shape ``[in, out]``), ``{"lora_a": [in, r], "lora_b": [r, out]}``.
The network it stands for uses ``L/kernel + lora_a @ lora_b``. In the ``[out, in]`` layout of
the LoRA papers this update is ``B @ A`` with ``B = lora_b.T`` and ``A = lora_a.T``.

The base is named by its architecture spec and an ``.npz`` of its flattened params
(``{"dense0/kernel": ..., ...}``, see ``flatten_params``), so a saved LoRA zoo rebuilds itself.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.archs.base import Arch, arch_from_spec, flatten_params, register_arch
from probegen_jax.errors import DataFileError, ShapeMismatchError
from probegen_jax.types import Array, Params, PRNGKey


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a/b": x} -> {"a": {"b": x}}``."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


@functools.lru_cache(maxsize=8)
def _load_base(path: str) -> dict[str, np.ndarray]:
    """The base params, checked against the checksum written beside them (trees made since)."""
    import io as bytes_io

    from probegen_jax.io import read_checked_bytes

    data = read_checked_bytes(path, DataFileError, missing="the LoRA base params are missing")
    try:
        with np.load(bytes_io.BytesIO(data)) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise DataFileError(f"{path}: cannot read the LoRA base params ({e})") from e


def lora_init(key: PRNGKey, shapes: Mapping[str, tuple[int, int]], rank: int) -> Params:
    """``lora_a`` Gaussian with std ``1/sqrt(in)``, ``lora_b`` zero (the update starts at 0)."""
    keys = jax.random.split(key, len(shapes))
    return nest({name: {"lora_a": jax.random.normal(k, (fi, rank)) * fi**-0.5, "lora_b": jnp.zeros((rank, fo))}
                 for k, (name, (fi, fo)) in zip(keys, shapes.items(), strict=True)})


def lora_merge(base: Mapping[str, Array], params: Params, layers: Sequence[str]) -> Params:
    """The base params (nested) with each adapted kernel plus its low-rank update."""
    flat = dict(base)
    lora = flatten_params(params)
    for name in layers:
        flat[f"{name}/kernel"] = flat[f"{name}/kernel"] + lora[f"{name}/lora_a"] @ lora[f"{name}/lora_b"]
    return nest(flat)


@register_arch("lora")
def lora(base: Mapping[str, Any], base_params: str, layers: Sequence[str] = ("dense0",), rank: int = 4) -> Arch:
    """LoRA fine-tunes of ``arch_from_spec(base)`` with params from the ``.npz`` ``base_params``."""
    base_arch = arch_from_spec(base)
    base_flat = _load_base(str(base_params))
    layers = list(layers)
    shapes = {}
    for name in layers:
        kernel = base_flat.get(f"{name}/kernel")
        if kernel is None or kernel.ndim != 2:
            dense = sorted(k[: -len("/kernel")] for k, v in base_flat.items() if k.endswith("/kernel") and v.ndim == 2)
            raise ShapeMismatchError(f"lora: base {base_arch.name!r} has no dense layer {name!r}; "
                                     f"dense layers: {dense}")
        shapes[name] = tuple(kernel.shape)
    base_jnp = {k: jnp.asarray(v) for k, v in base_flat.items()}
    return Arch(
        name="lora",
        init=lambda key: lora_init(key, shapes, rank),
        apply=lambda p, x: base_arch.apply(lora_merge(base_jnp, p, layers), x),
        input_shape=base_arch.input_shape,
        output_dim=base_arch.output_dim,
        config=dict(base=dict(base), base_params=str(base_params), layers=layers, rank=rank),
    )
