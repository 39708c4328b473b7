"""The method contract: every method is one ``Method`` of pure functions, registered by name.

    run = train("probegen", zoo, cfg=TrainConfig(epochs=10))    # any registered method
    evaluate(run, zoo, "test")                                  # metrics on a split
    predict(run, zoo)                                           # one prediction per member

A method turns a zoo's members into predictions in three pure steps, each state in, state out:

- ``prepare(spec, zoo, train_indices, train_targets, task) -> constants``: what the method fixes from the training
  split before training (feature standardisation, say); a pytree of arrays saved with the run, so
  a run predicts on new networks without its training zoo;
- ``learner(spec, zoo, task, constants) -> Learner``: the pure ``init``/``apply`` pair trained by
  the one loop (``training.loop.fit``); the zoo gives only its architectures here;
- ``inputs(spec, zoo, indices) -> pytree``: what ``apply`` reads of members ``indices`` (their
  params by default; fixed features for feature baselines; one layer's matrix for ProbeX).

A method may settle settings left open by training candidates first (``resolve``: ProbeX picks its
layer on validation), and a method that is not trained by gradient steps alone (gradient-boosted
trees, SANE's autoencoder plus a ridge probe) gives its own ``fit``. The next method is one new module: a spec dataclass, these
functions and one ``register`` call.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from probegen_jax.errors import MissingSplitError, ShapeMismatchError, ZooKindError
from probegen_jax.methods.registry import FitRequest, Method, get_method, make_spec, methods
from probegen_jax.methods.run import Run, finished_run, save_run, zoo_fingerprint
from probegen_jax.training.learner import Learner
from probegen_jax.training.loop import Optimizer, TrainConfig, TrainResult, evaluate as evaluate_params, fit
from probegen_jax.training.loop import predict as predict_params
from probegen_jax.stored import in_memory
from probegen_jax.training.tasks import task_for
from probegen_jax.zoo.zoo import SPLITS, at_epoch, empty_splits, splits_set_by, task_defaults

SMALL_SPLIT = 20  # fewer networks than this in a split make its metrics mostly noise
FLAT_SPREAD = 0.05  # regression predictions whose std is below this share of the targets' are near constant


def spec_with_zoo_defaults(spec: Any, zoo: Any) -> Any:
    """``spec`` with settings left ``None`` that the zoo has a default for (``response``) filled in."""
    defaults = dataclasses.asdict(task_defaults(zoo))
    unset = {f.name: defaults[f.name] for f in dataclasses.fields(spec)
             if getattr(spec, f.name) is None and f.name in defaults}
    return dataclasses.replace(spec, **unset) if unset else spec


# ----------------------------------------------------------------------------- one training call


def split_members(zoo: Any, split: str) -> np.ndarray:
    """A split's members, grouped by architecture bucket (stable), so batches touch few buckets."""
    idx = zoo.indices(split)
    return idx[np.argsort(zoo.buckets_of(idx), kind="stable")]


def warn_small_splits(zoo: Any) -> None:
    small = {s: len(v) for s, v in zoo.splits.items() if s in SPLITS and 0 < len(v) < SMALL_SPLIT}
    if small:
        warnings.warn(f"zoo splits with fewer than {SMALL_SPLIT} networks: {small}; their metrics are mostly noise",
                      stacklevel=3)


def trained_splits(zoo: Any, method: str, zoo_path: str | None = None) -> list[str]:
    """The splits ``train`` uses: train and val, refused when empty (``MissingSplitError`` naming
    the option that sets them), and test unless empty (a warning when it is there but empty)."""
    where = f"zoo {zoo_path}" if zoo_path else "the zoo"
    empty = empty_splits(zoo)
    for split, role in (("train", "trains on"), ("val", "selects its best epoch on")):
        if split in empty:
            raise MissingSplitError(f"{where}: split {split!r} is empty ({len(zoo)} networks, splits "
                                    f"{ {s: len(v) for s, v in zoo.splits.items()} }); {method} {role} it; "
                                    f"the splits are set by {splits_set_by(zoo.meta)}")
    if "test" in empty and "test" in zoo.splits:
        warnings.warn(f"{where}: split 'test' is empty, so no test metrics are reported; the splits are set by "
                      f"{splits_set_by(zoo.meta)}", stacklevel=3)
    return [s for s in SPLITS if s not in empty]


def select_checkpoint(zoo: Any, checkpoint: str | int | None) -> tuple[Any, str | int]:
    """The zoo at one checkpoint per network (``None``: the zoo's default) and the choice made."""
    if "epoch" not in zoo.targets:
        return zoo, "all"
    checkpoint = task_defaults(zoo).checkpoint if checkpoint is None else checkpoint
    checkpoint = int(checkpoint) if str(checkpoint).isdigit() else checkpoint
    return at_epoch(zoo, checkpoint), checkpoint


def _train_with_loop(request: FitRequest) -> TrainResult:
    return fit(request.learner, request.task, request.splits, request.cfg, **request.options)


