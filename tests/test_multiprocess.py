"""Multi-process meshes: 2 processes on localhost (1 CPU device each, gloo collectives) give the
results of 1 process with 2 devices, for probing (homogeneous and heterogeneous zoos), training,
resumption, zoo storage and zoo generation (its chunks split between the processes).

Run as a script, this file is the worker: every scenario runs in one launch of each process and
writes its results to ``<out>/result_<process>.npz``; the test compares them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

TIMEOUT_S = 240
NUM_NETWORKS = 64
SCALES = np.asarray([0.5, 1.0, 1.5, 2.0], np.float32)


# ----------------------------------------------------------------------------- worker


def inr_config():
    from probegen_jax.make.inr import INRZooConfig

    return INRZooConfig(dataset="digits", num_train=12, num_val=4, num_test=4, hidden=8, steps=10, chunk_size=5)


def tiny_zoo(hidden: int = 8, seed: int = 0, n: int = NUM_NETWORKS):
    """SIRENs of normal weights (drawn in NumPy: no compiling) scaled by one of four factors; the
    label is the factor's index."""
    import jax

    from probegen_jax.archs import make_arch
    from probegen_jax.zoo import Zoo

    arch = make_arch("siren", in_dim=2, hidden=hidden, depth=2, out_dim=1, w0=3.0)
    rng = np.random.default_rng(seed)
    label = rng.integers(0, len(SCALES), n)
    scale = SCALES[label]
    params = jax.tree.map(lambda s: (rng.standard_normal((n, *s.shape)) * scale.reshape(-1, *[1] * len(s.shape)))
                          .astype(s.dtype), arch.param_shapes())
    order = np.random.default_rng(seed + 1).permutation(n)
    splits = {"train": order[: n // 2], "val": order[n // 2: 3 * n // 4], "test": order[3 * n // 4:]}
    return Zoo(arch=arch, params=params, targets={"label": label}, splits=splits)


def run_scenarios(workdir: Path) -> dict[str, np.ndarray]:
    """Every scenario on a mesh of all processes' devices; flat ``{name: array}`` results."""
    from probegen_jax.archs import flatten_params
    from probegen_jax.methods.probing.hetero import probe_hetero
    from probegen_jax.methods.probing.probe import probe_zoo
    from probegen_jax.methods.probing.probegen import probing_learner
    from probegen_jax.methods.probing.sources import coordinate_probe_source
    from probegen_jax.parallel import place_on_mesh, replicated, to_host, zoo_mesh
    from probegen_jax.training import loop
    from probegen_jax.training.tasks import classification
    from probegen_jax.zoo import load_zoo, save_zoo
    from probegen_jax.zoo.hetero import HeteroZoo, load_any_zoo, save_hetero_zoo

    mesh = zoo_mesh()
    assert mesh.size == 2, mesh
    zoo = tiny_zoo()
    probes = np.random.default_rng(3).uniform(-1, 1, (16, 2)).astype(np.float32)
    responses = probe_zoo(zoo.arch, zoo.params, probes, mesh=mesh, batch_size=8)  # spread over the processes
    results = {"responses": to_host(responses),
               "replicated": np.asarray(place_on_mesh(responses, replicated(mesh)))}  # resharded in place

    hetero = HeteroZoo.concat([tiny_zoo(8, seed=1, n=24), tiny_zoo(12, seed=2, n=20)])
    results["hetero_responses"] = probe_hetero(hetero, probes, mesh=mesh, batch_size=4)
    save_hetero_zoo(hetero, workdir / "hetero_zoo")
    results["hetero_loaded"] = probe_hetero(load_any_zoo(workdir / "hetero_zoo"), probes, mesh=mesh, batch_size=4)

    learner = probing_learner(zoo.arch, coordinate_probe_source("probegen", 8), len(SCALES), head_hidden=16,
                              head_layers=2)
    task = classification(len(SCALES))
    splits = zoo.split_arrays("label")
    cfg = loop.TrainConfig(epochs=3, batch_size=8, learning_rate=1e-2, eval_batch_size=8, seed=0)

    def record(name: str, result: loop.TrainResult) -> None:
        results.update({f"{name}/params/{k}": v for k, v in flatten_params(result.params).items()})
        metrics = {**{f"val_{k}": v for k, v in result.val.items()}, **{f"test_{k}": v for k, v in result.test.items()}}
        results[f"{name}/metrics"] = np.asarray([metrics[k] for k in sorted(metrics)] + [result.best_epoch])
        results[f"{name}/history"] = np.asarray([[h[k] for k in sorted(h)] for h in result.history])

    record("fit", loop.fit(learner, task, splits, cfg, mesh=mesh, checkpoint_dir=workdir / "full",
                           desc="multiprocess fit"))

    real_order = loop.batch_order

    def interrupted(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
        if epoch == 2:
            raise KeyboardInterrupt
        return real_order(seed, epoch, n, batch_size)

    loop.batch_order = interrupted
    try:
        loop.fit(learner, task, splits, cfg, mesh=mesh, checkpoint_dir=workdir / "resumed", progress=False)
        raise AssertionError("the interrupted run went on")
    except KeyboardInterrupt:
        pass
    finally:
        loop.batch_order = real_order
    record("resumed", loop.fit(learner, task, splits, cfg, mesh=mesh, checkpoint_dir=workdir / "resumed",
                               progress=False))

    save_zoo(zoo, workdir / "zoo")
    loaded = load_zoo(workdir / "zoo")
    results.update({f"loaded/params/{k}": v for k, v in flatten_params(loaded.params).items()})
    results["loaded/label"] = loaded.targets["label"]
    results["loaded/train"] = loaded.splits["train"]

    # partial reads: each process reads the rows its device holds, for probing and for training
    stored = load_zoo(workdir / "zoo", lazy=True)
    results["lazy/responses"] = to_host(probe_zoo(stored.arch, stored.params, probes, mesh=mesh, batch_size=8))
    results["local/rows_read_probing"] = rows_read_of_every_leaf(stored.params)
    stored = load_zoo(workdir / "zoo", lazy=True)
    record("lazy_fit", loop.fit(learner, task, stored.split_arrays("label"), cfg, mesh=mesh, progress=False))
    results["local/rows_read_training"] = rows_read_of_every_leaf(stored.params)

    # the method contract, as the CLI runs it on a pod: a lazily loaded zoo, a saved and reloaded run
    from probegen_jax.methods.contract import evaluate, train
    from probegen_jax.methods.run import load_run

    spec = {"num_probes": 8, "head_hidden": 16, "head_layers": 2}
    run = train("probegen", load_zoo(workdir / "zoo", lazy=True), spec, cfg, mesh=mesh, out=str(workdir / "run"),
                progress=False)
    record("contract", run.result)
    reloaded = load_run(workdir / "run")
    metrics = evaluate(reloaded, load_zoo(workdir / "zoo", lazy=True), "test", mesh=mesh)
    results["contract/reloaded/metrics"] = np.asarray([metrics[k] for k in sorted(metrics)])
    results["contract/fit_test/metrics"] = np.asarray([run.result.test[k] for k in sorted(metrics)])

    from probegen_jax.make import inr

    fitted = []
    real_fit = inr.fit_inrs
    inr.fit_inrs = lambda *a, **k: (fitted.append(1), real_fit(*a, **k))[1]
    try:
        generated = inr.make_inr_zoo(inr_config(), workdir / "inr_zoo", progress=False)  # 4 chunks
    finally:
        inr.fit_inrs = real_fit
    results["local/chunks_fitted"] = np.asarray(len(fitted))
    assert load_zoo(workdir / "inr_zoo").targets["psnr"].tolist() == generated.targets["psnr"].tolist()
    results.update({f"generated/params/{k}": v for k, v in flatten_params(generated.params).items()})
    results["generated/psnr"] = generated.targets["psnr"]
    return results


def rows_read_of_every_leaf(params) -> np.ndarray:
    """The rows read of a lazily loaded zoo's params, checked to be the same for every leaf."""
    from probegen_jax.stored import rows_read

    reads = list(rows_read(params).values())
    assert len(reads) == 6 and all(np.array_equal(r, reads[0]) for r in reads), reads  # 3 layers
    return reads[0]


def worker(out: Path, workdir: Path, num_processes: int, process_id: int, port: int, devices: int) -> None:
    import jax

    from probegen_jax.parallel import initialize_distributed

    got = initialize_distributed(f"127.0.0.1:{port}", num_processes, process_id, cpu_devices=devices)
    assert got == num_processes
    # The three fits compile the same programs: compiled once, read back from this run's cache.
    jax.config.update("jax_compilation_cache_dir", str(out / f"jit_cache_{process_id}"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    results = run_scenarios(workdir)
    np.savez(out / f"result_{process_id}.npz", **results)


# ----------------------------------------------------------------------------- test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out: Path, num_processes: int, devices: int) -> list[subprocess.Popen]:
    """Start ``num_processes`` workers of ``devices`` CPU devices each, logging to ``out``."""
    out.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(Path(__file__).parents[1]))
    port = free_port()
    procs = []
    for i in range(num_processes):
        cmd = [sys.executable, __file__, str(out), str(out / "work"), str(num_processes), str(i), str(port),
               str(devices)]
        with open(out / f"log_{i}.txt", "w") as log:
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    return procs


def wait_all(procs: list[subprocess.Popen], deadline: float) -> list[int]:
    return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]


def load_result(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def run_both_layouts(root: Path):
    """Results of 1 process with 2 devices and of each of 2 processes with 1 device, run at once."""
    procs = launch(root / "single", 1, 2) + launch(root / "multi", 2, 1)
    codes = None
    try:
        codes = wait_all(procs, time.monotonic() + TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass  # reported with the logs below
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    logs = "\n".join(f.read_text()[-3000:] for f in sorted(root.glob("*/log_*.txt")))
    assert codes == [0, 0, 0], logs
    return (load_result(root / "single" / "result_0.npz"),
            [load_result(root / "multi" / f"result_{i}.npz") for i in range(2)],
            [(root / "multi" / f"log_{i}.txt").read_text() for i in range(2)])


def test_two_processes_give_the_results_of_one(tmp_path):
    """One launch of both layouts (about a minute on 2 cores), every check on its results; one
    test rather than several sharing a fixture, which each xdist worker would compute again."""
    runs = run_both_layouts(tmp_path)
    check_every_process_gets_the_single_process_results(runs)
    check_zoo_generation_splits_its_chunks_across_processes(runs)
    check_scenarios_are_not_trivial(runs)
    check_each_process_reads_only_the_rows_its_devices_hold(runs)
    check_only_the_main_process_prints_progress(runs)


def check_every_process_gets_the_single_process_results(runs):
    single, multi, _ = runs
    for got in multi:
        assert sorted(got) == sorted(single)
        for name, want in single.items():
            if name.startswith("local/"):
                continue
            if name.endswith(("/history", "/metrics")) or "/params/" in name and "loaded" not in name:
                np.testing.assert_allclose(got[name], want, rtol=1e-6, atol=1e-6, err_msg=name)
            else:  # probing and storage move no data between devices: bit for bit
                np.testing.assert_array_equal(got[name], want, err_msg=name)


def check_zoo_generation_splits_its_chunks_across_processes(runs):
    single, multi, _ = runs
    assert int(single["local/chunks_fitted"]) == 4
    assert [int(m["local/chunks_fitted"]) for m in multi] == [2, 2]
    assert len(single["generated/psnr"]) == 20


def check_scenarios_are_not_trivial(runs):
    single, _, _ = runs
    zoo = tiny_zoo()
    assert single["responses"].shape == (NUM_NETWORKS, 16, 1)
    np.testing.assert_array_equal(single["replicated"], single["responses"])
    assert single["hetero_responses"].shape == (44, 16, 1)
    np.testing.assert_array_equal(single["hetero_loaded"], single["hetero_responses"])
    assert np.ptp(single["responses"][:, 0, 0]) > 0  # networks differ
    np.testing.assert_array_equal(single["loaded/label"], zoo.targets["label"])
    assert single["fit/history"].shape[0] == 3
    np.testing.assert_allclose(single["resumed/history"], single["fit/history"], rtol=1e-6)
    for name in single:
        if name.startswith("fit/params/"):
            np.testing.assert_allclose(single[name.replace("fit/", "resumed/")], single[name], rtol=1e-6,
                                       atol=1e-6)


def check_each_process_reads_only_the_rows_its_devices_hold(runs):
    single, multi, _ = runs
    everything = np.arange(NUM_NETWORKS)
    np.testing.assert_array_equal(single["local/rows_read_probing"], everything)
    first, second = (m["local/rows_read_probing"] for m in multi)
    np.testing.assert_array_equal(first, everything[:NUM_NETWORKS // 2])  # the zoo axis split in two halves
    np.testing.assert_array_equal(second, everything[NUM_NETWORKS // 2:])
    # training: half of every split's members (placed by position in the split) per process
    np.testing.assert_array_equal(single["local/rows_read_training"], everything)
    first, second = (m["local/rows_read_training"] for m in multi)
    assert len(first) == len(second) == NUM_NETWORKS // 2
    np.testing.assert_array_equal(np.union1d(first, second), everything)
    zoo = tiny_zoo()
    for split in ("train", "val", "test"):
        members = zoo.splits[split]
        np.testing.assert_array_equal(np.intersect1d(members, first), np.sort(members[:len(members) // 2]))
    np.testing.assert_array_equal(single["lazy/responses"], single["responses"])
    np.testing.assert_allclose(single["contract/reloaded/metrics"], single["contract/fit_test/metrics"], rtol=1e-6)
    for name in single:
        if name.startswith("fit/"):
            np.testing.assert_allclose(single[name.replace("fit/", "lazy_fit/")], single[name], rtol=1e-6, atol=1e-6)


def check_only_the_main_process_prints_progress(runs):
    _, _, (main, other) = runs
    assert "multiprocess fit" in main
    assert "multiprocess fit" not in other


def test_single_process_helpers(eight_devices):
    from probegen_jax.parallel import (
        cluster_detected,
        global_devices,
        initialize_distributed,
        is_main_process,
        to_host,
        zoo_mesh,
    )

    assert initialize_distributed(num_processes=1) == 1
    if not cluster_detected():  # without a cluster (SLURM, MPI, TPU pod, ...) in the environment: one process
        assert initialize_distributed() == 1
    assert is_main_process()
    assert global_devices(3) == eight_devices[:3] and zoo_mesh(3).size == 3 and zoo_mesh().size == 8
    with pytest.raises(ValueError, match="devices"):
        global_devices(9)
    mesh = zoo_mesh(8)
    import jax

    sharded = jax.device_put(np.arange(16.0), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("zoo")))
    np.testing.assert_array_equal(to_host({"a": sharded})["a"], np.arange(16.0))


if __name__ == "__main__":
    out_dir, work_dir, n_proc, pid, port_, n_dev = sys.argv[1:]
    worker(Path(out_dir), Path(work_dir), int(n_proc), int(pid), int(port_), int(n_dev))
