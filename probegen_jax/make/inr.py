"""INR zoos: one SIREN fitted to each image (the DWSNets MNIST/FMNIST-INR protocol).

All INRs of a chunk are fitted together in one vmapped, jit-compiled ``lax.scan`` over Adam
steps; an INR that reaches the target PSNR is frozen (its updates are masked), as the
protocol's per-image early stop does. Finished chunks are kept on disk, so an interrupted
generation resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
from functools import partial
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from probegen_jax.archs import flatten_params, make_arch
from probegen_jax.data import ImageDataset, load_dataset
from probegen_jax.timing import Stopwatch
from probegen_jax.types import Array, Params
from probegen_jax.make.chunks import concat_chunks, remove_work_dir, work_dir_for
from probegen_jax.make.processes import run_chunks_on_processes, time_spent_before
from probegen_jax.zoo.store import save_zoo
from probegen_jax.zoo.zoo import Zoo


@dataclasses.dataclass(frozen=True)
class INRZooConfig:
    """How an INR zoo is made (DWSNets defaults). Split sizes ``None`` take every image."""

    dataset: str = "fashion_mnist"
    num_train: int | None = 55_000
    num_val: int | None = 5_000
    num_test: int | None = 10_000
    hidden: int = 32
    depth: int = 2
    w0: float = 30.0
    steps: int = 1000
    learning_rate: float = 5e-4
    target_psnr: float = 40.0
    chunk_size: int = 512
    seed: int = 0


def coordinate_grid(height: int, width: int) -> Array:
    """``[H*W, 2]`` pixel centres' (row, col) coordinates on a uniform grid over [-1, 1]^2."""
    rows, cols = jnp.linspace(-1, 1, height), jnp.linspace(-1, 1, width)
    return jnp.stack(jnp.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)


def psnr(mse: Array) -> Array:
    """PSNR in dB for signals in [0, 1]."""
    return -10.0 * jnp.log10(jnp.maximum(mse, 1e-12))


@partial(jax.jit, static_argnames=("arch_apply", "steps", "learning_rate", "target_psnr"))
def fit_inrs(
    arch_apply,
    init_params: Params,
    coords: Array,
    pixels: Array,
    *,
    steps: int,
    learning_rate: float,
    target_psnr: float,
) -> tuple[Params, Array, Array]:
    """Fit one INR per signal, all at once.

    Args:
      arch_apply: ``(params, coords[P, 2]) -> [P, 1]``.
      init_params: stacked initial params ``[B, ...]``.
      coords: ``[P, 2]`` shared coordinates.
      pixels: ``[B, P, 1]`` targets.

    Returns:
      (params, psnr ``[B]``, steps taken ``[B]``).
    """
    chex.assert_rank(pixels, 3)
    opt = optax.adam(learning_rate)

    def loss(p, target):
        return jnp.mean((arch_apply(p, coords) - target) ** 2)

    batched_grad = jax.vmap(jax.value_and_grad(loss))

    def step(carry, _):
        params, opt_state, done, taken = carry
        mse, grads = batched_grad(params, pixels)
        done = done | (psnr(mse) >= target_psnr)
        updates, new_state = opt.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        keep = lambda new, old: jnp.where(done.reshape(-1, *([1] * (new.ndim - 1))), old, new)  # noqa: E731
        params = jax.tree.map(keep, new_params, params)
        opt_state = jax.tree.map(lambda n, o: keep(n, o) if n.ndim and n.shape[0] == done.shape[0] else n,
                                 new_state, opt_state)
        return (params, opt_state, done, taken + (~done)), None

    batch = pixels.shape[0]
    carry = (init_params, opt.init(init_params), jnp.zeros(batch, bool), jnp.zeros(batch, jnp.int32))
    (params, _, _, taken), _ = jax.lax.scan(step, carry, None, length=steps)
    final_mse = jax.vmap(loss)(params, pixels)
    return params, psnr(final_mse), taken


