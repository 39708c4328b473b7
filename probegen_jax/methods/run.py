"""The one run record every method writes: ``Run`` in memory, a run directory on disk.

A run directory holds ``run.json`` (method, spec, task, the zoo's fingerprint, the training
settings, metrics, history, library version), ``params`` (the best-validation params) and, when
the method fixed any, ``constants`` (statistics of the training split). ``load_run`` reads it back
for every method, so ``evaluate``, ``predict`` and ``probegen-jax eval/predict`` need nothing but
the registry; runs of registered architectures load without their training zoo.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from probegen_jax.errors import CheckpointError, UnknownNameError
from probegen_jax.io import load_pytree, read_json, save_pytree, write_json
from probegen_jax.training.loop import TrainConfig, TrainResult, config_from_record, config_record
from probegen_jax.training.tasks import Task, task_for, task_from_record, task_record
from probegen_jax.types import Params, PyTree

RUN_FORMAT = "probegen_jax.run"
RUN_FORMAT_VERSION = 2
RECORD = "run.json"


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained method: what was trained on which zoo, and the params it ended with."""

    method: str
    spec: Any
    task: Task
    target: str
    checkpoint: str | int
    params: Params
    constants: PyTree
    result: TrainResult
    train_config: TrainConfig
    zoo: dict[str, Any]
    requested: Any = None  # the spec asked for, before the method settled open settings (ProbeX's layer)

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return {"val": self.result.val, "test": self.result.test}

    def __repr__(self) -> str:
        shown = {split: {k: round(v, 4) for k, v in m.items()} for split, m in self.metrics.items() if m}
        return (f"Run({self.method}, target={self.target!r}, zoo of {self.zoo.get('size')} networks, "
                f"best epoch {self.result.best_epoch}, {shown})")

    def record(self) -> dict[str, Any]:
        """The JSON ``run.json`` holds."""
        from probegen_jax import __version__

        return {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, "library_version": __version__,
                "method": self.method, "spec": dataclasses.asdict(self.spec),
                "requested_spec": dataclasses.asdict(self.requested or self.spec), "task": task_record(self.task),
                "target": self.target, "checkpoint": self.checkpoint, "zoo": self.zoo,
                "train": config_record(self.train_config), "result": self.result.summary(),
                "constants": sorted(self.constants)}


def zoo_fingerprint(zoo: Any, path: str | os.PathLike | None = None, **notes: Any) -> dict[str, Any]:
    """What identifies the zoo a run was trained on: its architectures, size, and a digest of its
    targets and splits (cheap: no params are hashed), plus where it was loaded from."""
    digest = hashlib.sha256()
    archs = [a.spec() if a.registered else {"name": a.name, "config": {}} for a in zoo.archs]
    digest.update(json.dumps(archs, sort_keys=True).encode())
    for name in sorted(zoo.targets):
        digest.update(name.encode() + np.ascontiguousarray(zoo.targets[name]).tobytes())
    for name in sorted(zoo.splits):
        digest.update(name.encode() + np.ascontiguousarray(zoo.splits[name]).tobytes())
    record = {"path": str(Path(path).absolute()) if path else None, "size": len(zoo), "archs": archs,
              "packs_inputs": zoo.packs_inputs, "registered": all(a.registered for a in zoo.archs),
              "digest": digest.hexdigest()[:16]}
    return record | {k: v for k, v in notes.items() if v}


@dataclasses.dataclass(frozen=True)
class RecordedArchs:
    """The part of a zoo a learner is built from (its architectures and the form of its inputs),
    rebuilt from a run record."""

    archs: tuple
    packs_inputs: bool

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.archs[0].input_shape)

    @property
    def output_dim(self) -> int:
        return self.archs[0].output_dim


def recorded_archs(record: dict[str, Any], where: Path, arch: Any = None) -> RecordedArchs:
    """The run's architectures: ``arch`` (an ``Arch``, or one per bucket) where given, else rebuilt
    from the record (registered ones, or those with a ``factory``)."""
    from probegen_jax.archs import Arch, arch_from_spec, unregistered_arch_error

    zoo = record["zoo"]
    if arch is not None:
        archs = (arch,) if isinstance(arch, Arch) else tuple(arch)
    elif not zoo.get("registered", True):
        raise unregistered_arch_error(f"{where}: run", zoo["archs"][0]["name"],
                                      f"pj.load_run({str(where)!r}, arch=ARCH)")
    else:
        archs = tuple(arch_from_spec(a) for a in zoo["archs"])
    return RecordedArchs(archs, bool(zoo.get("packs_inputs", len(archs) > 1)))


