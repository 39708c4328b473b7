"""ProbeX behind the contract: a probing expert on one hidden layer's weight matrix of the networks
of one model tree (a zoo), multi-label over the classes a fine-tune saw; the dense expert as its
baseline. ``train_forest`` trains one run per tree of a folder of trees and the router that sends
a new model to its tree's expert."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from probegen_jax.errors import UnknownNameError
from probegen_jax.methods.baselines.common import Standardizer
from probegen_jax.methods.contract import train
from probegen_jax.methods.registry import Method, register
from probegen_jax.methods.probex.experts import all_layer_names, fit_layer_scaler, select_layer, weight_layout
from probegen_jax.methods.probex.layers import layer_matrix
from probegen_jax.methods.probex.probex import ProbeXConfig, expert_learner
from probegen_jax.training.learner import Learner
from probegen_jax.training.loop import TrainConfig
from probegen_jax.training.tasks import Task
from probegen_jax.types import Array

# The paper's optimisation: Adam with a small weight decay, long schedules, evaluated every 25 epochs.
PROBEX_TRAINING = TrainConfig(epochs=500, batch_size=128, learning_rate=1e-3, weight_decay=1e-5, eval_every=25)


@dataclasses.dataclass(frozen=True)
class ProbeXSpec:
    """``layer``: the weight matrix read (None: chosen on validation among the zoo's matrix layers,
    the head excluded; Model-J: the layers the reference code reads); ``rank``: r_U = r_V = r_T;
    ``normalize``: subtract the train mean matrix and divide by one scale (``on`` | ``off`` |
    ``auto``: off for PyTorch-layout zoos such as Model-J, as the reference code feeds them, on
    otherwise); ``layout``: how the zoo stores its tensors (``library`` | ``torch`` | ``auto``: as
    the zoo says), pinned when training starts so a saved run rebuilds without its zoo."""

    layer: str | None = None
    rank: int = 128
    relu: bool = True
    normalize: str = "auto"
    center: bool = True
    layout: str = "auto"


def _layout(spec: ProbeXSpec, zoo) -> str:
    return weight_layout(zoo) if spec.layout == "auto" else spec.layout


def _normalized(spec: ProbeXSpec, zoo) -> bool:
    choices = {"auto": _layout(spec, zoo) != "torch", "on": True, "off": False}
    if spec.normalize not in choices:
        raise UnknownNameError(f"ProbeX normalize {spec.normalize!r}: expected one of {sorted(choices)}")
    return choices[spec.normalize]


def layer_inputs(spec: ProbeXSpec, zoo, indices: np.ndarray) -> np.ndarray:
    """The members' ``[N, d_out, d_in]`` matrices of the spec's layer, as the reference reads them."""
    return np.asarray(layer_matrix(zoo.inputs(indices), spec.layer, layout=_layout(spec, zoo)))


def candidate_layers(zoo) -> list[str]:
    return all_layer_names(zoo, exclude=[zoo.meta["head"]] if "head" in zoo.meta else [])


def choose_layer(kind: str):
    def resolve(spec: ProbeXSpec, zoo, target: str, task: Task, cfg: TrainConfig, progress: bool) -> ProbeXSpec:
        spec = dataclasses.replace(spec, layout=_layout(spec, zoo))
        if spec.layer is not None:
            if spec.layer not in _all_names(zoo):
                raise UnknownNameError(f"ProbeX layer {spec.layer!r} is not in the zoo; matrix layers: "
                                       f"{candidate_layers(zoo)}")
            return spec
        layer, _ = select_layer(zoo, candidate_layers(zoo), target, task, cfg, _config(spec), kind=kind,
                                center=spec.center, progress=progress, normalize=_normalized(spec, zoo))
        return dataclasses.replace(spec, layer=layer)

    return resolve


def _all_names(zoo) -> list[str]:
    from probegen_jax.archs import flatten_params

    return list(flatten_params(zoo.archs[0].param_shapes()))


def _config(spec: ProbeXSpec) -> ProbeXConfig:
    return ProbeXConfig(spec.rank, spec.rank, spec.rank, relu=spec.relu)


def scaler_constants(spec: ProbeXSpec, zoo, train_indices: np.ndarray, train_targets: np.ndarray, task: Task
                     ) -> dict[str, np.ndarray]:
    if not _normalized(spec, zoo):
        return {}
    scaler = fit_layer_scaler(layer_inputs(spec, zoo, train_indices), center=spec.center)
    return {"mean": np.asarray(scaler.mean, np.float32), "scale": np.asarray(scaler.scale, np.float32)}


def expert_method_learner(kind: str):
    def learner(spec: ProbeXSpec, zoo, task: Task, constants) -> Learner:
        d_out, d_in = np.shape(layer_matrix(zoo.archs[0].stacked_zeros(), spec.layer, layout=_layout(spec, zoo)))[1:]
        expert = expert_learner(kind, int(d_out), int(d_in), task.num_outputs, _config(spec))
        if not constants:
            return expert
        scaler = Standardizer(constants["mean"], constants["scale"])

        def apply(params, x: Array) -> Array:
            return expert.apply(params, scaler(x))

        return Learner(expert.init, apply)

    return learner


for _kind, _name, _description in (("probex", "probex", "ProbeX: a probing expert on one layer's weights"),
                                   ("dense", "dense_expert", "dense expert on one layer's weights (ProbeX's baseline)")):
    register(Method(_name, _description, ProbeXSpec, expert_method_learner(_kind), scaler_constants, layer_inputs,
                    resolve=choose_layer(_kind), train_config=PROBEX_TRAINING))


# ----------------------------------------------------------------------------- a folder of trees


def train_forest(trees: Mapping[str, Any], out: str | os.PathLike, *, method: str = "probex",
                 spec: Any = None, layers: Mapping[str, str] | None = None, cfg: TrainConfig | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """One run per tree (``out/<tree>``, each a run ``load_run``/``evaluate``/``predict`` read) and
    the router that sends a model to its tree (``out/router``, by distance to each tree's centroid
    of flattened weights). Returns ``{"runs", "routing_accuracy_test", "test"}``."""
    from probegen_jax.io import save_pytree, write_json
    from probegen_jax.methods.probex.routing import fit_router, routing_accuracy

    out = Path(out)
    runs = {}
    for name, zoo in trees.items():
        tree_spec = {**(dataclasses.asdict(spec) if dataclasses.is_dataclass(spec) else dict(spec or {})),
                     **({"layer": layers[name]} if layers and name in layers else {})}
        runs[name] = train(method, zoo, tree_spec, cfg, out=str(out / name), progress=progress)
    router = fit_router({n: z.inputs(z.indices("train")) for n, z in trees.items()})
    save_pytree(out / "router", {"radii": np.asarray(router.radii),
                                 "centroids": {n: np.asarray(c) for n, c in zip(router.names, router.centroids, strict=True)}})
    summary = {"method": method, "trees": list(router.names), "layers": {n: r.spec.layer for n, r in runs.items()},
               "test": {n: r.result.test for n, r in runs.items()},
               "routing_accuracy_test": routing_accuracy(router, {n: z.inputs(z.indices("test"))
                                                                  for n, z in trees.items()})}
    write_json(out / "forest.json", summary)
    return {"runs": runs, **summary}