def _split_items(data: ImageDataset, cfg: INRZooConfig) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(images, labels, splits): train/val from a seeded permutation of the train part, test from test."""
    perm = np.random.default_rng(cfg.seed).permutation(len(data.train_images))
    n_train = len(perm) - (cfg.num_val or 0) if cfg.num_train is None else cfg.num_train
    n_val = 0 if cfg.num_val is None else cfg.num_val
    n_test = len(data.test_images) if cfg.num_test is None else cfg.num_test
    if n_train + n_val > len(perm) or n_test > len(data.test_images):
        raise ValueError(
            f"{data.name}: asked for {n_train}/{n_val}/{n_test} INRs but the dataset has "
            f"{len(perm)} train and {len(data.test_images)} test images"
        )
    tr, va = perm[:n_train], perm[n_train:n_train + n_val]
    images = np.concatenate([data.train_images[tr], data.train_images[va], data.test_images[:n_test]])
    labels = np.concatenate([data.train_labels[tr], data.train_labels[va], data.test_labels[:n_test]])
    bounds = np.cumsum([0, n_train, n_val, n_test])
    splits = {s: np.arange(bounds[i], bounds[i + 1]) for i, s in enumerate(("train", "val", "test"))}
    return images, labels, splits


def make_inr_zoo(
    cfg: INRZooConfig,
    out: str | os.PathLike | None = None,
    *,
    data: ImageDataset | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Zoo:
    """Fit an INR zoo; with ``out``, resumable chunks are kept beside it and the zoo is saved there.

    Network ``i`` is initialised from ``fold_in(key(seed), i)``, so the zoo does not depend on
    the chunk size. An existing zoo at ``out`` is only replaced with ``overwrite=True``.
    """
    if out is not None and Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out}: a zoo already exists here; load it, or pass overwrite=True (--overwrite)")
    data = data if data is not None else load_dataset(cfg.dataset, data_dir)
    images, labels, splits = _split_items(data, cfg)
    arch = make_arch("siren", in_dim=2, hidden=cfg.hidden, depth=cfg.depth, out_dim=1, w0=cfg.w0)
    height, width = images.shape[1:3]
    coords = coordinate_grid(height, width)
    pixels = images.reshape(len(images), height * width, -1).mean(-1, keepdims=True)
    root = jax.random.key(cfg.seed)
    num_chunks = -(-len(images) // cfg.chunk_size)

    def make_chunk(c: int) -> dict[str, np.ndarray]:
        idx = np.arange(c * cfg.chunk_size, (c + 1) * cfg.chunk_size)
        valid = idx < len(images)
        idx = np.where(valid, idx, 0)  # pad the last chunk to keep one compiled shape
        keys = jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.asarray(idx))
        params, fit_psnr, taken = fit_inrs(
            arch.apply, jax.vmap(arch.init)(keys), coords, jnp.asarray(pixels[idx]),
            steps=cfg.steps, learning_rate=cfg.learning_rate, target_psnr=cfg.target_psnr,
        )
        flat = {f"params/{k}": np.asarray(v)[valid] for k, v in flatten_params(params).items()}
        return {**flat, "psnr": np.asarray(fit_psnr)[valid], "steps": np.asarray(taken)[valid]}

    plan = {"generator": "inr", "config": dataclasses.asdict(cfg), "dataset_size": len(images)}
    work_dir = work_dir_for(out) if out is not None else None  # None: chunks stay in memory
    stopwatch = Stopwatch(time_spent_before(work_dir))
    chunks = run_chunks_on_processes(work_dir, plan, num_chunks, make_chunk, desc="fitting INRs", progress=progress)
    merged = concat_chunks(chunks)
    params = arch.unflatten({k[len("params/"):]: v for k, v in merged.items() if k.startswith("params/")},
                            where="INR chunks")
    zoo = Zoo(
        arch=arch,
        params=params,
        targets={"label": labels.astype(np.int32), "psnr": merged["psnr"], "steps": merged["steps"]},
        splits=splits,
        meta={
            "generator": "inr",
            "config": dataclasses.asdict(cfg),
            "dataset": data.name,
            "class_names": list(data.class_names),
            "num_classes": data.num_classes,
            "image_shape": [int(height), int(width)],
            "psnr_mean": float(np.mean(merged["psnr"])),
            **stopwatch.elapsed().as_meta(),
        },
    )
    if out is not None:
        save_zoo(zoo, out, overwrite=overwrite)
        remove_work_dir(work_dir)
    return zoo
