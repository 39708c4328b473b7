"""A training run on disk: ``run.json`` (what was trained, on which zoo, the results) beside the
best-validation params (an orbax checkpoint), so a run can be evaluated or reused later."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from probegen_jax.errors import CheckpointError
from probegen_jax.io import load_pytree, read_json, save_pytree, write_json
from probegen_jax.training.learner import Learner
from probegen_jax.methods.probing.methods import ProbingSpec
from probegen_jax.training.tasks import Task, classification, regression
from probegen_jax.training.loop import TrainConfig, TrainResult, evaluate, fit
from probegen_jax.types import Params
from probegen_jax.zoo import Zoo
from probegen_jax.zoo.zoo import at_epoch
from probegen_jax.methods.probing.hetero import bucket_batch_order, hetero_probing_learner
from probegen_jax.zoo.hetero import HeteroZoo, load_any_zoo


def default_target(zoo: Zoo | HeteroZoo) -> str:
    """The zoo's own default target (``test_accuracy`` for CNN zoos), else ``label``."""
    return str(zoo.meta.get("default_target", "label"))


def default_response(zoo: Zoo | HeteroZoo) -> str:
    """``softmax`` for zoos of classifiers scored by accuracy (CNN zoos: their logit scales differ
    by orders of magnitude), else ``raw``."""
    output_dim = zoo.output_dim if isinstance(zoo, HeteroZoo) else zoo.arch.output_dim
    return "softmax" if "test_accuracy" in zoo.targets and output_dim > 1 else "raw"


def task_for(zoo: Zoo | HeteroZoo, target: str) -> Task:
    """Classification for integer targets (classes from the zoo's meta), regression otherwise."""
    y = zoo.target(target)
    if np.issubdtype(y.dtype, np.integer):
        return classification(int(zoo.meta.get("num_classes", int(y.max()) + 1)))
    return regression()


def probing_learner_for(zoo: Zoo | HeteroZoo, spec: ProbingSpec, num_outputs: int) -> Learner:
    """``spec``'s learner on ``zoo``; a heterogeneous zoo gets one that probes bucket by bucket."""
    if isinstance(zoo, HeteroZoo):
        source = spec.make_source(zoo.archs[0])
        return hetero_probing_learner(zoo, source, num_outputs, head_hidden=spec.head_hidden,
                                      head_layers=spec.head_layers, response=spec.response)
    return spec.make_learner(zoo.arch, num_outputs)[0]


def train_probing(
    zoo: Zoo | HeteroZoo, spec: ProbingSpec, cfg: TrainConfig, *, target: str = "label", checkpoint_dir=None,
    mesh=None, progress: bool = True,
) -> tuple[TrainResult, Learner, Task]:
    """Train a probing method (ProbeGen or a baseline source) on a zoo's train/val/test splits.

    A ``HeteroZoo`` trains on bucket-homogeneous batches (``bucket_batch_order``).
    """
    task = task_for(zoo, target)
    learner = probing_learner_for(zoo, spec, task.num_outputs)
    splits = zoo.split_arrays(target)
    order_fn = None
    if isinstance(zoo, HeteroZoo):  # bucket-homogeneous batches; small eval blocks touch few buckets
        order_fn = bucket_batch_order(splits["train"][0]["bucket"])
        cfg = dataclasses.replace(cfg, eval_batch_size=min(cfg.eval_batch_size, cfg.batch_size))
    result = fit(learner, task, splits, cfg, checkpoint_dir=checkpoint_dir, mesh=mesh,
                 progress=progress, desc=f"{spec.source} K={spec.num_probes}", order_fn=order_fn)
    return result, learner, task


def save_run(run_dir: str | os.PathLike, *, zoo_path: str, target: str, spec: ProbingSpec,
             cfg: TrainConfig, result: TrainResult, epoch: int | str = "all") -> None:
    run_dir = Path(run_dir).absolute()
    save_pytree(run_dir / "params", result.params)
    write_json(run_dir / "run.json", {
        "method": "probing", "zoo": str(Path(zoo_path).absolute()), "target": target, "epoch": epoch,
        "spec": dataclasses.asdict(spec), "train": dataclasses.asdict(cfg), "result": result.summary(),
    })


def read_run_record(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A saved run's ``run.json``; missing or damaged, ``CheckpointError`` names it."""
    run_dir = Path(run_dir).absolute()
    return read_json(run_dir / "run.json", CheckpointError, missing=f"missing; {run_dir} is not a saved run")


def load_run(run_dir: str | os.PathLike, zoo: Zoo | None = None) -> tuple[dict[str, Any], Zoo, Learner, Task, Params]:
    """(record, zoo, learner, task, params) of a saved run; the zoo is loaded from the record if not given."""
    run_dir = Path(run_dir).absolute()
    record = read_run_record(run_dir)
    zoo = zoo if zoo is not None else at_epoch(load_any_zoo(record["zoo"]), record.get("epoch", "all"))
    task = task_for(zoo, record["target"])
    learner = probing_learner_for(zoo, ProbingSpec(**record["spec"]), task.num_outputs)
    abstract = jax.eval_shape(learner.init, jax.random.key(0))
    params = load_pytree(run_dir / "params", abstract)
    return record, zoo, learner, task, params


def evaluate_run(run_dir: str | os.PathLike, split: str = "test", zoo: Zoo | None = None) -> dict[str, float]:
    """Metrics of a saved run on one split of its zoo (or of ``zoo``)."""
    record, zoo, learner, task, params = load_run(run_dir, zoo)
    return evaluate(learner, task, params, zoo.split_arrays(record["target"], (split,))[split])
