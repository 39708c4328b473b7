"""NFT (Zhou et al., "Neural Functional Transformers", NeurIPS 2023).

Weight-space features are NFN's (``WeightSpace``: ``W_i[B, n_{i+1}, n_i, s, C]``, ``b_i[B, n_{i+1}, C]``).
An NFT block is a pre-norm Transformer block on them: ``x + SA(LN(x))``, then ``x + FF(LN(x))``, where
LN and FF (linear, GELU, linear, ``ff_factor`` times wider) act on each entry's channels, with their
own parameters per weight and bias tensor. The weight-space self-attention SA, equivariant to
permuting the neurons of any layer:

- queries, keys and values are a channel projection of every weight and bias entry, in ``heads`` heads;
- for each neuron layer ``l`` (inputs, hidden layers, outputs), attention among the entries that
  touch it: the columns of the weight entering it (one token per neuron of layer ``l - 1``), its
  bias (one token) and the rows of the weight leaving it (one token per neuron of layer ``l + 1``).
  A token's features are its vector over the neurons of layer ``l`` (times the head's channels), so
  scores sum over those neurons and permuting them permutes every token alike. Each output returns
  to the entries its token came from, so a weight gets one term from each of its two neuron layers;
- a global term: attention among the means of every weight and bias tensor, broadcast back.

Inputs are standardised per tensor (NFN's ``LayerScales``), encoded by random Fourier features (or a
linear map of the scalar) and given learned embeddings per layer and per input and output neuron,
as the reference Inr2Array encoder does: the model is then equivariant to hidden-neuron
permutations only. The invariant readout is a Perceiver over every weight and bias entry as one
token (learned latents cross-attend to the tokens, then latent self-attention, the mean over
latents, LayerNorm, linear): the tokens are an unordered set, so it is invariant.

Defaults are the reference code's SIREN classifier (``classify_siren`` with ``nfnet=nft_ff``): 128
Fourier features at scale 3 (256 channels), 4 blocks, 8 heads, FF factor 2, one query/key/value
projection shared by all tensors; Perceiver head with 32 latents of 128, one cross-attention head of
64, two self-attention layers of 4 heads x 64. Dropout (0.1 there) is left out: learners here are
deterministic. Convolutional layers are taken with per-tensor projections (``s * C -> 3 C`` and
back, the reference code's unshared mode); the Perceiver sees each filter position as a token.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from probegen_jax.methods.baselines.nfn import (
    WeightSpace,
    _draw,
    _standardize,
    fourier_encode,
    map_weight_space,
    weight_space,
)
from probegen_jax.methods.graphs.layers import (
    fourier_projection,
    layer_norm,
    layer_norm_init,
    linear,
)
from probegen_jax.methods.graphs.nfn_hnp import fixed_architecture
from probegen_jax.training.learner import Learner
from probegen_jax.types import Array, Params, PRNGKey


@dataclasses.dataclass(frozen=True)
class NFTSpec:
    """NFT sizes; defaults are the reference SIREN classifier's (see the module docstring).

    ``channels`` is ``2 * fourier_features`` when Fourier features are used, else the width of the
    linear embedding. ``share_projections`` applies to dense networks only (convolutional ones get
    per-tensor projections).
    """

    channels: int = 256
    fourier_features: int = 128
    fourier_scale: float = 3.0
    fourier_seed: int = 0
    io_embedding: bool = True
    num_blocks: int = 4
    heads: int = 8
    ff_factor: int = 2
    share_projections: bool = True
    num_latents: int = 32
    latent_dim: int = 128
    cross_heads: int = 1
    cross_dim_head: int = 64
    latent_heads: int = 4
    latent_dim_head: int = 64
    self_per_cross: int = 2
    perceiver_ff_mult: int = 4

    def __post_init__(self):
        if self.fourier_features and self.channels != 2 * self.fourier_features:
            raise ValueError(f"NFT: channels ({self.channels}) must be 2 * fourier_features ({self.fourier_features})")
        if self.num_blocks < 1:
            raise ValueError("NFT: num_blocks must be at least 1")
        if self.channels % self.heads:
            raise ValueError(f"NFT: channels ({self.channels}) must be divisible by heads ({self.heads})")

    @classmethod
    def small(cls) -> NFTSpec:
        return cls(channels=16, fourier_features=0, num_blocks=2, heads=2, num_latents=8, latent_dim=16,
                   cross_dim_head=16, latent_heads=2, latent_dim_head=8, self_per_cross=1, perceiver_ff_mult=2)


# ----------------------------------------------------------------------------- initialisation


class Kernel(NamedTuple):
    """Placeholder of a linear kernel ``[fan_in, fan_out]``, drawn by ``materialize``."""

    fan_in: int
    fan_out: int


class Normal(NamedTuple):
    """Placeholder of an ``N(0, 1)`` array, drawn by ``materialize``."""

    shape: tuple[int, ...]


def _linear(fan_in: int, fan_out: int, *, bias: bool = True) -> Params:
    """A linear layer's params: kernel placeholder, zero bias (none on request)."""
    return {"kernel": Kernel(fan_in, fan_out)} | ({"bias": jnp.zeros((fan_out,))} if bias else {})


