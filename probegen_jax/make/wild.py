"""Heterogeneous CNN zoos in the style of CNN Wild Park (Kofinas et al. 2024).

``num_architectures`` configurations are sampled (2-5 conv layers, channels {4, 8, 16, 32},
kernels {3, 5, 7}, a per-layer activation, optional residual connections); each is one bucket of
``networks_per_architecture`` networks that train together in one vmapped call with the small CNN
zoo's trainer and sampled training hyper-parameters (``zoo.cnn``), checkpointed per epoch.

Layout choices: the first ``downsample_layers`` layers have stride 2 (28 -> 14 -> 7 -> 4), the
rest stride 1; a residual connection (``y = act(conv(x)) + x``) needs stride 1, so a layer that
draws one keeps its input's channel count. Architectures are drawn without repeats.
Network ids run bucket by bucket (bucket ``a`` holds ids ``a * per_arch ...``); splits are by
network, independent of the architecture. One chunk is one bucket, so generation resumes per
bucket.
"""

from __future__ import annotations

import dataclasses
import os
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np

from probegen_jax.archs import make_arch
from probegen_jax.archs.cnn import (
    conv_layers_of,
    conv_stack_apply,
    conv_stack_init,
    conv_stack_shapes,
)
from probegen_jax.data import ImageDataset, load_dataset
from probegen_jax.make.chunks import remove_work_dir, work_dir_for
from probegen_jax.make.cnn import (
    CNNTraining,
    _generate,
    checkpoint_members,
    network_keys,
    network_splits,
    sample_hparams,
    train_network_chunk,
    training_data,
    zoo_meta,
)
from probegen_jax.zoo.hetero import HeteroZoo, save_hetero_zoo
from probegen_jax.zoo.zoo import Zoo

HPARAMS = ("optimizer", "init_std", "l2", "dropout", "learning_rate", "train_fraction")


@dataclasses.dataclass(frozen=True)
class WildZooConfig:
    """A heterogeneous CNN zoo: sampled architectures, several trained networks of each."""

    training: CNNTraining = CNNTraining(epochs=(0, 1, 2, 5, 10, 20), init_std=(0.02, 0.3))
    num_architectures: int = 100
    networks_per_architecture: int = 28
    min_layers: int = 2
    max_layers: int = 5
    channels: tuple[int, ...] = (4, 8, 16, 32)
    kernels: tuple[int, ...] = (3, 5, 7)
    layer_activations: tuple[str, ...] = ("relu", "tanh", "gelu", "leaky_relu")
    residual_probability: float = 0.5
    downsample_layers: int = 3
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0


def sample_architecture(rng: np.random.Generator, cfg: WildZooConfig) -> list[dict[str, Any]]:
    """One architecture's layer specs."""
    layers, prev = [], None
    for i in range(int(rng.integers(cfg.min_layers, cfg.max_layers + 1))):
        stride = 2 if i < cfg.downsample_layers else 1
        residual = bool(stride == 1 and rng.random() < cfg.residual_probability)
        channels = prev if residual else int(rng.choice(cfg.channels))
        layers.append({"channels": channels, "kernel": int(rng.choice(cfg.kernels)), "stride": stride,
                       "activation": str(rng.choice(cfg.layer_activations)), "residual": residual})
        prev = channels
    return layers


def sample_architectures(cfg: WildZooConfig) -> list[list[dict[str, Any]]]:
    """``num_architectures`` distinct architectures from a seeded generator."""
    rng = np.random.default_rng([cfg.seed, 11])
    archs, seen = [], set()
    for _ in range(1000 * cfg.num_architectures):
        layers = sample_architecture(rng, cfg)
        key = repr(layers)
        if key not in seen:
            seen.add(key)
            archs.append(layers)
        if len(archs) == cfg.num_architectures:
            return archs
    raise ValueError(f"only {len(archs)} distinct architectures exist in these ranges; asked for "
                     f"{cfg.num_architectures}")


def make_wild_zoo(
    cfg: WildZooConfig,
    out: str | os.PathLike | None = None,
    *,
    data: ImageDataset | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> HeteroZoo:
    """Train a heterogeneous CNN zoo; with ``out``, resumable per bucket and saved there."""
    tcfg = cfg.training
    data = data if data is not None else load_dataset(tcfg.dataset, data_dir)
    tdata = training_data(data, tcfg, cfg.seed)
    archs = [make_arch("wild_cnn", layers=layers, input_shape=tdata.image_shape, num_classes=data.num_classes)
             for layers in sample_architectures(cfg)]
    per = cfg.networks_per_architecture

    def make_chunk(ids: np.ndarray) -> dict[str, np.ndarray]:
        arch = archs[int(ids[0]) // per]
        layers = conv_layers_of(arch)
        shapes = conv_stack_shapes(layers, tdata.image_shape[-1], data.num_classes)
        keys = network_keys(cfg.seed, ids)
        hp = jax.vmap(lambda k: sample_hparams(jax.random.fold_in(k, 1), tcfg))(keys)
        params = jax.vmap(lambda k, h: conv_stack_init(jax.random.fold_in(k, 3), shapes, h["init_std"]))(keys, hp)
        result = train_network_chunk(partial(conv_stack_apply, layers=layers), params, hp, keys, tdata, tcfg,
                                     progress=progress)
        result.update({f"hp/{k}": np.asarray(hp[k]) for k in HPARAMS})
        return result

    num_networks = cfg.num_architectures * per
    chunks, timing = _generate("wild_cnn", cfg, num_networks, per, make_chunk, out, progress)
    net_splits = network_splits(num_networks, cfg.split_fractions, cfg.seed)
    buckets, split_parts, diverged, offset = [], {s: [] for s in net_splits}, [], 0
    for arch, chunk in zip(archs, chunks, strict=True):
        params, targets, splits, bad = checkpoint_members(chunk, arch, tcfg.epochs, net_splits, HPARAMS)
        buckets.append(Zoo(arch=arch, params=params, targets=targets))
        for s, idx in splits.items():
            split_parts[s].append(idx + offset)
        diverged.extend(bad.tolist())
        offset += len(targets["network"])
    merged = {"network": np.concatenate([c["network"] for c in chunks]),
              "diverged": np.concatenate([c["diverged"] for c in chunks]),
              "test_accuracy": np.concatenate([c["test_accuracy"] for c in chunks])}
    meta = zoo_meta("wild_cnn", cfg, tcfg, tdata, data, merged, np.asarray(diverged, np.int64), timing)
    meta["codes"] = {"optimizer": list(tcfg.optimizers)}
    meta["architectures"] = [a.config["layers"] for a in archs]
    nonempty = [b for b in buckets if len(b)]
    zoo = HeteroZoo.concat(nonempty, splits={s: np.concatenate(v) for s, v in split_parts.items()}, meta=meta)
    if out is not None:
        save_hetero_zoo(zoo, out, overwrite=Path(out).exists())
        remove_work_dir(work_dir_for(out))
    return zoo
