"""Model Zoos (Schürholt et al. 2022): one folder per trained model, every epoch kept.

Folder: ``params.json`` (the training config: ``model::type``, ``model::nlin``,
``model::channels_in``, ``optim::*``, ``seed``, ...), ``result.json`` (one JSON line per epoch:
``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``, ``training_iteration``) and
``checkpoint_<N>/checkpoints`` (N plain or six digits; a torch state dict
``module_list.{i}.{weight,bias}``). Every readable checkpoint is one zoo member; following the
reference loader, a checkpoint that cannot be read or holds NaN is skipped and counted
(``meta["skipped"]``, by reason), as is one whose metrics are missing: they come from the result
line whose ``training_iteration`` equals N, and a checkpoint without one (or with a NaN metric) is
skipped, never given NaN targets.

Architectures (``def_net.py``): ``CNN``/``CNN2`` (28x28 inputs: conv5-pool-act, conv5-pool-act,
conv2-act, flatten, linear-act, linear), ``CNN3`` (32x32: three conv3-pool-act, flatten,
linear-act, linear), ``MLP``; dropout is inactive at inference. Models are split by folder:
sorted, shuffled with ``random.Random(42)``, cut 70/15/15 (the reference shuffles an unsorted
listing with seed 42 and cuts by its ``ds_split``).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any


from probegen_jax.archs import Arch, make_arch
from probegen_jax.errors import DataFileError, ProbegenError, ZooFormatError
from probegen_jax.zoo.formats.common import (
    Buckets,
    as_int,
    SkipLog,
    all_finite,
    get_key,
    load_torch,
    progress_iter,
    read_json,
    require_dir,
    split_by_group,
)
from probegen_jax.zoo.formats.wild_park import torch_layers_to_flat
from probegen_jax.zoo.zoo import Zoo

CNN_TEMPLATES = {"CNN": (28, [2, 2, 0]), "CNN2": (28, [2, 2, 0]), "CNN3": (32, [2, 2, 2])}
RESULT_KEYS = {"test_acc": "test_accuracy", "train_acc": "train_accuracy", "test_loss": "test_loss",
               "train_loss": "train_loss"}
NUMERIC_CONFIG = {"optim::lr": "lr", "optim::wd": "wd", "model::dropout": "dropout", "seed": "seed"}
CATEGORICAL_CONFIG = {"model::nlin": "activation", "model::init_type": "init_type", "optim::optimizer": "optimizer"}


def model_zoos_arch(config: Mapping[str, Any], state_dict: Mapping[str, Any], *, where: str) -> Arch:
    """The ``torch_cnn`` arch of a Model Zoos model, from its config and its tensors' shapes."""
    kind = str(get_key(config, "model::type", where=where))
    nlin = str(config.get("model::nlin", "leakyrelu"))
    weights = [v for k, v in state_dict.items() if isinstance(k, str) and k.endswith("weight")]
    conv_shapes = [tuple(w.shape) for w in weights if getattr(w, "ndim", 0) == 4]
    dense_outs = [int(w.shape[0]) for w in weights if getattr(w, "ndim", 0) == 2]
    if not dense_outs:
        raise ZooFormatError(f"{where}: no linear layer in the state dict (keys {list(state_dict)[:20]})")
    dense = [{"out": o, "activation": nlin} for o in dense_outs[:-1]] + [{"out": dense_outs[-1], "activation": "none"}]
    if kind == "MLP":
        in_dim = int(next(w for w in weights if getattr(w, "ndim", 0) == 2).shape[1])
        return make_arch("torch_cnn", input_shape=(in_dim,), convs=[], head="flatten", dense=dense)
    if kind not in CNN_TEMPLATES:
        raise ZooFormatError(f"{where}: model type {kind!r} is not supported; supported: "
                             f"{sorted(CNN_TEMPLATES) + ['MLP']}")
    size, pools = CNN_TEMPLATES[kind]
    if len(conv_shapes) != len(pools):
        raise ZooFormatError(f"{where}: a {kind} has {len(pools)} conv layers, the state dict {len(conv_shapes)}")
    channels_in = as_int(config.get("model::channels_in", conv_shapes[0][1]), where=f"{where}: model::channels_in")
    convs = [{"out": s[0], "kernel": s[2], "pool": p, "activation": nlin} for s, p in zip(conv_shapes, pools)]
    return make_arch("torch_cnn", input_shape=(size, size, channels_in), convs=convs, head="flatten", dense=dense)