def materialize(key: PRNGKey, template: Params) -> Params:
    """Draw every placeholder of ``template`` from one random draw (NFN's ``_draw``): kernels with
    variance ``1 / (3 fan_in)`` (PyTorch's default), normals ``N(0, 1)``. One draw instead of one per
    array keeps the compiled init small."""
    placeholder = lambda x: isinstance(x, Kernel | Normal)
    leaves, treedef = jax.tree.flatten(template, is_leaf=placeholder)
    shapes = {str(i): ((x.fan_in, x.fan_out), 3**-0.5) if isinstance(x, Kernel) else (x.shape, x.shape[0] ** 0.5)
              for i, x in enumerate(leaves) if placeholder(x)}
    drawn = _draw(key, shapes) if shapes else {}
    return jax.tree.unflatten(treedef, [drawn.get(str(i), x) for i, x in enumerate(leaves)])


# ----------------------------------------------------------------------------- attention


def attend(q: Array, k: Array, v: Array) -> Array:
    """Scaled dot-product attention over axis -2 (tokens) of ``[..., T, d]`` arrays."""
    logits = jnp.einsum("...qd,...kd->...qk", q, k) / math.sqrt(q.shape[-1])
    return jax.nn.softmax(logits, -1) @ v


def _heads(x: Array, heads: int) -> Array:
    """``[..., 3 C] -> [..., H, 3 C / H]`` (each head's q, k, v contiguous)."""
    return x.reshape(*x.shape[:-1], heads, -1)


def _global_term(wq: list[Array], bq: list[Array], heads: int) -> Array:
    """Attention among the means of every weight and bias tensor's q, k, v: ``[B, 2 L, C]``."""
    means = jnp.stack([w.mean((1, 2)) for w in wq] + [b.mean(1) for b in bq], 1)  # [B, 2L, 3C]
    q, k, v = (jnp.swapaxes(a, 1, 2) for a in jnp.split(_heads(means, heads), 3, -1))  # [B, H, 2L, ch]
    out = jnp.swapaxes(attend(q, k, v), 1, 2)
    return out.reshape(*out.shape[:2], -1)


