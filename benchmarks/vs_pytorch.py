"""The same probing computation and the same ProbeGen training epoch, side by side, in one run:

  (a) this library (``probe_zoo``: one jit-compiled call over cache-sized blocks of vmapped
      networks; the epoch is the one ``train.fit`` runs),
  (b) PyTorch looping over the networks one at a time, as the reference implementation does
      (every INR an ``nn.Module``, called in a Python loop inside the model's forward),
  (c) PyTorch with ``torch.func.vmap`` over the stacked weights (``functional_call``).

    python benchmarks/vs_pytorch.py                        # 2048 SIRENs probed, 1024-network epoch
    python benchmarks/vs_pytorch.py --probe-nets 512 --epoch-nets 256 --repeats 3

PyTorch is an optional extra (``pip install torch==2.13.0``, a CPU build is enough); without it
the benchmark says so and exits cleanly. Times are medians of ``--repeats`` runs after a warm-up,
taken in the same process on the same machine; ratios are PyTorch time / this library's time.

The probing row also prints this CPU's floor for the computation: the FLOPs XLA counts in it (the
multiply-adds and the arithmetic of every sine) at the rate this machine reaches on one large
matrix product, measured in the same run. An implementation that computes these sines cannot beat
the floor, so "loop / floor" is about the largest speed-up over the loop this CPU allows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine_description, median_seconds  # noqa: E402

from probegen_jax.archs import make_arch  # noqa: E402
from probegen_jax.flops import xla_cost  # noqa: E402
from probegen_jax.methods.probing import probe, probe_zoo  # noqa: E402
from probegen_jax.methods.probing.spec import ProbingSpec  # noqa: E402
from probegen_jax.report import markdown_table  # noqa: E402
from probegen_jax.training.tasks import classification  # noqa: E402
from probegen_jax.training.loop import TrainConfig, TrainState, epoch_function, batch_order, make_optimizer  # noqa: E402

W0, OFFSET = 30.0, 0.5


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- shared inputs


def make_inputs(num_nets: int, num_probes: int, seed: int = 0):
    """Random SIREN zoo (stacked params), probes in [-1, 1]^2 and labels."""
    arch = make_arch("siren")
    params = jax.jit(jax.vmap(arch.init))(jax.random.split(jax.random.key(seed), num_nets))
    probes = jax.random.uniform(jax.random.key(seed + 1), (num_probes, 2), minval=-1, maxval=1)
    labels = np.random.default_rng(seed).integers(0, 10, num_nets).astype(np.int32)
    return arch, jax.device_get(params), np.asarray(probes), labels


# ----------------------------------------------------------------------------- this library


def jax_probing(arch, params, probes):
    params, probes = jax.device_put((params, probes))
    return lambda: probe_zoo(arch, params, probes)


def cpu_floor_seconds(arch, params, probes, repeats: int = 5) -> float:
    """Least time this machine can take for the probing call: every FLOP XLA counts in it (the
    multiply-adds and each sine's polynomial) at the rate the machine reaches on one 2048^3
    matrix product, its best case."""
    a = jax.random.normal(jax.random.key(0), (2048, 2048))
    matmul = jax.jit(lambda m: m @ m)
    gemm_rate = 2 * 2048**3 / median_seconds(lambda: matmul(a), repeats=repeats)
    return xla_cost(lambda p, x: probe(arch.apply, p, x), params, probes).total / gemm_rate


def jax_epoch(arch, params, labels, num_probes: int, batch_size: int):
    """One ProbeGen training epoch through the training loop's own compiled epoch function."""
    task = classification(10)
    learner, _ = ProbingSpec(num_probes=num_probes).make_learner(arch, task.num_outputs)
    cfg = TrainConfig(epochs=1, batch_size=batch_size)
    n = len(labels)
    optimizer = make_optimizer(cfg, n // batch_size)
    epoch = epoch_function(learner, task, optimizer)
    init = learner.init(jax.random.key(0))
    state = {"s": TrainState(init, optimizer.init(init))}
    data = jax.device_put((params, jnp.asarray(labels)))
    order = jnp.asarray(batch_order(0, 0, n, batch_size))

    def run():
        state["s"], loss = epoch(state["s"], data, order, jnp.asarray(0))
        return loss

    return run


# ----------------------------------------------------------------------------- PyTorch


def torch_modules():
    import torch
    from torch import nn

    class Siren(nn.Module):
        """2 -> 32 -> 32 -> 1, sin(30 x) after the hidden layers, output + 0.5."""

        def __init__(self, widths=(2, 32, 32, 1)):
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))

        def forward(self, x):
            for i, layer in enumerate(self.layers):
                x = layer(x)
                if i < len(self.layers) - 1:
                    x = torch.sin(W0 * x)
            return x + OFFSET

    class ProbeGenTorch(nn.Module):
        """Latents -> deep linear generator -> probes -> each INR -> flattened -> 6-layer MLP head."""

        def __init__(self, num_probes, latent=32, hidden=256, layers=6, classes=10):
            super().__init__()
            self.latents = nn.Parameter(torch.randn(num_probes, latent))
            self.generator = nn.Sequential(nn.Linear(latent, 32), nn.Linear(32, 2))
            widths = [num_probes] + [hidden] * (layers - 1) + [classes]
            mods = []
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
                mods.append(nn.Linear(a, b))
                if i < len(widths) - 2:
                    mods.append(nn.ReLU())
            self.head = nn.Sequential(*mods)

        def probes(self):
            return self.generator(self.latents)

        def forward_loop(self, nets):
            probes = self.probes()
            responses = torch.stack([net(probes) for net in nets])  # one network at a time
            return self.head(responses.flatten(1))

        def forward_vmap(self, base, stacked):
            from torch.func import functional_call, vmap

            probes = self.probes()
            responses = vmap(lambda p: functional_call(base, p, (probes,)))(stacked)
            return self.head(responses.flatten(1))

    return Siren, ProbeGenTorch


