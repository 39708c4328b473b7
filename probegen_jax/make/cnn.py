"""Small CNN zoos (Unterthiner et al. 2020): CNNs with sampled hyper-parameters, checkpointed per epoch.

Every network samples its activation, init std, L2, dropout, learning rate, optimiser and train
fraction. All networks of a chunk train together in one vmapped, jit-compiled ``lax.scan`` per
epoch: hyper-parameters are per-network arrays (the optimiser is picked per network with
``lax.select_n`` over Adam, SGD with momentum 0.9 and RMSProp updates; the activation by
``lax.switch`` inside ``small_cnn``), never Python branches.

Protocol details this library fixes where the paper leaves room:

- Inputs are grayscale in [-1, 1]. A network trains on its own random subset (its train
  fraction) of a training pool (``train_size`` images of the dataset's train part, a seeded
  permutation). An *epoch* is the same number of steps for every network (pool size / batch), so
  networks with a small fraction see their examples more often; batches are drawn with
  replacement from the network's subset, keyed by (network, step).
- Kernels are initialised N(0, init_std^2), biases zero; L2 applies to kernels; dropout follows
  every conv layer.
- Convolutions are ``valid``, as the published zoo's (Keras's default), where the input allows
  three stride-2 3x3 of them (15x15 and up: 28x28 and 32x32 images); on smaller inputs (8x8
  digits) ``same``. ``SmallCNNZooConfig.padding`` overrides this; ``zoo.meta["padding"]`` records
  the choice and why.
- Checkpoint ``e`` holds the params after ``e`` epochs (0: the initialisation), with train
  accuracy/loss (on up to ``train_eval_size`` images of the network's own subset) and test
  accuracy/loss (on ``test_size`` test images).
- Every (network, checkpoint) pair is one zoo member. Splits are by network, so all checkpoints
  of a network lie in one split. ``at_epoch(zoo)`` keeps the final checkpoints.
- A network whose loss or weights become NaN/inf is *diverged*: all its checkpoints are dropped
  and ``zoo.meta["diverged"]`` records how many and which network ids.

Network ``i`` draws everything from ``fold_in(key(seed), i)``: the zoo does not depend on the chunk
size, and an interrupted generation resumes from its last finished chunk.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from probegen_jax.archs import Arch, flatten_params, make_arch
from probegen_jax.archs.cnn import (
    ACTIVATION_LEAF,
    ACTIVATIONS,
    check_padding,
    conv_layers_of,
    conv_stack_apply,
    conv_stack_init,
    conv_stack_shapes,
    fits_valid_small_cnn,
    split_trainable,
)
from probegen_jax.data import ImageDataset, load_dataset
from probegen_jax.errors import UnknownNameError
from probegen_jax.timing import Stopwatch, Timing
from probegen_jax.types import Array, Params, PRNGKey
from probegen_jax.make.chunks import (
    concat_chunks,
    remove_work_dir,
    work_dir_for,
)
from probegen_jax.make.processes import run_chunks_on_processes, time_spent_before
from probegen_jax.parallel import is_main_process
from probegen_jax.progress import progress as progress_bar
from probegen_jax.zoo.store import save_zoo
from probegen_jax.zoo.zoo import Zoo, at_epoch  # noqa: F401  (at_epoch: the CNN zoos' checkpoint filter)

OPTIMIZERS: dict[str, Callable[[], optax.GradientTransformation]] = {
    "adam": optax.scale_by_adam,
    "sgd": lambda: optax.trace(decay=0.9),  # SGD with momentum 0.9
    "rmsprop": optax.scale_by_rms,
}
METRICS = ("train_accuracy", "train_loss", "test_accuracy", "test_loss")


@dataclasses.dataclass(frozen=True)
class CNNTraining:
    """How each network of a CNN zoo is trained, and the ranges its hyper-parameters are drawn from.

    Ranges ``(lo, hi)`` are sampled log-uniformly (uniformly for dropout); tuples of names or
    fractions are sampled uniformly. ``epochs`` lists the checkpoints; the last is the training
    length. ``train_size``/``test_size`` ``None`` take the whole train/test part of the dataset.
    """

    dataset: str = "fashion_mnist"
    train_size: int | None = None
    test_size: int | None = None
    train_eval_size: int = 2000
    epochs: tuple[int, ...] = (0, 1, 2, 3, 20, 40, 60, 80, 86)
    batch_size: int = 32
    activations: tuple[str, ...] = ("relu", "tanh")
    optimizers: tuple[str, ...] = ("adam", "sgd", "rmsprop")
    init_std: tuple[float, float] = (1e-3, 0.5)
    l2: tuple[float, float] = (1e-8, 1e-2)
    dropout: tuple[float, float] = (0.0, 0.7)
    learning_rate: tuple[float, float] = (5e-4, 5e-2)
    train_fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    eval_block: int = 128

    @classmethod
    def fixed_setting(cls, **kw: Any) -> CNNTraining:
        """One setting for every network (networks differ by seed only), as in Schuerholt et al.'s
        Model Zoos: tanh, Adam at 1e-3, N(0, 0.08^2) init, no dropout, L2 1e-8, the whole pool."""
        fixed = dict(activations=("tanh",), optimizers=("adam",), init_std=(0.08, 0.08), l2=(1e-8, 1e-8),
                     dropout=(0.0, 0.0), learning_rate=(1e-3, 1e-3), train_fractions=(1.0,))
        return cls(**{**fixed, **kw})

    def __post_init__(self) -> None:
        for name in self.optimizers:
            if name not in OPTIMIZERS:
                raise UnknownNameError(f"unknown optimiser {name!r}; available: {sorted(OPTIMIZERS)}")
        for name in self.activations:
            if name not in ACTIVATIONS:
                raise UnknownNameError(f"unknown activation {name!r}; available: {sorted(ACTIVATIONS)}")
        if list(self.epochs) != sorted(set(self.epochs)) or self.epochs[0] < 0:
            raise ValueError(f"checkpoint epochs must be increasing and >= 0, got {self.epochs}")


@dataclasses.dataclass(frozen=True)
class SmallCNNZooConfig:
    """A small CNN zoo: ``num_networks`` networks, ``chunk_size`` of them trained per compiled call;
    ``padding`` ``None`` follows the protocol (``valid`` where the input allows, else ``same``)."""

    training: CNNTraining = CNNTraining()
    num_networks: int = 30_000
    channels: int = 16
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    chunk_size: int = 256
    seed: int = 0
    padding: str | None = None

    def __post_init__(self) -> None:
        if self.padding is not None:
            check_padding(self.padding)


def protocol_padding(image_shape: Sequence[int], padding: str | None = None) -> dict[str, str]:
    """``{"padding": ..., "reason": ...}``: ``padding`` if given, else ``valid`` (the published
    zoo's) where three stride-2 3x3 valid convolutions fit the images, else ``same``."""
    size = "x".join(str(d) for d in image_shape[:2])
    if padding is not None:
        return {"padding": check_padding(padding), "reason": "chosen in the zoo's config"}
    if fits_valid_small_cnn(image_shape):
        return {"padding": "valid", "reason": "the published zoo's (Keras's default), as the protocol has it"}
    return {"padding": "same", "reason": f"{size} inputs are too small for three stride-2 3x3 valid "
                                         f"convolutions (15x15 at least); the published zoo's valid needs larger images"}


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """Images in [-1, 1]: the training pool and the test images every network is scored on."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])


def training_data(data: ImageDataset, cfg: CNNTraining, seed: int) -> TrainingData:
    """The pool (a seeded permutation's first ``train_size``) and test part, rescaled to [-1, 1]."""
    perm = np.random.default_rng(seed).permutation(len(data.train_images))[: cfg.train_size]
    n_test = len(data.test_images) if cfg.test_size is None else min(cfg.test_size, len(data.test_images))

    def to_pm1(x):
        return (2.0 * np.asarray(x, np.float32) - 1.0)

    return TrainingData(data.name, to_pm1(data.train_images[perm]), data.train_labels[perm],
                        to_pm1(data.test_images[:n_test]), data.test_labels[:n_test])


# ----------------------------------------------------------------------------- hyper-parameters


def _log_uniform(key: PRNGKey, lo: float, hi: float) -> Array:
    return jnp.exp(jax.random.uniform(key, minval=np.log(lo), maxval=np.log(hi)))


def sample_hparams(key: PRNGKey, cfg: CNNTraining) -> dict[str, Array]:
    """One network's hyper-parameters (scalars); categorical ones are indices into ``cfg``'s tuples."""
    k = jax.random.split(key, 7)
    return {
        "activation": jax.random.randint(k[0], (), 0, len(cfg.activations)),
        "optimizer": jax.random.randint(k[1], (), 0, len(cfg.optimizers)),
        "init_std": _log_uniform(k[2], *cfg.init_std),
        "l2": _log_uniform(k[3], *cfg.l2),
        "dropout": jax.random.uniform(k[4], minval=cfg.dropout[0], maxval=cfg.dropout[1]),
        "learning_rate": _log_uniform(k[5], *cfg.learning_rate),
        "train_fraction": jnp.asarray(cfg.train_fractions)[jax.random.randint(k[6], (), 0, len(cfg.train_fractions))],
    }


def network_keys(seed: int, ids: np.ndarray) -> Array:
    """``fold_in(key(seed), i)`` for each network id: a network's randomness is its own."""
    root = jax.random.key(seed)
    return jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.asarray(ids))


# ----------------------------------------------------------------------------- training


Forward = Callable[..., Array]  # (params, x[B, H, W, C], *, dropout, key) -> logits


def _optimizers(names: Sequence[str]) -> list[optax.GradientTransformation]:
    return [OPTIMIZERS[n]() for n in names]


def init_opt_state(params: Params, names: Sequence[str]) -> tuple:
    """Per-network optimiser state: one state per optimiser in ``names`` (all kept, one used)."""
    trainable, _ = split_trainable(params)
    return tuple(opt.init(trainable) for opt in _optimizers(names))


def _kernel_l2(params: Params) -> Array:
    return sum(jnp.sum(v["kernel"] ** 2) for v in params.values() if isinstance(v, Mapping) and "kernel" in v)


def _net_step(forward: Forward, opt_names: tuple[str, ...], images: Array, labels: Array, batch_size: int,
              params: Params, opt_state: tuple, hp: Mapping[str, Array], key: PRNGKey, perm: Array,
              size: Array, step: Array):
    """One SGD step of one network on a batch drawn from its own subset ``perm[:size]``."""
    k = jax.random.fold_in(key, step)
    idx = perm[jax.random.randint(k, (batch_size,), 0, size)]
    x, y = images[idx], labels[idx]
    trainable, frozen = split_trainable(params)

    def loss_fn(t):
        logits = forward({**t, **frozen}, x, dropout=hp["dropout"], key=jax.random.fold_in(k, 1))
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return ce + hp["l2"] * _kernel_l2(t), ce

    (_, ce), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    outs = [opt.update(grads, s, trainable) for opt, s in zip(_optimizers(opt_names), opt_state, strict=True)]
    update = jax.tree.map(lambda *u: -hp["learning_rate"] * jax.lax.select_n(hp["optimizer"], *u),
                          *[u for u, _ in outs])
    new_state = tuple(s for _, s in outs)
    return {**optax.apply_updates(trainable, update), **frozen}, new_state, ce


@partial(jax.jit, static_argnames=("forward", "opt_names", "batch_size", "steps"))
def train_steps(forward: Forward, params: Params, opt_state: tuple, hp: Mapping[str, Array], keys: PRNGKey,
                perms: Array, sizes: Array, images: Array, labels: Array, first_step: Array, *,
                opt_names: tuple[str, ...], batch_size: int, steps: int):
    """``steps`` steps of every network (stacked ``[n, ...]``) at once; returns (params, state, mean CE ``[n]``)."""
    chex.assert_rank(perms, 2)
    step = jax.vmap(partial(_net_step, forward, opt_names, images, labels, batch_size),
                    in_axes=(0, 0, 0, 0, 0, 0, None))

    def body(carry, s):
        p, o = carry
        p, o, ce = step(p, o, hp, keys, perms, sizes, s)
        return (p, o), ce

    (params, opt_state), ces = jax.lax.scan(body, (params, opt_state), first_step + jnp.arange(steps))
    return params, opt_state, ces.mean(0)


@partial(jax.jit, static_argnames=("forward", "block"))
def evaluate_networks(forward: Forward, params: Params, images: Array, labels: Array, idx: Array,
                      weights: Array, *, block: int) -> tuple[Array, Array]:
    """Weighted accuracy and CE ``[n]`` of each network on its own images ``images[idx[n]]``.

    ``idx``/``weights`` are ``[n, E]`` with ``E`` a multiple of ``block`` (images per inner step).
    """
    n, e = idx.shape
    idx_b = idx.reshape(n, e // block, block).swapaxes(0, 1)
    w_b = weights.reshape(n, e // block, block).swapaxes(0, 1)

    def one_block(carry, xs):
        i, w = xs
        logits = jax.vmap(lambda p, j: forward(p, images[j]))(params, i)
        y = labels[i]
        correct = (jnp.argmax(logits, -1) == y) * w
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y) * w
        return (carry[0] + correct.sum(1), carry[1] + ce.sum(1)), None

    zeros = jnp.zeros((n,))
    (correct, ce), _ = jax.lax.scan(one_block, (zeros, zeros), (idx_b, w_b))
    total = jnp.maximum(weights.sum(1), 1.0)
    return correct / total, ce / total


def _padded_eval_indices(count: int, per_net: Array | None, sizes: Array | None, block: int, n: int):
    """``[n, E]`` image indices and weights, ``E`` rounded up to ``block``."""
    e = -(-count // block) * block
    pos = jnp.arange(e)
    if per_net is None:  # the shared test images
        return jnp.broadcast_to(jnp.minimum(pos, count - 1), (n, e)), jnp.broadcast_to(pos < count, (n, e)).astype(
            jnp.float32)
    idx = per_net[:, jnp.minimum(pos, per_net.shape[1] - 1)]
    return idx, ((pos[None] < sizes[:, None]) & (pos[None] < count)).astype(jnp.float32)


def train_network_chunk(
    forward: Forward,
    params: Params,
    hp: Mapping[str, Array],
    keys: PRNGKey,
    data: TrainingData,
    cfg: CNNTraining,
    *,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Train stacked networks ``[n, ...]`` and record every checkpoint epoch (``progress``: a bar
    over the epochs).

    Returns ``params/<tensor>`` ``[n, C, ...]``, metrics ``[n, C]`` (``C = len(cfg.epochs)``) and
    ``diverged`` ``[n]``: a network whose loss or weights became NaN/inf at any point.
    """
    n = int(keys.shape[0])
    pool = len(data.train_images)
    images, labels = jnp.asarray(data.train_images), jnp.asarray(data.train_labels)
    test_x, test_y = jnp.asarray(data.test_images), jnp.asarray(data.test_labels)
    perms = jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(k, 7), pool))(keys).astype(jnp.int32)
    sizes = jnp.maximum(jnp.round(hp["train_fraction"] * pool), 1).astype(jnp.int32)
    steps_per_epoch = -(-pool // cfg.batch_size)
    opt_names = tuple(cfg.optimizers)
    opt_state = jax.vmap(lambda p: init_opt_state(p, opt_names))(params)
    block = min(cfg.eval_block, max(len(test_x), 1))
    train_idx, train_w = _padded_eval_indices(min(cfg.train_eval_size, pool), perms, sizes, block, n)
    test_idx, test_w = _padded_eval_indices(len(test_x), None, None, block, n)
    eval_forward = partial(_eval_forward, forward)

    ckpts, metrics = [], {m: [] for m in METRICS}
    finite = jnp.ones((n,), bool)
    epoch = 0
    bar = progress_bar(total=cfg.epochs[-1], desc=f"epochs of {n} CNNs", unit="epoch", leave=False,
               disable=not (progress and is_main_process()))
    for target in cfg.epochs:
        while epoch < target:
            params, opt_state, ce = train_steps(
                forward, params, opt_state, hp, keys, perms, sizes, images, labels,
                jnp.asarray(epoch * steps_per_epoch), opt_names=opt_names, batch_size=cfg.batch_size,
                steps=steps_per_epoch)
            finite &= jnp.isfinite(ce)
            epoch += 1
            bar.update(1)
        tr_acc, tr_loss = evaluate_networks(eval_forward, params, images, labels, train_idx, train_w, block=block)
        te_acc, te_loss = evaluate_networks(eval_forward, params, test_x, test_y, test_idx, test_w, block=block)
        for name, value in zip(METRICS, (tr_acc, tr_loss, te_acc, te_loss), strict=True):
            metrics[name].append(np.asarray(value))
        ckpts.append({k: np.asarray(v) for k, v in flatten_params(params).items()})
    bar.close()
    out = {f"params/{k}": np.stack([c[k] for c in ckpts], axis=1) for k in ckpts[0]}
    out.update({m: np.stack(v, axis=1).astype(np.float32) for m, v in metrics.items()})
    diverged = ~np.asarray(finite)
    for v in out.values():
        if np.issubdtype(v.dtype, np.floating):
            diverged |= ~np.isfinite(v.reshape(n, -1)).all(1)
    out["diverged"] = diverged
    return out


def _eval_forward(forward: Forward, params: Params, x: Array) -> Array:
    return forward(params, x)


# ----------------------------------------------------------------------------- zoo assembly


def network_splits(num_networks: int, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Network ids per split (train/val/test), from a seeded permutation of all ids.

    Every split with a positive fraction gets at least one network when there are enough.
    """
    perm = np.random.default_rng([seed, 1]).permutation(num_networks)
    frac = np.asarray(fractions, float) / np.sum(fractions)
    counts = np.round(frac * num_networks).astype(int)
    counts[0] = num_networks - counts[1:].sum()
    for i in np.flatnonzero((counts == 0) & (frac > 0)):
        if counts.max() > 1:
            counts[np.argmax(counts)] -= 1
            counts[i] += 1
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return {s: np.sort(perm[bounds[i]:bounds[i + 1]]) for i, s in enumerate(("train", "val", "test"))}


def checkpoint_members(
    merged: Mapping[str, np.ndarray], arch: Arch, epochs: Sequence[int], net_splits: Mapping[str, np.ndarray],
    hparam_names: Sequence[str],
) -> tuple[Params, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """(params, targets, splits, diverged ids) with one member per (kept network, checkpoint)."""
    keep = ~merged["diverged"].astype(bool)
    ids = merged["network"]
    c = len(epochs)
    n_kept = int(keep.sum())

    def members(a):  # [n, C, ...] -> [n_kept * C, ...]
        a = a[keep]
        return a.reshape(n_kept * c, *a.shape[2:])

    flat = {k[len("params/"):]: members(v) for k, v in merged.items() if k.startswith("params/")}
    params = arch.unflatten(flat, where="CNN zoo chunks")
    network = np.repeat(ids[keep], c)
    targets = {"network": network.astype(np.int64), "epoch": np.tile(np.asarray(epochs, np.int32), n_kept)}
    targets.update({m: members(merged[m]) for m in METRICS})
    targets.update({h: np.repeat(merged[f"hp/{h}"][keep], c) for h in hparam_names})
    splits = {s: np.flatnonzero(np.isin(network, v)) for s, v in net_splits.items()}
    return params, targets, splits, ids[~keep]


def _generate(
    kind: str, cfg: Any, num_networks: int, chunk_size: int,
    make_chunk: Callable[[np.ndarray], dict[str, np.ndarray]], out: str | os.PathLike | None, progress: bool,
) -> tuple[list[dict[str, np.ndarray]], Timing]:
    """Run ``make_chunk(network ids)`` per chunk (resumable when ``out`` is given); returns the
    chunks and the time the run took."""
    num_chunks = -(-num_networks // chunk_size)

    def chunk(c: int) -> dict[str, np.ndarray]:
        ids = np.arange(c * chunk_size, min((c + 1) * chunk_size, num_networks))
        return {**make_chunk(ids), "network": ids}

    plan = {"generator": kind, "config": dataclasses.asdict(cfg)}
    work_dir = work_dir_for(out) if out is not None else None
    stopwatch = Stopwatch(time_spent_before(work_dir))
    chunks = run_chunks_on_processes(work_dir, plan, num_chunks, chunk, desc=f"training {kind} CNNs",
                                     progress=progress)
    return chunks, stopwatch.elapsed()


def _pad_ids(ids: np.ndarray, size: int) -> np.ndarray:
    """Pad a chunk's ids to ``size`` (repeating the first) so every chunk has one compiled shape."""
    return np.concatenate([ids, np.full(size - len(ids), ids[0])]) if len(ids) < size else ids


def make_small_cnn_zoo(
    cfg: SmallCNNZooConfig,
    out: str | os.PathLike | None = None,
    *,
    data: ImageDataset | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Zoo:
    """Train a small CNN zoo; with ``out``, chunks are kept beside it (resumable) and the zoo saved there."""
    tcfg = cfg.training
    data = data if data is not None else load_dataset(tcfg.dataset, data_dir)
    tdata = training_data(data, tcfg, cfg.seed)
    activation = tcfg.activations[0] if len(tcfg.activations) == 1 else tuple(tcfg.activations)
    padding = protocol_padding(tdata.image_shape, cfg.padding)
    arch = make_arch("small_cnn", input_shape=tdata.image_shape, channels=cfg.channels,
                     num_classes=data.num_classes, activation=activation, padding=padding["padding"])
    layers = conv_layers_of(arch)
    shapes = conv_stack_shapes(layers, tdata.image_shape[-1], data.num_classes)
    forward = partial(conv_stack_apply, layers=layers)

    def init(key: PRNGKey, hp: Mapping[str, Array]) -> Params:
        params = conv_stack_init(jax.random.fold_in(key, 3), shapes, hp["init_std"])
        if not isinstance(activation, str):
            params[ACTIVATION_LEAF] = hp["activation"].astype(jnp.int32)
        return params

    def make_chunk(ids: np.ndarray) -> dict[str, np.ndarray]:
        keys = network_keys(cfg.seed, _pad_ids(ids, cfg.chunk_size))
        hp = jax.vmap(lambda k: sample_hparams(jax.random.fold_in(k, 1), tcfg))(keys)
        params = jax.vmap(init)(keys, hp)
        result = train_network_chunk(forward, params, hp, keys, tdata, tcfg, progress=progress)
        result.update({f"hp/{k}": np.asarray(v) for k, v in hp.items()})
        return {k: v[: len(ids)] for k, v in result.items()}

    chunks, timing = _generate("small_cnn", cfg, cfg.num_networks, cfg.chunk_size, make_chunk, out, progress)
    merged = concat_chunks(chunks)
    splits = network_splits(cfg.num_networks, cfg.split_fractions, cfg.seed)
    params, targets, member_splits, diverged = checkpoint_members(
        merged, arch, tcfg.epochs, splits, ("activation", "optimizer", "init_std", "l2", "dropout",
                                            "learning_rate", "train_fraction"))
    zoo = Zoo(arch=arch, params=params, targets=targets, splits=member_splits,
              meta={**zoo_meta("small_cnn", cfg, tcfg, tdata, data, merged, diverged, timing), "padding": padding})
    if out is not None:
        save_zoo(zoo, out, overwrite=Path(out).exists())
        remove_work_dir(work_dir_for(out))
    return zoo


def zoo_meta(kind: str, cfg: Any, tcfg: CNNTraining, tdata: TrainingData, data: ImageDataset,
             merged: Mapping[str, np.ndarray], diverged: np.ndarray, timing: Timing) -> dict[str, Any]:
    """The JSON record of a CNN zoo: config, code books of categorical targets, divergence, timing."""
    final = merged["test_accuracy"][~merged["diverged"].astype(bool), -1]
    return {
        "generator": kind,
        "config": dataclasses.asdict(cfg),
        "dataset": data.name,
        "class_names": list(data.class_names),
        "image_shape": list(tdata.image_shape),
        "test_images": len(tdata.test_labels),
        "epochs": list(tcfg.epochs),
        "codes": {"activation": list(tcfg.activations), "optimizer": list(tcfg.optimizers)},
        "default_target": "test_accuracy",
        "num_networks": len(merged["network"]),
        "diverged": {"count": len(diverged), "networks": [int(i) for i in diverged]},
        "final_test_accuracy": {"mean": float(np.mean(final)) if final.size else float("nan"),
                                "min": float(np.min(final)) if final.size else float("nan"),
                                "max": float(np.max(final)) if final.size else float("nan")},
        **timing.as_meta(),
    }


# ----------------------------------------------------------------------------- training given networks


def zoo_training_data(zoo: Any, data_dir: str | os.PathLike | None = None) -> TrainingData:
    """The images a generated CNN zoo was trained and scored on (same pool and test part)."""
    config = zoo.meta.get("config", {})
    if "training" not in config or "dataset" not in zoo.meta:
        raise ValueError("zoo meta has no CNN training record; it was not made by `zoo make small-cnn`/`wild-cnn`")
    tcfg = CNNTraining(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["training"].items()})
    return training_data(load_dataset(zoo.meta["dataset"], data_dir), tcfg, int(config.get("seed", 0)))


def finetune_networks(
    arch: Arch,
    params: Params,
    data: TrainingData,
    *,
    epochs: Sequence[int] = (0, 1, 2, 3),
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    seed: int = 0,
    batch_size: int = 32,
) -> dict[str, np.ndarray]:
    """Train given stacked conv-stack networks ``[n, ...]`` on the whole pool with one fixed setting
    (no dropout or L2), all at once; metrics ``[n, len(epochs)]`` at each listed epoch and ``diverged``."""
    n = int(jax.tree.leaves(params)[0].shape[0])
    tcfg = CNNTraining(dataset=data.name, epochs=tuple(epochs), batch_size=batch_size, optimizers=(optimizer,))
    hp = {"optimizer": jnp.zeros((n,), jnp.int32), "dropout": jnp.zeros((n,)), "l2": jnp.zeros((n,)),
          "learning_rate": jnp.full((n,), learning_rate), "train_fraction": jnp.ones((n,))}
    forward = partial(conv_stack_apply, layers=conv_layers_of(arch))
    out = train_network_chunk(forward, params, hp, network_keys(seed, np.arange(n)), data, tcfg)
    return {k: v for k, v in out.items() if not k.startswith("params/")}
