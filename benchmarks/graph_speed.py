"""Seconds per NG-GNN training epoch on one SIREN zoo, side by side in one run:

  (a) this library (``ng_gnn.learner`` through the training loop's own compiled epoch: batches of
      padded graphs, vmapped and jit-compiled, one ``lax.scan`` per epoch),
  (b) a per-graph reference in JAX: the same forward and backward one graph at a time (a Python
      loop over the batch's graphs, one jit-compiled gradient per graph, accumulated; the optimiser
      step jit-compiled), checked to give the batched loss and gradients to 1e-5 before timing,
  (c) optionally the reference PyTorch Geometric code (mkofinas/neural-graphs,
      ``nn.gnn.GNNForClassification`` with its INR-classification ``pna.yaml``, sizes overridden),
      run in its own Python environment by ``graph_speed_official.py`` on the same weights, labels
      and batch order.

    python benchmarks/graph_speed.py                                  # 800 SIRENs, batch 32, small and paper size
    python benchmarks/graph_speed.py --specs small --nets 800 --repeats 3 \\
        --official-code /path/to/neural-graphs --official-python /path/to/venv/bin/python

The reference code needs (in its own environment, not this project's): torch (2.13.0 CPU build
works), torch_geometric 2.3 (later releases moved ``torch_geometric.utils.trim_to_layer``, which
it imports; torch_scatter is not needed), hydra-core, random-fourier-features-pytorch (which
imports torchvision for an image loader; PyPI's torchvision does not load beside a CPU torch, so
the worker stands in an empty module), einops and numpy. The zoo is random SIREN 2-32-32-1
parameters (their values do not matter for speed). "small" is ``NGGNNSpec.small()`` (d_hid 16,
2 layers, 16 Fourier features), "paper" ``NGGNNSpec()`` (the reference config: d_hid 32, 4 layers,
128 Fourier features, sigma 3). Every epoch is Adam with a cosine schedule over the same batch
order. Times are medians of ``--repeats`` epochs after a warm-up (a full epoch for the library,
which compiles it; one step for the others), the three implementations taking turns in each
repeat; ratios are the other's time over this library's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).parent))
from common import machine_description  # noqa: E402
from integrity import inr_zoo  # noqa: E402

from probegen_jax.methods.graphs import ng_gnn  # noqa: E402
from probegen_jax.methods.graphs.ng_gnn import NGGNNSpec  # noqa: E402
from probegen_jax.report import markdown_table  # noqa: E402
from probegen_jax.training.loop import (  # noqa: E402
    TrainConfig,
    TrainState,
    batch_order,
    epoch_function,
    make_optimizer,
    supervised_objective,
)
from probegen_jax.training.tasks import classification  # noqa: E402

SPECS = {"small": NGGNNSpec.small(), "paper": NGGNNSpec()}
CLASSES = 10


def setup(spec: NGGNNSpec, zoo, batch_size: int):
    """The learner, task, optimiser, batch order, initial state and device data shared by (a) and (b)."""
    learner = ng_gnn.learner(spec, zoo, CLASSES)
    task = classification(CLASSES)
    order = batch_order(0, 0, len(zoo), batch_size)
    optimizer = make_optimizer(TrainConfig(epochs=1, batch_size=batch_size), len(order))
    params = learner.init(jax.random.key(0))
    data = jax.device_put((zoo.params, jnp.asarray(zoo.targets["label"])))
    return learner, task, optimizer, order, params, data


def library_epoch(learner, task, optimizer, order, params, data):
    epoch = epoch_function(learner, task, optimizer)
    params = jax.tree.map(jnp.copy, params)  # the compiled epoch donates its state
    state = {"s": TrainState(params, optimizer.init(params))}
    order = jnp.asarray(order)

    def run() -> float:
        state["s"], loss = epoch(state["s"], data, order, jnp.asarray(0))
        return float(loss)

    return run


def per_graph_functions(learner, task, optimizer, batch_size: int):
    """``(graph_grad, update)``: one graph's loss and gradient added to the accumulator (each
    weighted ``1 / batch_size``, so a batch's sum is the batch mean), and the optimiser step."""
    objective = supervised_objective(learner, task)
    key = jax.random.key(0)

    @jax.jit
    def graph_grad(params, acc, inputs, target):
        loss, grads = jax.value_and_grad(objective)(params, (inputs, target), key)
        return jax.tree.map(lambda a, g: a + g / batch_size, acc, grads), loss

    @jax.jit
    def update(state: TrainState, grads) -> TrainState:
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state)

    return graph_grad, update


def per_graph_epoch(learner, task, optimizer, order, params, data):
    inputs, labels = data
    batch_size = order.shape[1]
    graph_grad, update = per_graph_functions(learner, task, optimizer, batch_size)
    graphs = [(jax.tree.map(lambda a, i=i: a[i:i + 1], inputs), labels[i:i + 1]) for i in range(len(labels))]
    zeros = jax.jit(lambda p: jax.tree.map(jnp.zeros_like, p))
    state = {"s": TrainState(params, optimizer.init(params))}

    def step(batch) -> float:
        acc, total = zeros(state["s"].params), 0.0
        for i in batch:
            acc, loss = graph_grad(state["s"].params, acc, *graphs[i])
            total = total + loss
        state["s"] = update(state["s"], acc)
        return total / batch_size

    def run(steps: int | None = None) -> float:
        losses = [step(batch) for batch in order[:steps]]
        return float(jnp.mean(jnp.stack(losses)))

    return run


