"""User architectures: Flax linen modules with BatchNorm state, and factories recorded by name."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probegen_jax as pj
from probegen_jax.archs import arch_from_spec
from probegen_jax.errors import UnknownNameError


class Normed(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(6)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Dense(3)(nn.relu(x))


def normed_arch(scale: float = 1.0) -> pj.Arch:
    return dataclasses.replace(pj.arch_from_linen(Normed(), (4,), apply_kwargs={"train": False}),
                               config={"scale": scale}, factory=f"{__name__}:normed_arch")


def test_linen_batch_stats_are_part_of_each_network():
    arch = normed_arch()
    params = arch.init(jax.random.key(0))
    assert set(params) == {"params", "batch_stats"}
    shifted = jax.tree.map(lambda a: a, params)
    shifted["batch_stats"]["BatchNorm_0"]["mean"] = params["batch_stats"]["BatchNorm_0"]["mean"] + 1.0
    x = jnp.ones((2, 4))
    assert not np.allclose(arch.apply(params, x), arch.apply(shifted, x))  # running averages are used
    zoo_params = jax.vmap(arch.init)(jax.random.split(jax.random.key(1), 5))
    assert pj.probe_zoo(arch, zoo_params, x).shape == (5, 2, 3)


def test_factory_architectures_rebuild_from_their_spec(tmp_path):
    arch = normed_arch(2.0)
    assert arch.registered and arch.spec()["factory"] == f"{__name__}:normed_arch"
    again = arch_from_spec(arch.spec())
    assert again.config == {"scale": 2.0} and again.factory == arch.factory
    zoo = pj.Zoo(arch, jax.vmap(arch.init)(jax.random.split(jax.random.key(2), 4)), {"y": np.arange(4.0)})
    pj.save_zoo(zoo, tmp_path / "zoo")
    assert pj.load_zoo(tmp_path / "zoo").arch.spec() == arch.spec()  # no arch= needed to load it
    with pytest.raises(UnknownNameError, match="cannot be imported"):
        arch_from_spec({"name": "x", "factory": "no_such_module:f"})
