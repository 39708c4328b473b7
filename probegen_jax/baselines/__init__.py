"""Baselines that read weights directly: StatNN, the flat-weights MLP and the NFN-NP network."""

from probegen_jax.baselines.flat import flat_learner, flatten_weights
from probegen_jax.baselines.nfn import NFN_PAPER_CONFIG, NFNConfig, nfn_learner, weight_space
from probegen_jax.baselines.run import BASELINE_NAMES, baseline_learner, train_baseline
from probegen_jax.baselines.statnn import (
    fit_statnn_gbt,
    padded_statnn_features,
    statnn_feature_names,
    statnn_features,
    statnn_learner,
)

__all__ = [
    "BASELINE_NAMES", "NFNConfig", "NFN_PAPER_CONFIG", "baseline_learner", "fit_statnn_gbt", "flat_learner",
    "flatten_weights", "nfn_learner", "padded_statnn_features", "statnn_feature_names", "statnn_features",
    "statnn_learner", "train_baseline", "weight_space",
]
