"""Architectures: SIREN against numpy, shape checks, Flax adapters, registry and specs."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from probegen_jax.archs import (
    arch_from_function,
    arch_from_linen,
    arch_from_nnx,
    arch_from_spec,
    check_finite,
    flatten_params,
    make_arch,
    mlp,
    registered_archs,
    siren,
)
from probegen_jax.errors import NonFiniteWeightsError, ShapeMismatchError, UnknownNameError
from probegen_jax.methods.probing import probe


def numpy_siren(params, x, w0=30.0, offset=0.5):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    h = np.sin(w0 * (x @ p["dense0"]["kernel"] + p["dense0"]["bias"]))
    h = np.sin(w0 * (h @ p["dense1"]["kernel"] + p["dense1"]["bias"]))
    return h @ p["dense2"]["kernel"] + p["dense2"]["bias"] + offset


def stack(params_list):
    return jax.tree.map(lambda *a: jnp.stack(a), *params_list)


# -------------------------------------------------------------------------------------- SIREN


def test_siren_has_the_dwsnets_shape():
    arch = siren()
    # 2 -> 32 -> 32 -> 1: (2*32 + 32) + (32*32 + 32) + (32*1 + 1)
    assert arch.num_params() == 1185
    shapes = jax.tree.map(lambda s: s.shape, arch.param_shapes())
    assert shapes == {"dense0": {"kernel": (2, 32), "bias": (32,)},
                      "dense1": {"kernel": (32, 32), "bias": (32,)},
                      "dense2": {"kernel": (32, 1), "bias": (1,)}}
    assert arch.input_shape == (2,) and arch.output_dim == 1


@pytest.mark.parametrize("exact_sine", [False, True])
def test_siren_apply_matches_numpy(exact_sine):
    arch = siren(exact_sine=exact_sine)
    assert arch.config == siren().config  # the sine is a choice of computation, not of model
    x = np.random.default_rng(0).uniform(-1, 1, (50, 2)).astype(np.float32)
    for seed in range(3):
        params = arch.init(jax.random.key(seed))
        got = np.asarray(arch.apply(params, jnp.asarray(x)))
        assert got.shape == (50, 1)
        np.testing.assert_allclose(got, numpy_siren(params, x.astype(np.float64)), rtol=1e-4, atol=1e-4)


def test_siren_init_follows_the_siren_bounds():
    params = siren().init(jax.random.key(3))
    first = np.asarray(params["dense0"]["kernel"])
    later = np.asarray(params["dense1"]["kernel"])
    assert np.abs(first).max() <= 1 / 2 and np.abs(first).max() > 0.4  # U(-1/in, 1/in), in = 2
    bound = np.sqrt(6 / 32) / 30
    assert np.abs(later).max() <= bound and np.abs(later).max() > 0.9 * bound
    assert not np.array_equal(params["dense0"]["kernel"], siren().init(jax.random.key(4))["dense0"]["kernel"])


def test_mlp_apply_matches_numpy():
    arch = mlp(input_shape=(4, 3), hidden=8, depth=2, out_dim=5)
    params = arch.init(jax.random.key(0))
    x = np.random.default_rng(1).normal(size=(6, 4, 3)).astype(np.float32)
    h = x.reshape(6, -1)
    for i in range(3):
        h = h @ np.asarray(params[f"dense{i}"]["kernel"]) + np.asarray(params[f"dense{i}"]["bias"])
        if i < 2:
            h = np.maximum(h, 0)
    np.testing.assert_allclose(np.asarray(arch.apply(params, jnp.asarray(x))), h, rtol=1e-5, atol=1e-5)
    assert arch.num_params() == 12 * 8 + 8 + 8 * 8 + 8 + 8 * 5 + 5


# ------------------------------------------------------------------------------ shape checks


def test_check_params_names_the_wrong_tensor():
    arch = siren()
    params = arch.init(jax.random.key(0))
    assert arch.check_params(params, stacked=False) is None
    bad = jax.tree.map(lambda a: a, params)
    bad["dense1"]["kernel"] = jnp.zeros((32, 31))
    with pytest.raises(ShapeMismatchError) as err:
        arch.check_params(bad, stacked=False)
    msg = str(err.value)
    assert "dense1/kernel" in msg and "(32, 32)" in msg and "(32, 31)" in msg


def test_check_params_names_missing_and_extra_tensors():
    arch = siren()
    params = arch.init(jax.random.key(0))
    params["dense3"] = params.pop("dense2")
    with pytest.raises(ShapeMismatchError) as err:
        arch.check_params(params, stacked=False, where="my zoo")
    msg = str(err.value)
    assert "my zoo" in msg and "dense2/kernel" in msg and "dense3/kernel" in msg


def test_stacked_check_returns_zoo_size_and_refuses_inconsistent_sizes():
    arch = siren(hidden=8)
    zoo = stack([arch.init(jax.random.key(i)) for i in range(3)])
    assert arch.check_params(zoo, stacked=True) == 3

    # an unstacked network passed as a zoo
    with pytest.raises(ShapeMismatchError):
        arch.check_params(arch.init(jax.random.key(0)), stacked=True)

    ragged = jax.tree.map(lambda a: a, zoo)
    ragged["dense1"]["bias"] = jnp.zeros((4, 8))
    with pytest.raises(ShapeMismatchError) as err:
        arch.check_params(ragged, stacked=True)
    assert "dense1/bias" in str(err.value) and "4" in str(err.value) and "3" in str(err.value)


def test_check_input_names_probes():
    arch = siren()
    arch.check_input(jnp.zeros((5, 2)))
    with pytest.raises(ShapeMismatchError, match="probes"):
        arch.check_input(jnp.zeros((5, 3)))


def test_check_finite_names_tensor_and_network_count():
    arch = siren(hidden=4)
    zoo = stack([arch.init(jax.random.key(i)) for i in range(5)])
    check_finite(zoo)
    bad = jax.tree.map(np.array, zoo)
    bad["dense1"]["kernel"][[1, 3], 0, 0] = np.nan
    bad["dense2"]["bias"][4] = np.inf
    with pytest.raises(NonFiniteWeightsError) as err:
        check_finite(bad)
    msg = str(err.value)
    assert "dense1/kernel (2 of 5 networks)" in msg and "dense2/bias (1 of 5 networks)" in msg
    assert "dense0" not in msg


def test_flatten_unflatten_round_trip():
    arch = siren(hidden=8)
    params = arch.init(jax.random.key(0))
    flat = flatten_params(params)
    assert sorted(flat) == sorted(f"dense{i}/{k}" for i in range(3) for k in ("kernel", "bias"))
    back = arch.unflatten(flat)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)
    del flat["dense1/bias"]
    with pytest.raises(ShapeMismatchError, match="dense1/bias"):
        arch.unflatten(flat)


# ---------------------------------------------------------------------------------- adapters


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(16)(x))
        return nn.Dense(3)(x)


class NNXMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.first = nnx.Linear(2, 16, rngs=rngs)
        self.second = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.second(jax.nn.tanh(self.first(x)))


def test_arch_from_linen_equals_the_module():
    module = LinenMLP()
    arch = arch_from_linen(module, (2,))
    assert arch.output_dim == 3 and arch.input_shape == (2,) and arch.name == "LinenMLP"
    assert arch.num_params() == 2 * 16 + 16 + 16 * 3 + 3
    key = jax.random.key(7)
    params = arch.init(key)
    x = jax.random.normal(jax.random.key(8), (9, 2))
    want = module.apply(module.init(key, jnp.zeros((1, 2))), x)
    np.testing.assert_allclose(arch.apply(params, x), want, rtol=1e-6, atol=1e-6)
    # and by hand, from the Dense kernels
    p = jax.tree.map(np.asarray, params)
    h = np.maximum(np.asarray(x) @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0)
    np.testing.assert_allclose(arch.apply(params, x), h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"],
                               rtol=1e-5, atol=1e-5)


def test_arch_from_nnx_equals_the_module():
    arch = arch_from_nnx(lambda rngs: NNXMLP(rngs), (2,))
    assert arch.output_dim == 3 and arch.name == "NNXMLP"
    x = jax.random.normal(jax.random.key(1), (9, 2))
    for seed in (0, 5):
        params = arch.init(jax.random.key(seed))
        module = NNXMLP(nnx.Rngs(jax.random.key(seed)))
        np.testing.assert_allclose(arch.apply(params, x), module(x), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(jax.jit(arch.apply)(params, x), module(x), rtol=1e-6, atol=1e-6)
    # params really drive the output: the stacked, vmapped use in probe() matches each module.
    zoo = stack([arch.init(jax.random.key(s)) for s in range(4)])
    responses = probe(arch.apply, zoo, x)
    for s in range(4):
        np.testing.assert_allclose(responses[s], NNXMLP(nnx.Rngs(jax.random.key(s)))(x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(responses[0], responses[1])


def test_arch_from_function_infers_output_dim():
    def init(key):
        return {"w": jax.random.normal(key, (6, 4))}

    def apply(params, x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ params["w"])

    arch = arch_from_function(apply, init, (3, 2), name="mine")
    assert arch.output_dim == 4 and arch.input_shape == (3, 2) and arch.num_params() == 24
    assert not arch.registered and arch.name == "mine"


# -------------------------------------------------------------------------- registry and spec


def test_make_arch_unknown_name_lists_registered():
    with pytest.raises(UnknownNameError) as err:
        make_arch("nope")
    assert "nope" in str(err.value) and "siren" in str(err.value) and "mlp" in str(err.value)
    assert {"siren", "mlp"} <= set(registered_archs())


@pytest.mark.parametrize("arch", [
    siren(),
    siren(hidden=16, depth=3, w0=20.0, output_offset=0.0),
    mlp(input_shape=(8, 8, 1), hidden=12, depth=1, out_dim=10),
    make_arch("small_cnn", input_shape=(28, 28, 1), activation=("relu", "tanh"), padding="valid"),
    make_arch("small_cnn", input_shape=(8, 8, 1), padding="same"),
], ids=["siren", "siren-custom", "mlp-images", "small-cnn-valid", "small-cnn-same"])
def test_arch_from_spec_round_trips(arch):
    spec = json.loads(json.dumps(arch.spec()))  # survives JSON, as in a saved zoo
    back = arch_from_spec(spec)
    assert back.name == arch.name and back.registered
    assert back.input_shape == arch.input_shape and back.output_dim == arch.output_dim
    assert back.num_params() == arch.num_params()
    assert back.spec() == arch.spec()
    params = arch.init(jax.random.key(2))
    for a, b in zip(jax.tree.leaves(back.init(jax.random.key(2))), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)
    x = jax.random.uniform(jax.random.key(3), (7, *arch.input_shape), minval=-1, maxval=1)
    np.testing.assert_array_equal(back.apply(params, x), arch.apply(params, x))


def test_custom_siren_spec_changes_behaviour():
    """The spec carries w0 and the offset: a different config gives a different function."""
    a, b = siren(hidden=8), siren(hidden=8, w0=10.0, output_offset=0.0)
    params = a.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (20, 2), minval=-1, maxval=1)
    np.testing.assert_allclose(
        arch_from_spec(b.spec()).apply(params, x),
        numpy_siren(params, np.asarray(x, np.float64), w0=10.0, offset=0.0), rtol=1e-4, atol=1e-4)


def test_fast_sin_matches_the_sine_and_its_derivative():
    from probegen_jax.archs.dense import fast_sin

    x = np.concatenate([np.linspace(-1e4, 1e4, 200_001), np.random.default_rng(0).normal(0, 30, 100_000),
                        np.arange(-64, 65) * np.pi / 2]).astype(np.float32)
    exact = np.sin(x.astype(np.float64))
    np.testing.assert_allclose(np.asarray(jax.jit(fast_sin)(jnp.asarray(x))), exact, rtol=0, atol=3e-7)
    grads = jax.vmap(jax.grad(fast_sin))(jnp.asarray(x[:20_000]))
    np.testing.assert_allclose(np.asarray(grads), np.cos(x[:20_000].astype(np.float64)), rtol=0, atol=2e-6)
