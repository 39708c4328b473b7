"""SANE's objective: gamma * NT-Xent on projected windows + (1 - gamma) * masked reconstruction MSE."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from probegen_jax.types import Array


def nt_xent(z1: Array, z2: Array, temperature: float = 0.1) -> Array:
    """SimCLR's normalised temperature-scaled cross-entropy for positive pairs ``(z1[i], z2[i])``.

    Each of the ``2B`` views is classified against the other ``2B - 1``; the partner is the label.
    """
    z = jnp.concatenate([z1, z2])
    z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
    logits = z @ z.T / temperature
    n = z1.shape[0]
    logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
    labels = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def masked_mse(prediction: Array, target: Array, mask: Array) -> Array:
    """Mean squared error over the real (mask 1) values only."""
    mask = jnp.broadcast_to(mask, prediction.shape)
    return jnp.sum(mask * (prediction - target) ** 2) / jnp.maximum(mask.sum(), 1.0)


def sane_loss(reconstruction: Array, target: Array, mask: Array, z1: Array, z2: Array, *, gamma: float = 0.05,
              temperature: float = 0.1) -> tuple[Array, dict[str, Array]]:
    """``gamma * NT-Xent + (1 - gamma) * masked MSE`` and both parts."""
    contrast = nt_xent(z1, z2, temperature)
    mse = masked_mse(reconstruction, target, mask)
    return gamma * contrast + (1.0 - gamma) * mse, {"nt_xent": contrast, "mse": mse}