def _neuron_term(w_in: Array | None, b_in: Array | None, w_out: Array | None, heads: int
                 ) -> tuple[Array | None, Array | None, Array | None]:
    """Attention among the entries that touch one neuron layer (``n`` neurons).

    ``w_in [B, n, n_prev, 3C]`` and ``b_in [B, n, 3C]`` enter the layer, ``w_out [B, n_next, n, 3C]``
    leaves it (``None`` at the input or output layer). Returns their updates, ``C`` channels.
    """
    tokens = []  # each [B, H, T, n, 3 ch]
    if w_in is not None:
        tokens += [jnp.swapaxes(_heads(w_in, heads), 1, 3), jnp.moveaxis(_heads(b_in, heads), 2, 1)[:, :, None]]
    if w_out is not None:
        tokens.append(jnp.moveaxis(_heads(w_out, heads), 3, 1))
    x = jnp.concatenate(tokens, 2)
    q, k, v = (a.reshape(*a.shape[:3], -1) for a in jnp.split(x, 3, -1))  # [B, H, T, n ch]
    out = attend(q, k, v).reshape(*x.shape[:-1], -1)  # [B, H, T, n, ch]
    merge = lambda a: a.reshape(*a.shape[:-2], -1)  # [..., H, ch] -> [..., C]
    new_w_in = new_b_in = new_w_out = None
    if w_in is not None:
        t = w_in.shape[2]
        new_w_in = merge(jnp.swapaxes(out[:, :, :t], 1, 3))
        new_b_in = merge(jnp.moveaxis(out[:, :, t], 1, 2))
        out = out[:, :, t + 1:]
    if w_out is not None:
        new_w_out = merge(jnp.moveaxis(out, 1, 3))
    return new_w_in, new_b_in, new_w_out


def attention_init(filters: list[int], c: int, shared: bool) -> Params:
    """Query/key/value projections: one shared ``C -> 3C``, or per tensor with an unprojection ``C -> s C``."""
    if shared:
        return {"qkv": _linear(c, 3 * c)}
    return {"w_qkv": [_linear(s * c, 3 * c) for s in filters], "b_qkv": [_linear(c, 3 * c) for _ in filters],
            "unproject": [_linear(c, s * c) for s in filters]}


def self_attention(p: Params, ws: WeightSpace, heads: int) -> WeightSpace:
    """NFT's weight-space self-attention (see the module docstring)."""
    num = len(ws.weights)
    shared = "qkv" in p
    wq = [linear(p["qkv"] if shared else p["w_qkv"][i], _flat(w)) for i, w in enumerate(ws.weights)]
    bq = [linear(p["qkv"] if shared else p["b_qkv"][i], b) for i, b in enumerate(ws.biases)]
    glob = _global_term(wq, bq, heads)
    weights = [glob[:, i, None, None] for i in range(num)]
    biases = [glob[:, num + i, None] for i in range(num)]
    for layer in range(num + 1):  # neuron layers: inputs, hidden, outputs
        w_in, b_in, w_out = _neuron_term(wq[layer - 1] if layer else None, bq[layer - 1] if layer else None,
                                         wq[layer] if layer < num else None, heads)
        if layer:
            weights[layer - 1] = weights[layer - 1] + w_in
            biases[layer - 1] = biases[layer - 1] + b_in
        if layer < num:
            weights[layer] = weights[layer] + w_out
    if not shared:
        weights = [linear(u, w) for u, w in zip(p["unproject"], weights, strict=True)]
    return _unflat(weights, biases, ws)


# ----------------------------------------------------------------------------- blocks


def _flat(w: Array) -> Array:
    """``[B, o, i, s, C] -> [B, o, i, s C]``."""
    return w.reshape(*w.shape[:3], -1)


def _unflat(weights: list[Array], biases: list[Array], like: WeightSpace) -> WeightSpace:
    """Flat ``[B, o, i, s C]`` weights back to ``like``'s ``[B, o, i, s, C']``."""
    return WeightSpace(tuple(w.reshape(*ref.shape[:4], -1) for w, ref in zip(weights, like.weights, strict=True)),
                       tuple(biases))


def _per_tensor(fn, params: list[Params], ws: WeightSpace) -> WeightSpace:
    """``fn(p, x)`` on each weight tensor's flat ``[..., s C]`` and each bias's ``[..., C]``, its own ``p`` each
    (``params``: one per weight tensor, then one per bias)."""
    num = len(ws.weights)
    return _unflat([fn(p, _flat(w)) for p, w in zip(params[:num], ws.weights, strict=True)],
                   [fn(p, b) for p, b in zip(params[num:], ws.biases, strict=True)], ws)