def learner_archs(record: dict[str, Any], where: Path, zoo: Any = None, arch: Any = None) -> Any:
    """What a saved run's learner is rebuilt on: ``arch`` where given, else the recorded
    architectures (so the params load as saved; ``predict`` refuses a zoo of other networks, naming
    both), else ``zoo`` (runs of unregistered architectures, or whose factory is not importable)."""
    if zoo is None or arch is not None:
        return recorded_archs(record, where, arch)
    try:
        return recorded_archs(record, where)
    except UnknownNameError:
        return zoo


def save_run(run: Run, run_dir: str | os.PathLike) -> Path:
    """Write ``run`` to ``run_dir`` (params, constants, then ``run.json`` last: a directory with a
    ``run.json`` is a complete run)."""
    run_dir = Path(run_dir).absolute()
    if jax.tree.leaves(run.params):
        save_pytree(run_dir / "params", run.params)
    if run.constants:
        save_pytree(run_dir / "constants", jax.tree.map(np.asarray, dict(run.constants)))
    write_json(run_dir / RECORD, run.record())
    return run_dir


def read_run_record(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A saved run's ``run.json``; missing, damaged or of another format: ``CheckpointError``."""
    run_dir = Path(run_dir).absolute()
    record = read_json(run_dir / RECORD, CheckpointError, missing=f"missing; {run_dir} is not a saved run")
    if not isinstance(record, dict):
        raise CheckpointError(f"{run_dir / RECORD}: expected a JSON object, got {type(record).__name__}")
    if record.get("format") is None and record.get("method") == "probing":
        return record  # written before the run format had a name (probing runs only): converted on load
    if record.get("format") != RUN_FORMAT or record.get("format_version") != RUN_FORMAT_VERSION:
        raise CheckpointError(f"{run_dir / RECORD}: not a run of format {RUN_FORMAT} version {RUN_FORMAT_VERSION} "
                              f"(format {record.get('format')!r}, version {record.get('format_version')!r})")
    missing = sorted({"method", "spec", "task", "target", "zoo", "train", "result"} - set(record))
    if missing:
        raise CheckpointError(f"{run_dir / RECORD}: damaged run record, missing {missing}")
    return record


def _converted_v1(record: dict[str, Any], zoo: Any) -> tuple[dict[str, Any], Any]:
    """A probing run written before the contract: its spec's ``source`` names the method; the task
    is rebuilt from its zoo (loaded from the recorded path when not given)."""
    from probegen_jax.zoo.hetero import load_any_zoo

    if zoo is None:
        zoo = load_any_zoo(record["zoo"])
    checkpoint = record.get("epoch", "all")
    spec = dict(record["spec"])
    converted = {"method": spec["source"], "spec": spec, "target": record["target"], "checkpoint": checkpoint,
                 "train": record["train"], "result": record["result"],
                 "zoo": zoo_fingerprint(zoo, record["zoo"]), "constants": []}
    from probegen_jax.zoo.zoo import at_epoch

    converted["task"] = task_record(task_for(at_epoch(zoo, checkpoint) if "epoch" in zoo.targets else zoo,
                                             record["target"]))
    return converted, zoo


def load_run(run_dir: str | os.PathLike, zoo: Any = None, *, arch: Any = None) -> Run:
    """The ``Run`` saved in ``run_dir``. Runs of unregistered architectures (no ``factory``) need
    ``arch`` (the ``Arch``, or one per bucket) or ``zoo`` (any zoo of them); probing runs saved
    before the run format need ``zoo``."""
    from probegen_jax.methods.registry import get_method, make_spec

    run_dir = Path(run_dir).absolute()
    record = read_run_record(run_dir)
    if record.get("format") is None:
        record, zoo = _converted_v1(record, zoo)
    try:
        method = get_method(record["method"])
        spec = make_spec(method, record["spec"])
        task = task_from_record(record["task"])
        train_config = config_from_record(record["train"])
        result = TrainResult(None, **record["result"])
    except (TypeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{run_dir / RECORD}: damaged run record ({type(e).__name__}: {e})") from e
    archs = learner_archs(record, run_dir, zoo, arch)
    constants = load_pytree(run_dir / "constants", None) if record.get("constants") else {}
    learner = method.learner(spec, archs, task, constants)
    abstract = jax.eval_shape(learner.init, jax.random.key(0))
    params = load_pytree(run_dir / "params", abstract) if jax.tree.leaves(abstract) else abstract
    result = dataclasses.replace(result, params=params)
    return Run(method=method.name, spec=spec, task=task, target=record["target"],
               checkpoint=record.get("checkpoint", "all"), params=params, constants=constants, result=result,
               train_config=train_config, zoo=record["zoo"],
               requested=make_spec(method, record.get("requested_spec", record["spec"])))


def finished_run(run_dir: str | os.PathLike, method: str, spec: Any, cfg: TrainConfig, target: str,
                 checkpoint: str | int, fingerprint: dict[str, Any], zoo: Any) -> Run | None:
    """The run already finished in ``run_dir`` with exactly these settings (said on stderr), None
    where there is none; a run made there with other settings is refused naming what differs."""
    import sys

    run_dir = Path(run_dir).absolute()
    if not (run_dir / RECORD).is_file():
        return None
    record = read_run_record(run_dir)
    wanted = {"method": method, "spec": dataclasses.asdict(spec), "train": config_record(cfg), "target": target,
              "checkpoint": checkpoint, "zoo digest": fingerprint["digest"]}
    found = {**{k: record.get(k) for k in wanted}, "spec": record.get("requested_spec", record.get("spec")),
             "zoo digest": record.get("zoo", {}).get("digest")}
    wanted, found = json.loads(json.dumps(wanted)), json.loads(json.dumps(found))
    differ = sorted(k for k in wanted if wanted[k] != found[k])
    if differ:
        raise CheckpointError(f"{run_dir}: a run with other settings is saved here ("
                              + "; ".join(f"{k}: {found[k]!r} there, {wanted[k]!r} now" for k in differ)
                              + "); use another --out or delete it to retrain")
    print(f"reusing the finished run in {run_dir} (same settings; delete it to train again)", file=sys.stderr)
    return load_run(run_dir, zoo)


def write_predictions(path: str | os.PathLike, predictions: np.ndarray, task: Task) -> Path:
    """Predictions ``[N, outputs]`` to ``path``: ``.csv`` (a row per member: its index, the
    predicted class for classification, then every output) or ``.npy`` (the array)."""
    from probegen_jax.io import atomic_write

    path = Path(path)
    predictions = np.asarray(predictions)
    if path.suffix == ".csv":
        columns = [np.arange(len(predictions))[:, None]]
        header = ["member"]
        if task.name in ("classification", "zero_shot"):
            columns.append(predictions.argmax(-1)[:, None])
            header.append("class")
        columns.append(predictions)
        header += [f"output_{i}" for i in range(predictions.shape[1])]
        rows = np.concatenate(columns, axis=1)
        fmt = ["%d"] * (len(header) - predictions.shape[1]) + ["%.7g"] * predictions.shape[1]
        atomic_write(path, lambda f: np.savetxt(f, rows, fmt=fmt, delimiter=",", header=",".join(header),
                                                comments=""))
    else:
        path = path if path.suffix == ".npy" else path.with_suffix(path.suffix + ".npy")
        atomic_write(path, lambda f: np.save(f, predictions))
    return path


def zoo_for_run(path: str | os.PathLike, fingerprint: dict[str, Any]) -> Any:
    """The zoo at ``path`` (anything ``zoo info`` reads); of a folder of buckets (an import that
    made several zoos), the one the run was trained on, found by its fingerprint."""
    from probegen_jax.errors import ZooFormatError
    from probegen_jax.zoo.formats import load_imported

    loaded = load_imported(path)
    if not isinstance(loaded, (list, tuple)):
        return loaded
    for zoo in loaded:
        if zoo_fingerprint(zoo)["digest"] == fingerprint.get("digest"):
            return zoo
    raise ZooFormatError(f"{path}: none of its {len(loaded)} zoos is the one the run was trained on; "
                         "give that zoo's own folder")
