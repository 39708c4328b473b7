"""XLA's FLOP counts agree with analytic counts (ProbeGen and NFN-NP); the NFN/ProbeGen ratio is computed."""

import jax
import pytest

from probegen_jax.archs import make_arch
from probegen_jax.methods.baselines.nfn import NFNConfig, nfn_learner
from probegen_jax.flops import (
    CITED_INR_GFLOPS,
    learner_cost,
    nfn_np_flops,
    probegen_inr_flops,
    probing_flops,
)
from probegen_jax.methods.probing.spec import ProbingSpec


def test_probegen_xla_flops_match_analytic():
    arch = make_arch("siren", exact_sine=True)  # XLA counts its sine as one operation, like the analytic count
    cost = probing_flops(arch, ProbingSpec(num_probes=64), 10, batch=4)
    assert cost.per_network.total == pytest.approx(probegen_inr_flops([2, 32, 32, 1], 64, 10), rel=0.02)
    assert cost.generator.total > 0  # reported apart: computed once and cached after training
    synthetic = probing_flops(arch, ProbingSpec(source="synthetic", num_probes=64), 10, batch=4)
    assert synthetic.generator.total == 0
    assert synthetic.per_network.total == pytest.approx(cost.per_network.total, rel=1e-6)


def test_nfn_xla_flops_match_analytic_and_exceed_probegen():
    arch = make_arch("siren")
    zoo = jax.jit(jax.vmap(arch.init))(jax.random.split(jax.random.key(0), 2))
    cfg = NFNConfig(channels=(16, 16), head_hidden=64)
    xla = learner_cost(nfn_learner(zoo, 10, cfg), jax.tree.map(lambda a: a[0], zoo), batch=4).total
    analytic = nfn_np_flops([(32, 2, 1), (32, 32, 1), (1, 32, 1)], cfg.channels, 10, head_hidden=64)
    assert xla == pytest.approx(analytic, rel=0.05)
    probegen = probegen_inr_flops([2, 32, 32, 1], 128, 10)
    assert nfn_np_flops([(32, 2, 1), (32, 32, 1), (1, 32, 1)], (64, 64, 64), 10) / probegen > 30
    assert set(CITED_INR_GFLOPS) >= {"NFT", "NG-GNN", "NG-T"}


def test_feature_methods_count_their_features_and_head():
    """StatNN's cost per network is its statistics of the params plus its head on them."""
    from probegen_jax.flops import method_cost, xla_cost
    from probegen_jax.methods.baselines.statnn import statnn_features

    arch = make_arch("siren")
    cost, params = method_cost("statnn", None, arch, 10, batch=4)
    one = jax.eval_shape(arch.init, jax.random.key(0))
    stacked = jax.tree.map(lambda s: jax.ShapeDtypeStruct((4, *s.shape), s.dtype), one)
    features = xla_cost(statnn_features, stacked).total / 4
    assert params > 0 and cost.total > features > 0