def check_per_graph(learner, task, optimizer, order, params, data) -> float:
    """The per-graph loop's loss and gradients on the first batch against the batched ones (the
    library's objective, one ``value_and_grad``); returns the largest absolute difference."""
    inputs, labels = data
    batch = order[0]
    objective = supervised_objective(learner, task)
    key = jax.random.key(0)
    sub = jax.tree.map(lambda a: a[batch], (inputs, labels))
    loss, grads = jax.jit(jax.value_and_grad(objective))(params, sub, key)
    graph_grad, _ = per_graph_functions(learner, task, optimizer, len(batch))
    acc, total = jax.tree.map(jnp.zeros_like, params), 0.0
    for i in batch:
        acc, l = graph_grad(params, acc, jax.tree.map(lambda a, i=i: a[i:i + 1], inputs), labels[i:i + 1])
        total += float(l)
    diffs = [abs(total / len(batch) - float(loss))]
    diffs += [float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(acc), jax.tree.leaves(grads), strict=True)]
    np.testing.assert_allclose(total / len(batch), float(loss), rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(acc), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    return max(diffs)


class Official:
    """The reference code's epochs in a worker process (``graph_speed_official.py``)."""

    def __init__(self, python: str, code: str, spec: NGGNNSpec, zoo, order: np.ndarray, workdir: str):
        path = Path(workdir) / "zoo.npz"
        names = sorted(zoo.params)  # dense0, dense1, ...
        arrays = {"depth": np.asarray(len(names)), "labels": zoo.targets["label"], "order": order}
        for i, name in enumerate(names):
            arrays[f"w{i}"] = np.asarray(zoo.params[name]["kernel"], np.float32)[..., None]
            arrays[f"b{i}"] = np.asarray(zoo.params[name]["bias"], np.float32)[..., None]
        np.savez(path, **arrays)
        cmd = [python, str(Path(__file__).parent / "graph_speed_official.py"), "--code", code, "--data", str(path),
               "--d-hid", str(spec.d_hid), "--layers", str(spec.num_layers), "--fourier-dim", str(spec.fourier_dim),
               "--sigma", str(spec.fourier_sigma)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the reference worker stopped (exit code {self.proc.wait()})")
        return json.loads(line)

    def epoch(self, steps: int | None = None) -> float:
        self.proc.stdin.write("warmup\n" if steps else "epoch\n")
        self.proc.stdin.flush()
        return self._read()["seconds"]

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name: str, spec: NGGNNSpec, zoo, args, workdir: str) -> list[str]:
    learner, task, optimizer, order, params, data = setup(spec, zoo, args.batch_size)
    n_params = sum(a.size for a in jax.tree.leaves(params))
    diff = check_per_graph(learner, task, optimizer, order, params, data)
    ours = library_epoch(learner, task, optimizer, order, params, data)
    ref = per_graph_epoch(learner, task, optimizer, order, params, data)
    official = (Official(args.official_python, args.official_code, spec, zoo, order, workdir)
                if args.official_code else None)
    compile_s = timed(ours)  # warm-up: the first epoch compiles
    ref(1)
    if official:
        official.epoch(1)
    times: dict[str, list[float]] = {"ours": [], "ref": [], "official": []}
    for _ in range(args.repeats):
        times["ours"].append(timed(ours))
        times["ref"].append(timed(ref))
        if official:
            times["official"].append(official.epoch())
    if official:
        official.close()
    med = {k: statistics.median(v) for k, v in times.items() if v}
    print(f"{name}: {n_params} params here"
          + (f", {official.info['params']} in the reference code" if official else "")
          + f"; first epoch (compiling) {compile_s:.1f} s; per-graph loop matches to {diff:.1e}; "
          + "epochs (s): " + ", ".join(f"{k} {[round(t, 2) for t in v]}" for k, v in times.items() if v), flush=True)
    row = [f"{name} (d_hid {spec.d_hid}, {spec.num_layers} layers)", f"{med['ours']:.2f}", f"{med['ref']:.2f}",
           f"{med['ref'] / med['ours']:.1f}x"]
    row += [f"{med['official']:.2f}", f"{med['official'] / med['ours']:.1f}x"] if official else ["—", "—"]
    return row


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", type=int, default=800, help="SIRENs in the training epoch")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--specs", default="small,paper", help=f"comma-separated, of {sorted(SPECS)}")
    p.add_argument("--official-code", help="checkout of mkofinas/neural-graphs (omit to skip the reference code)")
    p.add_argument("--official-python", default=sys.executable, help="Python of the reference code's environment")
    args = p.parse_args(argv)
    print(f"machine: {machine_description()}")
    zoo = inr_zoo(args.nets)
    steps = args.nets // args.batch_size
    print(f"zoo: {args.nets} random SIRENs 2-32-32-1, {steps} steps of {args.batch_size} per epoch, "
          f"{args.repeats} repeats\n", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.specs.split(","):
            rows.append(measure(name, SPECS[name], zoo, args, workdir))
    print()
    print(markdown_table(["NG-GNN", "probegen_jax s / epoch", "per-graph JAX loop s / epoch", "loop / ours",
                          "reference PyG code s / epoch", "reference / ours"], rows))


if __name__ == "__main__":
    main()
