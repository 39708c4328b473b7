"""Model trees of a real pretrained transformer: fine-tunes of all-MiniLM-L6-v2 on WordNet glosses.

Each child fine-tunes the top ``top_layers`` layers of the encoder, with a fresh classifier head on
the mean-pooled states, to tell the lexicographer class of a gloss among a random subset of the
classes that have at least ``min_glosses`` glosses (a softmax over its own classes), with its own
learning rate, number of steps and seed. The layers below are frozen: their outputs for the
glosses the tree samples from are computed once and shared by every child. Children are trained
and saved as ``make.trees`` trains and saves its trees (vmapped chunks of Adam steps, resumable,
the time recorded); a child's params are its trained layers and its head (``minilm_top``).

The base is the pretrained encoder (``base="pretrained"``, its head zero) or the encoder after a
first fine-tune of the same layers on every class (``base="corpus"``), a second tree of the same
architecture whose children differ only in where they started. Targets: ``classes`` (multi-hot
over the classes used) and ``tree``; also ``steps``, ``lr``, ``test_accuracy`` (on held-out
glosses of its classes) and ``final_loss``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.archs import Arch, flatten_params, make_arch
from probegen_jax.archs.dense import dense_layer_init
from probegen_jax.archs.minilm import classify_hidden, frozen_hidden, load_minilm, tokenize, top_params
from probegen_jax.data.wordnet import TextCorpus, load_wordnet
from probegen_jax.make import finished_zoo
from probegen_jax.make.chunks import time_spent, work_dir_for
from probegen_jax.make.trees import (EVAL_CHILDREN, _children, _jsonable, adam_steps, child_settings, classifier_loss,
                                     pretrained_base, test_accuracy, tree_zoos)
from probegen_jax.timing import Stopwatch
from probegen_jax.types import Array, Params
from probegen_jax.zoo.store import load_zoo
from probegen_jax.zoo.zoo import Zoo

BASES = ("pretrained", "corpus")
FROZEN_BATCH = 256  # glosses through the frozen layers per compiled call


@dataclasses.dataclass(frozen=True)
class TextTreeConfig:
    """One tree of top-layer fine-tunes of all-MiniLM-L6-v2 on WordNet gloss classification."""

    name: str = "minilm"
    base: str = "pretrained"  # or "corpus": the top layers first fine-tuned on every class
    top_layers: int = 1
    max_tokens: int = 24  # glosses cut here (the definition; most fit)
    min_glosses: int = 300  # classes with fewer glosses are left out (40 of WordNet 3.0's 45 remain)
    train_per_class: int = 200  # glosses per class the children sample batches from
    test_per_class: int = 10  # held-out glosses per class a child's accuracy is measured on
    num_children: int = 1000
    classes_per_child: tuple[int, int] = (10, 20)  # inclusive range
    steps: tuple[int, int] = (40, 100)  # inclusive range (a chunk runs the longest: its cost is the max)
    learning_rate: tuple[float, float] = (3e-4, 3e-3)  # log-uniform range
    batch_size: int = 16
    pretrain_steps: int = 400  # base="corpus" only
    pretrain_lr: float = 3e-4
    splits: tuple[float, float] = (0.6, 0.2)
    chunk_size: int = 25
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class GlossPool:
    """The glosses a tree trains and tests on, as hidden states entering its trained layers
    (``[N, T, D]``, padding zero), with labels indexing ``class_names``."""

    train: Array
    train_labels: Array
    test: Array
    test_labels: Array
    class_names: tuple[str, ...]
    class_descriptions: tuple[str, ...]


def sample_glosses(corpus: TextCorpus, min_glosses: int, train_per_class: int, test_per_class: int,
                   seed: int) -> tuple[list[int], dict[str, tuple[list[str], np.ndarray]]]:
    """The classes with at least ``min_glosses`` glosses, and ``{"train", "test"}: (texts, labels)``
    with ``train_per_class`` / ``test_per_class`` distinct glosses of each, labels relabelled 0..C-1."""
    counts = corpus.counts()
    classes = [int(c) for c in np.flatnonzero(counts >= max(min_glosses, train_per_class + test_per_class))]
    if len(classes) < 2:
        raise ValueError(f"{corpus.name}: {len(classes)} classes have {min_glosses} glosses or more "
                         f"(counts {counts.tolist()}); lower min_glosses or the glosses per class")
    rng = np.random.default_rng(seed)
    parts: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    for new, c in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(corpus.labels == c))
        for split, rows in (("train", idx[:train_per_class]), ("test", idx[train_per_class:][:test_per_class])):
            parts[split][0].extend(corpus.texts[i] for i in rows)
            parts[split][1].extend([new] * len(rows))
    return classes, {s: (t, np.asarray(y, np.int32)) for s, (t, y) in parts.items()}


def hidden_states(texts: Sequence[str], top_layers: int, max_tokens: int, *, batch: int = FROZEN_BATCH) -> np.ndarray:
    """``[N, max_tokens, D]`` states entering the top ``top_layers`` layers (``frozen_hidden``),
    computed once, ``batch`` texts per compiled call."""
    ids, mask = tokenize(texts, max_tokens, pad_to=max_tokens)
    pad = -len(ids) % batch
    ids, mask = (np.pad(a, ((0, pad), (0, 0))) for a in (ids, mask))
    mask[len(texts):, 0] = 1  # padding rows: one token each, discarded
    out = [np.asarray(frozen_hidden(ids[s:s + batch], mask[s:s + batch], top_layers)) for s in range(0, len(ids), batch)]
    return np.concatenate(out)[: len(texts)]


def gloss_pool(cfg: TextTreeConfig, corpus: TextCorpus) -> GlossPool:
    classes, parts = sample_glosses(corpus, cfg.min_glosses, cfg.train_per_class, cfg.test_per_class, cfg.seed)
    states = {s: jnp.asarray(hidden_states(t, cfg.top_layers, cfg.max_tokens)) for s, (t, _) in parts.items()}
    return GlossPool(states["train"], jnp.asarray(parts["train"][1]), states["test"], jnp.asarray(parts["test"][1]),
                     tuple(corpus.class_names[c] for c in classes), tuple(corpus.class_descriptions[c] for c in classes))


def text_tree_arch(cfg: TextTreeConfig, num_classes: int) -> Arch:
    return make_arch("minilm_top", top_layers=cfg.top_layers, num_classes=num_classes, max_tokens=cfg.max_tokens)


def make_text_tree(cfg: TextTreeConfig, out: str | os.PathLike | None = None, *, tree_id: int = 0,
                   corpus: TextCorpus | None = None, data_dir: str | os.PathLike | None = None,
                   progress: bool = True) -> tuple[Zoo, Zoo]:
    """The base (a zoo of one) and ``cfg.num_children`` fine-tunes of it; saved to ``out/base``
    and ``out/children`` with ``out``, where an interrupted run resumes (``make.trees``)."""
    if cfg.base not in BASES:
        raise ValueError(f"text tree {cfg.name!r}: base must be one of {BASES}, got {cfg.base!r}")
    corpus = corpus if corpus is not None else load_wordnet(data_dir)
    out = Path(out) if out is not None else None
    work_dir = work_dir_for(out / "children") if out is not None else None
    stopwatch = Stopwatch(time_spent(work_dir))
    pool = gloss_pool(cfg, corpus)
    c = len(pool.class_names)
    if not 1 <= cfg.classes_per_child[0] <= cfg.classes_per_child[1] <= c:
        raise ValueError(f"text tree {cfg.name!r}: classes_per_child {cfg.classes_per_child} must be a range within "
                         f"1..{c} (classes with {cfg.min_glosses} glosses or more)")
    model = load_minilm()
    arch = text_tree_arch(cfg, c)

    def apply(params, h):
        return classify_hidden(params, h, model.config)

    def loss_on(train: Array):  # the gloss states are arguments of the compiled calls, not constants in them
        return classifier_loss(apply, train, pool.train_labels, c, cfg.batch_size)

    pretrained = top_params(model.params, model.config, cfg.top_layers)
    base_key = jax.random.fold_in(jax.random.key(cfg.seed), 2**30)
    if cfg.base == "corpus":
        start = {**pretrained, "head": dense_layer_init(base_key, model.config.hidden, c)}
        pretrain = jax.jit(lambda p, train: adam_steps(loss_on(train), p, jnp.ones(c), base_key,
                                                       jnp.float32(cfg.pretrain_lr), jnp.int32(cfg.pretrain_steps),
                                                       max_steps=cfg.pretrain_steps))
        base_params, _ = pretrained_base(work_dir, arch, lambda: pretrain(start, pool.train))
        base_acc = float(jax.jit(test_accuracy, static_argnums=0)(apply, base_params, pool.test, pool.test_labels))
    else:
        head = dense_layer_init(base_key, model.config.hidden, c)
        base_params, base_acc = {**pretrained, "head": jax.tree.map(jnp.zeros_like, head)}, None
    if progress:
        print(f"text tree {cfg.name}: {cfg.base} base, top {cfg.top_layers} layer(s) trained, {c} classes"
              + (f", base test accuracy {base_acc:.3f}" if base_acc is not None else ""))

    @jax.jit
    def fine_tune(keys: Array, base: Params, train: Array, test: Array, test_labels: Array) -> dict[str, Array]:
        settings = jax.vmap(lambda k: child_settings(jax.random.fold_in(k, 0), c, cfg.classes_per_child,
                                                     cfg.steps, cfg.learning_rate))(keys)
        init = jax.vmap(lambda k: {**base, "head": dense_layer_init(jax.random.fold_in(k, 1),
                                                                   model.config.hidden, c)})(keys)
        loss = loss_on(train)
        params, final_loss = jax.vmap(
            lambda p, m, k, lr, s: adam_steps(loss, p, m, jax.random.fold_in(k, 2), lr, s, max_steps=cfg.steps[1])
        )(init, settings["classes"], keys, settings["lr"], settings["steps"])
        acc = jax.lax.map(lambda pm: test_accuracy(apply, pm[0], test, test_labels, pm[1]),
                          (params, settings["classes"]), batch_size=EVAL_CHILDREN)
        return {**{f"params/{k}": v for k, v in flatten_params(params).items()}, **settings,
                "test_accuracy": acc, "final_loss": final_loss}

    def make(idx: Array, keys: Array) -> dict[str, Array]:
        return fine_tune(keys, base_params, pool.train, pool.test, pool.test_labels)

    plan = {"generator": "text tree", "config": _jsonable(cfg), "tree_id": tree_id}
    merged = _children(cfg.num_children, cfg.chunk_size, cfg.seed, make, work_dir, plan,
                       f"text tree {cfg.name}: fine-tuning", progress)
    meta = {"generator": "text tree", "tree": cfg.name, "tree_id": tree_id, "config": _jsonable(cfg),
            "dataset": corpus.name, "class_names": list(pool.class_names),
            "class_descriptions": list(pool.class_descriptions), "num_classes": c, "head": "head",
            "base_test_accuracy": base_acc, **stopwatch.elapsed().as_meta()}
    targets = {"classes": merged["classes"], "tree": np.full(cfg.num_children, tree_id, np.int32),
               "steps": merged["steps"], "lr": merged["lr"], "test_accuracy": merged["test_accuracy"],
               "final_loss": merged["final_loss"]}
    return tree_zoos(arch, merged, base_params, targets, cfg=cfg, meta=meta, out=out, work_dir=work_dir)


def text_trees(num_children: int = 1000, seed: int = 0, **fields) -> list[TextTreeConfig]:
    """Two trees of one architecture: ``minilm`` (children of the pretrained encoder) and
    ``minilm_wordnet`` (children of the encoder first fine-tuned on every class); ``fields``
    override ``TextTreeConfig``'s."""
    return [TextTreeConfig(name="minilm", base="pretrained", num_children=num_children, seed=seed, **fields),
            TextTreeConfig(name="minilm_wordnet", base="corpus", num_children=num_children, seed=seed + 1, **fields)]


