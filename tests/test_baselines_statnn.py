import jax
import numpy as np
import pytest

from probegen_jax.archs import make_arch
from probegen_jax.methods.baselines.statnn import (
    STATS_PER_TENSOR,
    padded_statnn_features,
    statnn_feature_names,
    statnn_features,
)
from probegen_jax.errors import ShapeMismatchError


def _zoo(n=6, seed=0):
    arch = make_arch("siren")
    return jax.jit(jax.vmap(arch.init))(jax.random.split(jax.random.key(seed), n))


def _numpy_reference(params):
    rows = []
    for leaf in jax.tree.leaves(params):
        flat = np.asarray(leaf).reshape(leaf.shape[0], -1).astype(np.float64)
        rows.append(np.column_stack([flat.mean(1), flat.var(1),
                                     np.quantile(flat, [0, 0.25, 0.5, 0.75, 1.0], axis=1).T]))
    return np.concatenate(rows, axis=1)


def test_statnn_features_match_numpy():
    params = _zoo()
    got = np.asarray(statnn_features(params))
    assert got.shape == (6, 6 * STATS_PER_TENSOR)
    np.testing.assert_allclose(got, _numpy_reference(params), rtol=1e-5, atol=1e-6)
    assert len(statnn_feature_names(params)) == got.shape[1]


def test_statnn_features_jit_and_vmap():
    params = _zoo()
    direct = statnn_features(params)
    np.testing.assert_allclose(jax.jit(statnn_features)(params), direct, rtol=1e-6)
    per_net = jax.vmap(statnn_features)(jax.tree.map(lambda a: a[:, None], params))
    np.testing.assert_allclose(per_net[:, 0], direct, rtol=1e-6)


def test_padded_features_for_heterogeneous_buckets():
    deep, shallow = _zoo(3), {"dense0": _zoo(2, seed=1)["dense0"]}
    feats = np.asarray(padded_statnn_features([deep, shallow]))
    per = STATS_PER_TENSOR + 1
    assert feats.shape == (5, 6 * per)
    flags = feats.reshape(5, 6, per)[:, :, -1]
    np.testing.assert_array_equal(flags[:3], 1)
    np.testing.assert_array_equal(flags[3:], [[1, 1, 0, 0, 0, 0]] * 2)
    np.testing.assert_allclose(feats.reshape(5, 6, per)[3:, :2, :-1].reshape(2, -1),
                               _numpy_reference(shallow), rtol=1e-5, atol=1e-6)
    with pytest.raises(ShapeMismatchError, match="num_tensors"):
        padded_statnn_features([deep], num_tensors=2)