def to_torch_nets(params, Siren):
    """One ``nn.Module`` per network (weights transposed to PyTorch's [out, in]), frozen."""
    import torch

    n = params["dense0"]["kernel"].shape[0]
    nets = []
    for i in range(n):
        net = Siren()
        with torch.no_grad():
            for j, layer in enumerate(net.layers):
                layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(params[f"dense{j}"]["kernel"][i].T)))
                layer.bias.copy_(torch.from_numpy(np.asarray(params[f"dense{j}"]["bias"][i])))
        net.requires_grad_(False)
        nets.append(net)
    return nets


def torch_median(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_probing(nets, probes_np, base, stacked):
    import torch
    from torch.func import functional_call, vmap

    probes = torch.from_numpy(probes_np)

    def loop():
        with torch.no_grad():
            return torch.stack([net(probes) for net in nets])

    def vmapped():
        with torch.no_grad():
            return vmap(lambda p: functional_call(base, p, (probes,)))(stacked)

    return loop, vmapped


def torch_epoch(nets, base, stacked, labels, num_probes: int, batch_size: int, ProbeGenTorch, *, vmapped: bool):
    import torch

    torch.manual_seed(0)
    model = ProbeGenTorch(num_probes)
    steps = len(labels) // batch_size
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    y = torch.from_numpy(labels.astype(np.int64))
    order = batch_order(0, 0, len(labels), batch_size)

    def run():
        for idx in order:
            optimizer.zero_grad()
            if vmapped:
                out = model.forward_vmap(base, {k: v[idx] for k, v in stacked.items()})
            else:
                out = model.forward_loop([nets[i] for i in idx])
            loss = torch.nn.functional.cross_entropy(out, y[idx])
            loss.backward()
            optimizer.step()
            scheduler.step()
        return loss.item()

    return run


# ----------------------------------------------------------------------------- main


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probe-nets", type=int, default=2048, help="SIRENs probed")
    p.add_argument("--epoch-nets", type=int, default=1024, help="SIRENs in the training epoch")
    p.add_argument("--probes", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    print(f"machine: {machine_description()}")
    if not torch_available():
        print("\nPyTorch is not installed (optional extra: pip install torch==2.13.0); skipping the comparison.")
        return
    import torch
    from torch.func import stack_module_state

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; no GPU is used: this compares CPU "
          f"implementations on this machine\n")
    Siren, ProbeGenTorch = torch_modules()
    rows = []

    # probing: responses of every network to K probes
    arch, params, probes, _ = make_inputs(args.probe_nets, args.probes)
    nets = to_torch_nets(params, Siren)
    stacked, _ = stack_module_state(nets)
    base = Siren().to("meta")
    loop, vmapped = torch_probing(nets, probes, base, stacked)
    ours = jax_probing(arch, params, probes)
    np.testing.assert_allclose(np.asarray(ours()), loop().numpy(), rtol=2e-3, atol=2e-3)  # same computation
    t_jax = median_seconds(ours, repeats=args.repeats)
    t_loop = torch_median(loop, args.repeats)
    t_vmap = torch_median(vmapped, args.repeats)
    t_floor = cpu_floor_seconds(arch, params, probes, repeats=args.repeats)
    rows.append([f"probing ({args.probe_nets} SIRENs x {args.probes} probes)", *_times(t_jax, t_loop, t_vmap),
                 f"{t_floor * 1e3:.1f}", f"{t_loop / t_floor:.0f}x"])

    # one ProbeGen training epoch (batch 32, Adam, cosine schedule)
    arch, params, _, labels = make_inputs(args.epoch_nets, args.probes, seed=1)
    nets = to_torch_nets(params, Siren)
    stacked, _ = stack_module_state(nets)
    ours = jax_epoch(arch, params, labels, args.probes, args.batch_size)
    loop = torch_epoch(nets, base, stacked, labels, args.probes, args.batch_size, ProbeGenTorch, vmapped=False)
    vm = torch_epoch(nets, base, stacked, labels, args.probes, args.batch_size, ProbeGenTorch, vmapped=True)
    t_jax = median_seconds(ours, repeats=args.repeats)
    t_loop = torch_median(loop, max(1, args.repeats // 2 + 1))
    t_vmap = torch_median(vm, args.repeats)
    steps = args.epoch_nets // args.batch_size
    rows.append([f"ProbeGen epoch ({args.epoch_nets} SIRENs, {steps} steps of {args.batch_size})",
                 *_times(t_jax, t_loop, t_vmap), "", ""])

    print(markdown_table(["computation", "probegen_jax ms", "PyTorch loop ms", "PyTorch vmap ms",
                          "loop / ours", "vmap / ours", "CPU floor ms", "loop / floor"], rows))


def _times(t_jax: float, t_loop: float, t_vmap: float) -> list[str]:
    return [f"{t_jax * 1e3:.1f}", f"{t_loop * 1e3:.1f}", f"{t_vmap * 1e3:.1f}", f"{t_loop / t_jax:.1f}x",
            f"{t_vmap / t_jax:.1f}x"]


if __name__ == "__main__":
    main()