def make_text_trees(configs: Sequence[TextTreeConfig], out: str | os.PathLike | None = None, *,
                    tree_ids: Sequence[int] | None = None, data_dir: str | os.PathLike | None = None,
                    progress: bool = True) -> dict[str, tuple[Zoo, Zoo]]:
    """Several text trees, ``out/<name>`` each (``load_trees`` and ``train probex --trees`` read the
    folder); a tree already made with the same settings is loaded, one made with other settings is
    refused."""
    tree_ids = list(range(len(configs))) if tree_ids is None else list(tree_ids)
    if len({c.name for c in configs}) != len(configs) or len(set(tree_ids)) != len(configs):
        raise ValueError(f"text trees need distinct names and ids; got {[c.name for c in configs]} and {tree_ids}")
    trees, corpus = {}, None
    for tree_id, cfg in zip(tree_ids, configs):
        path = Path(out) / cfg.name if out is not None else None
        children = finished_zoo(path / "children", cfg) if path is not None else None
        if children is not None:
            trees[cfg.name] = load_zoo(path / "base"), children
            continue
        corpus = corpus if corpus is not None else load_wordnet(data_dir)
        trees[cfg.name] = make_text_tree(cfg, path, tree_id=tree_id, corpus=corpus, progress=progress)
    return trees


__all__ = ["GlossPool", "TextTreeConfig", "gloss_pool", "hidden_states", "make_text_tree", "make_text_trees",
           "sample_glosses", "text_trees"]
