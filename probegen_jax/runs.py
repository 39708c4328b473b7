"""A training run on disk: ``run.json`` (what was trained, on which zoo, the results) beside the
best-validation params (an orbax checkpoint), so a run can be evaluated or reused later."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from probegen_jax.errors import CheckpointError
from probegen_jax.io import write_json
from probegen_jax.learner import Learner
from probegen_jax.probing.methods import ProbingSpec
from probegen_jax.tasks import Task, classification, regression
from probegen_jax.train import TrainConfig, TrainResult, evaluate, fit
from probegen_jax.types import Params
from probegen_jax.zoo import Zoo, load_zoo


def task_for(zoo: Zoo, target: str) -> Task:
    """Classification for integer targets (classes from the zoo's meta), regression otherwise."""
    y = zoo.target(target)
    if np.issubdtype(y.dtype, np.integer):
        return classification(int(zoo.meta.get("num_classes", int(y.max()) + 1)))
    return regression()


def train_probing(
    zoo: Zoo, spec: ProbingSpec, cfg: TrainConfig, *, target: str = "label", checkpoint_dir=None,
    mesh=None, progress: bool = True,
) -> tuple[TrainResult, Learner, Task]:
    """Train a probing method (ProbeGen or a baseline source) on a zoo's train/val/test splits."""
    task = task_for(zoo, target)
    learner, _ = spec.make_learner(zoo.arch, task.num_outputs)
    result = fit(learner, task, zoo.split_arrays(target), cfg, checkpoint_dir=checkpoint_dir, mesh=mesh,
                 progress=progress, desc=f"{spec.source} K={spec.num_probes}")
    return result, learner, task


def save_run(run_dir: str | os.PathLike, *, zoo_path: str, target: str, spec: ProbingSpec,
             cfg: TrainConfig, result: TrainResult) -> None:
    import orbax.checkpoint as ocp

    run_dir = Path(run_dir).absolute()
    ocp.Checkpointer(ocp.StandardCheckpointHandler()).save(
        run_dir / "params", args=ocp.args.StandardSave(result.params), force=True)
    write_json(run_dir / "run.json", {
        "method": "probing", "zoo": str(Path(zoo_path).absolute()), "target": target,
        "spec": dataclasses.asdict(spec), "train": dataclasses.asdict(cfg), "result": result.summary(),
    })


def load_run(run_dir: str | os.PathLike, zoo: Zoo | None = None) -> tuple[dict[str, Any], Zoo, Learner, Task, Params]:
    """(record, zoo, learner, task, params) of a saved run; the zoo is loaded from the record if not given."""
    import orbax.checkpoint as ocp

    run_dir = Path(run_dir).absolute()
    record_file = run_dir / "run.json"
    if not record_file.is_file():
        raise CheckpointError(f"{record_file}: missing; {run_dir} is not a saved run")
    record = json.loads(record_file.read_text())
    zoo = zoo if zoo is not None else load_zoo(record["zoo"])
    task = task_for(zoo, record["target"])
    learner, _ = ProbingSpec(**record["spec"]).make_learner(zoo.arch, task.num_outputs)
    abstract = jax.eval_shape(learner.init, jax.random.key(0))
    try:
        params = ocp.Checkpointer(ocp.StandardCheckpointHandler()).restore(
            run_dir / "params", args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax raises many types for damaged checkpoints
        raise CheckpointError(f"{run_dir / 'params'}: cannot restore the run's params ({e})") from e
    return record, zoo, learner, task, params


def evaluate_run(run_dir: str | os.PathLike, split: str = "test", zoo: Zoo | None = None) -> dict[str, float]:
    """Metrics of a saved run on one split of its zoo (or of ``zoo``)."""
    record, zoo, learner, task, params = load_run(run_dir, zoo)
    return evaluate(learner, task, params, zoo.split_arrays(record["target"], (split,))[split])
