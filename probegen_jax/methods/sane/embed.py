"""Model embeddings: per-token latents over the whole sequence, and their mean.

A sequence longer than the window is encoded in overlapping windows: window ``i`` keeps the
latents of its core ``[i * c, (i + 1) * c)`` (``c = window - 2 * halo``) and sees ``halo`` tokens
of context on each side (shifted inwards at the ends of the sequence), so every token is encoded
exactly once with context on both sides. Windows run one after another in a ``lax.map``, so memory
is bounded by one window whatever the sequence length.
"""

from __future__ import annotations

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.methods.sane.model import SANE
from probegen_jax.methods.sane.tokens import TokenLayout, standardize, tokenize, layer_params
from probegen_jax.methods.sane.train import TrainedSANE
from probegen_jax.types import Array, Params


def window_starts(num_tokens: int, window: int, halo: int) -> tuple[np.ndarray, int]:
    """(start of each window, core length ``c``) for haloed windows over ``num_tokens`` tokens."""
    if window >= num_tokens:
        return np.zeros(1, np.int32), num_tokens
    core = window - 2 * halo
    if core < 1:
        raise ValueError(f"halo {halo} leaves no core in a window of {window} tokens")
    count = -(-num_tokens // core)
    starts = np.clip(np.arange(count) * core - halo, 0, num_tokens - window)
    return starts.astype(np.int32), core


def in_windows(fn, params: Params, x: Array, positions: Array, out_dim: int, *, window: int, halo: int = 0) -> Array:
    """``fn(params, x[W, ...], positions[W, 3]) -> [W, out_dim]`` over a whole sequence ``x[T, ...]``
    in haloed windows (one call when ``T <= window``)."""
    num_tokens = x.shape[0]
    window = min(window, num_tokens)
    starts, core = window_starts(num_tokens, window, halo)
    if len(starts) == 1:
        return fn(params, x, positions)
    owner = np.minimum(np.arange(num_tokens) // core, len(starts) - 1)  # the window that keeps each token

    def accumulate(total, i):
        s = jnp.asarray(starts)[i]
        y = fn(params, jax.lax.dynamic_slice_in_dim(x, s, window), jax.lax.dynamic_slice_in_dim(positions, s, window))
        kept = (jnp.asarray(owner)[s + jnp.arange(window)] == i)[:, None]
        current = jax.lax.dynamic_slice_in_dim(total, s, window)
        return jax.lax.dynamic_update_slice_in_dim(total, current + y * kept, s, axis=0), None

    total, _ = jax.lax.scan(accumulate, jnp.zeros((num_tokens, out_dim)), jnp.arange(len(starts)))
    return total


def encode_sequence(model: SANE, params: Params, tokens: Array, positions: Array, *, window: int | None = None,
                    halo: int = 0) -> Array:
    """``[T, latent]`` latents of one network's tokens ``[T, S]``."""
    chex.assert_rank(tokens, 2)
    return in_windows(model.encode, params, tokens, positions, model.config.latent,
                      window=window or model.config.window, halo=halo)


def decode_sequence(model: SANE, params: Params, latents: Array, positions: Array, *, window: int | None = None,
                    halo: int = 0) -> Array:
    """``[T, token_size]`` tokens decoded from one network's latents ``[T, latent]``."""
    chex.assert_rank(latents, 2)
    return in_windows(model.decode, params, latents, positions, model.config.token_size,
                      window=window or model.config.window, halo=halo)


@partial(jax.jit, static_argnames=("model", "layout", "window", "halo"))
def _latents(model: SANE, params: Params, nets: Params, layout: TokenLayout, window: int | None, halo: int) -> Array:
    positions = jnp.asarray(layout.positions())
    return jax.vmap(lambda p: encode_sequence(model, params, tokenize(p, layout), positions, window=window,
                                              halo=halo))(nets)


def zoo_latents(trained: TrainedSANE, zoo_params: Params, *, window: int | None = None, halo: int | None = None,
                block: int = 256) -> np.ndarray:
    """``[N, T, latent]`` token latents of stacked (raw) networks, standardised with the model's stats.

    ``window`` defaults to the model's training window, ``halo`` to a quarter of it.
    """
    window = window or trained.model.config.window
    halo = window // 4 if halo is None else halo
    trained.layout.check(zoo_params, where="zoo params", stacked=True)
    nets = standardize(layer_params(zoo_params, trained.layout), trained.stats, trained.layout)
    n = jax.tree.leaves(nets)[0].shape[0]
    out = [np.asarray(_latents(trained.model, trained.params, jax.tree.map(lambda a: a[lo: lo + block], nets),
                               trained.layout, window, halo)) for lo in range(0, n, block)]
    return np.concatenate(out)


def zoo_embeddings(trained: TrainedSANE, zoo_params: Params, **kw) -> np.ndarray:
    """``[N, latent]`` model embeddings: the mean of each network's token latents."""
    return zoo_latents(trained, zoo_params, **kw).mean(axis=1)
