"""Scaling over simulated devices: probing throughput and ProbeGen training step time on 1, 2, 4
and 8 devices, each count in its own subprocess (``XLA_FLAGS=--xla_force_host_platform_device_count=N``).

    python benchmarks/scaling.py
    python benchmarks/scaling.py --devices 1 2 4 8 --nets 4096 --steps 8

On CPU the "devices" share the same cores, so this measures the cost of sharding rather than a
speed-up; real scaling needs several accelerators. The memory-bandwidth fraction row is computed
only when ``jax.default_backend() == "gpu"`` (n/a otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

GPU_PEAK_BANDWIDTH = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}  # bytes/s, SXM parts


def measure(nets: int, probes: int, steps: int, batch: int, repeats: int) -> dict:
    """Run inside the child: times on all visible devices."""
    import jax
    import jax.numpy as jnp
    from common import median_seconds

    from probegen_jax.archs import make_arch
    from probegen_jax.parallel import replicated, shard_zoo, zoo_mesh
    from probegen_jax.methods.probing import probe, probe_zoo
    from probegen_jax.methods.probing.methods import ProbingSpec
    from probegen_jax.training.tasks import classification
    from probegen_jax.training.loop import TrainConfig, TrainState, epoch_function, batch_order, make_optimizer

    n_dev = len(jax.devices())
    mesh = zoo_mesh() if n_dev > 1 else None
    arch = make_arch("siren")
    params = jax.jit(jax.vmap(arch.init))(jax.random.split(jax.random.key(0), nets))
    x = jax.random.uniform(jax.random.key(1), (probes, 2), minval=-1, maxval=1)
    t_probe = median_seconds(lambda: probe_zoo(arch, params, x, mesh=mesh), repeats=repeats)

    task = classification(10)
    learner, _ = ProbingSpec(num_probes=probes).make_learner(arch, 10)
    n_train = steps * batch
    optimizer = make_optimizer(TrainConfig(batch_size=batch), steps)
    epoch = epoch_function(learner, task, optimizer, mesh)
    init = learner.init(jax.random.key(0))
    data = (jax.tree.map(lambda a: a[:n_train], params), jnp.zeros(n_train, jnp.int32))
    if mesh is not None:
        data, _ = shard_zoo(data, mesh)
        init = jax.device_put(init, replicated(mesh))
    holder = {"s": TrainState(init, optimizer.init(init))}
    order = jnp.asarray(batch_order(0, 0, n_train, batch))

    def run():
        holder["s"], loss = epoch(holder["s"], data, order, jnp.asarray(0))
        return loss

    t_epoch = median_seconds(run, repeats=repeats)
    bandwidth = None
    if jax.default_backend() == "gpu":  # bytes XLA moves for one device's share / time / peak bandwidth
        share = jax.tree.map(lambda a: a[: nets // n_dev], params)
        analysis = jax.jit(lambda p, q: probe(arch.apply, p, q)).lower(share, x).compile().cost_analysis()
        kind = jax.devices()[0].device_kind
        peak = next((v for k, v in GPU_PEAK_BANDWIDTH.items() if k in kind), None)
        if peak:
            bandwidth = analysis.get("bytes accessed", 0.0) / t_probe / peak
    return {"devices": n_dev, "backend": jax.default_backend(), "probe_s": t_probe, "nets_per_s": nets / t_probe,
            "step_s": t_epoch / steps, "bandwidth_fraction": bandwidth}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--nets", type=int, default=4096)
    p.add_argument("--probes", type=int, default=128)
    p.add_argument("--steps", type=int, default=8, help="training steps timed per epoch")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.nets, args.probes, args.steps, args.batch_size, args.repeats)))
        return
    from common import machine_description

    from probegen_jax.report import markdown_table

    print(f"machine: {machine_description()}")
    results = []
    for n in args.devices:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        cmd = [sys.executable, __file__, "--child", "--nets", str(args.nets), "--probes", str(args.probes),
               "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--repeats", str(args.repeats)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    backend = results[0]["backend"]
    if backend != "gpu":
        print(f"backend {backend}: no GPU on this machine; the {args.devices} devices are simulated on the same CPU "
              "cores, so flat or falling throughput is expected\n")
    base = results[0]
    rows = [[r["devices"], f"{r['probe_s'] * 1e3:.1f}", f"{r['nets_per_s']:,.0f}", f"{r['nets_per_s'] / base['nets_per_s']:.2f}",
             f"{r['step_s'] * 1e3:.2f}", f"{base['step_s'] / r['step_s']:.2f}",
             "n/a" if r["bandwidth_fraction"] is None else f"{r['bandwidth_fraction']:.2f}"] for r in results]
    print(markdown_table(["devices", f"probe {args.nets} nets ms", "networks / s", "speed-up",
                          f"train step ms (batch {args.batch_size})", "speed-up", "memory-bandwidth fraction (GPU)"],
                         rows))


if __name__ == "__main__":
    main()
