"""CNN Wild Park (Kofinas et al. 2024): heterogeneous CIFAR-10 CNNs, many checkpoints each.

Files: ``<root>/cifar10_zooV2/<trial>/<checkpoint_dir>/checkpoint.pt``, each a torch dict with
``model`` (state dict ``layers.{i}.{weight,bias}`` for the convs, ``fc.{weight,bias}``) and
``config`` (``channels`` with the input channels first, ``kernel_size``, ``stride``, ``padding``,
``residual`` (-1 or an earlier layer), ``activation`` per layer, ``n_classes``). The network is
``conv -> (+ residual on the shared channels) -> activation`` per layer, global average pool, fc.
Splits come from a splits JSON ``{split: {"path": [...], "score": [...], "step": [...]}}`` with
paths relative to its folder (as the reference split script writes it); without one, networks
(trials) are split 80/10/10 by a seeded shuffle, all checkpoints of a network in one split, and
the score is the checkpoint's ``last_result["test/acc"]``. A checkpoint with no finite score or
step is skipped and counted by reason (``meta["skipped"]``), never given a NaN target.

The published checkpoints pickle their config as an OmegaConf object, which ``weights_only``
loading refuses; the reader takes OmegaConf's containers as plain dicts and lists with no
OmegaConf installed (``omegaconf_pickle``), and refuses any other class unless
``trust_pickle=True``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probegen_jax.archs import Arch, make_arch
from probegen_jax.errors import DataFileError, ShapeMismatchError, ZooFormatError
from probegen_jax.zoo.formats.common import (
    Buckets,
    SkipLog,
    as_float,
    as_int,
    check_shape,
    get_key,
    load_torch,
    progress_iter,
    read_json,
    require_dir,
    require_finite,
    resolve_listed_path,
    split_by_group,
    to_numpy,
)
from probegen_jax.zoo.zoo import Zoo


def _as_list(value: Any, n: int, *, where: str, any_length: bool = False) -> list:
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value] * n
    if len(values) != n and not any_length:
        raise ZooFormatError(f"{where}: expected {n} entries, got {len(values)}")
    return values


def wild_park_arch(config: Mapping[str, Any], *, image_size: int, where: str) -> Arch:
    """The ``torch_cnn`` arch a Wild Park config describes."""
    channels = [as_int(c, where=f"{where}: channels") for c in _as_list(get_key(config, "channels", where=where), 1,
                                                                           where=where, any_length=True)]
    n = len(channels) - 1
    if n < 1:
        raise ZooFormatError(f"{where}: config channels {channels} name no layer")
    kernels = _as_list(get_key(config, "kernel_size", where=where), n, where=f"{where}: kernel_size")
    strides = _as_list(config.get("stride", 1), n, where=f"{where}: stride")
    paddings = _as_list(config.get("padding", [as_int(k, where=f"{where}: kernel_size") // 2 for k in kernels]), n,
                        where=f"{where}: padding")
    residual = _as_list(config.get("residual", -1), n, where=f"{where}: residual")
    acts = _as_list(get_key(config, "activation", where=where), n, where=f"{where}: activation")
    convs = [{"out": channels[i + 1], "kernel": as_int(kernels[i], where=f"{where}: kernel_size"),
              "stride": as_int(strides[i], where=f"{where}: stride"),
              "padding": as_int(paddings[i], where=f"{where}: padding"), "activation": str(acts[i]),
              "residual": as_int(residual[i], where=f"{where}: residual")} for i in range(n)]
    for i, c in enumerate(convs):
        if c["residual"] >= i:
            raise ZooFormatError(f"{where}: layer {i} takes a residual from layer {c['residual']}, not an "
                                 "earlier one")
    n_classes = as_int(config.get("n_classes", 10), where=f"{where}: n_classes")
    if min(channels + [n_classes]) < 1 or any(c["kernel"] < 1 or c["stride"] < 1 or c["padding"] < 0 for c in convs):
        raise ZooFormatError(f"{where}: channels, kernels, strides and classes must be positive")
    return make_arch("torch_cnn", input_shape=(image_size, image_size, channels[0]), convs=convs, head="gap",
                     dense=[{"out": n_classes, "activation": "none"}])


def torch_layers_to_flat(state_dict: Mapping[str, Any], arch: Arch, *, where: str) -> dict[str, np.ndarray]:
    """Map a PyTorch state dict onto ``torch_cnn`` params: 4-D weights are the convs in key
    order, 2-D weights the dense layers; every tensor is checked against the arch's shape."""
    expected = {f"{layer}/{kind}": tuple(s) for layer, d in arch.param_shapes().items()
                for kind, s in ((k, v.shape) for k, v in d.items())}
    weights = [k for k in state_dict if isinstance(k, str) and k.endswith("weight")]
    convs = [k for k in weights if getattr(state_dict[k], "ndim", 0) == 4]
    denses = [k for k in weights if getattr(state_dict[k], "ndim", 0) == 2]
    flat: dict[str, np.ndarray] = {}
    for prefix, keys in (("conv", convs), ("dense", denses)):
        for i, key in enumerate(keys):
            bias_key = key[: -len("weight")] + "bias"
            for kind, k in (("weight", key), ("bias", bias_key)):
                name = f"{prefix}{i}/{kind}"
                if name not in expected:
                    raise ShapeMismatchError(f"{where}: tensor {k!r} has no place in the architecture its config "
                                             f"describes (expected tensors {sorted(expected)})")
                value = to_numpy(get_key(state_dict, k, where=where), where=f"{where}/{k}")
                check_shape(value, expected[name], where=f"{where}/{k}")
                flat[name] = value
    missing = sorted(set(expected) - set(flat))
    if missing:
        raise ShapeMismatchError(f"{where}: state dict lacks tensors for {missing} of the architecture its "
                                 f"config describes (keys {list(state_dict)[:20]})")
    return flat


