"""ProbeGen and probing learners: probes from a source, passed through each network, read by an MLP."""

from __future__ import annotations

from collections.abc import Callable

import jax

from probegen_jax.archs import Arch
from probegen_jax.archs.dense import dense_widths, mlp_apply, mlp_init
from probegen_jax.errors import ShapeMismatchError, UnknownNameError
from probegen_jax.training.learner import Learner
from probegen_jax.methods.probing.probe import probe
from probegen_jax.methods.probing.sources import ProbeSource
from probegen_jax.types import Array, Params, PRNGKey, PyTree


# How the head sees a network's outputs on the probes. "softmax" reads class probabilities: for
# classifier zoos whose logit scales differ by orders of magnitude (sampled init std, L2, learning
# rate) it lifts the small-CNN Kendall tau from 0.57 to 0.79 (README, CNN generalisation).
RESPONSES: dict[str, Callable[[Array], Array]] = {"raw": lambda r: r, "softmax": jax.nn.softmax}


def response_transform(name: str) -> Callable[[Array], Array]:
    """The map applied to each network's response vector (last axis) before the head."""
    if name not in RESPONSES:
        raise UnknownNameError(f"unknown response {name!r}; available: {sorted(RESPONSES)}")
    return RESPONSES[name]


def mlp_head(in_dim: int, out_dim: int, *, hidden: int = 256, layers: int = 6) -> Learner:
    """ProbeGen's head: ``layers`` linear layers of width ``hidden`` with ReLU, no normalisation."""
    widths = dense_widths(in_dim, hidden, layers - 1, out_dim)
    return Learner(lambda key: mlp_init(key, widths), mlp_apply)


def probing_learner(
    arch: Arch, source: ProbeSource, num_outputs: int, *, head_hidden: int = 256, head_layers: int = 6,
    response: str = "raw",
) -> Learner:
    """Probes from ``source`` -> responses of each network (``arch``) -> flattened -> MLP head.

    ``inputs`` of ``apply`` are a batch of zoo params ``[B, ...]``; gradients reach the source.
    """
    if tuple(source.input_shape) != tuple(arch.input_shape):
        raise ShapeMismatchError(
            f"probe source {source.name!r} makes probes of shape {source.input_shape}, but architecture "
            f"{arch.name!r} takes inputs of shape {arch.input_shape}"
        )
    return responses_learner(lambda probes, zoo_params: probe(arch.apply, zoo_params, probes), source,
                             arch.output_dim, num_outputs, head_hidden=head_hidden, head_layers=head_layers,
                             response=response)


def responses_learner(
    respond: Callable[[Array, PyTree], Array], source: ProbeSource, response_dim: int, num_outputs: int, *,
    head_hidden: int = 256, head_layers: int = 6, response: str = "raw",
) -> Learner:
    """Probes from ``source`` -> ``respond(probes, inputs)`` ``[B, K, response_dim]`` -> ``response``
    transform (``RESPONSES``) -> flattened -> MLP head.

    ``probing_learner`` is this with ``respond = probe`` on one architecture; heterogeneous zoos
    pass their own ``respond``. Params are ``{"source": ..., "head": ...}``.
    """
    head = mlp_head(source.num_probes * response_dim, num_outputs, hidden=head_hidden, layers=head_layers)
    transform = response_transform(response)

    def init(key: PRNGKey) -> Params:
        k_src, k_head = jax.random.split(key)
        return {"source": source.init(k_src), "head": head.init(k_head)}

    def apply(params: Params, inputs: PyTree) -> Array:
        responses = transform(respond(source.apply(params["source"]), inputs))
        return head.apply(params["head"], responses.reshape(responses.shape[0], -1))

    return Learner(init, apply)


def learned_probes_of(source: ProbeSource, params: Params) -> Array:
    """The probes a trained probing learner uses (``params["source"]``)."""
    return source.apply(params["source"])