def _ff_init(width: int, factor: int) -> Params:
    return {"in": _linear(width, factor * width), "out": _linear(factor * width, width)}


def _ff(p: Params, x: Array) -> Array:
    return linear(p["out"], jax.nn.gelu(linear(p["in"], x), approximate=False))


def block_init(filters: list[int], spec: NFTSpec, shared: bool) -> Params:
    """One block's params (kernels as ``Kernel`` placeholders, see ``materialize``)."""
    widths = [s * spec.channels for s in filters] + [spec.channels] * len(filters)  # weights, then biases
    return {"ln1": [layer_norm_init(w) for w in widths], "ln2": [layer_norm_init(w) for w in widths],
            "attn": attention_init(filters, spec.channels, shared),
            "ff": [_ff_init(w, spec.ff_factor) for w in widths]}


def block_apply(p: Params, ws: WeightSpace, heads: int) -> WeightSpace:
    ws = jax.tree.map(jnp.add, ws, self_attention(p["attn"], _per_tensor(layer_norm, p["ln1"], ws), heads))
    return jax.tree.map(jnp.add, ws, _per_tensor(_ff, p["ff"], _per_tensor(layer_norm, p["ln2"], ws)))


# ----------------------------------------------------------------------------- inputs and readout


def embedding_init(num_layers: int, n_in: int, n_out: int, c: int) -> Params:
    """Learned embeddings per layer (weights, biases) and per input and output neuron, ``N(0, 1)``."""
    return {"weight": Normal((num_layers, c)), "bias": Normal((num_layers, c)), "input": Normal((n_in, c)),
            "output": Normal((n_out, c))}


def embed(p: Params, ws: WeightSpace) -> WeightSpace:
    """Add the layer embeddings, the input neurons' to the first weight and the output neurons' to the
    last weight and bias (this fixes the input and output neurons' identities)."""
    weights = [w + p["weight"][i] for i, w in enumerate(ws.weights)]
    biases = [b + p["bias"][i] for i, b in enumerate(ws.biases)]
    weights[0] = weights[0] + p["input"][:, None]  # [i, 1, C] against [B, o, i, s, C]
    weights[-1] = weights[-1] + p["output"][:, None, None]
    biases[-1] = biases[-1] + p["output"]
    return WeightSpace(tuple(weights), tuple(biases))


def tokens(ws: WeightSpace) -> Array:
    """Every weight (each filter position) and bias entry as a token: ``[B, N, C]``."""
    b, c = ws.weights[0].shape[0], ws.weights[0].shape[-1]
    return jnp.concatenate([w.reshape(b, -1, c) for w in ws.weights] + list(ws.biases), 1)


def _mha_init(d: int, heads: int, dim_head: int, d_ctx: int | None = None) -> Params:
    """Multi-head attention params; ``d_ctx``: cross-attention to a context of that width (its own LayerNorm)."""
    inner = heads * dim_head
    p = {"ln": layer_norm_init(d), "q": _linear(d, inner, bias=False), "kv": _linear(d_ctx or d, 2 * inner, bias=False),
         "out": _linear(inner, d)}
    return p | ({"ln_ctx": layer_norm_init(d_ctx)} if d_ctx else {})


def _mha(p: Params, x: Array, context: Array | None, heads: int) -> Array:
    """Pre-norm multi-head attention of ``x [B, M, d]`` to ``context [B, N, d_ctx]`` (``None``: to itself),
    residual added."""
    split = lambda a: jnp.swapaxes(a.reshape(*a.shape[:2], heads, -1), 1, 2)  # [B, H, T, dh]
    xn = layer_norm(p["ln"], x)
    ctx = xn if context is None else layer_norm(p["ln_ctx"], context)
    q = split(linear(p["q"], xn))
    k, v = map(split, jnp.split(linear(p["kv"], ctx), 2, -1))
    out = jnp.swapaxes(attend(q, k, v), 1, 2)
    return x + linear(p["out"], out.reshape(*x.shape[:2], -1))


