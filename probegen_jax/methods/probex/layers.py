"""One layer's weight matrix from stacked zoo params, in the ``[d_out, d_in]`` layout of ProbeX.

Dense kernels here are stored ``[in, out]`` (``y = x @ kernel``); ProbeX, like PyTorch, reads a
layer as ``X[d_out, d_in]`` (``y = X @ x``), so ``layer_matrix`` transposes. A LoRA layer
(``{"lora_a": [in, r], "lora_b": [r, out]}``) is read as its dense update ``B @ A``
(``(lora_a @ lora_b).T``) under the name ``"<layer>/lora"``.

Tensors stored as PyTorch stores them (``layout="torch"``: Model-J's safetensors) are read as
ProbeX's reference reader reads them: a matrix as it is (``[out, in]``); a 1-D tensor as a column
``[d, 1]``; a tensor of higher rank squeezed (position embeddings ``[1, T, D]`` -> ``[T, D]``, a 1x1
conv ``[out, in, 1, 1]`` -> ``[out, in]``), a 4-D conv weight ``[out, in, kh, kw]`` then reshaped in
memory order to ``[in * kh * kw, out]`` (``weight.reshape(-1, out)``, not a transpose).
"""

from __future__ import annotations

import math

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


def torch_matrix(x: Array, name: str, *, stacked: bool = True) -> Array:
    """``[N, rows, cols]`` of a tensor stored PyTorch's way, shaped as ProbeX's reference reader
    shapes it (see the module docstring)."""
    lead = tuple(x.shape[:1]) if stacked else ()
    shape = tuple(x.shape[len(lead):])
    if len(shape) == 1:
        body = (shape[0], 1)
    elif len(shape) == 2:
        body = shape
    else:
        body = tuple(d for d in shape if d != 1)
        if len(body) == 4:
            body = tuple(d for d in (math.prod(body) // body[0], body[0]) if d != 1)
    if len(body) != 2:
        raise ShapeMismatchError(f"tensor {name!r} of shape {shape} does not read as a weight matrix (got {body}); "
                                 "ProbeX reads 1-D, 2-D, squeezable and 4-D (conv) tensors")
    return jnp.reshape(x, lead + body)


def layer_matrix(params: Params, name: str, *, stacked: bool = True, layout: str = "library") -> Array:
    """``[N, d_out, d_in]`` (or ``[d_out, d_in]`` with ``stacked=False``) of the layer ``name``.

    ``name`` is a ``flatten_params`` path of a rank-2 tensor (``"block0/mlp1/kernel"``) or a
    LoRA layer (``"dense0/lora"``); with ``layout="torch"`` any tensor, shaped by ``torch_matrix``
    and not transposed. Unknown names raise ``UnknownNameError`` listing the
    available layers; tensors of another rank raise ``ShapeMismatchError``.
    """
    flat = flatten_params(params)
    lead = 1 if stacked else 0
    if layout == "torch":
        if name not in flat:
            raise UnknownNameError(f"no tensor {name!r} in these params; available: {sorted(flat)[:20]}")
        return torch_matrix(jnp.asarray(flat[name]), name, stacked=stacked)
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
