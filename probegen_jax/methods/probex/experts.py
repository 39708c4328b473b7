"""Training experts: one per tree (or per candidate layer), every expert of one layer shape in one
jit-compiled step.

Experts whose layers share a shape ``[d_out, d_in]`` are stacked on an expert axis and ``train.fit``
trains them all in each step; each distinct shape is its own stacked run, with its own best epoch.
(Zero-padding every layer to the largest shape would also fit one step, exactly, but spends most
of its FLOPs on zeros: a ViT's 384x128 layer padded to an MLP's 256x784 is 6x the work.) Stacked
splits need one size per split: an expert with fewer networks cycles through its own (only while
training; per-expert metrics are computed on each expert's own networks). Within a stacked run the
best epoch is chosen on the mean validation metric over its experts.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from probegen_jax.methods.baselines.common import Standardizer
from probegen_jax.errors import ShapeMismatchError
from probegen_jax.training.learner import Learner
from probegen_jax.archs import flatten_params
from probegen_jax.methods.probex.layers import layer_matrix, layer_names, pad_matrix
from probegen_jax.methods.probex.probex import ProbeXConfig, expert_learner, stack, unstack
from probegen_jax.training.tasks import Task, multilabel
from probegen_jax.training.loop import TrainConfig, TrainResult, evaluate, fit
from probegen_jax.zoo import SPLITS, Zoo
from probegen_jax.zoo.formats.model_j import probex_layer_names

LayerSplits = dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (X[N, d_out, d_in], targets[N, ...])


def fit_layer_scaler(x_train: np.ndarray, *, center: bool = True) -> Standardizer:
    """``(X - mean) / scale`` from a training split: the mean matrix (the tree's shared part,
    if ``center``) and one scalar scale, the standard deviation of what remains."""
    x_train = jnp.asarray(x_train)
    mean = x_train.mean(0) if center else jnp.zeros(x_train.shape[1:])
    return Standardizer(mean, jnp.maximum((x_train - mean).std(), 1e-8))


def weight_layout(zoo: Zoo) -> str:
    """``"torch"`` for zoos whose tensors keep PyTorch's layout (Model-J), else ``"library"``."""
    return "torch" if zoo.meta.get("weight_layout") == "torch" or zoo.meta.get("format") == "model-j" else "library"


def layer_splits(zoo: Zoo, layer: str, target: str, *, splits: Sequence[str] = SPLITS, center: bool = True,
                 scaler: Standardizer | None = None,
                 normalize: bool | None = None) -> tuple[LayerSplits, Standardizer]:
    """``{split: (X, y)}`` of one layer, scaled by ``scaler`` (default: fitted on ``train`` when
    ``normalize``; ``None``: off for PyTorch-layout zoos such as Model-J, which ProbeX's reference
    code reads unnormalised, on otherwise)."""
    layout = weight_layout(zoo)
    x = layer_matrix(zoo.params, layer, layout=layout)
    y = zoo.target(target)
    if scaler is None:
        normalize = layout != "torch" if normalize is None else normalize
        scaler = fit_layer_scaler(x[zoo.indices("train")], center=center) if normalize else Standardizer(0.0, 1.0)
    return {s: (np.asarray(scaler(x[zoo.indices(s)])), y[zoo.indices(s)]) for s in splits}, scaler


def layer_shape(expert: LayerSplits) -> tuple[int, int]:
    """``(d_out, d_in)`` of an expert's layer."""
    d_out, d_in = next(iter(expert.values()))[0].shape[1:]
    return int(d_out), int(d_in)


def common_shape(experts: Sequence[LayerSplits]) -> tuple[int, int]:
    """The smallest shape every expert's layer zero-pads to."""
    shapes = [layer_shape(e) for e in experts]
    return max(s[0] for s in shapes), max(s[1] for s in shapes)


