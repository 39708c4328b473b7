"""The one training loop every method uses.

optax (Adam or AdamW, optionally AMSGrad; cosine decay stepped every iteration, constant or
one-cycle, after an optional linear warm-up; optional gradient-norm clipping), batches of networks
(optionally augmented in weight space, with head dropout and label smoothing: ``training.recipes``),
an epoch as one jit-compiled ``lax.scan``, evaluation on val, the best-val params kept and test
reported at them, checkpoints (``training.checkpoints``) after every evaluation, and resumption that gives the same
final result as an uninterrupted run (batch order depends only on seed and epoch).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from probegen_jax.errors import MissingSplitError, ShapeMismatchError
from probegen_jax.training.checkpoints import CheckpointManager
from probegen_jax.training.learner import Learner
from probegen_jax.progress import progress as progress_bar
from probegen_jax.parallel import (
    is_main_process,
    map_in_blocks,
    place_blocks,
    place_on_mesh,
    platform_of,
    replicated,
    shard_zoo,
    to_host,
    zoo_sharding,
)
from probegen_jax.training.tasks import Task
from probegen_jax.tracing import contains_convolution
from probegen_jax.types import Array, Params, PyTree
from probegen_jax.weightspace.augment import Augmenter, WeightAugment

Split = tuple[PyTree, np.ndarray]  # (inputs with a leading axis N, targets [N, ...])


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (ProbeGen's defaults)."""

    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 3e-4
    schedule: str = "cosine"  # cosine | constant | onecycle
    optimizer: str = "adam"  # adam (weight_decay = coupled L2) | adamw (decoupled)
    weight_decay: float = 0.0
    eval_every: int = 1
    eval_batch_size: int = 256
    seed: int = 0
    # settings of the reference recipes (``training.recipes``); at their defaults a run is as before
    amsgrad: bool = False  # AMSGrad's running maximum of the second moment (adam or adamw)
    warmup_steps: int = 0  # learning rate rising linearly from lr / warmup_steps, then the schedule
    clip_norm: float = 0.0  # clip gradients to this global norm (0: no clipping)
    dropout: float = 0.0  # rate on the head's hidden units in training (``Learner.apply_train``)
    label_smoothing: float = 0.0  # classification targets (1 - s) one-hot + s / classes
    steps: int = 0  # > 0: this many optimiser steps (whole epochs, rounded up) instead of ``epochs``
    augment: WeightAugment | None = None  # weight-space augmentation of each training batch
    recipe: str = "default"  # the named recipe these settings came from


RECIPE_FIELDS = ("amsgrad", "warmup_steps", "clip_norm", "dropout", "label_smoothing", "steps", "augment", "recipe")


def config_record(cfg: Any) -> dict[str, Any]:
    """``cfg`` as JSON; of a ``TrainConfig``, the recipe settings left out where at their defaults,
    so runs and checkpoints written before recipes existed compare equal to the same settings now."""
    record = dataclasses.asdict(cfg)
    if isinstance(cfg, TrainConfig):
        default = TrainConfig()
        record = {k: v for k, v in record.items() if k not in RECIPE_FIELDS or getattr(cfg, k) != getattr(default, k)}
    return record


def config_from_record(record: Mapping[str, Any]) -> TrainConfig:
    """The ``TrainConfig`` ``config_record`` wrote (a record without recipe settings: the defaults)."""
    return TrainConfig(**{**record, "augment": WeightAugment.from_record(record.get("augment"))})


class TrainState(NamedTuple):
    params: Params
    opt_state: optax.OptState


@dataclasses.dataclass
class TrainResult:
    params: Params  # at the best validation epoch
    best_epoch: int
    val: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, float]]
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "val": self.val, "test": self.test,
                "history": self.history, "seconds": self.seconds}


Optimizer = optax.GradientTransformation | Callable[[int], optax.GradientTransformation]


