"""Your own Flax networks as a model zoo: probe them, train ProbeGen, save the run.

Trains a few hundred small ``flax.linen`` MLPs on scikit-learn's digits, each for its own number
of SGD steps (all at once, vmapped), then ProbeGen predicts every network's test accuracy from its
answers to learned probes alone. From the repository root:

    python -m examples.own_flax_zoo --out results/own_zoo
    probegen-jax predict --run results/own_zoo/run --out predictions.csv   # the saved run, later
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import probegen_jax as pj
from probegen_jax.data import load_digits


class MLP(nn.Module):
    """The zoo's members: 8x8 digit images -> 10 logits."""

    hidden: int = 32

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
        return nn.Dense(10)(x)


def digits_mlp(hidden: int = 32) -> pj.Arch:
    """The architecture, built by an importable function and recorded as its ``factory``, so saved
    zoos and runs of it load anywhere, the command line included."""
    arch = pj.arch_from_linen(MLP(hidden), (8, 8, 1), name="digits_mlp")
    return dataclasses.replace(arch, config={"hidden": hidden}, factory="examples.own_flax_zoo:digits_mlp")


def train_networks(arch: pj.Arch, networks: int, max_steps: int, seed: int = 0) -> pj.Zoo:
    """``networks`` MLPs, network i trained for its own number of SGD steps in [0, max_steps)."""
    data = load_digits()
    x, y = jnp.asarray(data.train_images), jnp.asarray(data.train_labels)
    keys = jax.random.split(jax.random.key(seed), networks)
    params = jax.vmap(arch.init)(keys)
    steps = np.random.default_rng(seed).integers(0, max_steps, networks)
    optimizer = optax.sgd(0.1)

    def loss(p, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(arch.apply(p, xb), yb).mean()

    @jax.jit
    def train_all(params):
        def step(state, i):
            p, opt = state
            batch = jax.random.randint(jax.random.fold_in(jax.random.key(seed), i), (64,), 0, len(y))
            grads = jax.vmap(jax.grad(loss), in_axes=(0, None, None))(p, x[batch], y[batch])
            updates, new_opt = jax.vmap(optimizer.update)(grads, opt)
            active = (i < jnp.asarray(steps)).astype(jnp.float32)  # network j stops after steps[j]
            updates = jax.tree.map(lambda u: u * active.reshape(-1, *[1] * (u.ndim - 1)), updates)
            return (optax.apply_updates(p, updates), new_opt), None

        (params, _), _ = jax.lax.scan(step, (params, jax.vmap(optimizer.init)(params)), jnp.arange(max_steps))
        return params

    params = train_all(params)
    logits = jax.vmap(arch.apply, in_axes=(0, None))(params, jnp.asarray(data.test_images))
    accuracy = np.asarray((logits.argmax(-1) == jnp.asarray(data.test_labels)).mean(-1), np.float32)
    order = np.random.default_rng(seed + 1).permutation(networks)
    cut = [int(networks * 0.7), int(networks * 0.85)]
    splits = dict(zip(("train", "val", "test"), np.split(order, cut), strict=True))
    return pj.Zoo(arch, params, {"test_accuracy": accuracy}, splits,
                  {"task_defaults": {"target": "test_accuracy", "response": "softmax"}})


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/own_zoo")
    p.add_argument("--networks", type=int, default=400)
    p.add_argument("--max-steps", type=int, default=60)
    p.add_argument("--probes", type=int, default=16)
    p.add_argument("--epochs", type=int, default=20)
    args = p.parse_args(argv)
    out = Path(args.out)

    zoo = train_networks(digits_mlp(), args.networks, args.max_steps)
    pj.save_zoo(zoo, out / "zoo", overwrite=True)
    responses = pj.probe_zoo(zoo.arch, zoo.params, jnp.zeros((4, 8, 8, 1)))  # any probes, every network at once
    print(f"{zoo}\nresponses to 4 blank probes: {responses.shape}")

    run = pj.train("probegen", zoo, {"num_probes": args.probes, "head_hidden": 64, "head_layers": 3},
                   pj.TrainConfig(epochs=args.epochs, batch_size=32, learning_rate=1e-3), zoo_path=str(out / "zoo"))
    pj.save_run(run, out / "run")
    print(f"{run}\nsaved to {out / 'run'}")
    return run.result.test


if __name__ == "__main__":
    main()
