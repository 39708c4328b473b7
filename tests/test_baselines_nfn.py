"""NFN-NP is invariant to permuting hidden units; the flat-weights MLP is not."""

import jax
import numpy as np
import pytest

from probegen_jax.archs import make_arch
from probegen_jax.methods.baselines.flat import flat_learner, flatten_weights
from probegen_jax.methods.baselines.nfn import NFNConfig, layer_order, nfn_learner, weight_space
from probegen_jax.errors import ShapeMismatchError


def _zoo(arch, n=6, seed=0):
    return jax.jit(jax.vmap(arch.init))(jax.random.split(jax.random.key(seed), n))


def permute_hidden(params, layers, rng):
    """Permute the output units of every layer but the last (and the next layer's inputs to match)."""
    params = jax.tree.map(np.asarray, params)
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in params.items()}
    for this, nxt in zip(layers[:-1], layers[1:], strict=True):
        perm = rng.permutation(out[this]["bias"].shape[1])
        out[this]["kernel"] = out[this]["kernel"][..., perm]
        out[this]["bias"] = out[this]["bias"][:, perm]
        out[nxt]["kernel"] = np.take(out[nxt]["kernel"], perm, axis=-2)
    return out


def _check(arch, cfg, num_outputs):
    params = _zoo(arch)
    layers = layer_order(params)
    permuted = permute_hidden(params, layers, np.random.default_rng(1))
    inputs = np.linspace(-1, 1, 2 * np.prod(arch.input_shape), dtype=np.float32).reshape(2, *arch.input_shape)
    forward = jax.jit(jax.vmap(arch.apply, in_axes=(0, None)))
    # the permutation keeps each network's function
    np.testing.assert_allclose(forward(permuted, inputs), forward(params, inputs), rtol=1e-4, atol=1e-5)

    nfn = nfn_learner(params, num_outputs, cfg)
    theta = nfn.init(jax.random.key(2))
    apply = jax.jit(nfn.apply)
    before, after = apply(theta, params), apply(theta, permuted)
    assert before.shape == (6, num_outputs)
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)

    flat = flat_learner(params, num_outputs)
    phi = flat.init(jax.random.key(2))
    apply = jax.jit(flat.apply)
    gap = np.abs(np.asarray(apply(phi, params)) - np.asarray(apply(phi, permuted))).max()
    assert gap > 1e-2 * np.abs(np.asarray(apply(phi, params))).max()


def test_nfn_invariant_to_hidden_permutations_of_sirens():
    _check(make_arch("siren"), NFNConfig(channels=(8, 8), head_hidden=32), 10)


def test_nfn_with_fourier_features_is_invariant():
    _check(make_arch("siren", hidden=16), NFNConfig(channels=(4,), fourier_features=3, head_hidden=16), 3)


def test_nfn_invariant_to_channel_permutations_of_cnns():
    _check(make_arch("small_cnn"), NFNConfig(channels=(4,), head_hidden=32), 1)


def test_weight_space_layout_and_errors():
    params = _zoo(make_arch("siren"), n=2)
    ws = weight_space(params)
    assert [w.shape for w in ws.weights] == [(2, 32, 2, 1, 1), (2, 32, 32, 1, 1), (2, 1, 32, 1, 1)]
    np.testing.assert_array_equal(ws.weights[0][:, :, :, 0, 0], np.swapaxes(params["dense0"]["kernel"], 1, 2))
    assert flatten_weights(params).shape == (2, make_arch("siren").num_params())
    bad = dict(params, dense1={"kernel": params["dense1"]["kernel"][:, :5], "bias": params["dense1"]["bias"]})
    with pytest.raises(ShapeMismatchError, match="'dense1' takes 5 inputs"):
        weight_space(bad)
    with pytest.raises(ShapeMismatchError, match="kernel"):
        weight_space({"dense0": {"kernel": params["dense0"]["kernel"]}}, ["dense0"])
    other = _zoo(make_arch("siren", hidden=16), n=2)
    nfn = nfn_learner(params, 10, NFNConfig(channels=(4,), head_hidden=16))
    with pytest.raises(ShapeMismatchError, match="built for"):
        jax.eval_shape(nfn.apply, jax.eval_shape(nfn.init, jax.random.key(0)), other)


def test_layer_order_is_numeric_and_skips_non_layers():
    names = {f"dense{i}": {"kernel": 0, "bias": 0} for i in (10, 2, 0)}
    names.update({"conv1": {"kernel": 0, "bias": 0}, "conv0": {"kernel": 0, "bias": 0}, "activation_id": 0})
    assert layer_order(names) == ["conv0", "conv1", "dense0", "dense2", "dense10"]
