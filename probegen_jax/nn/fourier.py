"""Random Fourier features of scalars or short vectors: the input encoding of the graph
metanetworks (NG-GNN, NG-T, ScaleGMN) and of the neural functionals (NFN, NFT)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from probegen_jax.archs.dense import fast_sincos
from probegen_jax.types import Array


def fourier_projection(seed: int, in_dim: int, features: int, sigma: float) -> Array:
    """A fixed (untrained) Gaussian projection ``[in_dim, features]`` with standard deviation ``sigma``."""
    return jax.random.normal(jax.random.key(seed), (in_dim, features)) * sigma


def fourier_encode(x: Array, projection: Array, *, cos_first: bool = True) -> Array:
    """``[cos(2 pi x B), sin(2 pi x B)]`` of each row of ``x [..., in]`` (``cos_first=False``:
    sine first), ``B = projection [in, features]``.

    The few-element contraction is written as multiply-adds and both waves come from one range
    reduction (``fast_sincos``, within 3e-7 of XLA's ``sin`` and ``cos``): on a CPU, 2.3x faster
    than a matmul and XLA's two transcendentals, and this encoding of every edge was the largest
    part of an NG-GNN step's forward pass.
    """
    if projection.shape[0] <= 4:
        z = sum(x[..., j:j + 1] * projection[j] for j in range(projection.shape[0]))
    else:
        z = x @ projection
    sin, cos = fast_sincos(2 * math.pi * z)
    return jnp.concatenate([cos, sin] if cos_first else [sin, cos], -1)
