"""Baselines that read weights directly: StatNN, the flat-weights MLP and the NFN-NP network."""

from probegen_jax.methods.baselines.common import feature_head, features_learner, precompute_features
from probegen_jax.methods.baselines.flat import flat_learner, flatten_weights
from probegen_jax.methods.baselines.nfn import NFN_PAPER_CONFIG, NFNConfig, nfn_learner, weight_space
from probegen_jax.methods.baselines.statnn import (
    STATS_PER_TENSOR,
    fit_gbt,
    fit_statnn_gbt,
    hetero_statnn_features,
    padded_statnn_features,
    statnn_feature_names,
    statnn_features,
    statnn_learner,
)

__all__ = [
    "STATS_PER_TENSOR", "NFN_PAPER_CONFIG", "feature_head",
    "features_learner", "fit_gbt", "fit_statnn_gbt", "flat_learner", "flatten_weights",
    "hetero_statnn_features", "nfn_learner", "NFNConfig", "padded_statnn_features", "precompute_features",
    "statnn_feature_names", "statnn_features", "statnn_learner", "weight_space",
]