def _geglu_init(d: int, mult: int) -> Params:
    return {"ln": layer_norm_init(d), "in": _linear(d, 2 * mult * d), "out": _linear(mult * d, d)}


def _geglu(p: Params, x: Array) -> Array:
    """Pre-norm GEGLU feed-forward (residual added)."""
    h, gate = jnp.split(linear(p["in"], layer_norm(p["ln"], x)), 2, -1)
    return x + linear(p["out"], h * jax.nn.gelu(gate, approximate=False))


def perceiver_init(spec: NFTSpec, num_outputs: int) -> Params:
    d, mult = spec.latent_dim, spec.perceiver_ff_mult
    return {"latents": Normal((spec.num_latents, d)),
            "cross": _mha_init(d, spec.cross_heads, spec.cross_dim_head, spec.channels),
            "cross_ff": _geglu_init(d, mult),
            "self": [{"attn": _mha_init(d, spec.latent_heads, spec.latent_dim_head), "ff": _geglu_init(d, mult)}
                     for _ in range(spec.self_per_cross)],
            "ln": layer_norm_init(d), "out": _linear(d, num_outputs)}


def perceiver_apply(p: Params, spec: NFTSpec, x: Array) -> Array:
    """Invariant readout of tokens ``x [B, N, C]``: ``[B, num_outputs]``."""
    z = jnp.broadcast_to(p["latents"], (x.shape[0], *p["latents"].shape))
    z = _geglu(p["cross_ff"], _mha(p["cross"], z, x, spec.cross_heads))
    for layer in p["self"]:
        z = _geglu(layer["ff"], _mha(layer["attn"], z, None, spec.latent_heads))
    return linear(p["out"], layer_norm(p["ln"], z.mean(1)))


# ----------------------------------------------------------------------------- learner


def learner(spec: NFTSpec, zoo, num_outputs: int, constants: dict | None = None) -> Learner:
    """An invariant NFT over a ``Zoo`` of dense or convolutional ``(kernel, bias)`` layers;
    ``constants``: ``hnp_constants`` (default: of the zoo's training split)."""
    scales, layers, ws0 = fixed_architecture(zoo, constants, "NFT")
    filters = [w.shape[3] for w in ws0.weights]
    n_in, n_out = ws0.weights[0].shape[2], ws0.weights[-1].shape[1]
    shared = spec.share_projections and all(s == 1 for s in filters)
    projection = fourier_projection(spec.fourier_seed, 1, spec.fourier_features, spec.fourier_scale) \
        if spec.fourier_features else None

    def init(key: PRNGKey) -> Params:
        template = {"blocks": [block_init(filters, spec, shared)] * spec.num_blocks,
                    "head": perceiver_init(spec, num_outputs)}
        if projection is None:
            template["input"] = _linear(1, spec.channels)
        if spec.io_embedding:
            template["embedding"] = embedding_init(len(filters), n_in, n_out, spec.channels)
        return materialize(key, template)

    def apply(params: Params, zoo_params: Params) -> Array:
        ws = weight_space(zoo_params, layers)
        chex.assert_equal_shape_prefix(list(ws.weights) + list(ws.biases), 1)
        chex.assert_trees_all_equal_shapes([w[0] for w in ws.weights], [w[0] for w in ws0.weights])
        ws = _standardize(ws, scales)
        if projection is not None:
            ws = fourier_encode(ws, projection)
        else:
            ws = map_weight_space(lambda a: linear(params["input"], a), ws)
        if "embedding" in params:
            ws = embed(params["embedding"], ws)
        for block in params["blocks"]:  # a Python loop, not a scan: XLA's cost analysis counts a loop body once
            ws = block_apply(block, ws, spec.heads)
        return perceiver_apply(params["head"], spec, tokens(ws))

    return Learner(jax.jit(init), apply)