def shape_groups(experts: Sequence[LayerSplits]) -> list[list[int]]:
    """Indices of the experts, grouped by layer shape (groups in order of first appearance)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, e in enumerate(experts):
        groups.setdefault(layer_shape(e), []).append(i)
    return list(groups.values())


def stack_splits(experts: Sequence[LayerSplits]) -> LayerSplits:
    """``{split: (X[N, E, O, I], y[N, E, ...])}`` of experts whose layers share one shape, each
    split's size the largest expert's (smaller experts cycle through their networks)."""
    shapes = {layer_shape(e) for e in experts}
    if len(shapes) != 1:
        raise ShapeMismatchError(f"stack_splits: experts of one layer shape only, got {sorted(shapes)}")
    out = {}
    for split in experts[0]:
        n = max(len(e[split][1]) for e in experts)
        idx = [np.arange(n) % len(e[split][1]) for e in experts]
        out[split] = (np.stack([np.asarray(e[split][0])[i] for e, i in zip(experts, idx)], 1),
                      np.stack([np.asarray(e[split][1])[i] for e, i in zip(experts, idx)], 1))
    return out


@dataclasses.dataclass
class ExpertGroup:
    """One stacked ``fit``: the experts ``members`` (indices into the experts trained), whose layers
    all have ``shape``; ``learner`` is one of them."""

    members: list[int]
    train: TrainResult
    learner: Learner
    shape: tuple[int, int]


@dataclasses.dataclass
class ExpertsResult:
    """Every stacked run (one per layer shape) and each expert's own metrics (``per_expert[e][split]``)."""

    groups: list[ExpertGroup]
    per_expert: list[dict[str, dict[str, float]]]

    def _locate(self, e: int) -> tuple[ExpertGroup, int]:
        for group in self.groups:
            if e in group.members:
                return group, group.members.index(e)
        raise IndexError(f"no expert {e}: {len(self.per_expert)} experts were trained")

    def params(self, e: int):
        group, position = self._locate(e)
        return unstack(group.train.params, position)

    def learner(self, e: int) -> Learner:
        return self._locate(e)[0].learner

    def learners(self) -> list[Learner]:
        """Each expert's learner (its own layer shape), in the order trained."""
        return [self.learner(e) for e in range(len(self.per_expert))]

    @property
    def seconds(self) -> float:
        return sum(g.train.seconds for g in self.groups)


def train_experts(kind: str, experts: Sequence[LayerSplits], task: Task, cfg: TrainConfig,
                  pcfg: ProbeXConfig = ProbeXConfig(), *, progress: bool = True,
                  desc: str = "experts") -> ExpertsResult:
    """Train one expert per entry of ``experts``: those of one layer shape together (one stacked
    learner, one ``fit``), one ``fit`` per distinct shape."""
    groups, per_expert = [], [None] * len(experts)
    for members in shape_groups(experts):
        shape = layer_shape(experts[members[0]])
        one = expert_learner(kind, *shape, task.num_outputs, pcfg)
        label = desc if len(members) == len(experts) else f"{desc} {shape[0]}x{shape[1]}"
        result = fit(stack(one, len(members)), task, stack_splits([experts[e] for e in members]), cfg,
                     progress=progress, desc=label)
        for position, e in enumerate(members):
            per_expert[e] = evaluate_splits(one, task, unstack(result.params, position), experts[e],
                                            cfg.eval_batch_size)
        groups.append(ExpertGroup(members, result, one, shape))
    return ExpertsResult(groups, per_expert)


def select_layer(zoo: Zoo, candidates: Sequence[str], target: str, task: Task, cfg: TrainConfig,
                 pcfg: ProbeXConfig = ProbeXConfig(), *, kind: str = "probex", center: bool = True,
                 progress: bool = True, normalize: bool | None = None) -> tuple[str, dict[str, float]]:
    """Train an expert on every candidate layer (those of one shape together) and pick the best on
    validation.

    Returns (chosen layer, ``{layer: val metric}``).
    """
    if not candidates:
        raise ValueError("select_layer: no candidate layers")
    experts = [layer_splits(zoo, layer, target, splits=("train", "val"), center=center, normalize=normalize)[0]
               for layer in candidates]
    res = train_experts(kind, experts, task, cfg, pcfg, progress=progress, desc=f"layer selection ({len(experts)})")
    val = {layer: res.per_expert[i]["val"][task.select] for i, layer in enumerate(candidates)}
    return max(val, key=val.get), val


def across_tree_splits(zoos: Mapping[str, Zoo], layers: Mapping[str, str], target: str, *,
                       center: bool = True) -> tuple[LayerSplits, dict[str, LayerSplits]]:
    """Splits for one model across all trees: each tree's layer zero-padded to a common shape and
    scaled by one scaler fitted on every tree's training networks. Unlike a per-tree expert, the
    model is not told which tree a network comes from (nor given its tree's mean matrix).
    Returns the pooled splits and each tree's own, scaled alike."""
    raw = {n: layer_splits(zoo, layers[n], target, scaler=Standardizer(0.0, 1.0))[0] for n, zoo in zoos.items()}
    d_out, d_in = common_shape(list(raw.values()))
    padded = {n: {s: (np.asarray(pad_matrix(jnp.asarray(x), d_out, d_in)), y) for s, (x, y) in e.items()}
              for n, e in raw.items()}
    scaler = fit_layer_scaler(np.concatenate([e["train"][0] for e in padded.values()]), center=center)
    per_tree = {n: {s: (np.asarray(scaler(x)), y) for s, (x, y) in e.items()} for n, e in padded.items()}
    splits = next(iter(per_tree.values())).keys()
    pooled = {s: (np.concatenate([e[s][0] for e in per_tree.values()]),
                  np.concatenate([e[s][1] for e in per_tree.values()])) for s in splits}
    return pooled, per_tree


