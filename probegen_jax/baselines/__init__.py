"""Baselines that read weights directly: StatNN, the flat-weights MLP and the NFN-NP network."""

from probegen_jax.baselines.statnn import (
    fit_statnn_gbt,
    padded_statnn_features,
    statnn_feature_names,
    statnn_features,
    statnn_learner,
)

__all__ = ["fit_statnn_gbt", "padded_statnn_features", "statnn_feature_names", "statnn_features", "statnn_learner"]
