"""Weight-space augmentation: exact transforms, symmetries, MixUp with alignment, determinism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probegen_jax.archs import make_arch
from probegen_jax.weightspace import (
    WeightAugment,
    aligned_mixup,
    batch_augmenter,
    constant_shift,
    flip_signs,
    mixup,
    permute,
    quantile_dropout,
    random_permutations,
    random_shifts,
    random_signs,
    rotate,
    rotation_matrix,
    shift_biases,
    translate,
    weight_dropout,
)

SIREN = make_arch("siren")
W0 = SIREN.config["w0"]
COORDS = jax.random.uniform(jax.random.key(1), (256, 2), minval=-1, maxval=1)


@pytest.fixture(scope="module")
def net():
    return SIREN.init(jax.random.key(0))


def exact(params, x):
    return make_arch("siren", exact_sine=True).apply(params, x)


def test_translation_through_the_first_bias_is_the_translated_function(net):
    t = jnp.array([0.2, -0.1])
    np.testing.assert_allclose(exact(translate(net, t, 1), COORDS), exact(net, COORDS + t), atol=1e-5)
    assert not np.allclose(exact(translate(net, t, 2), COORDS), exact(net, COORDS + t), atol=1e-3), \
        "a deeper translation is not the translated function (documented)"


def test_rotation_of_the_first_layer_is_the_rotated_function(net):
    r = rotation_matrix(30.0)
    np.testing.assert_allclose(r @ r.T, np.eye(2), atol=1e-6)
    np.testing.assert_allclose(exact(rotate(net, 30.0), COORDS), exact(net, COORDS @ r), atol=1e-5)


def test_constant_shift_is_the_reference_noise_no_draw(net):
    shifted = constant_shift(net, 0.1)
    for name in net:
        k = np.asarray(net[name]["kernel"])
        np.testing.assert_allclose(shifted[name]["kernel"], k + 0.1 * k.std(ddof=1), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(shifted["dense2"]["bias"], net["dense2"]["bias"])  # one output: kept


def test_weight_dropout_rescales_survivors(net):
    dropped = weight_dropout(jax.random.key(3), net, 0.25)
    k, d = np.asarray(net["dense1"]["kernel"]), np.asarray(dropped["dense1"]["kernel"])
    kept = d != 0
    np.testing.assert_allclose(d[kept], k[kept] / 0.75, rtol=1e-6)
    assert 0.6 < kept.mean() < 0.9


def test_quantile_dropout_zeroes_the_smallest_magnitudes(net):
    out = quantile_dropout(net, 0.3)
    every = np.concatenate([np.abs(np.asarray(out[n][k])).ravel() for n in out for k in ("kernel", "bias")])
    assert 0.25 < (every == 0).mean() < 0.35


@pytest.mark.parametrize("transform", ["permute", "sign_flip", "bias_shift"])
def test_symmetries_leave_the_function_unchanged(net, transform):
    key = jax.random.key(7)
    moved = {"permute": lambda: permute(net, random_permutations(key, net)),
             "sign_flip": lambda: flip_signs(net, random_signs(key, net, 0.5)),
             "bias_shift": lambda: shift_biases(net, random_shifts(key, net, 4), W0)}[transform]()
    assert not np.allclose(moved["dense0"]["bias"], net["dense0"]["bias"])
    np.testing.assert_allclose(exact(moved, COORDS), exact(net, COORDS), atol=1e-5)


def test_aligned_mixup_of_a_permuted_copy_returns_the_network(net):
    permuted = permute(net, random_permutations(jax.random.key(5), net))
    back = jax.jit(aligned_mixup)(net, permuted, 0.3)
    for name in net:
        np.testing.assert_allclose(back[name]["kernel"], net[name]["kernel"], atol=1e-6)
        np.testing.assert_allclose(back[name]["bias"], net[name]["bias"], atol=1e-6)
    plain = mixup(net, permuted, 0.3)
    assert not np.allclose(plain["dense1"]["kernel"], net["dense1"]["kernel"], atol=1e-3)


FULL = WeightAugment.reference(positive_scale=0.1, quantile=0.1, permute=True, sign_flip=0.5, bias_shift=4,
                               noise=0.32, mixup="aligned", matching_iterations=5)


def test_the_same_key_gives_the_same_batch():
    params = jax.vmap(SIREN.init)(jax.random.split(jax.random.key(0), 6))
    targets = jnp.arange(6)
    augment = jax.jit(batch_augmenter(FULL, W0))
    a, b = augment(jax.random.key(9), params, targets), augment(jax.random.key(9), params, targets)
    c = augment(jax.random.key(10), params, targets)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.allclose(a.inputs["dense1"]["kernel"], c.inputs["dense1"]["kernel"])
    assert a.inputs["dense1"]["kernel"].shape == params["dense1"]["kernel"].shape
    np.testing.assert_array_equal(np.sort(a.partner_targets), targets)
    assert a.weight.shape == (6,) and (0 <= a.weight).all() and (a.weight <= 1).all()


def test_no_mixup_keeps_targets():
    params = jax.vmap(SIREN.init)(jax.random.split(jax.random.key(0), 4))
    out = jax.jit(batch_augmenter(WeightAugment.reference()))(jax.random.key(0), params, jnp.arange(4))
    assert out.weight is None
    np.testing.assert_array_equal(out.targets, np.arange(4))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="mixup"):
        WeightAugment(mixup="cutmix")
    with pytest.raises(ValueError, match="w0"):
        batch_augmenter(WeightAugment(bias_shift=4))