def evaluate_splits(learner: Learner, task: Task, params, splits: LayerSplits,
                    batch_size: int = 256) -> dict[str, dict[str, float]]:
    """Metrics of one expert on each split of ``splits`` (its layers in the expert's shape)."""
    return {s: evaluate(learner, task, params, xy, batch_size=batch_size) for s, xy in splits.items()}


def all_layer_names(zoo: Zoo, exclude: Sequence[str] = ()) -> list[str]:
    """Candidate layers of a zoo: its matrix layers except those under ``exclude`` (e.g. the head).

    For a PyTorch-layout zoo (Model-J): the layers ProbeX's reference code reads
    (``probex_layer_names``, in its index order), or every tensor the zoo holds if it has none of them.
    """
    if weight_layout(zoo) == "torch":
        names = list(flatten_params(zoo.params))
        names = probex_layer_names(names) or names
    else:
        names = layer_names(zoo.params)
    return [n for n in names if not any(n == x or n.startswith(x + "/") for x in exclude)]


def num_labels(zoo: Zoo, target: str = "classes") -> int:
    """The size of the multi-hot ``target`` (``meta["num_classes"]`` where the zoo records it)."""
    return int(zoo.meta.get("num_classes") or np.shape(zoo.target(target))[-1])


def probex_trees(path: str | os.PathLike, *, layers: Sequence[str] | str | None = "probex",
                 classes: Sequence[str] | None = None, progress: bool = True) -> dict[str, Zoo]:
    """The trees ProbeX trains on, by name: model trees made by ``make_trees`` (their children), a
    zoo (or buckets) imported from Model-J, or a Model-J tree folder (or a folder of trees), read
    with ``read_model_j(path, layers=layers, classes=classes)``."""
    from probegen_jax.make.trees import load_trees
    from probegen_jax.zoo.formats import load_imported
    from probegen_jax.zoo.formats.model_j import read_model_j

    path = Path(path)
    entries = [d for d in path.iterdir() if d.is_dir()] if path.is_dir() else []
    if any((d / "children").is_dir() for d in entries):
        return {n: c for n, (_, c) in load_trees(path).items() if "classes" in c.targets}
    if any(d.name in SPLITS or any((d / s).is_dir() for s in SPLITS) for d in entries):
        zoos = read_model_j(path, layers=layers, classes=classes, progress=progress)
    else:
        loaded = load_imported(path)
        zoos = [loaded] if isinstance(loaded, Zoo) else list(loaded)
    return {z.meta.get("tree", f"tree{i}"): z for i, z in enumerate(zoos)}


def train_tree_experts(trees: Mapping[str, Zoo], cfg: TrainConfig, pcfg: ProbeXConfig = ProbeXConfig(), *,
                       kind: str = "probex", layers: Mapping[str, str] | None = None, target: str = "classes",
                       task: Task | None = None, progress: bool = True, normalize: bool | None = None) -> dict:
    """One multi-label expert per tree, those of one layer shape trained in one stacked ``fit``.

    ``layers`` fixes a layer per tree; trees without one choose among their matrix layers (the
    head excluded; Model-J: the layers ProbeX's reference code reads) on validation. ``normalize``:
    see ``layer_splits``. Returns ``{"layers", "selection", "result" (ExpertsResult), "per_tree"
    ({tree: {split: metrics}})}``.
    """
    names = list(trees)
    task = task or multilabel(num_labels(trees[names[0]], target))
    chosen, selection = dict(layers or {}), {}
    for name in names:
        if name not in chosen:
            zoo = trees[name]
            candidates = all_layer_names(zoo, exclude=[zoo.meta["head"]] if "head" in zoo.meta else [])
            chosen[name], selection[name] = select_layer(zoo, candidates, target, task, cfg, pcfg, kind=kind,
                                                         progress=progress, normalize=normalize)
    experts = [layer_splits(trees[n], chosen[n], target, normalize=normalize)[0] for n in names]
    res = train_experts(kind, experts, task, cfg, pcfg, progress=progress, desc=f"{kind} experts ({len(names)} trees)")
    return {"layers": chosen, "selection": selection, "result": res,
            "per_tree": dict(zip(names, res.per_expert, strict=True))}


__all__ = ["ExpertGroup", "ExpertsResult", "LayerSplits", "across_tree_splits", "all_layer_names", "common_shape",
           "evaluate_splits", "fit_layer_scaler", "layer_shape", "layer_splits", "num_labels", "probex_trees",
           "select_layer", "shape_groups", "stack_splits", "train_experts", "train_tree_experts", "weight_layout"]