def resolve_optimizer(optimizer: Optimizer | None, cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The optimiser ``fit`` runs: ``optimizer`` itself, or called with the run's total step count
    (for schedules), or by default the one ``cfg`` names (``make_optimizer``)."""
    if optimizer is None:
        return make_optimizer(cfg, total_steps)
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if callable(optimizer):
        return optimizer(total_steps)
    raise TypeError(f"optimizer: expected an optax GradientTransformation or a function of the total step "
                    f"count returning one, got {type(optimizer).__name__}")


def learning_rate_schedule(cfg: TrainConfig, total_steps: int) -> optax.Schedule:
    """``cfg``'s schedule over ``total_steps``; with ``warmup_steps`` the rate first rises linearly
    (step ``k`` at ``lr * (k + 1) / warmup_steps``, as the neural-graphs ``WarmupLRScheduler``) and
    the schedule runs over the steps after it."""
    steps = max(total_steps - cfg.warmup_steps, 1)
    schedules = {
        "cosine": lambda: optax.cosine_decay_schedule(cfg.learning_rate, steps),
        "constant": lambda: optax.constant_schedule(cfg.learning_rate),
        "onecycle": lambda: optax.cosine_onecycle_schedule(steps, cfg.learning_rate),
    }
    if cfg.schedule not in schedules:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; available: {sorted(schedules)}")
    if not cfg.warmup_steps:
        return schedules[cfg.schedule]()
    warmup = optax.linear_schedule(cfg.learning_rate / cfg.warmup_steps, cfg.learning_rate, cfg.warmup_steps - 1)
    return optax.join_schedules([warmup, schedules[cfg.schedule]()], [cfg.warmup_steps])


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """``cfg``'s optimiser: Adam (``weight_decay``: coupled L2, as ``torch.optim.Adam``) or AdamW
    (decoupled), AMSGrad's moment where asked, after gradient-norm clipping where asked."""
    lr = learning_rate_schedule(cfg, total_steps)
    if cfg.optimizer not in ("adam", "adamw"):
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; available: ['adam', 'adamw']")
    if cfg.amsgrad:
        decay = [optax.add_decayed_weights(cfg.weight_decay)] if cfg.weight_decay else []
        moments = [optax.scale_by_amsgrad()]
        opt = optax.chain(*(decay + moments if cfg.optimizer == "adam" else moments + decay),
                          optax.scale_by_learning_rate(lr))
    elif cfg.optimizer == "adamw":
        opt = optax.adamw(lr, weight_decay=cfg.weight_decay)
    else:
        opt = optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.adam(lr)) if cfg.weight_decay \
            else optax.adam(lr)
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt) if cfg.clip_norm else opt


def _size(split: Split, name: str) -> int:
    inputs, targets = split
    sizes = {int(a.shape[0]) for a in jax.tree.leaves(inputs)}
    if len(sizes) != 1 or np.shape(targets)[0] not in sizes:
        raise ShapeMismatchError(
            f"split {name!r}: inputs and targets must share one leading size, got inputs {sorted(sizes)} "
            f"and targets {np.shape(targets)}"
        )
    return sizes.pop()


def predict(apply, params: Params, inputs: PyTree, *, batch_size: int = 256, mesh: Mesh | None = None) -> np.ndarray:
    """``apply(params, inputs)`` over a whole split, ``batch_size`` rows per device at a time (on a
    multi-process mesh every process gets the whole result)."""
    padded, n, devices, block = place_blocks(inputs, mesh, batch_size)
    if mesh is not None:
        params = place_on_mesh(params, replicated(mesh))
    return to_host(_predict_blocks(apply, params, padded, devices, block))[:n]


@partial(jax.jit, static_argnums=(0, 3, 4))
def _predict_blocks(apply, params, inputs, devices, block):
    return map_in_blocks(lambda x: apply(params, x), inputs, devices, block)


def evaluate(learner: Learner, task: Task, params: Params, split: Split, *, batch_size: int = 256,
             mesh: Mesh | None = None) -> dict[str, float]:
    """Task metrics of ``params`` on one split."""
    inputs, targets = split
    return task.evaluate(predict(learner.apply, params, inputs, batch_size=batch_size, mesh=mesh),
                         np.asarray(targets))


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimiser steps in one epoch of ``fit``: full batches only, the batch cut to ``n_train`` if larger."""
    return n_train // min(batch_size, n_train)


def batch_order(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
    """``[steps, batch_size]`` indices: a fresh permutation per epoch, remainder dropped."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    steps = n // batch_size
    return perm[: steps * batch_size].reshape(steps, batch_size)


