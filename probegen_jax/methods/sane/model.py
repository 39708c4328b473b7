"""SANE's transformer autoencoder (Flax NNX) as pure functions.

Encoder: ``Linear(token_size -> d_model)`` plus position embeddings ``concat(E_n[n] + E_l[l], E_k[k])``,
pre-LayerNorm transformer blocks (non-causal), ``Linear(-> latent)`` per token. The decoder mirrors
it from the latents back to tokens. The projection head (for NT-Xent) flattens a window's latents.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from probegen_jax.training.learner import nnx_pure_methods
from probegen_jax.methods.sane.tokens import TokenLayout
from probegen_jax.types import Array, Params, PRNGKey


@dataclasses.dataclass(frozen=True)
class SANEConfig:
    """Sizes of the autoencoder. The defaults are a small model for small zoos; the paper's is
    ``d_model=1024, heads=8, encoder_layers=8, decoder_layers=8, latent=128``."""

    token_size: int = 64  # 0: the longest row (SANE's automatic size)
    window: int = 32
    d_model: int = 64
    heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 2
    mlp_ratio: int = 4
    latent: int = 16
    projection_dim: int = 32
    max_positions: int = 0  # sequence positions (n); 0: the layout's sequence length
    max_layers: int = 0  # layers (l); 0: from the layout
    max_layer_tokens: int = 0  # rows within a layer (k); 0: from the layout

    def for_layout(self, layout: TokenLayout) -> SANEConfig:
        """Fill the position-table sizes (and token size 0: automatic) from ``layout`` and check the
        window fits its sequence."""
        if self.token_size not in (0, layout.token_size):
            raise ValueError(f"config token size {self.token_size} != layout token size {layout.token_size}")
        if self.window > layout.num_tokens:
            raise ValueError(f"window {self.window} is larger than the sequence ({layout.num_tokens} tokens at "
                             f"token size {layout.token_size}); use a window of at most {layout.num_tokens}")
        if self.window < 1:
            raise ValueError(f"window must be positive, got {self.window}")
        n, l, k = layout.position_table_sizes()
        return dataclasses.replace(
            self, token_size=layout.token_size, max_positions=max(self.max_positions, n),
            max_layers=max(self.max_layers, l), max_layer_tokens=max(self.max_layer_tokens, k))


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: ``x + MHA(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, d: int, heads: int, mlp_ratio: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(d, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(heads, d, decode=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d, rngs=rngs)
        self.up = nnx.Linear(d, mlp_ratio * d, rngs=rngs)
        self.down = nnx.Linear(mlp_ratio * d, d, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        x = x + self.attention(self.norm1(x))
        return x + self.down(jax.nn.gelu(self.up(self.norm2(x))))


class Positions(nnx.Module):
    """``concat(E_n[n] + E_l[l], E_k[k])`` for positions ``[..., 3]``."""

    def __init__(self, cfg: SANEConfig, *, rngs: nnx.Rngs):
        half = cfg.d_model // 2
        self.sequence = nnx.Embed(cfg.max_positions, half, rngs=rngs)
        self.layer = nnx.Embed(cfg.max_layers, half, rngs=rngs)
        self.within = nnx.Embed(cfg.max_layer_tokens, cfg.d_model - half, rngs=rngs)

    def __call__(self, positions: Array) -> Array:
        n, l, k = positions[..., 0], positions[..., 1], positions[..., 2]
        return jnp.concatenate([self.sequence(n) + self.layer(l), self.within(k)], axis=-1)


class Stack(nnx.Module):
    """Input projection plus positions, blocks, final LayerNorm and output projection."""

    def __init__(self, cfg: SANEConfig, d_in: int, d_out: int, depth: int, *, rngs: nnx.Rngs):
        self.embed = nnx.Linear(d_in, cfg.d_model, rngs=rngs)
        self.positions = Positions(cfg, rngs=rngs)
        self.blocks = nnx.List([Block(cfg.d_model, cfg.heads, cfg.mlp_ratio, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(cfg.d_model, rngs=rngs)
        self.out = nnx.Linear(cfg.d_model, d_out, rngs=rngs)

    def __call__(self, x: Array, positions: Array) -> Array:
        x = self.embed(x) + self.positions(positions)
        for block in self.blocks:
            x = block(x)
        return self.out(self.norm(x))


class SANEModule(nnx.Module):
    def __init__(self, cfg: SANEConfig, *, rngs: nnx.Rngs):
        self.encoder = Stack(cfg, cfg.token_size, cfg.latent, cfg.encoder_layers, rngs=rngs)
        self.decoder = Stack(cfg, cfg.latent, cfg.token_size, cfg.decoder_layers, rngs=rngs)
        self.project_in = nnx.Linear(cfg.window * cfg.latent, cfg.d_model, rngs=rngs)
        self.project_out = nnx.Linear(cfg.d_model, cfg.projection_dim, rngs=rngs)

    def encode(self, tokens: Array, positions: Array) -> Array:
        return self.encoder(tokens, positions)

    def decode(self, latents: Array, positions: Array) -> Array:
        return self.decoder(latents, positions)

    def project(self, latents: Array) -> Array:
        """``[B, window, latent]`` -> ``[B, projection_dim]``."""
        flat = latents.reshape(*latents.shape[:-2], -1)
        return self.project_out(jax.nn.relu(self.project_in(flat)))


class SANE(NamedTuple):
    """Pure functions of a SANE autoencoder: ``encode(params, tokens[..., W, S], positions[..., W, 3])``,
    ``decode(params, latents, positions)``, ``project(params, latents[B, window, latent])``."""

    config: SANEConfig
    init: Callable[[PRNGKey], Params]
    encode: Callable[..., Array]
    decode: Callable[..., Array]
    project: Callable[..., Array]


def make_sane(cfg: SANEConfig) -> SANE:
    """The pure functions of a SANE model of ``cfg`` (position tables must be sized: see ``for_layout``)."""
    if min(cfg.max_positions, cfg.max_layers, cfg.max_layer_tokens) < 1:
        raise ValueError("SANEConfig position tables are unsized; call cfg.for_layout(layout) first")
    if cfg.d_model % cfg.heads:
        raise ValueError(f"d_model {cfg.d_model} must be a multiple of heads {cfg.heads}")
    init, fns = nnx_pure_methods(lambda rngs: SANEModule(cfg, rngs=rngs), ("encode", "decode", "project"))
    return SANE(cfg, init, fns["encode"], fns["decode"], fns["project"])


def config_to_json(cfg: SANEConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_from_json(record: dict[str, Any]) -> SANEConfig:
    return SANEConfig(**record)
