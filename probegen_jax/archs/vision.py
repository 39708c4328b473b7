"""Small image classifiers for model trees: a ViT-style transformer and an MLP-Mixer.

Both cut an ``[H, W, C]`` image into non-overlapping ``patch x patch`` patches, embed them
linearly, run ``depth`` residual pre-LayerNorm blocks and classify the mean token. Params
follow the dense convention of ``archs.dense`` (kernels ``[in, out]``), so a layer reads as
``"block0/mlp1/kernel"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from probegen_jax.archs.base import Arch, register_arch
from probegen_jax.archs.dense import dense_layer_init
from probegen_jax.types import Array, Params, PRNGKey


def patchify(x: Array, patch: int) -> Array:
    """``[B, H, W, C] -> [B, (H/p)*(W/p), p*p*C]``."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


def _layer_norm_init(dim: int) -> Params:
    return {"scale": jnp.ones((dim,)), "bias": jnp.zeros((dim,))}


def layer_norm(p: Params, x: Array, eps: float = 1e-5) -> Array:
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]


def _dense(p: Params, x: Array) -> Array:
    return x @ p["kernel"] + p["bias"]


def _check_patches(input_shape: tuple[int, ...], patch: int) -> int:
    h, w, c = input_shape
    if h % patch or w % patch:
        raise ValueError(f"image shape {input_shape} is not divisible into {patch}x{patch} patches")
    return (h // patch) * (w // patch)


def _stem_init(key: PRNGKey, input_shape, patch: int, dim: int) -> Params:
    return dense_layer_init(key, patch * patch * input_shape[2], dim)


# ----------------------------------------------------------------------------- ViT


def vit_init(key: PRNGKey, input_shape, patch: int, dim: int, depth: int, mlp_dim: int, num_classes: int) -> Params:
    tokens = _check_patches(input_shape, patch)
    keys = jax.random.split(key, 3 + depth)
    params = {"embed": _stem_init(keys[0], input_shape, patch, dim),
              "pos": 0.02 * jax.random.normal(keys[1], (tokens, dim)),
              "norm": _layer_norm_init(dim), "head": dense_layer_init(keys[2], dim, num_classes)}
    for i in range(depth):
        k = jax.random.split(keys[3 + i], 4)
        params[f"block{i}"] = {
            "ln1": _layer_norm_init(dim), "qkv": dense_layer_init(k[0], dim, 3 * dim),
            "proj": dense_layer_init(k[1], dim, dim), "ln2": _layer_norm_init(dim),
            "mlp1": dense_layer_init(k[2], dim, mlp_dim), "mlp2": dense_layer_init(k[3], mlp_dim, dim),
        }
    return params


def vit_apply(params: Params, x: Array, *, patch: int, heads: int) -> Array:
    """Patch embedding + position, ``depth`` attention/MLP blocks, LayerNorm, mean token, head."""
    h = _dense(params["embed"], patchify(x, patch)) + params["pos"]
    depth = sum(k.startswith("block") for k in params)
    for i in range(depth):
        p = params[f"block{i}"]
        b, t, d = h.shape
        q, k, v = jnp.split(_dense(p["qkv"], layer_norm(p["ln1"], h)), 3, axis=-1)
        q, k, v = (a.reshape(b, t, heads, d // heads) for a in (q, k, v))
        att = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(d // heads), axis=-1)
        h = h + _dense(p["proj"], jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, t, d))
        h = h + _dense(p["mlp2"], jax.nn.gelu(_dense(p["mlp1"], layer_norm(p["ln2"], h))))
    return _dense(params["head"], layer_norm(params["norm"], h).mean(1))


@register_arch("vit")
def vit(input_shape: tuple[int, ...] = (28, 28, 1), patch: int = 7, dim: int = 32, depth: int = 1,
        heads: int = 2, mlp_dim: int = 64, num_classes: int = 10) -> Arch:
    """A small ViT-style transformer (mean-pooled tokens, no class token)."""
    input_shape = tuple(input_shape)
    _check_patches(input_shape, patch)
    if dim % heads:
        raise ValueError(f"vit: dim {dim} is not divisible by {heads} heads")
    return Arch("vit", lambda key: vit_init(key, input_shape, patch, dim, depth, mlp_dim, num_classes),
                lambda p, x: vit_apply(p, x, patch=patch, heads=heads), input_shape, num_classes,
                dict(input_shape=list(input_shape), patch=patch, dim=dim, depth=depth, heads=heads,
                     mlp_dim=mlp_dim, num_classes=num_classes))


# ----------------------------------------------------------------------------- MLP-Mixer


def mixer_init(key: PRNGKey, input_shape, patch: int, dim: int, depth: int, token_dim: int, channel_dim: int,
               num_classes: int) -> Params:
    tokens = _check_patches(input_shape, patch)
    keys = jax.random.split(key, 2 + depth)
    params = {"embed": _stem_init(keys[0], input_shape, patch, dim), "norm": _layer_norm_init(dim),
              "head": dense_layer_init(keys[1], dim, num_classes)}
    for i in range(depth):
        k = jax.random.split(keys[2 + i], 4)
        params[f"block{i}"] = {
            "ln1": _layer_norm_init(dim), "token1": dense_layer_init(k[0], tokens, token_dim),
            "token2": dense_layer_init(k[1], token_dim, tokens), "ln2": _layer_norm_init(dim),
            "channel1": dense_layer_init(k[2], dim, channel_dim),
            "channel2": dense_layer_init(k[3], channel_dim, dim),
        }
    return params


def mixer_apply(params: Params, x: Array, *, patch: int) -> Array:
    """Patch embedding, ``depth`` token-mixing + channel-mixing MLP blocks, mean token, head."""
    h = _dense(params["embed"], patchify(x, patch))
    depth = sum(k.startswith("block") for k in params)
    for i in range(depth):
        p = params[f"block{i}"]
        t = layer_norm(p["ln1"], h).swapaxes(1, 2)  # [B, D, T]: mix across tokens
        h = h + _dense(p["token2"], jax.nn.gelu(_dense(p["token1"], t))).swapaxes(1, 2)
        h = h + _dense(p["channel2"], jax.nn.gelu(_dense(p["channel1"], layer_norm(p["ln2"], h))))
    return _dense(params["head"], layer_norm(params["norm"], h).mean(1))


@register_arch("mixer")
def mixer(input_shape: tuple[int, ...] = (28, 28, 1), patch: int = 7, dim: int = 32, depth: int = 1,
          token_dim: int = 32, channel_dim: int = 64, num_classes: int = 10) -> Arch:
    """A small MLP-Mixer."""
    input_shape = tuple(input_shape)
    _check_patches(input_shape, patch)
    return Arch("mixer", lambda key: mixer_init(key, input_shape, patch, dim, depth, token_dim, channel_dim,
                                                num_classes),
                lambda p, x: mixer_apply(p, x, patch=patch), input_shape, num_classes,
                dict(input_shape=list(input_shape), patch=patch, dim=dim, depth=depth, token_dim=token_dim,
                     channel_dim=channel_dim, num_classes=num_classes))
