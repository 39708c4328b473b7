"""ProbeX and the dense expert: learners over one layer's weight matrices ``X[B, d_out, d_in]``.

ProbeX (Horwitz et al., CVPR 2025): ``r_U`` probes ``U[d_in, r_U]`` pass through the layer,
``Z = X @ U`` (``[d_out, r_U]``); a shared projection ``V[d_out, r_V]`` (no bias) maps each
probe's response, ``V^T Z`` (``[r_V, r_U]``); a ReLU; per-probe encoders summed into an
embedding ``e[r_T]``, one linear map over the flattened ``[r_U * r_V]`` with a bias. Without the
ReLU this is a Tucker factorisation of the dense expert ``e_k = sum_ij W_ijk X_ij + b_k``.

Every function is pure over a params pytree; experts of several trees (or several candidate
layers) stack on a leading expert axis and run as one vmapped computation (``stack``).
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp

from probegen_jax.archs.dense import dense_layer_init
from probegen_jax.training.learner import Learner
from probegen_jax.types import Array, Params, PRNGKey


@dataclasses.dataclass(frozen=True)
class ProbeXConfig:
    """Ranks of the probes (``r_U``), the projection (``r_V``) and the embedding (``r_T``); the
    paper's 128 each by default."""

    rank_u: int = 128
    rank_v: int = 128
    rank_t: int = 128
    relu: bool = True


def probex_init(key: PRNGKey, d_out: int, d_in: int, cfg: ProbeXConfig = ProbeXConfig()) -> Params:
    ku, kv, ke = jax.random.split(key, 3)
    return {"probes": jax.random.normal(ku, (d_in, cfg.rank_u)) * d_in**-0.5,
            "projection": jax.random.normal(kv, (d_out, cfg.rank_v)) * d_out**-0.5,
            "encoder": dense_layer_init(ke, cfg.rank_u * cfg.rank_v, cfg.rank_t)}


def probex_embed(params: Params, x: Array, *, relu: bool = True) -> Array:
    """``[B, d_out, d_in] -> [B, r_T]``."""
    chex.assert_rank(x, 3)
    z = jnp.einsum("boi,iu->bou", x, params["probes"])  # each probe's response, [B, d_out, r_U]
    z = jnp.einsum("bou,ov->buv", z, params["projection"])  # shared projection, [B, r_U, r_V]
    if relu:
        z = jax.nn.relu(z)
    enc = params["encoder"]
    return z.reshape(z.shape[0], -1) @ enc["kernel"] + enc["bias"]


def probex_embedder(d_out: int, d_in: int, cfg: ProbeXConfig = ProbeXConfig()) -> Learner:
    """ProbeX as a learner: layer matrices ``[B, d_out, d_in]`` -> embeddings ``[B, r_T]``."""
    return Learner(lambda key: probex_init(key, d_out, d_in, cfg),
                   lambda p, x: probex_embed(p, x, relu=cfg.relu))


def dense_embedder(d_out: int, d_in: int, dim: int) -> Learner:
    """The dense expert: one linear map on the flattened layer, ``[B, d_out, d_in] -> [B, dim]``."""

    def apply(p: Params, x: Array) -> Array:
        chex.assert_rank(x, 3)
        return x.reshape(x.shape[0], -1) @ p["kernel"] + p["bias"]

    return Learner(lambda key: dense_layer_init(key, d_out * d_in, dim), apply)


def with_linear_head(embedder: Learner, dim: int, num_outputs: int) -> Learner:
    """``embedder`` followed by a linear head ``[dim] -> [num_outputs]`` (ProbeX's head (a))."""

    def init(key: PRNGKey) -> Params:
        ke, kh = jax.random.split(key)
        return {"expert": embedder.init(ke), "head": dense_layer_init(kh, dim, num_outputs)}

    def apply(p: Params, x: Array) -> Array:
        return embedder.apply(p["expert"], x) @ p["head"]["kernel"] + p["head"]["bias"]

    return Learner(init, apply)


def expert_learner(kind: str, d_out: int, d_in: int, num_outputs: int, cfg: ProbeXConfig = ProbeXConfig()) -> Learner:
    """A multi-label expert: ``"probex"`` (embedding + linear head) or ``"dense"`` (one linear map
    from the flattened layer to the outputs, as in the paper)."""
    if kind == "probex":
        return with_linear_head(probex_embedder(d_out, d_in, cfg), cfg.rank_t, num_outputs)
    if kind == "dense":
        return dense_embedder(d_out, d_in, num_outputs)
    raise ValueError(f"unknown expert {kind!r}; available: ['dense', 'probex']")


def alignment_learner(embedder: Learner, class_embeddings: Array, dim: int) -> Learner:
    """ProbeX's head (b): cosine logits ``[B, C]`` between the model's embedding and class
    embeddings ``[C, D]`` (frozen) mapped by a trained linear layer ``D -> dim``; both sides
    L2-normalised, no temperature. ``with_classes`` scores the same params against other
    classes (zero-shot)."""
    class_embeddings = jnp.asarray(class_embeddings)
    chex.assert_rank(class_embeddings, 2)

    def init(key: PRNGKey) -> Params:
        ke, kt = jax.random.split(key)
        return {"expert": embedder.init(ke), "text": dense_layer_init(kt, class_embeddings.shape[1], dim)}

    def apply(p: Params, x: Array) -> Array:
        return cosine_logits(embedder.apply(p["expert"], x), class_embeddings, p["text"])

    return Learner(init, apply)


def cosine_logits(embeddings: Array, class_embeddings: Array, text: Params) -> Array:
    """``normalize(e) @ normalize(class_embeddings @ W + b).T``: ``[B, dim] x [C, D] -> [B, C]``."""
    t = class_embeddings @ text["kernel"] + text["bias"]
    unit = lambda a: a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-8)  # noqa: E731
    return unit(embeddings) @ unit(t).T


def stack(learner: Learner, num_experts: int) -> Learner:
    """``num_experts`` independent copies as one learner: params get a leading expert axis;
    inputs ``[B, E, ...]`` -> outputs ``[B, E, ...]`` (expert ``e`` reads ``inputs[:, e]``)."""

    def init(key: PRNGKey) -> Params:
        return jax.vmap(learner.init)(jax.random.split(key, num_experts))

    def apply(p: Params, x: Array) -> Array:
        return jax.vmap(learner.apply, in_axes=(0, 1), out_axes=1)(p, x)

    return Learner(init, apply)


def unstack(params: Params, index: int) -> Params:
    """Expert ``index``'s params from ``stack``'s."""
    return jax.tree.map(lambda a: a[index], params)


def num_params(learner: Learner) -> int:
    """Trainable parameters of ``learner``."""
    return sum(int(a.size) for a in jax.tree.leaves(jax.eval_shape(learner.init, jax.random.key(0))))
