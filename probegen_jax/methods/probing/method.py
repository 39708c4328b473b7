"""Probing methods behind the contract: ProbeGen and the probing baselines (vanilla learned
probes, fixed synthetic probes, a generator with ReLUs), on zoos of one or several architectures."""

from __future__ import annotations

import dataclasses

from probegen_jax.methods.registry import Method, register
from probegen_jax.methods.probing.hetero import hetero_probing_learner
from probegen_jax.methods.probing.spec import ProbingSpec
from probegen_jax.training.learner import Learner
from probegen_jax.training.tasks import Task

SOURCES = {
    "probegen": "ProbeGen: probes from a shared deep linear generator",
    "probegen5": "ProbeGen with a 5x5-kernel image generator",
    "vanilla": "vanilla probing: free learned probes",
    "synthetic": "fixed random probes (1/f textures for images), only the head trains",
    "nonlinear": "ablation: the probe generator with ReLUs",
}


def probing_learner_for(spec: ProbingSpec, zoo, task: Task) -> Learner:
    """``spec``'s probing learner on the zoo's architecture(s); the response transform left unset
    reads the raw outputs."""
    spec = dataclasses.replace(spec, response=spec.response or "raw")
    if zoo.packs_inputs:
        source = spec.make_source(zoo.archs[0])
        return hetero_probing_learner(zoo, source, task.num_outputs, head_hidden=spec.head_hidden,
                                      head_layers=spec.head_layers, response=spec.response)
    return spec.make_learner(zoo.archs[0], task.num_outputs)[0]


def probing_spec_type(source: str) -> type:
    """``ProbingSpec`` with this source, and the response left to the zoo's default."""
    return dataclasses.make_dataclass(
        f"{source.capitalize()}Spec",
        [("source", str, dataclasses.field(default=source)), ("response", str | None, dataclasses.field(default=None))],
        bases=(ProbingSpec,), frozen=True)


for _source, _description in SOURCES.items():
    register(Method(_source, _description, probing_spec_type(_source),
                    lambda spec, zoo, task, constants: probing_learner_for(spec, zoo, task), heterogeneous=True,
                    reads_stored_rows=True))


def learned_probes(run, zoo=None):
    """The probes a trained probing run passes through every network ``[K, *input_shape]`` (for
    plots: ``report.plot_image_probes`` or ``report.plot_coordinate_probes``)."""
    from probegen_jax.methods.run import recorded_archs

    archs = zoo.archs if zoo is not None else recorded_archs({"zoo": run.zoo}, "run").archs
    return run.spec.make_source(archs[0]).apply(run.params["source"])
