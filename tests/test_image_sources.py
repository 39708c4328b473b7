"""Image probe sources: ProbeGen's DCGAN-style generator, vanilla, synthetic; shape checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probegen_jax.archs import make_arch
from probegen_jax.errors import ShapeMismatchError, UnknownNameError
from probegen_jax.methods.probing.image_sources import (
    dcgan_generator,
    dcgan_specs,
    generator_pre_tanh,
    image_probe_source,
    random_textures,
)
from probegen_jax.methods.probing.spec import ProbingSpec
from probegen_jax.methods.probing.probe import probe, probe_zoo
from probegen_jax.methods.probing.probegen import probing_learner


def count(tree):
    return sum(math.prod(np.shape(x)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("layers, expected", [(6, 247_201), (5, 237_953)])
def test_dcgan_generator_size_matches_probegen(layers, expected):
    params = dcgan_generator(4, (32, 32, 1), num_layers=layers).init(jax.random.key(0))
    assert count(params["generator"]) == expected  # ~247k for the 6-layer generator
    assert params["latents"].shape == (4, 32)


@pytest.mark.parametrize("shape", [(32, 32, 1), (28, 28, 1), (8, 8, 1), (32, 32, 3)])
def test_generator_output_shape_and_range(shape):
    source = dcgan_generator(6, shape)
    probes = source.apply(source.init(jax.random.key(1)))
    assert probes.shape == (6, *shape)
    assert float(jnp.abs(probes).max()) < 1.0 and float(probes.std()) > 0.05


@pytest.mark.parametrize("shape", [(28, 28, 1), (8, 8, 1)])
def test_deep_linear_generator_is_affine_in_its_latents(shape):
    specs = dcgan_specs(shape)
    params = dcgan_generator(3, shape).init(jax.random.key(2))
    z1, z2 = jax.random.normal(jax.random.key(3), (2, 3, 32))

    def out(z):
        return generator_pre_tanh({**params, "latents": z}, specs, shape[0], shape[1])

    a = 0.3
    np.testing.assert_allclose(out(a * z1 + (1 - a) * z2), a * out(z1) + (1 - a) * out(z2), rtol=1e-4, atol=1e-4)
    nonlinear = lambda z: generator_pre_tanh({**params, "latents": z}, specs, shape[0], shape[1], jax.nn.relu)
    assert not np.allclose(nonlinear(a * z1 + (1 - a) * z2), a * nonlinear(z1) + (1 - a) * nonlinear(z2), atol=1e-3)


@pytest.mark.parametrize("shape", [(28, 28, 1), (8, 8, 1)])
def test_linear_generator_run_on_its_basis_gives_the_same_probes_and_gradients_for_fewer_flops(shape):
    from probegen_jax.flops import xla_cost

    specs = dcgan_specs(shape)
    params = dcgan_generator(64, shape).init(jax.random.key(4))
    weights = jax.random.normal(jax.random.key(5), (64, *shape))

    def loss(p, via_basis):
        return jnp.sum(jnp.tanh(generator_pre_tanh(p, specs, shape[0], shape[1], via_basis=via_basis)) * weights)

    direct, basis = (generator_pre_tanh(params, specs, shape[0], shape[1], via_basis=v) for v in (False, True))
    np.testing.assert_allclose(basis, direct, rtol=1e-4, atol=1e-4 * float(jnp.abs(direct).max()))
    grads = [jax.grad(loss)(params, v) for v in (False, True)]
    for g_direct, g_basis in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
        np.testing.assert_allclose(g_basis, g_direct, rtol=1e-3, atol=1e-4 * float(jnp.abs(g_direct).max()))
    flops = [xla_cost(jax.grad(lambda p, v=v: loss(p, v)), params).flops for v in (False, True)]
    assert flops[1] < 0.7 * flops[0]  # 33 passes instead of 64


def test_vanilla_and_synthetic_probes():
    vanilla = image_probe_source("vanilla", 5, (8, 8, 1))
    v = vanilla.apply(vanilla.init(jax.random.key(0)))
    assert v.shape == (5, 8, 8, 1) and float(jnp.abs(v).max()) < 1 and vanilla.trainable
    synthetic = image_probe_source("synthetic", 5, (28, 28, 1), seed=3)
    s = synthetic.apply(synthetic.init(jax.random.key(0)))
    assert s.shape == (5, 28, 28, 1) and not synthetic.trainable
    assert float(jnp.abs(s).max()) <= 1.0
    np.testing.assert_array_equal(s, random_textures(5, (28, 28, 1), seed=3))
    assert not np.allclose(s, random_textures(5, (28, 28, 1), seed=4))
    with pytest.raises(UnknownNameError):
        image_probe_source("nope", 5, (8, 8, 1))


def test_probing_spec_dispatches_images_and_gradients_reach_the_generator():
    arch = make_arch("small_cnn", input_shape=(8, 8, 1), activation=["relu", "tanh"])
    zoo = jax.vmap(arch.init)(jax.random.split(jax.random.key(0), 3))
    learner, source = ProbingSpec("probegen", num_probes=4, head_hidden=16, head_layers=2).make_learner(arch, 1)
    assert source.input_shape == (8, 8, 1)
    params = learner.init(jax.random.key(1))
    grads = jax.grad(lambda p: learner.apply(p, zoo).sum())(params)
    assert float(jnp.abs(grads["source"]["latents"]).sum()) > 0
    assert float(jnp.abs(grads["source"]["generator"]["convT0"]["kernel"]).sum()) > 0
    responses = probe_zoo(arch, zoo, source.apply(params["source"]))
    np.testing.assert_allclose(responses, probe(arch.apply, zoo, source.apply(params["source"])), rtol=1e-5, atol=1e-6)


def test_probe_shape_must_match_the_architecture_input():
    arch = make_arch("small_cnn", input_shape=(28, 28, 1))
    zoo = jax.vmap(arch.init)(jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ShapeMismatchError, match=r"probes: expected shape \(K, 28, 28, 1\)"):
        probe_zoo(arch, zoo, jnp.zeros((4, 8, 8, 1)))
    with pytest.raises(ShapeMismatchError, match="takes inputs of shape"):
        probing_learner(arch, image_probe_source("probegen", 4, (32, 32, 1)), 1)