def train(
    method: str | Method, zoo: Any, spec: Any = None, cfg: TrainConfig | None = None, *,
    target: str | None = None, checkpoint: str | int | None = None, optimizer: Optimizer | None = None,
    out: str | None = None, checkpoint_dir: str | None = None, mesh: Any = None, progress: bool = True,
    zoo_path: str | None = None, desc: str | None = None, recipe: str | None = None,
) -> Run:
    """Train ``method`` on ``zoo``'s train split, select on val, report test; returns the ``Run``.

    ``target``, ``checkpoint`` (one per network: ``final``, ``all`` or an epoch) and settings the
    spec leaves ``None`` (probing's ``response``) default to the zoo's ``task_defaults``, the same
    for the Python API and the command line; ``cfg`` to the method's ``train_config``, or to the
    named ``recipe`` (``training.recipes``: "default", "official", ...).
    ``optimizer`` is any optax ``GradientTransformation`` (default: the one ``cfg`` names).
    With ``out`` the run is saved there (checkpoints in ``out/checkpoints``, so an interrupted run
    resumes); a run already finished there with the same settings is loaded, not trained again,
    and one with other settings is refused.
    """
    from probegen_jax.methods.probing.hetero import bucket_batch_order

    from probegen_jax.training.recipes import augmenter_for, recipe_config

    method = get_method(method)
    if recipe is not None and cfg is not None:
        raise ValueError("give cfg or recipe, not both (change a recipe with dataclasses.replace(recipe_config(...)))")
    cfg = recipe_config(method, recipe) if recipe is not None else method.train_config if cfg is None else cfg
    if zoo.packs_inputs and not method.heterogeneous:
        raise ZooKindError(f"method {method.name!r} needs a zoo of one architecture; for heterogeneous zoos "
                               f"use one of {[m.name for m in methods().values() if m.heterogeneous]}")
    zoo, checkpoint = select_checkpoint(zoo, checkpoint)
    zoo = readable_by(method, zoo)
    target = target or task_defaults(zoo).target
    spec = requested = spec_with_zoo_defaults(make_spec(method, spec), zoo)
    fingerprint = zoo_fingerprint(zoo, zoo_path, custom_optimizer=optimizer is not None)
    if out is not None:
        done = finished_run(out, method.name, requested, cfg, target, checkpoint, fingerprint, zoo)
        if done is not None:
            return done
        checkpoint_dir = checkpoint_dir or str(Path(out) / "checkpoints")
    used = trained_splits(zoo, method.name, zoo_path)
    warn_small_splits(zoo)
    task = task_for(zoo, target)
    y = zoo.target(target)
    members = {s: split_members(zoo, s) for s in used}
    if method.resolve is not None:
        spec = method.resolve(spec, zoo, target, task, cfg, progress)
    constants = method.prepare(spec, zoo, members["train"], y[members["train"]], task)
    learner = method.learner(spec, zoo, task, constants)
    splits = {s: (method.inputs(spec, zoo, idx), y[idx]) for s, idx in members.items()}
    # stored rows of the train split are read once, where fit places them (each process its own);
    # the evaluated splits are read now, once, rather than at every evaluation
    splits = {s: (x if s == "train" and mesh is not None else in_memory(x), y) for s, (x, y) in splits.items()}
    options: dict[str, Any] = dict(checkpoint_dir=checkpoint_dir, mesh=mesh, progress=progress, desc=desc or method.name,
                                   optimizer=optimizer)
    if cfg.augment is not None:
        options["augment"] = augmenter_for(method, zoo, cfg.augment)
    fit_cfg, buckets = cfg, zoo.buckets_of(members["train"])
    if len(np.unique(buckets)) > 1:  # bucket-homogeneous batches; small eval blocks touch few buckets
        options["order_fn"] = bucket_batch_order(buckets)
        fit_cfg = dataclasses.replace(cfg, eval_batch_size=min(cfg.eval_batch_size, cfg.batch_size))
    result = (method.fit or _train_with_loop)(FitRequest(learner, task, splits, fit_cfg, options, spec, zoo, constants))
    val_inputs, val_targets = splits["val"]
    warn_if_unlearnt(method.name, result, predict_params(learner.apply, result.params, val_inputs, mesh=mesh,
                                                         batch_size=cfg.eval_batch_size), val_targets, task, cfg)
    run = Run(method=method.name, spec=spec, task=task, target=target, checkpoint=checkpoint, params=result.params,
              constants=constants, result=result, train_config=cfg, zoo=fingerprint, requested=requested)
    if out is not None:
        save_run(run, out)
    return run


