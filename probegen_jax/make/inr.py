"""INR zoos: one SIREN fitted to each image (the DWSNets MNIST/FMNIST-INR protocol).

All INRs of a chunk are fitted together in one vmapped, jit-compiled ``lax.scan`` over Adam
steps; an INR that reaches the target PSNR is frozen (its updates are masked), as the
protocol's per-image early stop does. Finished chunks are kept on disk, so an interrupted
generation resumes where it stopped.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from probegen_jax.archs import Arch, flatten_params, make_arch
from probegen_jax.archs.dense import fast_sincos, layer_name
from probegen_jax.data import ImageDataset, load_dataset
from probegen_jax.timing import Stopwatch
from probegen_jax.types import Array, Params
from probegen_jax.make.chunks import concat_chunks, remove_work_dir, work_dir_for
from probegen_jax.make.processes import run_chunks_on_processes, time_spent_before
from probegen_jax.parallel import pad_zoo_axis, usable_cores
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


InrMseAndGrad = Callable[[Params, Array, Array], tuple[Array, Params]]
"""``(params, coords[P, in], target[P, out]) -> (mse, grads)`` for one INR."""


def _small_matmul(x: Array, w: Array) -> Array:
    """``x @ w`` for a contraction of a few elements (coordinates in, one channel out) as
    broadcast multiply-adds, which fuse with what follows instead of a degenerate matmul."""
    if x.shape[-1] > 4:
        return x @ w
    return sum(x[:, j:j + 1] * w[j] for j in range(x.shape[-1]))


def siren_mse_and_grad(params: Params, coords: Array, target: Array, *, w0: float,
                       output_offset: float) -> tuple[Array, Params]:
    """The MSE of one SIREN on ``target [P, out]`` and its gradient, in closed form.

    The same values as ``jax.value_and_grad`` of the MSE of ``archs.dense.siren_apply`` (to float
    rounding; a test holds them to 1e-5), with each sine's cosine computed beside it in one pass
    (``fast_sincos``) and kept for the backward pass instead of every step of autodiff through
    the sine's polynomial; what fitting a zoo of INRs spends nearly all its time on.
    """
    n = len(params)
    activations, cosines, x = [coords], [], coords
    for i in range(n - 1):
        layer = params[layer_name(i)]
        sin, cos = fast_sincos(w0 * (_small_matmul(x, layer["kernel"]) + layer["bias"]))
        activations.append(sin)
        cosines.append(cos)
        x = sin
    last = params[layer_name(n - 1)]
    error = _small_matmul(x, last["kernel"]) + last["bias"] + output_offset - target
    mse = jnp.mean(error * error)
    delta = (2.0 / error.size) * error  # d mse / d output
    grads = {layer_name(n - 1): {"kernel": x.T @ delta, "bias": jnp.sum(delta, 0)}}
    back = delta @ last["kernel"].T
    for i in reversed(range(n - 1)):
        delta = back * (w0 * cosines[i])
        grads[layer_name(i)] = {"kernel": activations[i].T @ delta, "bias": jnp.sum(delta, 0)}
        if i:
            back = delta @ params[layer_name(i)]["kernel"].T
    return mse, grads


@functools.lru_cache(maxsize=None)
def _siren_mse_and_grad(w0: float, output_offset: float) -> InrMseAndGrad:
    return partial(siren_mse_and_grad, w0=w0, output_offset=output_offset)


@functools.lru_cache(maxsize=None)
def _autodiff_mse_and_grad(apply: Callable[[Params, Array], Array]) -> InrMseAndGrad:
    return jax.value_and_grad(lambda p, coords, target: jnp.mean((apply(p, coords) - target) ** 2))


def inr_mse_and_grad(arch: Arch) -> InrMseAndGrad:
    """How one INR of ``arch`` gets its MSE and gradient: in closed form for a SIREN
    (:func:`siren_mse_and_grad`), by autodiff of ``arch.apply`` for anything else."""
    if arch.name == "siren" and arch.factory is None:
        return _siren_mse_and_grad(float(arch.config["w0"]), float(arch.config["output_offset"]))
    return _autodiff_mse_and_grad(arch.apply)


def _masked(done: Array, new: Array, old: Array) -> Array:
    return jnp.where(done.reshape(-1, *([1] * (new.ndim - 1))), old, new)


@partial(jax.jit, static_argnames=("mse_and_grad", "steps", "learning_rate", "target_psnr", "block_size"))
def _fit_in_blocks(
    mse_and_grad: InrMseAndGrad,
    init_params: Params,
    coords: Array,
    pixels: Array,
    *,
    steps: int,
    learning_rate: float,
    target_psnr: float,
    block_size: int,
) -> tuple[Params, Array, Array]:
    """Every block of ``block_size`` INRs runs all its Adam steps before the next block starts,
    so a block's activations stay in cache from one step to the next; a block stops once every
    INR in it has (an INR's own updates stop at its target: stopping the block changes nothing)."""
    opt = optax.adam(learning_rate)
    batched = jax.vmap(mse_and_grad, in_axes=(0, None, 0))

    def fit_block(block: tuple[Params, Array]) -> tuple[Params, Array, Array]:
        params, targets = block

        def step(carry):
            params, opt_state, done, taken, i = carry
            mse, grads = batched(params, coords, targets)
            done = done | (psnr(mse) >= target_psnr)
            updates, new_state = opt.update(grads, opt_state, params)
            params = jax.tree.map(partial(_masked, done), optax.apply_updates(params, updates), params)
            opt_state = jax.tree.map(lambda n, o: _masked(done, n, o) if n.ndim and n.shape[0] == done.shape[0] else n,
                                     new_state, opt_state)
            return params, opt_state, done, taken + (~done), i + 1

        def running(carry) -> Array:  # a block whose INRs have all stopped is finished
            _, _, done, _, i = carry
            return (i < steps) & ~jnp.all(done)

        size = targets.shape[0]
        carry = (params, opt.init(params), jnp.zeros(size, bool), jnp.zeros(size, jnp.int32), jnp.int32(0))
        params, _, _, taken, _ = jax.lax.while_loop(running, step, carry)
        return params, psnr(batched(params, coords, targets)[0]), taken

    blocks = jax.tree.map(lambda a: a.reshape(-1, block_size, *a.shape[1:]), (init_params, pixels))
    fitted = jax.lax.map(fit_block, blocks)
    return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), fitted)