Objective = Callable[[Params, PyTree, Array], Array]  # (params, batch, key) -> scalar loss


def prefers_scan(step: Callable, *args, platform: str, devices: int = 1) -> bool:
    """Whether ``step(*args)`` should run as one ``lax.scan`` per epoch rather than as a loop of
    compiled steps. A scan everywhere but on CPU for steps with a convolution, which XLA's CPU
    backend runs several times slower inside a loop body than at top level (the transposed ones of
    the image probe generator: 4.6x slower scanned), and on CPU meshes of several devices, whose
    cross-device reductions inside a loop body are slower still (50x a ProbeGen step on 2 simulated
    devices); elsewhere on CPU the scan is 1.2-2x faster."""
    if platform != "cpu":
        return True
    return devices == 1 and not contains_convolution(step, *args)


def _epoch_fn(objective: Objective, optimizer: optax.GradientTransformation, mesh: Mesh | None, seed: int,
              scan: bool | None):
    """``epoch(state, data, order [steps, B], epoch_index) -> (state, mean loss)``.

    With ``scan`` the epoch is one compiled ``lax.scan``; without, a Python loop of one compiled
    step; ``None`` picks by ``prefers_scan`` at the first call. Both compute the same steps with the
    same keys.
    """
    def step(data, state: TrainState, xs):
        idx, key = xs
        batch = jax.tree.map(lambda a: a[idx], data)
        if mesh is not None:  # data-parallel: each device takes its share of the batch
            batch = jax.lax.with_sharding_constraint(batch, zoo_sharding(mesh))
        loss, grads = jax.value_and_grad(objective)(state.params, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state), loss

    def step_keys(epoch_index: Array, steps: int) -> Array:
        return jax.random.split(jax.random.fold_in(jax.random.key(seed), epoch_index), steps)

    @partial(jax.jit, donate_argnums=(0,))
    def scanned_epoch(state: TrainState, data, order: Array, epoch_index: Array):
        state, losses = jax.lax.scan(partial(step, data), state, (order, step_keys(epoch_index, order.shape[0])))
        return state, jnp.mean(losses)

    one_step = jax.jit(step, donate_argnums=(1,))

    def looped_epoch(state: TrainState, data, order: Array, epoch_index: Array):
        keys = step_keys(epoch_index, order.shape[0])
        losses = []
        for i in range(order.shape[0]):
            state, loss = one_step(data, state, (order[i], keys[i]))
            losses.append(loss)
        return state, jnp.mean(jnp.stack(losses))

    if scan is not None:
        return scanned_epoch if scan else looped_epoch
    chosen: list[Callable] = []

    def epoch(state: TrainState, data, order: Array, epoch_index: Array):
        if not chosen:
            scanned = prefers_scan(step, data, state, (order[0], step_keys(epoch_index, 1)[0]),
                                   platform=platform_of(mesh), devices=1 if mesh is None else mesh.size)
            chosen.append(scanned_epoch if scanned else looped_epoch)
        return chosen[0](state, data, order, epoch_index)

    return epoch


def example_loss(task: Task, label_smoothing: float = 0.0) -> Callable[[Array, Array], Array]:
    """``(predictions [B, ...], targets [B, ...]) -> [B]``: ``task.loss`` of each example; with
    ``label_smoothing`` (classification) the cross-entropy against smoothed one-hot targets."""
    if not label_smoothing:
        return jax.vmap(lambda p, t: task.loss(p[None], t[None]))
    if task.name != "classification":
        raise ValueError(f"label smoothing needs a classification task, not {task.name!r}")
    return lambda logits, y: optax.softmax_cross_entropy(
        logits, optax.smooth_labels(jax.nn.one_hot(y, task.num_outputs), label_smoothing))


