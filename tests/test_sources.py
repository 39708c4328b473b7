"""Probe sources: ProbeGen's deep linear generator, its non-linear ablation, free and fixed probes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probegen_jax.archs import siren
from probegen_jax.errors import ShapeMismatchError, UnknownNameError
from probegen_jax.methods.probing.probegen import learned_probes_of, mlp_head, probing_learner
from probegen_jax.methods.probing.sources import (
    COORDINATE_SOURCES,
    coordinate_probe_source,
    dense_generator,
    fixed_probes,
    free_probes,
)

K = 16


def with_latents(params, latents):
    return {**params, "latents": latents}


def mix_error(source, seed=0, alpha=0.3):
    """max |G(a z1 + (1-a) z2) - (a G(z1) + (1-a) G(z2))| over the probes."""
    params = source.init(jax.random.key(seed))
    z1 = jax.random.normal(jax.random.key(seed + 1), params["latents"].shape)
    z2 = jax.random.normal(jax.random.key(seed + 2), params["latents"].shape)
    mixed = source.apply(with_latents(params, alpha * z1 + (1 - alpha) * z2))
    combo = alpha * source.apply(with_latents(params, z1)) + (1 - alpha) * source.apply(with_latents(params, z2))
    return float(jnp.max(jnp.abs(mixed - combo))), float(jnp.max(jnp.abs(combo)))


def test_probegen_generator_is_affine_in_the_latents():
    source = coordinate_probe_source("probegen", K)
    for seed in range(3):
        err, scale = mix_error(source, seed)
        assert scale > 0.1
        assert err < 1e-5 * max(1.0, scale)


def test_nonlinear_generator_is_not_affine():
    source = coordinate_probe_source("nonlinear", K)
    err, scale = mix_error(source)
    assert err > 1e-2 * scale


def test_probegen_matches_the_reference_layout():
    """K latents of size 32 (N(0, 1)) through Linear(32->32) -> Linear(32->2), nothing else."""
    source = coordinate_probe_source("probegen", K)
    params = source.init(jax.random.key(0))
    shapes = jax.tree.map(lambda a: a.shape, params)
    assert shapes == {"latents": (K, 32), "generator": {"dense0": {"kernel": (32, 32), "bias": (32,)},
                                                       "dense1": {"kernel": (32, 2), "bias": (2,)}}}
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    g = p["generator"]
    want = (p["latents"] @ g["dense0"]["kernel"] + g["dense0"]["bias"]) @ g["dense1"]["kernel"] + g["dense1"]["bias"]
    np.testing.assert_allclose(np.asarray(source.apply(params)), want, rtol=1e-4, atol=1e-5)
    lat = p["latents"].ravel()
    assert abs(lat.mean()) < 0.15 and 0.85 < lat.std() < 1.15  # N(0, 1), 512 samples


@pytest.mark.parametrize("kind", COORDINATE_SOURCES)
def test_every_coordinate_source_makes_k_by_2_probes(kind):
    source = coordinate_probe_source(kind, K)
    probes = source.apply(source.init(jax.random.key(0)))
    assert probes.shape == (K, 2) and source.num_probes == K and source.input_shape == (2,)
    assert np.all(np.isfinite(np.asarray(probes)))
    assert source.trainable == (kind != "synthetic")


def test_synthetic_source_is_fixed_and_in_the_unit_square():
    source = coordinate_probe_source("synthetic", 256, seed=5)
    assert not source.trainable and jax.tree.leaves(source.init(jax.random.key(0))) == []
    probes = np.asarray(source.apply({}))
    assert probes.min() >= -1.0 and probes.max() <= 1.0
    assert probes.min() < -0.9 and probes.max() > 0.9  # uniform over [-1, 1]^2, not a corner of it
    np.testing.assert_array_equal(probes, np.asarray(source.apply(source.init(jax.random.key(1)))))
    np.testing.assert_array_equal(probes, np.asarray(coordinate_probe_source("synthetic", 256, seed=5).apply({})))
    assert not np.allclose(probes, np.asarray(coordinate_probe_source("synthetic", 256, seed=6).apply({})))


def test_vanilla_probes_are_the_params():
    source = coordinate_probe_source("vanilla", K)
    params = source.init(jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(source.apply(params)), np.asarray(params["probes"]))
    squashed = free_probes(K, (2,), squash="tanh")
    np.testing.assert_allclose(np.asarray(squashed.apply(params)), np.tanh(np.asarray(params["probes"])), rtol=1e-6)


def test_image_generator_reshapes_and_squashes():
    source = dense_generator(4, (3, 3, 1), squash="tanh", hidden=(8, 8))
    probes = np.asarray(source.apply(source.init(jax.random.key(0))))
    assert probes.shape == (4, 3, 3, 1) and np.abs(probes).max() < 1.0


def test_fixed_probes_keep_their_values():
    points = jnp.linspace(-1, 1, 10).reshape(5, 2)
    source = fixed_probes(points, name="grid")
    assert source.name == "grid" and source.num_probes == 5 and source.input_shape == (2,)
    np.testing.assert_array_equal(np.asarray(source.apply({})), np.asarray(points))


def test_unknown_source_name_lists_available():
    with pytest.raises(UnknownNameError) as err:
        coordinate_probe_source("bad", K)
    for kind in ("bad", "probegen", "vanilla", "synthetic", "nonlinear"):
        assert kind in str(err.value)


def test_probing_learner_refuses_mismatched_probes_and_learns_through_the_source():
    arch = siren(hidden=8)
    with pytest.raises(ShapeMismatchError, match="probegen"):
        probing_learner(arch, dense_generator(K, (3,)), 10)
    source = coordinate_probe_source("probegen", K)
    learner = probing_learner(arch, source, 10, head_hidden=16, head_layers=2)
    params = learner.init(jax.random.key(0))
    zoo = jax.tree.map(lambda *a: jnp.stack(a), *[arch.init(jax.random.key(i)) for i in range(3)])
    logits = learner.apply(params, zoo)
    assert logits.shape == (3, 10)
    # gradients of the head's loss reach the generator's latents and weights
    grads = jax.grad(lambda p: jnp.sum(learner.apply(p, zoo) ** 2))(params)
    assert float(jnp.abs(grads["source"]["latents"]).max()) > 0
    assert float(jnp.abs(grads["source"]["generator"]["dense0"]["kernel"]).max()) > 0
    np.testing.assert_array_equal(np.asarray(learned_probes_of(source, params)),
                                  np.asarray(source.apply(params["source"])))


def test_softmax_response_reads_class_probabilities_not_the_logit_scale():
    from probegen_jax.archs import make_arch
    from probegen_jax.methods.probing.probe import probe

    arch = make_arch("mlp", input_shape=[3], hidden=8, depth=1, out_dim=4)
    zoo = jax.vmap(arch.init)(jax.random.split(jax.random.key(0), 5))
    last = max(zoo)  # the output layer
    shifted = {**zoo, last: {**zoo[last], "bias": zoo[last]["bias"] + 7.0}}  # every logit + 7
    source = dense_generator(K, (3,))
    out = {}
    for response in ("raw", "softmax"):
        learner = probing_learner(arch, source, 2, head_hidden=16, head_layers=2, response=response)
        params = learner.init(jax.random.key(1))
        out[response] = [np.asarray(learner.apply(params, z)) for z in (zoo, shifted)]
    np.testing.assert_allclose(*out["softmax"], rtol=1e-5, atol=1e-6)
    assert np.abs(out["raw"][0] - out["raw"][1]).max() > 1e-2
    # the head reads softmax(responses): the same numbers as the head applied to probabilities by hand
    params = probing_learner(arch, source, 2, head_hidden=16, head_layers=2).init(jax.random.key(1))
    probs = jax.nn.softmax(probe(arch.apply, zoo, source.apply(params["source"])))
    by_hand = mlp_head(K * 4, 2, hidden=16, layers=2).apply(params["head"], probs.reshape(5, -1))
    np.testing.assert_allclose(out["softmax"][0], np.asarray(by_hand), rtol=1e-5, atol=1e-6)
    with pytest.raises(UnknownNameError, match="softmax"):
        probing_learner(arch, source, 2, response="sigmoid")


def test_default_response_is_softmax_only_for_classifier_zoos_scored_by_accuracy():
    from probegen_jax.archs import make_arch
    from probegen_jax.zoo import Zoo
    from probegen_jax.zoo.zoo import task_defaults

    def default_response(zoo):
        return task_defaults(zoo).response

    def zoo(out_dim, target):
        arch = make_arch("mlp", input_shape=[3], hidden=4, depth=1, out_dim=out_dim)
        params = jax.vmap(arch.init)(jax.random.split(jax.random.key(0), 2))
        return Zoo(arch, params, targets={target: np.zeros(2, np.float32)}, splits={"train": np.arange(2)})

    assert default_response(zoo(10, "test_accuracy")) == "softmax"
    assert default_response(zoo(10, "label")) == "raw"  # e.g. a model tree: logits, but no accuracy target
    assert default_response(zoo(1, "test_accuracy")) == "raw"  # one output: nothing to normalise over