CPU_BLOCK_SIZE = 4  # INRs a CPU worker fits together (see fitting_layout)


def fitting_layout(batch: int) -> tuple[int, int]:
    """``(workers, block_size)`` for fitting ``batch`` INRs here: on CPU one worker thread per
    core, each fitting blocks of 4 INRs (a block's activations, about 0.6 MB for a 28x28 image,
    stay in a core's cache through its steps); elsewhere one worker per local device, each
    fitting its share in one block."""
    if jax.default_backend() == "cpu":
        return max(1, min(usable_cores(), -(-batch // CPU_BLOCK_SIZE))), CPU_BLOCK_SIZE
    workers = min(jax.local_device_count(), batch)
    return workers, -(-batch // workers)



def fit_inrs(
    arch: Arch,
    init_params: Params,
    coords: Array,
    pixels: Array,
    *,
    steps: int,
    learning_rate: float,
    target_psnr: float,
    layout: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit one INR of ``arch`` per signal, all at once (Adam, MSE; an INR that reaches
    ``target_psnr`` is frozen from that step on).

    Args:
      arch: the INRs' architecture (a SIREN gets its gradient in closed form).
      init_params: stacked initial params ``[B, ...]``.
      coords: ``[P, in]`` shared coordinates.
      pixels: ``[B, P, out]`` targets.
      layout: ``(workers, block_size)``; default :func:`fitting_layout`. The INRs are shared
        out among the workers (threads, each on a local device in turn), which fit theirs in
        blocks of ``block_size``. Each INR's result depends only on ``block_size``.

    Returns:
      (params, psnr ``[B]``, steps taken ``[B]``) as host arrays.
    """
    chex.assert_rank(pixels, 3)
    batch = pixels.shape[0]
    chex.assert_tree_shape_prefix(init_params, (batch,))
    workers, block_size = layout or fitting_layout(batch)
    (params, pixels), _ = pad_zoo_axis((jax.tree.map(np.asarray, init_params), np.asarray(pixels)),
                                       workers * block_size)
    share = pixels.shape[0] // workers
    devices = jax.local_devices()
    mse_and_grad = inr_mse_and_grad(arch)

    def fit_share(w: int) -> tuple[Params, Array, Array]:
        rows = slice(w * share, (w + 1) * share)
        part = jax.device_put((jax.tree.map(lambda a: a[rows], params), coords, pixels[rows]),
                              devices[w % len(devices)])
        return jax.block_until_ready(_fit_in_blocks(
            mse_and_grad, *part, steps=steps, learning_rate=learning_rate, target_psnr=target_psnr,
            block_size=block_size))

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        shares = list(pool.map(fit_share, range(workers)))
    return jax.tree.map(lambda *parts: np.concatenate([np.asarray(p) for p in parts])[:batch], *shares)


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
            arch, jax.vmap(arch.init)(keys), coords, pixels[idx],
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
