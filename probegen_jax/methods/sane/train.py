"""Training a SANE autoencoder on a zoo, and the trained model on disk.

Each step draws a batch of (standardised) networks, makes two views of each (a random
function-preserving permutation, then multiplicative noise), cuts the same random window out of
both, and minimises ``gamma * NT-Xent(project(encode(view1)), project(encode(view2)))`` plus
``(1 - gamma) *`` the masked MSE of decoding each view back to its noise-free tokens. The loop is
the shared ``fit_objective`` (AdamW, one-cycle schedule, orbax checkpoints, resumable); the
selected epoch has the lowest validation loss.

On disk (``out``): ``sane.json`` (model config, training settings, layout, results),
``standardization.json`` and ``params/`` (orbax). The layout records its token convention; a model
saved before layouts did reads with the legacy one it was trained with (``tokens``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.errors import CheckpointError
from probegen_jax.io import load_pytree, read_json, save_pytree, write_json
from probegen_jax.methods.sane.augment import multiplicative_noise, permute_hidden
from probegen_jax.methods.sane.losses import sane_loss
from probegen_jax.methods.sane.model import SANE, SANEConfig, make_sane
from probegen_jax.methods.sane.tokens import (
    Standardization,
    TokenLayout,
    fit_standardization,
    layer_params,
    load_standardization,
    save_standardization,
    standardize,
    token_layout,
    tokenize,
)
from probegen_jax.training.loop import TrainConfig, TrainResult, fit_objective
from probegen_jax.types import Array, Params, PRNGKey
from probegen_jax.zoo.zoo import Zoo

MODEL_FILE = "sane.json"
DEFAULT_TRAIN = TrainConfig(epochs=60, batch_size=64, learning_rate=1e-3, schedule="onecycle", optimizer="adamw",
                            weight_decay=1e-4)


@dataclasses.dataclass(frozen=True)
class Objective:
    """SANE's loss settings (the paper's values)."""

    gamma: float = 0.05
    temperature: float = 0.1
    noise: float = 0.1
    permute: bool = True


class TrainedSANE(NamedTuple):
    """A trained autoencoder with everything needed to tokenise, embed and decode."""

    model: SANE
    params: Params
    layout: TokenLayout
    stats: Standardization
    record: dict[str, Any]


def window_slices(arrays: tuple[Array, ...], starts: Array, window: int) -> tuple[Array, ...]:
    """``a[b, starts[b] : starts[b] + window]`` for each ``[B, T, ...]`` array."""
    take = jax.vmap(lambda a, s: jax.lax.dynamic_slice_in_dim(a, s, window, axis=0))
    return tuple(take(a, starts) for a in arrays)


def sane_objective(model: SANE, layout: TokenLayout, objective: Objective = Objective()):
    """``loss(params, batch_of_standardised_networks, key) -> (loss, parts)`` for one step."""
    positions, mask = jnp.asarray(layout.positions()), jnp.asarray(layout.mask())
    names = layout.layer_names()
    window, num_tokens = model.config.window, layout.num_tokens

    def view(net: Params, key: PRNGKey) -> tuple[Array, Array]:
        k_perm, k_noise = jax.random.split(key)
        clean = tokenize(permute_hidden(net, k_perm, names) if objective.permute else net, layout)
        return multiplicative_noise(clean, k_noise, objective.noise), clean

    def loss(params: Params, batch: Params, key: PRNGKey) -> tuple[Array, dict[str, Array]]:
        n = jax.tree.leaves(batch)[0].shape[0]
        k_window, k1, k2 = jax.random.split(key, 3)
        starts = jax.random.randint(k_window, (n,), 0, num_tokens - window + 1)
        noisy1, clean1 = jax.vmap(view)(batch, jax.random.split(k1, n))
        noisy2, clean2 = jax.vmap(view)(batch, jax.random.split(k2, n))
        pos = jnp.broadcast_to(positions, (n, *positions.shape))
        msk = jnp.broadcast_to(mask, (n, *mask.shape))
        noisy1, clean1, noisy2, clean2, pos, msk = window_slices((noisy1, clean1, noisy2, clean2, pos, msk), starts,
                                                                 window)
        z1, z2 = model.encode(params, noisy1, pos), model.encode(params, noisy2, pos)
        both = jnp.concatenate([z1, z2])
        pos2 = jnp.concatenate([pos, pos])
        recon = model.decode(params, both, pos2)
        return sane_loss(recon, jnp.concatenate([clean1, clean2]), jnp.concatenate([msk, msk]),
                         model.project(params, z1), model.project(params, z2), gamma=objective.gamma,
                         temperature=objective.temperature)

    return loss


def _validator(loss, data: Params, seed: int, block: int):
    """Validation loss at fixed augmentations, in blocks of networks."""
    jitted = jax.jit(loss)
    n = jax.tree.leaves(data)[0].shape[0]

    def validate(params: Params) -> dict[str, float]:
        totals, weights = [], []
        for i, lo in enumerate(range(0, n, block)):
            chunk = jax.tree.map(lambda a: a[lo: lo + block], data)
            m = jax.tree.leaves(chunk)[0].shape[0]
            if m < 2:  # NT-Xent needs a negative
                continue
            value, parts = jitted(params, chunk, jax.random.fold_in(jax.random.key(seed), i))
            totals.append(np.array([float(value), float(parts["mse"]), float(parts["nt_xent"])]))
            weights.append(m)
        total, mse, ntx = np.average(np.stack(totals), axis=0, weights=weights)
        return {"loss": total, "mse": mse, "nt_xent": ntx, "neg_loss": -total}

    return validate


def train_sane(
    zoo: Zoo,
    cfg: SANEConfig = SANEConfig(),
    train_cfg: TrainConfig = DEFAULT_TRAIN,
    objective: Objective = Objective(),
    *,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    ignore_norm: bool = False,
) -> tuple[TrainedSANE, TrainResult]:
    """Train SANE on ``zoo``'s train split (standardised with its statistics), select on val.

    Tokens follow the SANE reference code (``tokens``); ``ignore_norm`` leaves BatchNorm layers out.

    With ``out``, training checkpoints go to ``out/checkpoints`` (resumable) and the model is saved
    to ``out`` (``load_sane(out)``).
    """
    template = jax.tree.map(lambda a: a[0], zoo.params)
    layout = token_layout(template, cfg.token_size, ignore_norm=ignore_norm)
    cfg = cfg.for_layout(layout)
    model = make_sane(cfg)
    nets = layer_params(zoo.params, layout)
    stats = fit_standardization(jax.tree.map(lambda a: a[zoo.indices("train")], nets), layout)
    nets = jax.tree.map(np.asarray, standardize(nets, stats, layout))
    train = jax.tree.map(lambda a: a[zoo.indices("train")], nets)
    val = jax.tree.map(lambda a: a[zoo.indices("val")], nets)
    loss = sane_objective(model, layout, objective)
    result = fit_objective(
        model.init, lambda p, b, k: loss(p, b, k)[0], train,
        _validator(loss, val, train_cfg.seed + 1, train_cfg.eval_batch_size), "neg_loss", train_cfg,
        checkpoint_dir=None if out is None else Path(out).absolute() / "checkpoints", progress=progress,
        desc="SANE")
    record = {"config": dataclasses.asdict(cfg), "train": dataclasses.asdict(train_cfg),
              "objective": dataclasses.asdict(objective), "layout": layout.to_json(), "arch": zoo.arch.spec(),
              "result": result.summary(), "num_parameters": int(sum(a.size for a in jax.tree.leaves(result.params)))}
    trained = TrainedSANE(model, result.params, layout, stats, record)
    if out is not None:
        save_sane(out, trained)
    return trained, result


def save_sane(out: str | os.PathLike, trained: TrainedSANE) -> None:
    out = Path(out)
    save_pytree(out / "params", trained.params)
    save_standardization(out, trained.stats, trained.layout)
    write_json(out / MODEL_FILE, trained.record)


def load_sane(directory: str | os.PathLike) -> TrainedSANE:
    """A model saved by ``train_sane``; missing parts raise errors naming the file."""
    directory = Path(directory)
    record_file = directory / MODEL_FILE
    record = read_json(record_file, CheckpointError, missing=f"missing; {directory} is not a saved SANE model")
    stats, layout = load_standardization(directory)
    if layout != TokenLayout.from_json(record["layout"]):
        raise CheckpointError(f"{directory}: the standardisation file belongs to another token layout")
    model = make_sane(SANEConfig(**record["config"]))
    params = load_pytree(directory / "params", jax.eval_shape(model.init, jax.random.key(0)))
    return TrainedSANE(model, params, layout, stats, record)
