"""New models from SANE: KDE on anchor embeddings, decode, rebuild params; SUB and BOOT.

Anchors are the best networks of a population (top 30% by accuracy). Their token latent sequences
``[A, T, latent]`` define a Gaussian kernel density (bandwidth 0.2 in units of the anchors' std at
each token position and dimension): a new model is one anchor's whole latent sequence plus kernel
noise at every position. Drawing the anchor independently per position (``per_position=True``)
mixes tokens of different networks, whose hidden units are not aligned (networks that differ by
seed are permuted relative to each other), and decodes to networks at chance level. The decoder maps the latents back to standardised tokens, the
stored statistics undo the standardisation, and ``detokenize`` rebuilds the params.

SUB samples many and keeps the best on a reference batch; BOOT repeats SUB with the kept models as
the next round's anchors.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.methods.sane.embed import decode_sequence, zoo_latents
from probegen_jax.methods.sane.model import SANE
from probegen_jax.methods.sane.tokens import TokenLayout, destandardize, detokenize
from probegen_jax.methods.sane.train import TrainedSANE
from probegen_jax.types import Array, Params, PRNGKey

Scorer = Callable[[Params], np.ndarray]  # stacked params [n, ...] -> score [n] (higher is better)


def top_fraction(scores: np.ndarray, fraction: float = 0.3) -> np.ndarray:
    """Indices of the best ``fraction`` of ``scores`` (at least one), best first."""
    if not 0 < fraction <= 1:
        raise ValueError(f"anchor fraction must be in (0, 1], got {fraction}")
    count = max(1, int(round(fraction * len(scores))))
    return np.argsort(-np.asarray(scores), kind="stable")[:count]


def kde_sample(key: PRNGKey, anchors: Array, num: int, bandwidth: float = 0.2, *,
               per_position: bool = False) -> Array:
    """``[num, T, latent]``: a random anchor's latents plus Gaussian kernel noise (one anchor per
    sample, or per sample and position with ``per_position``)."""
    anchors = jnp.asarray(anchors)
    a, t, _ = anchors.shape
    k_pick, k_noise = jax.random.split(key)
    pick = jax.random.randint(k_pick, (num, t if per_position else 1), 0, a)
    pick = jnp.broadcast_to(pick, (num, t))
    base = anchors[pick, jnp.arange(t)[None, :]]
    scale = bandwidth * anchors.std(axis=0) if a > 1 else bandwidth * jnp.ones(anchors.shape[1:])
    return base + scale * jax.random.normal(k_noise, base.shape)


@partial(jax.jit, static_argnames=("model", "layout", "window", "halo"))
def _decode(model: SANE, params: Params, latents: Array, layout: TokenLayout, window: int, halo: int) -> Array:
    positions = jnp.asarray(layout.positions())
    mask = jnp.asarray(layout.mask())
    return jax.vmap(lambda z: decode_sequence(model, params, z, positions, window=window, halo=halo) * mask)(latents)


def decode_networks(trained: TrainedSANE, latents: Array, extras: Params | None = None, *,
                    window: int | None = None, halo: int | None = None) -> Params:
    """Stacked raw params ``[n, ...]`` decoded from latents ``[n, T, latent]``; ``extras`` (per-network
    leaves such as ``activation_id``, stacked ``[n]``) are added."""
    window = window or trained.model.config.window
    halo = window // 4 if halo is None else halo
    tokens = _decode(trained.model, trained.params, jnp.asarray(latents), trained.layout, window, halo)
    nets = jax.vmap(lambda t: detokenize(t, trained.layout))(tokens)
    nets = destandardize(nets, trained.stats, trained.layout)
    return {**nets, **(extras or {})}


def sample_models(trained: TrainedSANE, anchors: Params, key: PRNGKey, num: int, *, bandwidth: float = 0.2,
                  extras: Params | None = None) -> Params:
    """``num`` new networks from the KDE of ``anchors``' (stacked raw params) token latents."""
    latents = zoo_latents(trained, anchors)
    return decode_networks(trained, kde_sample(key, latents, num, bandwidth), extras)


def _take(params: Params, idx: np.ndarray) -> Params:
    return jax.tree.map(lambda a: a[idx], params)


