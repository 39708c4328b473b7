"""SANE behind the contract: the transformer autoencoder trained on the zoo's train split (its own
objective, selected on validation loss), then a ridge probe on each network's embedding (the mean
of its token latents) predicts the target, its penalty chosen on validation. The run's params hold
both; ``trained_sane(run)`` gives the autoencoder for sampling new networks."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.methods.registry import FitRequest, Method, register
from probegen_jax.methods.sane.embed import _latents, zoo_embeddings
from probegen_jax.methods.sane.model import SANEConfig, make_sane
from probegen_jax.methods.sane.properties import fit_ridge_probe
from probegen_jax.methods.sane.tokens import Standardization, fit_standardization, layer_params, standardize, token_layout
from probegen_jax.methods.sane.train import DEFAULT_TRAIN, TrainedSANE, train_sane
from probegen_jax.training.learner import Learner
from probegen_jax.training.loop import TrainResult, evaluate
from probegen_jax.training.tasks import Task
from probegen_jax.types import Array, Params


@dataclasses.dataclass(frozen=True)
class SANESpec:
    """The autoencoder's size (SANE's small configuration by default) and tokenisation."""

    token_size: int = 64
    window: int = 32
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    latent: int = 16
    ignore_norm: bool = False


def _layout(spec: SANESpec, zoo):
    return token_layout(zoo.archs[0].param_shapes(), spec.token_size, ignore_norm=spec.ignore_norm)


def _config(spec: SANESpec, zoo) -> SANEConfig:
    return SANEConfig(token_size=spec.token_size, window=spec.window, d_model=spec.d_model, heads=spec.heads,
                      encoder_layers=spec.layers, decoder_layers=spec.layers, latent=spec.latent).for_layout(
        _layout(spec, zoo))


def standardization_constants(spec: SANESpec, zoo, train_indices, train_targets, task: Task) -> dict[str, np.ndarray]:
    """Per-tensor statistics of the training networks, as SANE standardises its tokens."""
    layout = _layout(spec, zoo)
    stats = fit_standardization(layer_params(zoo.inputs(train_indices), layout), layout)
    return {"mean": np.asarray(stats.mean), "std": np.asarray(stats.std)}


def sane_learner(spec: SANESpec, zoo, task: Task, constants) -> Learner:
    """Networks -> standardised tokens -> encoder -> mean latent -> standardised -> ridge."""
    layout, cfg = _layout(spec, zoo), _config(spec, zoo)
    model = make_sane(cfg)
    stats = Standardization(np.asarray(constants["mean"]), np.asarray(constants["std"]))

    def init(key) -> Params:
        return {"sane": model.init(key), "ridge": {"w": jnp.zeros((cfg.latent, task.num_outputs)),
                                                   "b": jnp.zeros((task.num_outputs,))},
                "mean": jnp.zeros((cfg.latent,)), "std": jnp.ones((cfg.latent,))}

    def apply(params: Params, zoo_params: Params) -> Array:
        nets = standardize(layer_params(zoo_params, layout), stats, layout)
        embeddings = _latents(model, params["sane"], nets, layout, cfg.window, cfg.window // 4).mean(axis=1)
        features = (embeddings - params["mean"]) / params["std"]
        return features @ params["ridge"]["w"] + params["ridge"]["b"]

    return Learner(init, apply)


def trained_sane(run, zoo) -> TrainedSANE:
    """The autoencoder of a SANE run (for ``sample_sub`` / ``sample_boot``)."""
    layout, cfg = _layout(run.spec, zoo), _config(run.spec, zoo)
    stats = Standardization(np.asarray(run.constants["mean"]), np.asarray(run.constants["std"]))
    return TrainedSANE(make_sane(cfg), run.params["sane"], layout, stats, {"config": dataclasses.asdict(cfg)})


def _ridge_targets(y: np.ndarray, task: Task) -> np.ndarray:
    return np.eye(task.num_outputs)[y] if task.name == "classification" else np.asarray(y, np.float64)[:, None]


def fit_sane(request: FitRequest) -> TrainResult:
    """The autoencoder (resumable under the run's checkpoints), then the ridge probe: one ridge per
    penalty on the train embeddings, the penalty with the best validation metric kept."""
    start = time.perf_counter()
    spec, zoo, task = request.spec, request.zoo, request.task
    out = request.options.get("checkpoint_dir")
    trained, result = train_sane(zoo, _config(spec, zoo), request.cfg, out=None if out is None else Path(out) / "sane",
                                 progress=request.options.get("progress", True), ignore_norm=spec.ignore_norm)
    features = {s: zoo_embeddings(trained, x) for s, (x, _) in request.splits.items() if s != "test"}
    y_val = np.asarray(request.splits["val"][1])
    probe = fit_ridge_probe(features["train"], _ridge_targets(request.splits["train"][1], task), features["val"],
                            lambda p: task.evaluate(p, y_val)[task.select])
    params = {"sane": trained.params, "ridge": {"w": jnp.asarray(probe.w, jnp.float32),
                                                "b": jnp.asarray(probe.b, jnp.float32)},
              "mean": jnp.asarray(probe.mean, jnp.float32), "std": jnp.asarray(probe.std, jnp.float32)}
    metrics = {s: evaluate(request.learner, task, params, split) for s, split in request.splits.items()
               if s != "train"}
    return TrainResult(jax.device_get(params), result.best_epoch, metrics.get("val", {}), metrics.get("test", {}),
                       result.history, round(time.perf_counter() - start, 3))


register(Method("sane", "SANE: transformer autoencoder of weight tokens, ridge probe on its embeddings", SANESpec,
                sane_learner, standardization_constants, fit=fit_sane, train_config=DEFAULT_TRAIN))
