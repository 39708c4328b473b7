"""probe() and probe_zoo(): vmapped responses against a per-network loop, batching and sharding."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probegen_jax.archs import mlp, siren
from probegen_jax.errors import ShapeMismatchError
from probegen_jax.parallel import pad_zoo_axis, place_blocks, zoo_mesh
from probegen_jax.methods.probing import probe, probe_zoo

probe_module = importlib.import_module("probegen_jax.methods.probing.probe")  # the package exports probe() under this name


def make_zoo(arch, n, seed=0):
    return jax.tree.map(lambda *a: jnp.stack(a), *[arch.init(jax.random.key(seed + i)) for i in range(n)])


def loop_reference(arch, zoo, probes):
    """One network at a time, in numpy: the responses computed another way."""
    n = jax.tree.leaves(zoo)[0].shape[0]
    rows = []
    for i in range(n):
        params = jax.tree.map(lambda a: a[i], zoo)
        rows.append(np.asarray(arch.apply(params, probes)).reshape(probes.shape[0], -1))
    return np.stack(rows)


@pytest.fixture(scope="module")
def siren_case():
    arch = siren(hidden=16)
    zoo = make_zoo(arch, 13)
    probes = jax.random.uniform(jax.random.key(99), (11, 2), minval=-1, maxval=1)
    return arch, zoo, probes


def test_probe_equals_a_loop_over_networks(siren_case):
    arch, zoo, probes = siren_case
    got = probe(arch.apply, zoo, probes)
    assert got.shape == (13, 11, 1)
    np.testing.assert_allclose(np.asarray(got), loop_reference(arch, zoo, probes), rtol=1e-5, atol=1e-6)
    # every network answers differently
    assert np.unique(np.asarray(got[:, 0, 0]).round(6)).size == 13


def test_probe_flattens_multi_dim_outputs_of_image_networks():
    arch = mlp(input_shape=(4, 4, 1), hidden=8, depth=1, out_dim=3)
    zoo = make_zoo(arch, 5)
    probes = jax.random.normal(jax.random.key(1), (6, 4, 4, 1))
    got = probe(arch.apply, zoo, probes)
    assert got.shape == (5, 6, 3)
    np.testing.assert_allclose(np.asarray(got), loop_reference(arch, zoo, probes), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(probe_zoo(arch, zoo, probes, batch_size=2)), np.asarray(got),
                               rtol=1e-6, atol=1e-6)


def test_gradients_reach_the_probes(siren_case):
    arch, zoo, probes = siren_case
    grad = jax.grad(lambda x: jnp.sum(probe(arch.apply, zoo, x) ** 2))(probes)
    want = sum(
        jax.grad(lambda x, i=i: jnp.sum(arch.apply(jax.tree.map(lambda a: a[i], zoo), x) ** 2))(probes)
        for i in range(13)
    )
    np.testing.assert_allclose(np.asarray(grad), np.asarray(want), rtol=1e-4, atol=1e-4)
    assert np.abs(np.asarray(grad)).max() > 0


def test_default_block_holds_the_largest_activation_within_the_cpu_budget():
    arch = siren(hidden=32)
    zoo = make_zoo(arch, 2)
    probes = jnp.zeros((128, 2))
    largest = 128 * 32 * 4  # one hidden layer's pre-activations, float32
    assert probe_module.largest_activation_bytes(arch.apply, zoo, probes) == largest
    assert probe_module.default_batch_size(arch.apply, zoo, probes, "cpu") == probe_module.CPU_BLOCK_BYTES // largest
    wide = mlp(input_shape=(2,), hidden=10_000, depth=1, out_dim=1)  # one network over the budget
    assert probe_module.default_batch_size(wide.apply, make_zoo(wide, 1), probes, "cpu") == 1
    assert probe_module.default_batch_size(arch.apply, zoo, probes, "gpu") is None


def test_probe_zoo_default_blocks_equal_probe(siren_case, monkeypatch):
    arch, zoo, probes = siren_case
    largest = probe_module.largest_activation_bytes(arch.apply, zoo, probes)
    monkeypatch.setattr(probe_module, "CPU_BLOCK_BYTES", 3 * largest)  # 13 networks in blocks of at most 3
    want = np.asarray(probe(arch.apply, zoo, probes))
    np.testing.assert_allclose(np.asarray(probe_zoo(arch, zoo, probes)), want, rtol=1e-6, atol=1e-6)


def test_memory_budget_sets_the_blocks_and_keeps_the_result(siren_case, monkeypatch):
    arch, zoo, probes = siren_case
    per_network = probe_module.ACTIVATIONS_PER_NETWORK * probe_module.largest_activation_bytes(arch.apply, zoo, probes)
    budget = 3 * per_network + per_network // 2  # 3 networks fit, 4 do not
    assert probe_module.block_size(arch, zoo, probes, memory_budget_bytes=budget) == 3
    blocks = []
    real = probe_module._probe_in_blocks
    monkeypatch.setattr(probe_module, "_probe_in_blocks", lambda *a: (blocks.append(a[3:]), real(*a))[1])
    got = probe_zoo(arch, zoo, probes, memory_budget_bytes=budget)
    assert blocks == [(1, 3)]  # 13 networks in 5 blocks of 3 on one device
    np.testing.assert_array_equal(np.asarray(got), np.asarray(probe_zoo(arch, zoo, probes, batch_size=3)))
    np.testing.assert_allclose(np.asarray(got), np.asarray(probe(arch.apply, zoo, probes)), rtol=1e-6, atol=1e-6)
    probe_zoo(arch, zoo, probes, memory_budget_bytes=1)  # below one network: blocks of one
    assert blocks[-1] == (1, 1)


def test_accelerator_blocks_take_a_share_of_the_free_memory(siren_case):
    arch, zoo, probes = siren_case
    per_network = probe_module.ACTIVATIONS_PER_NETWORK * probe_module.largest_activation_bytes(arch.apply, zoo, probes)
    free = 1000 * per_network
    by_free = int(probe_module.FREE_MEMORY_SHARE * free) // per_network
    assert by_free == 500
    assert probe_module.default_batch_size(arch.apply, zoo, probes, "gpu", free_bytes=free) == by_free
    assert probe_module.default_batch_size(arch.apply, zoo, probes, "gpu", free_bytes=free,
                                           memory_budget_bytes=20 * per_network) == 20
    assert probe_module.default_batch_size(arch.apply, zoo, probes, "gpu") is None  # nothing known: one block


def test_free_memory_is_the_least_over_the_devices():
    class Device:
        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

    gpus = [Device({"bytes_limit": 100, "bytes_in_use": 30}), Device({"bytes_limit": 100, "bytes_in_use": 60})]
    assert probe_module.free_memory_bytes(gpus) == 40
    assert probe_module.free_memory_bytes([*gpus, Device(None)]) is None
    assert probe_module.free_memory_bytes(jax.local_devices()) is None  # CPU devices report nothing


@pytest.mark.parametrize(("n", "batch_size", "devices", "block"), [(1000, 256, 1, 250), (13, 3, 1, 3), (13, None, 1, 13),
                                                                   (1000, 256, 8, 125), (1001, 100, 1, 91)])
def test_blocks_are_evened_out_to_little_padding(eight_devices, n, batch_size, devices, block):
    mesh = zoo_mesh(devices) if devices > 1 else None
    padded, got_n, got_devices, got_block = place_blocks({"w": jnp.zeros((n, 2))}, mesh, batch_size)
    assert (got_n, got_devices, got_block) == (n, devices, block)
    rows = padded["w"].shape[0]
    assert rows % (devices * block) == 0 and 0 <= rows - n < devices * block


@pytest.mark.parametrize("batch_size", [1, 3, 4, 13, 100])
def test_probe_zoo_in_batches_equals_probe(siren_case, batch_size):
    arch, zoo, probes = siren_case  # 13 networks: no batch size above 1 divides it
    want = np.asarray(probe(arch.apply, zoo, probes))
    got = probe_zoo(arch, zoo, probes, batch_size=batch_size)
    assert got.shape == (13, 11, 1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("batch_size", [None, 1])
def test_probe_zoo_on_8_devices_equals_one_device(siren_case, eight_devices, batch_size):
    arch, zoo, probes = siren_case
    mesh = zoo_mesh(8)
    assert mesh.size == 8 and mesh.axis_names == ("zoo",)
    want = np.asarray(probe_zoo(arch, zoo, probes))
    got = probe_zoo(arch, zoo, probes, mesh=mesh, batch_size=batch_size)
    assert got.shape == (13, 11, 1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got), loop_reference(arch, zoo, probes), rtol=1e-5, atol=1e-6)


def test_pad_zoo_axis_repeats_the_first_row():
    tree = {"a": jnp.arange(10).reshape(5, 2), "b": jnp.arange(5.0)}
    padded, n = pad_zoo_axis(tree, 8)
    assert n == 5 and padded["a"].shape == (8, 2) and padded["b"].shape == (8,)
    np.testing.assert_array_equal(padded["a"][5:], np.tile(np.asarray(tree["a"][:1]), (3, 1)))
    same, n = pad_zoo_axis(tree, 5)
    assert n == 5 and same["a"].shape == (5, 2)


def test_wrong_probe_shape_is_refused(siren_case):
    arch, zoo, _ = siren_case
    with pytest.raises(ShapeMismatchError, match="probes") as err:
        probe_zoo(arch, zoo, jnp.zeros((11, 3)))
    assert "(K, 2)" in str(err.value) and "(11, 3)" in str(err.value)
    with pytest.raises(ShapeMismatchError, match="probes"):
        probe_zoo(arch, zoo, jnp.zeros((11,)))


def test_wrong_zoo_params_are_refused(siren_case):
    arch, zoo, probes = siren_case
    with pytest.raises(ShapeMismatchError, match="zoo params"):
        probe_zoo(siren(hidden=8), zoo, probes)
    single = jax.tree.map(lambda a: a[0], zoo)
    with pytest.raises(ShapeMismatchError):
        probe_zoo(arch, single, probes)