def sample_sub(trained: TrainedSANE, anchors: Params, key: PRNGKey, score: Scorer, *, num: int = 50, keep: int = 10,
               bandwidth: float = 0.2, extras: Callable[[int], Params] | None = None) -> tuple[Params, np.ndarray]:
    """SUB: sample ``num``, keep the ``keep`` best by ``score`` (on a reference batch); (params, scores)."""
    if keep > num:
        raise ValueError(f"cannot keep {keep} of {num} samples")
    samples = sample_models(trained, anchors, key, num, bandwidth=bandwidth, extras=extras(num) if extras else None)
    scores = np.asarray(score(samples))
    best = np.argsort(-scores, kind="stable")[:keep]
    return _take(samples, best), scores[best]


def sample_boot(trained: TrainedSANE, anchors: Params, key: PRNGKey, score: Scorer, *, rounds: int = 3,
                num: int = 50, keep: int = 10, bandwidth: float = 0.2,
                extras: Callable[[int], Params] | None = None) -> tuple[Params, np.ndarray]:
    """BOOT: SUB repeated ``rounds`` times, each round's kept models the next round's anchors."""
    kept, scores = anchors, None
    for r in range(rounds):
        kept, scores = sample_sub(trained, kept, jax.random.fold_in(key, r), score, num=num, keep=keep,
                                  bandwidth=bandwidth, extras=extras)
    return kept, scores


def zoo_anchors(zoo, fraction: float = 0.3, score: str = "test_accuracy"):
    """(anchor params, ``extras(n)``, record) from a zoo's train split: its best ``fraction`` by ``score``.

    Tokens carry weights only, not a per-network activation (``activation_id``): anchors are then
    restricted to the majority activation among the best, and ``extras(n)`` gives sampled networks
    that activation.
    """
    from probegen_jax.archs.cnn import ACTIVATION_LEAF

    train = zoo.split("train")
    values = train.target(score)
    idx = top_fraction(values, fraction)
    activation = None
    if ACTIVATION_LEAF in train.params:
        ids = np.asarray(train.params[ACTIVATION_LEAF])
        activation = int(np.bincount(ids[idx]).argmax())
        idx = idx[ids[idx] == activation]

    def extras(n: int) -> Params:
        return {ACTIVATION_LEAF: jnp.full((n,), activation, jnp.int32)} if activation is not None else {}

    record = {"anchors": len(idx), "activation": activation, f"anchor_{score}": float(np.mean(values[idx]))}
    return _take(train.params, idx), extras, record


def reference_accuracy(apply, images: np.ndarray, labels: np.ndarray) -> Scorer:
    """SUB's score: accuracy of stacked networks on a reference batch."""
    x, y = jnp.asarray(images), jnp.asarray(labels)

    @jax.jit
    def accuracy(params):
        logits = jax.vmap(apply, (0, None))(params, x)
        return (jnp.argmax(logits, -1) == y).mean(-1)

    return lambda params: np.asarray(accuracy(params))


class SamplingSetup(NamedTuple):
    """What SUB and BOOT sample from and score with: the zoo's best train networks (anchors), the
    non-weight leaves a sample gets (``extras(n)``), their record, and the reference-batch score."""

    anchors: Params
    extras: Callable[[int], Params]
    record: dict
    score: Scorer


def sampling_setup(zoo, *, anchor_fraction: float = 0.3, reference_batch: int = 500,
                   data_dir: str | None = None) -> SamplingSetup:
    """Anchors from ``zoo`` and the accuracy on ``reference_batch`` of the training images its
    networks were trained on (the images are read from this machine)."""
    from probegen_jax.make.cnn import zoo_training_data

    anchors, extras, record = zoo_anchors(zoo, anchor_fraction)
    data = zoo_training_data(zoo, data_dir)
    score = reference_accuracy(zoo.arch.apply, data.train_images[:reference_batch], data.train_labels[:reference_batch])
    return SamplingSetup(anchors, extras, record, score)


def sane_model(path: str | os.PathLike, zoo) -> TrainedSANE:
    """The autoencoder of a SANE run directory (``probegen-jax train sane``), or of a model saved by
    ``train_sane(out=...)``."""
    from pathlib import Path

    from probegen_jax.methods.run import load_run
    from probegen_jax.methods.sane.method import trained_sane
    from probegen_jax.methods.sane.train import load_sane

    if (Path(path) / "run.json").is_file():
        return trained_sane(load_run(path, zoo), zoo)
    return load_sane(path)