def warn_if_unlearnt(method: str, result: TrainResult, predictions: np.ndarray, targets: np.ndarray, task: Any,
                     cfg: TrainConfig) -> None:
    """Warn where a run looks stopped before it learnt: its predictions on val with almost no
    spread (one class for every network; a regression spread under ``FLAT_SPREAD`` of the
    targets'), or its best validation epoch the last of three or more evaluations."""
    reasons = []
    if task.name in ("classification", "zero_shot") and len(predictions) > 1 and \
            len(np.unique(np.argmax(predictions, -1))) == 1:
        reasons.append("it predicts one class for every val network")
    elif task.name == "regression" and len(predictions) > 1:
        spread, wanted = float(np.std(predictions)), float(np.std(targets))
        if wanted > 0 and spread < FLAT_SPREAD * wanted:
            reasons.append(f"its predictions on val are almost constant (std {spread:.3g}, the targets' {wanted:.3g})")
    evaluated = [h.get("epoch") for h in result.history]
    if len(evaluated) >= 3 and result.best_epoch == evaluated[-1]:
        reasons.append(f"its best validation epoch is the last ({result.best_epoch + 1} of {cfg.epochs}): it was "
                       "still improving")
    if reasons:
        warnings.warn(f"{method}: {'; '.join(reasons)}; it may have stopped before it learnt: train longer (epochs, "
                      f"now {cfg.epochs}) or faster (learning rate, now {cfg.learning_rate:g})", stacklevel=3)


# ----------------------------------------------------------------------------- any run, any zoo


def readable_by(method: Method, zoo: Any) -> Any:
    """``zoo`` as ``method`` reads it: with every param read unless the method takes stored rows."""
    return zoo if method.reads_stored_rows else zoo.in_memory()


def rebuild(run: Run, zoo: Any) -> tuple[Method, Learner]:
    """The method and learner of ``run`` on ``zoo``'s architectures; a zoo whose architectures
    give the learner other params than the run's is refused, naming both architectures."""
    method = get_method(run.method)
    learner = method.learner(run.spec, zoo, run.task, run.constants)
    misfit = params_misfit(jax.eval_shape(learner.init, jax.random.key(0)), run.params)
    if misfit:
        trained = ", ".join(describe_arch(a) for a in run.zoo.get("archs", [])) if isinstance(run.zoo, dict) else "?"
        raise ShapeMismatchError(f"the zoo's networks ({', '.join(describe_arch(a.spec()) for a in zoo.archs)}) do "
                                 f"not fit this {run.method} run, trained on networks of {trained}: {misfit}; "
                                 "give a zoo of the architecture the run was trained on (for probing methods: the "
                                 "same input shape and number of outputs)")
    return method, learner


def describe_arch(spec: dict[str, Any]) -> str:
    """An architecture's name and settings, as one short phrase."""
    config = ", ".join(f"{k}={v}" for k, v in spec.get("config", {}).items())
    return f"{spec['name']}({config})"[:200]


def params_misfit(expected: Any, params: Any) -> str:
    """Where ``params`` differ in structure or shape from ``expected`` (abstract arrays), said in
    a phrase; empty when they fit."""
    def shapes(tree: Any) -> dict[str, tuple[int, ...]]:
        return {jax.tree_util.keystr(path, simple=True, separator="/"): tuple(np.shape(a))
                for path, a in jax.tree_util.tree_flatten_with_path(tree)[0]}

    got, want = shapes(params), shapes(expected)
    for name in want:
        if name not in got:
            return f"{name}, which these networks need, is not in the run"
        if got[name] != want[name]:
            return f"{name} is {list(got[name])} in the run, {list(want[name])} for these networks"
    extra = sorted(set(got) - set(want))
    return f"the run holds {extra[0]}, which these networks do not use" if extra else ""


def predict(run: Run, zoo: Any, *, indices: np.ndarray | None = None, batch_size: int = 256,
            mesh: Any = None) -> np.ndarray:
    """``run``'s predictions ``[N, outputs]`` for ``zoo``'s members (or ``indices`` of them), in the
    zoo's order. ``zoo`` may be any zoo of the run's architecture(s), including new networks
    (``Zoo(arch, params, {})``); no checkpoint selection is applied to it."""
    method, learner = rebuild(run, zoo)
    zoo = readable_by(method, zoo)
    indices = np.arange(len(zoo)) if indices is None else np.asarray(indices)
    return predict_params(learner.apply, run.params, method.inputs(run.spec, zoo, indices), batch_size=batch_size,
                          mesh=mesh)


def evaluate(run: Run, zoo: Any, split: str = "test", *, batch_size: int = 256, mesh: Any = None
             ) -> dict[str, float]:
    """``run``'s task metrics on one split of ``zoo`` (at the run's checkpoint choice)."""
    zoo, _ = select_checkpoint(zoo, run.checkpoint)
    method, learner = rebuild(run, zoo)
    zoo = readable_by(method, zoo)
    idx = split_members(zoo, split)
    if not len(idx):
        raise MissingSplitError(f"split {split!r} of the zoo is empty: no metrics to compute; the splits are set by "
                                f"{splits_set_by(zoo.meta)}")
    data = (method.inputs(run.spec, zoo, idx), zoo.target(run.target)[idx])
    return evaluate_params(learner, run.task, run.params, data, batch_size=batch_size, mesh=mesh)
