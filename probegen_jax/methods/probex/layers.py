"""One layer's weight matrix from stacked zoo params, in the ``[d_out, d_in]`` layout of ProbeX.

Dense kernels here are stored ``[in, out]`` (``y = x @ kernel``); ProbeX, like PyTorch, reads a
layer as ``X[d_out, d_in]`` (``y = X @ x``), so ``layer_matrix`` transposes. A LoRA layer
(``{"lora_a": [in, r], "lora_b": [r, out]}``) is read as its dense update ``B @ A``
(``(lora_a @ lora_b).T``) under the name ``"<layer>/lora"``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from probegen_jax.archs import flatten_params
from probegen_jax.errors import ShapeMismatchError, UnknownNameError
from probegen_jax.types import Array, Params

LORA_SUFFIX = "/lora"


def layer_names(params: Params, *, stacked: bool = True) -> list[str]:
    """Names of the matrix layers: ``.../kernel`` tensors of rank 2 and LoRA pairs (``.../lora``)."""
    rank = 3 if stacked else 2
    flat = flatten_params(params)
    names = [k for k, v in flat.items() if k.endswith("kernel") and np.ndim(v) == rank]
    names += [k[: -len("/lora_a")] + LORA_SUFFIX for k in flat
              if k.endswith("/lora_a") and k[: -len("_a")] + "_b" in flat]
    return sorted(names)


def layer_matrix(params: Params, name: str, *, stacked: bool = True) -> Array:
    """``[N, d_out, d_in]`` (or ``[d_out, d_in]`` with ``stacked=False``) of the layer ``name``.

    ``name`` is a ``flatten_params`` path of a rank-2 tensor (``"block0/mlp1/kernel"``) or a
    LoRA layer (``"dense0/lora"``). Unknown names raise ``UnknownNameError`` listing the
    available layers; tensors of another rank raise ``ShapeMismatchError``.
    """
    flat = flatten_params(params)
    lead = 1 if stacked else 0
    if name.endswith(LORA_SUFFIX) and f"{name[: -len(LORA_SUFFIX)]}/lora_a" in flat:
        base = name[: -len(LORA_SUFFIX)]
        a, b = jnp.asarray(flat[f"{base}/lora_a"]), jnp.asarray(flat[f"{base}/lora_b"])
        return jnp.swapaxes(a @ b, -1, -2)
    if name not in flat:
        raise UnknownNameError(f"no layer {name!r} in these params; available layers: {layer_names(params, stacked=stacked)}")
    x = jnp.asarray(flat[name])
    if x.ndim != 2 + lead:
        want = "(N, d_in, d_out)" if stacked else "(d_in, d_out)"
        raise ShapeMismatchError(
            f"layer {name!r}: expected a weight matrix of shape {want}, got shape {tuple(x.shape)} (rank "
            f"{x.ndim - lead}); ProbeX reads rank-2 layers: {layer_names(params, stacked=stacked)}")
    return jnp.swapaxes(x, -1, -2)


def pad_matrix(x: Array, d_out: int, d_in: int) -> Array:
    """Zero-pad ``[..., o, i]`` to ``[..., d_out, d_in]``. Exact for ProbeX and the dense expert:
    padded entries are zero, so the weights that read them never change the output."""
    o, i = x.shape[-2:]
    if o > d_out or i > d_in:
        raise ShapeMismatchError(f"pad_matrix: layer of shape ({o}, {i}) is larger than ({d_out}, {d_in})")
    return jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, d_out - o), (0, d_in - i)])