def supervised_objective(learner: Learner, task: Task, cfg: TrainConfig = TrainConfig(),
                         augment: Augmenter | None = None) -> Objective:
    """``task.loss(learner.apply(params, inputs), targets)`` for batches ``(inputs, targets)``.

    With a recipe's settings, from the step key: the batch goes through ``augment`` (MixUp's
    partner labels weighted in), the head drops units at ``cfg.dropout`` (``learner.apply_train``),
    and classification targets are smoothed by ``cfg.label_smoothing``.
    """
    if augment is None and not cfg.dropout and not cfg.label_smoothing:
        def objective(params: Params, batch: Split, key: Array) -> Array:
            inputs, targets = batch
            return task.loss(learner.apply(params, inputs), targets)

        return objective
    if cfg.dropout and learner.apply_train is None:
        raise ValueError(f"dropout {cfg.dropout}: this method's learner takes no dropout")
    loss = example_loss(task, cfg.label_smoothing)

    def recipe_objective(params: Params, batch: Split, key: Array) -> Array:
        inputs, targets = batch
        k_augment, k_dropout = jax.random.split(key)
        partner, weight = targets, None
        if augment is not None:
            inputs, targets, partner, weight = augment(k_augment, inputs, targets)
        pred = (learner.apply_train(params, inputs, k_dropout, cfg.dropout) if cfg.dropout
                else learner.apply(params, inputs))
        losses = loss(pred, targets)
        if weight is not None:
            losses = weight * losses + (1 - weight) * loss(pred, partner)
        return jnp.mean(losses)

    return recipe_objective


def epoch_function(learner: Learner, task: Task, optimizer: optax.GradientTransformation, mesh: Mesh | None = None,
                   *, seed: int = 0, scan: bool | None = None):
    """The compiled training epoch ``fit`` runs, ``epoch(state, (inputs, targets), order, epoch_index)``
    (for benchmarks); ``scan``: one ``lax.scan`` or a loop of compiled steps, by default chosen as
    ``fit`` does (``prefers_scan``)."""
    return _epoch_fn(supervised_objective(learner, task), optimizer, mesh, seed, scan)


def fit(
    learner: Learner,
    task: Task,
    splits: Mapping[str, Split],
    cfg: TrainConfig = TrainConfig(),
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    mesh: Mesh | None = None,
    progress: bool = True,
    desc: str = "training",
    order_fn: Callable[[int, int, int, int], np.ndarray] | None = None,
    optimizer: Optimizer | None = None,
    augment: Augmenter | None = None,
) -> TrainResult:
    """Train ``learner`` on ``splits["train"]``, select on ``"val"``, report ``"test"`` at the best val.

    Args:
      splits: ``{"train": (inputs, targets), "val": ..., "test": ...}``; inputs are pytrees with a
        leading axis (e.g. stacked zoo params). ``"test"`` is optional.
      checkpoint_dir: checkpoints after every evaluation (``training.checkpoints``); a run started again on the same
        directory with the same settings resumes from the last one.
      mesh: a ``zoo_mesh``: batches are split across its devices, params replicated.
      order_fn: ``(seed, epoch, n, batch_size) -> [steps, batch_size]`` train indices per step;
        default ``batch_order`` (e.g. bucket-homogeneous batches for heterogeneous zoos).
      optimizer: any optax ``GradientTransformation`` (e.g. ``optax.multi_transform`` for other
        rates per part, ``optax.chain(optax.clip_by_global_norm(1.0), ...)``), or a function of
        the total step count returning one; default: the one ``cfg`` names.
      augment: ``(key, inputs, targets) -> Augmented``, applied to every training batch from the
        step key (``weightspace.batch_augmenter`` of ``cfg.augment``).
    """
    for name in ("train", "val"):
        if name not in splits:
            raise MissingSplitError(f"fit needs a {name!r} split; got {sorted(splits)}")
    for name in splits:
        _size(splits[name], name)
    eval_kw = dict(batch_size=cfg.eval_batch_size, mesh=mesh)

    result = fit_objective(learner.init, supervised_objective(learner, task, cfg, augment), splits["train"],
                           lambda params: evaluate(learner, task, params, splits["val"], **eval_kw), task.select,
                           cfg, checkpoint_dir=checkpoint_dir, mesh=mesh, progress=progress, desc=desc,
                           order_fn=order_fn, optimizer=optimizer)
    if "test" in splits:
        result.test = evaluate(learner, task, result.params, splits["test"], **eval_kw)
    return result