def _results(model_dir: Path) -> dict[int, dict[str, Any]]:
    """``{training_iteration: record}`` from ``result.json`` (unreadable lines are ignored)."""
    path = model_dir / "result.json"
    records: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return records
    for n, line in enumerate(path.read_text(errors="replace").splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        iteration = record.get("training_iteration", n + 1) if isinstance(record, dict) else None
        if isinstance(iteration, (int, float)) and not isinstance(iteration, bool) and math.isfinite(iteration):
            records[int(iteration)] = record
    return records


def _checkpoints(model_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for d in model_dir.glob("checkpoint_*"):
        m = re.fullmatch(r"checkpoint_(\d+)", d.name)
        if m and d.is_dir():
            found.append((int(m.group(1)), d / "checkpoints"))
    return sorted(found)


def _model_dirs(root: Path) -> list[Path]:
    """Model folders: those with a ``params.json`` or ``checkpoint_<N>`` folders (a folder whose
    ``params.json`` is missing is listed, to be skipped and counted)."""
    if (root / "params.json").is_file():
        return [root]
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and ((d / "params.json").exists() or _checkpoints(d)))
    if not dirs:
        raise DataFileError(f"{root}: no Model Zoos models here (expected folders with params.json)")
    return dirs


def _config(model_dir: Path) -> dict[str, Any]:
    """The model's ``params.json`` as a JSON object (``ProbegenError`` when missing or damaged)."""
    config = read_json(model_dir / "params.json")
    if not isinstance(config, dict):
        raise ZooFormatError(f"{model_dir / 'params.json'}: expected a JSON object")
    return config


def _metric(record: Mapping[str, Any], key: str) -> float:
    try:
        return float(record[key])
    except (KeyError, TypeError, ValueError, OverflowError):
        return math.nan


def read_model_zoos(path: str | os.PathLike, *, trust_pickle: bool = False, progress: bool = True) -> list[Zoo]:
    """Every epoch of every model as homogeneous zoos (one per architecture). Targets:
    ``test_accuracy``, ``train_accuracy``, ``test_loss``, ``train_loss``, ``epoch``, ``model``
    (folder index), ``lr``, ``wd``, ``dropout``, ``seed`` (those some ``params.json`` records) and
    the integer-coded categories ``activation``, ``init_type``, ``optimizer`` (vocabularies in
    ``meta["categories"]``). Every checkpoint left out is counted by reason in ``meta["skipped"]``:
    unreadable or NaN checkpoints, models without a readable ``params.json``, checkpoints without a
    ``result.json`` line or with a missing or non-finite target."""
    root = require_dir(Path(path), "Model Zoos folder")
    models = _model_dirs(root)
    split_of = split_by_group(models, (0.7, 0.15, 0.15), seed=42)
    jobs = []
    skipped, buckets = SkipLog(), Buckets()
    configs: dict[Path, dict[str, Any]] = {}
    for m, model_dir in enumerate(models):
        checkpoints = _checkpoints(model_dir)
        try:
            configs[model_dir] = _config(model_dir)
        except ProbegenError as e:
            skipped.add("checkpoints of models without a readable params.json", str(e), n=max(1, len(checkpoints)))
            continue
        if not checkpoints:
            raise DataFileError(f"{model_dir}: no checkpoint_<N>/checkpoints folders")
        jobs += [(m, model_dir, configs[model_dir], epoch, file) for epoch, file in checkpoints]
    numeric = {key: name for key, name in NUMERIC_CONFIG.items() if any(key in c for c in configs.values())}
    results_cache: dict[Path, dict[int, dict[str, Any]]] = {}
    for order, (m, model_dir, config, epoch, file) in enumerate(progress_iter(
            jobs, total=len(jobs), desc="reading Model Zoos", progress=progress)):
        try:
            state = load_torch(file, trust_pickle=trust_pickle)
            if not isinstance(state, Mapping):
                raise ZooFormatError(f"{file}: expected a state dict, got {type(state).__name__}")
            arch = model_zoos_arch(config, state, where=str(file))
            flat = torch_layers_to_flat(state, arch, where=str(file))
        except ProbegenError as e:
            skipped.add("unreadable checkpoints", str(e))
            continue
        if not all_finite(flat):
            skipped.add("checkpoints with NaN or inf weights", f"{file}: NaN or inf weights")
            continue
        if model_dir not in results_cache:
            results_cache = {model_dir: _results(model_dir)}
        record = results_cache[model_dir].get(epoch)
        if record is None:
            skipped.add("checkpoints without a result.json line", f"{model_dir / 'result.json'}: no line for "
                        f"training_iteration {epoch} (missing, damaged or cut short)")
            continue
        targets: dict[str, Any] = {name: _metric(record, key) for key, name in RESULT_KEYS.items()}
        targets.update({name: _metric(config, key) for key, name in numeric.items()})
        missing = sorted(name for name, v in targets.items() if not math.isfinite(v))
        if missing:
            skipped.add("checkpoints with a missing or non-finite target", f"{file}: no finite {missing} in "
                        "result.json or params.json")
            continue
        targets.update(epoch=epoch, model=m)
        targets.update({name: str(config.get(key, "")) for key, name in CATEGORICAL_CONFIG.items()})
        buckets.add(arch, flat, targets, split_of[model_dir], order)
    if not len(buckets):
        raise ZooFormatError(f"{root}: no readable checkpoint; skipped {skipped.count}, e.g. {skipped.examples[:3]}")
    return buckets.zoos({"format": "model-zoos", "source": str(root), "models": len(models),
                         "checkpoints": len(jobs), "skipped": skipped.as_meta()},
                        encode=tuple(CATEGORICAL_CONFIG.values()))
