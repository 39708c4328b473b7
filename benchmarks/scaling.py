"""Scaling over simulated devices: probing throughput and ProbeGen training step time on 1, 2, 4
and 8 devices, each count in its own subprocess (``XLA_FLAGS=--xla_force_host_platform_device_count=N``).
``--processes`` instead compares 1 process with 2 devices against 2 processes with 1 device each
(localhost, ``initialize_distributed``; the same 2-device mesh): probing, a training step, and
INR zoo generation (1 process against 2, chunks split between them), and probing a stored zoo
loaded lazily (each process reads only its devices' rows: the MB each read are reported).

    python benchmarks/scaling.py
    python benchmarks/scaling.py --devices 1 2 4 8 --nets 4096 --steps 8
    python benchmarks/scaling.py --processes --nets 2048 --repeats 3

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
    import numpy as np
    from common import median_seconds

    from probegen_jax.archs import make_arch
    from probegen_jax.methods.probing import probe, probe_zoo
    from probegen_jax.methods.probing.spec import ProbingSpec
    from probegen_jax.parallel import place_on_mesh, replicated, shard_zoo, zoo_mesh
    from probegen_jax.training.loop import (
        TrainConfig,
        TrainState,
        batch_order,
        epoch_function,
        make_optimizer,
    )
    from probegen_jax.training.tasks import classification

    n_dev = len(jax.devices())  # every process's
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
        init = place_on_mesh(init, replicated(mesh))
    holder = {"s": TrainState(init, optimizer.init(init))}
    order = batch_order(0, 0, n_train, batch)

    def run():
        holder["s"], loss = epoch(holder["s"], data, order, np.asarray(0))
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


def generate_seconds(out: str, num_networks: int) -> float:
    """Wall time of an INR zoo of ``num_networks`` digits (chunks of 64) written to ``out``."""
    import time

    from probegen_jax.make.inr import INRZooConfig, make_inr_zoo
    from probegen_jax.parallel import barrier

    cfg = INRZooConfig(dataset="digits", num_train=num_networks, num_val=0, num_test=0, steps=200, chunk_size=64)
    barrier("generation starts")
    start = time.perf_counter()
    make_inr_zoo(cfg, out, progress=False, overwrite=True)
    return time.perf_counter() - start


def probe_stored(path: str, probes: int) -> dict:
    """Load the zoo at ``path`` lazily and probe it on a mesh of every process's devices: wall
    seconds, and the MB of params this process read from the file (its devices' rows only)."""
    import time

    import jax
    import numpy as np

    from probegen_jax.methods.probing import probe_zoo
    from probegen_jax.parallel import barrier, to_host, zoo_mesh
    from probegen_jax.stored import is_stored
    from probegen_jax.zoo import load_zoo

    x = np.random.default_rng(1).uniform(-1, 1, (probes, 2)).astype(np.float32)
    barrier("stored probing starts")
    start = time.perf_counter()
    zoo = load_zoo(path, lazy=True)
    responses = to_host(probe_zoo(zoo.arch, zoo.params, x, mesh=zoo_mesh()))
    seconds = time.perf_counter() - start
    read = sum(a.leaf.row_bytes * len(np.unique(np.concatenate(a.reads))) for a in jax.tree.leaves(zoo.params)
               if is_stored(a) and a.reads)
    total = sum(a.leaf.nbytes for a in jax.tree.leaves(zoo.params) if is_stored(a))
    return {"stored_s": seconds, "read_mb": read / 1e6, "params_mb": total / 1e6, "checksum": float(responses.sum())}


def run_layout(processes: int, devices: int, child_args: list[str]) -> dict:
    """Run the child on ``processes`` local processes of ``devices`` CPU devices each; process 0's result."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [subprocess.Popen([sys.executable, __file__, "--child", *child_args, "--layout", str(processes),
                               str(devices), str(i), str(port)], env=env, stdout=subprocess.PIPE, text=True)
             for i in range(processes)]
    try:
        outs = [p.communicate(timeout=1800)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(p.returncode for p in procs):
        raise RuntimeError(f"layout {processes} x {devices}: a process failed")
    return json.loads(outs[0].strip().splitlines()[-1])


def process_table(args) -> None:
    """1 process x 2 devices against 2 processes x 1 device: probing, a training step, generation."""
    import tempfile

    from probegen_jax.report import markdown_table

    common = ["--nets", str(args.nets), "--probes", str(args.probes), "--steps", str(args.steps),
              "--batch-size", str(args.batch_size), "--repeats", str(args.repeats)]
    one, two = run_layout(1, 2, common), run_layout(2, 1, common)
    rows = [[f"probe {args.nets} SIRENs, {args.probes} probes (ms)", f"{one['probe_s'] * 1e3:.1f}",
             f"{two['probe_s'] * 1e3:.1f}", f"{two['probe_s'] / one['probe_s']:.2f}"],
            [f"ProbeGen train step, batch {args.batch_size} (ms)", f"{one['step_s'] * 1e3:.2f}",
             f"{two['step_s'] * 1e3:.2f}", f"{two['step_s'] / one['step_s']:.2f}"]]
    with tempfile.TemporaryDirectory() as tmp:
        gen = ["--generate", str(Path(tmp) / "zoo"), "--gen-networks", str(args.gen_networks)]
        g1, g2 = run_layout(1, 1, gen)["generate_s"], run_layout(2, 1, gen)["generate_s"]
        from integrity import inr_zoo

        from probegen_jax.zoo import save_zoo

        save_zoo(inr_zoo(args.stored_networks), Path(tmp) / "stored")
        stored = ["--stored", str(Path(tmp) / "stored"), "--probes", str(args.probes)]
        s1, s2 = run_layout(1, 2, stored), run_layout(2, 1, stored)
    assert s1["checksum"] == s2["checksum"], "the two layouts' responses differ"
    rows.append([f"INR zoo of {args.gen_networks} digits, 200 steps (s; 1 process x 1 device)", f"{g1:.1f}",
                 f"{g2:.1f}", f"{g2 / g1:.2f}"])
    rows.append([f"stored zoo of {args.stored_networks:,} SIRENs ({s1['params_mb']:.0f} MB of params), lazy load + "
                 "probe (s)", f"{s1['stored_s']:.2f}", f"{s2['stored_s']:.2f}", f"{s2['stored_s'] / s1['stored_s']:.2f}"])
    rows.append(["  params read from the file by process 0 (MB)", f"{s1['read_mb']:.0f}", f"{s2['read_mb']:.0f}",
                 f"{s2['read_mb'] / s1['read_mb']:.2f}"])
    print(markdown_table(["", "1 process x 2 devices", "2 processes x 1 device", "time ratio (2 proc / 1)"], rows))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--nets", type=int, default=4096)
    p.add_argument("--probes", type=int, default=128)
    p.add_argument("--steps", type=int, default=8, help="training steps timed per epoch")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--processes", action="store_true",
                   help="compare 1 process x 2 devices with 2 processes x 1 device (and zoo generation)")
    p.add_argument("--gen-networks", type=int, default=256, help="INRs generated in the --processes comparison")
    p.add_argument("--stored-networks", type=int, default=70_000,
                   help="SIRENs of the stored zoo probed in the --processes comparison (partial reads)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--stored", help=argparse.SUPPRESS)
    p.add_argument("--layout", nargs=4, type=int, help=argparse.SUPPRESS)  # processes, devices, id, port
    p.add_argument("--generate", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        if args.layout:
            from probegen_jax.parallel import initialize_distributed, is_main_process

            processes, devices, process_id, port = args.layout
            initialize_distributed(f"127.0.0.1:{port}", processes, process_id, cpu_devices=devices)
        result = ({"generate_s": generate_seconds(args.generate, args.gen_networks)} if args.generate else
                  probe_stored(args.stored, args.probes) if args.stored else
                  measure(args.nets, args.probes, args.steps, args.batch_size, args.repeats))
        if not args.layout or is_main_process():
            print(json.dumps(result))
        return
    from common import machine_description

    from probegen_jax.report import markdown_table

    print(f"machine: {machine_description()}")
    if args.processes:
        process_table(args)
        return
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