def fit_objective(
    init: Callable[[Array], Params],
    objective: Objective,
    train_data: PyTree,
    validate: Callable[[Params], dict[str, float]],
    select: str,
    cfg: TrainConfig = TrainConfig(),
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    mesh: Mesh | None = None,
    progress: bool = True,
    desc: str = "training",
    order_fn: Callable[[int, int, int, int], np.ndarray] | None = None,
    optimizer: Optimizer | None = None,
) -> TrainResult:
    """The loop under ``fit``, for any objective: minimise ``objective(params, batch, key)`` over
    batches of ``train_data`` (a pytree with a leading example axis; ``key`` is fresh per step and
    depends only on seed, epoch and step), keep the params where ``validate(params)[select]`` is
    highest. ``test`` of the result is left empty."""
    sizes = {int(a.shape[0]) for a in jax.tree.leaves(train_data)}
    if len(sizes) != 1:
        raise ShapeMismatchError(f"train data: every leaf needs the same leading size, got {sorted(sizes)}")
    n_train = sizes.pop()
    batch_size = min(cfg.batch_size, n_train)
    if mesh is not None and batch_size % mesh.size:
        raise ValueError(f"batch size {batch_size} must be a multiple of the mesh's {mesh.size} devices")
    epochs = -(-cfg.steps // steps_per_epoch(n_train, batch_size)) if cfg.steps else cfg.epochs
    optimizer = resolve_optimizer(optimizer, cfg, steps_per_epoch(n_train, batch_size) * epochs)

    params = init(jax.random.key(cfg.seed))
    state = TrainState(params, optimizer.init(params))
    best = {"params": params, "epoch": -1, "val": {}, "score": -np.inf}
    history: list[dict[str, float]] = []
    start_epoch, elapsed = 0, 0.0
    manager = CheckpointManager(checkpoint_dir, config_record(cfg)) if checkpoint_dir is not None else None
    if manager is not None and manager.latest() is not None:
        state, best, history, start_epoch, elapsed = manager.restore(state)

    if mesh is None:
        train_data = jax.tree.map(jnp.asarray, train_data)
    else:  # restored arrays sit on one local device: placed as the same value in every process
        train_data, _ = shard_zoo(train_data, mesh)
        state = place_on_mesh(state, replicated(mesh))
    epoch_fn = _epoch_fn(objective, optimizer, mesh, cfg.seed, scan=None)
    started = time.perf_counter() - elapsed
    bar = progress_bar(range(start_epoch, epochs), desc=desc, disable=not (progress and is_main_process()), unit="epoch",
               initial=start_epoch, total=epochs)
    for epoch in bar:
        order = (order_fn or batch_order)(cfg.seed, epoch, n_train, batch_size)
        state, loss = epoch_fn(state, train_data, np.asarray(order), np.asarray(epoch))
        if (epoch + 1) % cfg.eval_every and epoch + 1 != epochs:
            continue
        val = validate(state.params)
        history.append({"epoch": epoch, "train_loss": float(loss), **{f"val_{k}": v for k, v in val.items()}})
        if val[select] > best["score"]:
            best = {"params": jax.tree.map(jnp.copy, state.params), "epoch": epoch, "val": val,
                    "score": val[select]}
        bar.set_postfix(loss=f"{float(loss):.4f}", **{select: f"{val[select]:.4f}"})
        if manager is not None:
            manager.save(epoch, state, best, history, time.perf_counter() - started)
    return TrainResult(to_host(best["params"]), best["epoch"], best["val"], {}, history,
                       round(time.perf_counter() - started, 3))