def _listing(root: Path, splits_file: Path | None) -> list[tuple[Path, str | None, float, float]]:
    """``[(checkpoint, split, score, step)]``; score/step NaN when they must come from the file."""
    if splits_file is None:
        found = sorted(root.glob("*splits*.json"))
        splits_file = found[0] if found else None
    if splits_file is None:
        files = sorted(root.rglob("checkpoint.pt"))
        if not files:
            raise DataFileError(f"{root}: no Wild Park checkpoints here (expected */*/checkpoint.pt or a "
                                "splits JSON)")
        split_of = split_by_group([f.parent.parent for f in files], (0.8, 0.1, 0.1), seed=42)
        return [(f, split_of[f.parent.parent], math.nan, math.nan) for f in files]
    data = read_json(splits_file)
    if not isinstance(data, dict):
        raise ZooFormatError(f"{splits_file}: expected {{split: {{'path': [...], 'score': [...]}}}}")
    rows, missing = [], []
    for split, entry in data.items():
        paths = get_key(entry, "path", where=f"{splits_file} ({split})")
        scores = entry.get("score", [math.nan] * len(paths))
        steps = entry.get("step", [math.nan] * len(paths))
        if not len(paths) == len(scores) == len(steps):
            raise ZooFormatError(f"{splits_file}: split {split!r} has {len(paths)} paths, {len(scores)} scores, "
                                 f"{len(steps)} steps")
        for p, score, step in zip(paths, scores, steps):
            found = resolve_listed_path(str(p), splits_file)
            if found is None:
                missing.append(f"{split}: {p}")
            rows.append((found, split, as_float(score, where=f"{splits_file}: score"),
                         as_float(step, where=f"{splits_file}: step")))
    if missing:
        raise DataFileError(f"{splits_file}: {len(missing)} listed model files do not exist, e.g. {missing[:3]}")
    return rows


def read_wild_park(path: str | os.PathLike, *, splits_file: str | os.PathLike | None = None,
                   final_only: bool = False, image_size: int = 32, trust_pickle: bool = False,
                   progress: bool = True) -> list[Zoo]:
    """Wild Park checkpoints as homogeneous zoos (one per architecture), with targets
    ``test_accuracy``, ``step`` and ``network`` (trial index). ``final_only`` keeps each
    network's last checkpoint."""
    root = Path(path)
    if root.is_file() and root.suffix == ".json":
        root, splits_file = root.parent, root
    require_dir(root, "CNN Wild Park folder")
    rows = _listing(root, Path(splits_file) if splits_file else None)
    trial_ids = {t: i for i, t in enumerate(sorted({r[0].parent.parent for r in rows}, key=str))}
    network_ids = {f: trial_ids[f.parent.parent] for f, *_ in rows}
    loaded, skipped = [], SkipLog()
    for order, (file, split, score, step) in enumerate(progress_iter(rows, total=len(rows), desc="reading Wild Park",
                                                                     progress=progress)):
        ckpt = load_torch(file, trust_pickle=trust_pickle)
        where = str(file)
        config = get_key(ckpt, "config", where=where)
        arch = wild_park_arch(config, image_size=image_size, where=f"{where}: config")
        flat = torch_layers_to_flat(get_key(ckpt, "model", where=where), arch, where=where)
        require_finite(flat, where=where)
        if math.isnan(score):
            result = ckpt.get("last_result", {}) if isinstance(ckpt, Mapping) else {}
            score = as_float(result.get("test/acc"), where=f"{where}: last_result") if isinstance(result, Mapping) \
                else math.nan
        if math.isnan(step) and isinstance(ckpt, Mapping):
            step = as_float(ckpt.get("iteration"), where=f"{where}: iteration")
        if not (math.isfinite(score) and math.isfinite(step)):
            skipped.add("checkpoints without a finite test accuracy or step",
                        f"{where}: test accuracy {score}, step {step} (neither in the splits file nor the checkpoint)")
            continue
        loaded.append((arch, flat, {"test_accuracy": score, "step": step, "network": network_ids[file]}, split,
                       order))
    if final_only:
        last: dict[int, float] = {}
        for _, _, t, _, _ in loaded:
            last[t["network"]] = max(last.get(t["network"], -math.inf), t["step"])
        loaded = [x for x in loaded if x[2]["step"] == last[x[2]["network"]]]
    buckets = Buckets()
    for arch, flat, targets, split, order in loaded:
        buckets.add(arch, flat, targets, split, order)
    if not len(buckets):
        raise ZooFormatError(f"{root}: no usable checkpoint; skipped {skipped.count}, e.g. {skipped.examples[:3]}")
    return buckets.zoos({"format": "wild-park", "source": str(root), "final_only": final_only,
                         "total": len(loaded), "skipped": skipped.as_meta()})
