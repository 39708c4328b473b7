"""ProbeX: probing experts on a single layer's weights, routing to model trees, zero-shot alignment."""

from probegen_jax.methods.probex.layers import layer_matrix, layer_names, pad_matrix, torch_matrix
from probegen_jax.methods.probex.probex import (
    ProbeXConfig,
    alignment_learner,
    dense_embedder,
    expert_learner,
    probex_embed,
    probex_embedder,
    probex_init,
    stack,
    unstack,
)
from probegen_jax.methods.probex.routing import Router, Routes, fit_router, route, route_one, routing_accuracy

__all__ = ["ProbeXConfig", "Router", "Routes", "alignment_learner", "dense_embedder", "expert_learner",
           "fit_router", "layer_matrix", "layer_names", "pad_matrix", "probex_embed", "probex_embedder",
           "probex_init", "route", "route_one", "routing_accuracy", "stack", "torch_matrix", "unstack"]
