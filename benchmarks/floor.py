"""Every hot computation of the library against this CPU's floor, in one table.

    python benchmarks/floor.py                                  # the whole table (minutes on 2 cores)
    python benchmarks/floor.py --quick                          # a smoke run at small sizes
    python benchmarks/floor.py --only probing,inr_fit --out floor.md
    python benchmarks/floor.py --only methods --methods probegen,ng_gnn

Rows (``--only`` picks groups): ``rates`` (the calibrations the floor is made of), ``probing``
(a SIREN 2-32-32-1 zoo and a small-CNN zoo through ``probe_zoo``), ``methods`` (one training step
of every registered method, built through the method contract on a zoo of freshly initialised
networks: its paper preset and its small preset where it has both, with its own optimiser and
batch size, but 4 networks a step at the paper presets, where a full batch takes minutes),
``probegen_epoch`` (ProbeGen's whole epoch as ``fit`` runs it), ``inr_fit`` (one Adam step of a
chunk of INRs in ``make.inr.fit_inrs``) and ``cnn_train`` (one step of a chunk of small CNNs in
``make.cnn.train_steps``).

Columns:

- FLOPs and transcendentals: XLA's cost analysis of the compiled call. XLA counts a loop body once,
  so every count is per step: a training step is a one-step epoch (``fit``'s scanned epoch with one
  batch), a whole epoch its step times its steps, and INR fitting one Adam step of the chunk by
  autodiff (the fit itself runs in blocks on threads). A SIREN is counted as its exact-sine
  variant (``exact_sine=True``: each sine, and each cosine of the backward pass, one
  transcendental), whatever sine the timed call computes, so that the floor is the same for every
  implementation of the same work.
- analytic / XLA: ``probegen_jax.flops``' analytic count over XLA's, where there is one.
- measured: median wall time of the call (a step, a probing call, an epoch) after a warm-up, up
  to 5 calls within ``--budget`` seconds; compile: lowering and compiling it, cold (this script
  turns the persistent compilation cache off; INR fitting, which compiles inside ``fit_inrs``:
  its first call's time over the median's).
- floor: FLOPs at the matmul rate (a float32 product of two n x n matrices, n=2048) plus
  transcendentals at the sine rate (elements per second of a sine over a float32 array of 4M),
  both measured in the same run, before its first row and after its last, the faster of the two
  kept (the best this machine did in the run). The sine rate is the faster of XLA's ``jnp.sin``
  and the library's ``archs.dense.fast_sin`` (a polynomial, which XLA counts as plain FLOPs; the
  SIRENs the library runs compute their sines with it): XLA's ``sin`` runs an order of magnitude
  slower on this CPU, and at its rate the transcendentals XLA counts (the SIRENs' sines, Adam's
  square roots, the exponentials of softmaxes and losses) would make the floor no floor.
- share of floor: floor time / measured time; peak MB: the compiled call's temporary plus argument
  bytes (``memory_analysis()``; none for INR fitting); cores busy: this process's CPU time over
  wall time while timed, beside the machine's load average (the machine may be shared).
"""

from __future__ import annotations

import os

os.environ.setdefault("PROBEGEN_JAX_COMPILATION_CACHE", "0")  # compile seconds are a cold compilation's

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import cnn_chunk_arguments, compiled_cost, machine_description, median_seconds_and_cores  # noqa: E402
from flops import _fmt, graph_configs  # noqa: E402

from probegen_jax.archs import make_arch  # noqa: E402
from probegen_jax.archs.dense import dense_widths, fast_sin  # noqa: E402
from probegen_jax.flops import Cost, siren_flops, xla_cost  # noqa: E402
from probegen_jax.make.cnn import train_steps  # noqa: E402
from probegen_jax.make.inr import INRZooConfig, coordinate_grid, fit_inrs  # noqa: E402
from probegen_jax.methods.baselines import NFN_PAPER_CONFIG, NFNConfig  # noqa: E402
from probegen_jax.methods.contract import spec_with_zoo_defaults  # noqa: E402
from probegen_jax.methods.probing import probe_zoo  # noqa: E402
from probegen_jax.methods.probing.probe import _probe_in_blocks, block_size, probe  # noqa: E402
from probegen_jax.methods.registry import get_method, make_spec, methods  # noqa: E402
from probegen_jax.parallel import place_blocks  # noqa: E402
from probegen_jax.report import markdown_table  # noqa: E402
from probegen_jax.timing import Stopwatch  # noqa: E402
from probegen_jax.training.loop import (  # noqa: E402
    Objective,
    TrainConfig,
    TrainState,
    _epoch_fn,
    batch_order,
    make_optimizer,
    prefers_scan,
    supervised_objective,
)
from probegen_jax.tracing import equations  # noqa: E402
from probegen_jax.training.tasks import task_for  # noqa: E402
from probegen_jax.types import PyTree  # noqa: E402
from probegen_jax.zoo.zoo import Zoo, task_defaults  # noqa: E402

GROUPS = ("rates", "probing", "methods", "probegen_epoch", "inr_fit", "cnn_train")
# The zoo each method reads, where not the SIREN zoo of INR classification.
ZOO_OF = {"probegen5": "cnn", "probex": "tree", "dense_expert": "tree"}
NO_STEP = {"statnn_gbt": "StatNN features of a batch; the trees are fitted by scikit-learn, not counted"}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What the rows compute; ``FULL`` is the table, ``QUICK`` a smoke run, tests go smaller."""

    matmul: int = 2048  # side of the matmul calibration
    sine: int = 1 << 22  # elements of the sine calibration
    siren_nets: int = 2048
    siren_probes: int = 128
    cnn_nets: int = 512
    cnn_probes: int = 64
    image: int = 28  # side of the small CNNs' input and of the INRs' images
    epoch_nets: int = 1024  # SIRENs in ProbeGen's epoch (steps of the method's batch)
    inr_chunk: int = 256
    inr_steps: int = 10  # steps of the INR fit timed (against the 0-step fit)
    cnn_chunk: int = 256
    cnn_pool: int = 2000  # training images the CNN chunk samples from
    batch: int | None = None  # networks per training step; None: each method's own
    paper_batch: int = 4  # networks per step of the paper-size presets (a full batch takes minutes)
    presets: tuple[str, ...] = ("paper", "small")  # of methods with both, which presets get a row
    budget_s: float = 2.0  # seconds of timed calls per row (after the warm-up)


FULL = Sizes()
QUICK = Sizes(matmul=1024, sine=1 << 20, siren_nets=256, cnn_nets=64, image=8, epoch_nets=128, inr_chunk=32,
              inr_steps=3, cnn_chunk=16, cnn_pool=256, batch=8, presets=("small",), budget_s=0.3)


@dataclasses.dataclass(frozen=True)
class Rates:
    """This machine's matmul rate (FLOP/s) and sine rate (elements/s), measured in the same run."""

    matmul: float
    sine: float  # the faster of the two sines below
    xla_sine: float = math.nan  # jnp.sin (XLA's sine, one transcendental an element)
    fast_sine: float = math.nan  # archs.dense.fast_sin (a polynomial: XLA counts FLOPs)

    def floor_seconds(self, cost: Cost) -> float:
        return cost.flops / self.matmul + cost.transcendentals / self.sine


@dataclasses.dataclass(frozen=True)
class Row:
    """One computation: its cost per call, the call's time, compilation and memory."""

    group: str
    computation: str
    setting: str
    cost: Cost
    seconds: float
    compile_seconds: float
    memory_bytes: int | None
    cores_busy: float
    analytic_ratio: float | None = None

    def floor_seconds(self, rates: Rates) -> float:
        return rates.floor_seconds(self.cost)

    def share(self, rates: Rates) -> float:
        return self.floor_seconds(rates) / self.seconds


# ----------------------------------------------------------------------------- measuring one call


def compile_timed(jitted: Any, *args: Any, **static: Any) -> tuple[jax.stages.Compiled, float]:
    """``jitted`` lowered and compiled for ``args``, and the seconds that took."""
    start = time.perf_counter()
    compiled = jitted.lower(*args, **static).compile()
    return compiled, time.perf_counter() - start


def memory_bytes(compiled: jax.stages.Compiled) -> int | None:
    """The compiled call's temporary plus argument bytes (None where the backend does not say)."""
    stats = compiled.memory_analysis()
    return None if stats is None else int(stats.temp_size_in_bytes + stats.argument_size_in_bytes)


def scaled(cost: Cost, factor: float) -> Cost:
    return Cost(cost.flops * factor, cost.transcendentals * factor)


def timed_row(group: str, computation: str, setting: str, call: Callable[[], object], compiled: jax.stages.Compiled,
              compile_seconds: float, budget_s: float, *, cost: Cost | None = None,
              analytic_ratio: float | None = None, warmup: int = 1) -> Row:
    """A row for ``call`` (timed here), counted from ``compiled`` unless ``cost`` is given;
    ``warmup=0`` where ``call`` runs ``compiled`` itself (nothing left to compile)."""
    seconds, cores = median_seconds_and_cores(call, repeats=5, warmup=warmup, budget_s=budget_s)
    return Row(group, computation, setting, compiled_cost(compiled) if cost is None else cost, seconds,
               compile_seconds, memory_bytes(compiled), cores, analytic_ratio)


def random_zoo_params(arch: Any, n: int, seed: int) -> PyTree:
    """``n`` freshly initialised networks of ``arch``, stacked."""
    return jax.jit(jax.vmap(arch.init))(jax.random.split(jax.random.key(seed), n))


# ----------------------------------------------------------------------------- rates


def calibration_row(name: str, setting: str, fn: Callable, args: tuple, budget_s: float,
                    analytic: float | None = None) -> Row:
    compiled, compile_s = compile_timed(jax.jit(fn), *args)
    ratio = None if analytic is None else analytic / compiled_cost(compiled).flops
    return timed_row("rates", name, setting, lambda: compiled(*args), compiled, compile_s, budget_s,
                     analytic_ratio=ratio, warmup=0)


def rate_rows(sizes: Sizes, seed: int = 0) -> list[Row]:
    """The calibrations: a matmul (the matmul rate: its share is 1 by definition), XLA's sine and
    the library's ``fast_sin`` (the faster of the two gives the sine rate)."""
    n, size = sizes.matmul, sizes.sine
    a, b = (jax.random.normal(jax.random.key(seed + i), (n, n)) for i in range(2))
    x = jax.random.uniform(jax.random.key(seed + 2), (size,), minval=-math.pi, maxval=math.pi)
    return [calibration_row(f"matmul {n}x{n} @ {n}x{n} (float32)", "defines the matmul rate", jnp.matmul, (a, b),
                            sizes.budget_s, analytic=2 * n**3),
            calibration_row(f"jnp.sin over {size:,} float32 in [-pi, pi]", "XLA's sine: a transcendental each",
                            jnp.sin, (x,), sizes.budget_s),
            calibration_row(f"fast_sin over {size:,} float32 in [-pi, pi]", "the library's sine: FLOPs to XLA",
                            fast_sin, (x,), sizes.budget_s)]


def rates_of(rows: Sequence[Row]) -> Rates:
    """The rates of ``rate_rows``' calibrations (both sines over the same elements)."""
    matmul, xla_sine, fast_sine = rows
    elements = xla_sine.cost.transcendentals
    xla, fast = elements / xla_sine.seconds, elements / fast_sine.seconds
    return Rates(matmul.cost.flops / matmul.seconds, max(xla, fast), xla, fast)


def measure_rates(sizes: Sizes, seed: int = 0) -> tuple[Rates, list[Row]]:
    """This machine's rates and the calibration rows they come from."""
    rows = rate_rows(sizes, seed)
    return rates_of(rows), rows


def fastest(*calibrations: Sequence[Row]) -> list[Row]:
    """Of calibrations made at several times, the fastest run of each: the floor is the best
    this machine did in the run (on a shared machine, other work slows some of them)."""
    return [min(runs, key=lambda row: row.seconds) for runs in zip(*calibrations, strict=True)]


# ----------------------------------------------------------------------------- probing


def counted_arch(arch: Any) -> Any:
    """The variant of ``arch`` the rows count: a SIREN whose sine is XLA's (one transcendental)."""
    return make_arch("siren", exact_sine=True, **arch.config) if arch.name == "siren" else arch


def siren_widths(arch: Any) -> list[int]:
    return dense_widths(*(arch.config[k] for k in ("in_dim", "hidden", "depth", "out_dim")))


def probing_row(arch: Any, nets: int, num_probes: int, budget_s: float, seed: int = 0) -> Row:
    """``probe_zoo`` of ``nets`` networks on ``num_probes`` probes: counted on the unblocked
    ``probe`` of the counted variant (the work itself), its memory and compilation those of the
    blocked call ``probe_zoo`` makes, analytic counts for SIRENs."""
    params = random_zoo_params(arch, nets, seed)
    probes = jax.random.uniform(jax.random.key(seed + 1), (num_probes, *arch.input_shape), minval=-1, maxval=1)
    cost = xla_cost(lambda p, x: probe(counted_arch(arch).apply, p, x), params, probes)
    padded, _, devices, block = place_blocks(params, None, block_size(arch, params, probes))
    blocked, compile_s = compile_timed(_probe_in_blocks, arch.apply, padded, probes, devices, block)
    ratio = siren_flops(siren_widths(arch), nets * num_probes) / cost.total if arch.name == "siren" else None
    shape = "x".join(map(str, arch.input_shape))
    return timed_row("probing", f"probing {nets:,} {arch.name} ({shape}) x {num_probes} probes",
                     f"probe_zoo, {block} networks per block", lambda: probe_zoo(arch, params, probes), blocked,
                     compile_s, budget_s, cost=cost, analytic_ratio=ratio)


def probing_rows(sizes: Sizes, seed: int = 0) -> list[Row]:
    siren = make_arch("siren")
    cnn = make_arch("small_cnn", input_shape=(sizes.image, sizes.image, 1))
    return [probing_row(siren, sizes.siren_nets, sizes.siren_probes, sizes.budget_s, seed),
            probing_row(cnn, sizes.cnn_nets, sizes.cnn_probes, sizes.budget_s, seed)]


# ----------------------------------------------------------------------------- training steps of methods


@functools.cache
def case_arch(kind: str, image: int) -> tuple[Any, Callable]:
    """The architecture of a zoo kind and its jitted initialiser of stacked networks."""
    archs = {"inr": lambda: make_arch("siren"), "cnn": lambda: make_arch("small_cnn", input_shape=(image, image, 1)),
             "tree": lambda: make_arch("vit")}
    if kind not in archs:
        raise ValueError(f"unknown zoo kind {kind!r}; expected one of {sorted(archs)}")
    arch = archs[kind]()
    return arch, jax.jit(jax.vmap(arch.init))


def case_zoo(kind: str, n: int, image: int, seed: int = 0, *, zeros: bool = False) -> Zoo:
    """A zoo of ``n`` freshly initialised networks (``zeros``: all-zero ones) as a method reads
    them: SIRENs labelled with a class (``inr``), small CNNs with a test accuracy (``cnn``) or ViTs
    with the classes a fine-tune saw (``tree``); every network in the train split."""
    arch, init = case_arch(kind, image)
    rng = np.random.default_rng(seed)
    targets, meta = {
        "inr": ({"label": rng.integers(0, 10, n)}, {"num_classes": 10}),
        "cnn": ({"test_accuracy": rng.uniform(0.1, 0.9, n).astype(np.float32)}, {}),
        "tree": ({"classes": (rng.uniform(size=(n, 10)) < 0.4).astype(np.float32)}, {}),
    }[kind]
    params = arch.stacked_zeros(n) if zeros else jax.device_get(init(jax.random.split(jax.random.key(seed), n)))
    return Zoo(arch, params, targets, {"train": np.arange(n)}, meta)


def counted_zoo(zoo: Zoo) -> Zoo:
    """``zoo`` with its architecture's counted variant (``counted_arch``)."""
    return dataclasses.replace(zoo, arch=counted_arch(zoo.arch))


def presets(name: str, zoo: Zoo) -> list[tuple[str, str, Any]]:
    """``(kind, label, spec)`` of each preset of method ``name`` on ``zoo``: ``paper`` and ``small``
    for the graph and equivariant metanetworks (``benchmarks/flops.py``'s configurations) and NFN-NP
    (as trained here, and at its paper size); ``only`` the default spec for the others (ProbeX on
    the zoo's first matrix layer)."""
    graphs = graph_configs("sign" if zoo.arch.name == "siren" else "scale")
    if name in graphs:
        return [("paper" if label.startswith("paper size") else "small", label, spec)
                for label, spec in graphs[name] if label.startswith("paper size") or label == "small preset"]
    if name == "nfn":
        return [("paper", f"paper size: channels {list(NFN_PAPER_CONFIG.channels)}", NFN_PAPER_CONFIG),
                ("small", f"as trained here: channels {list(NFNConfig().channels)}", NFNConfig())]
    if name in NO_STEP:
        return [("only", NO_STEP[name], None)]
    if name in ("probex", "dense_expert"):
        from probegen_jax.methods.probex.method import candidate_layers

        layer = candidate_layers(zoo)[0]
        return [("only", f"default, layer {layer}", {"layer": layer})]
    return [("only", "default", None)]


class Training(NamedTuple):
    """What ``fit`` trains: init, the objective of a batch, the data and the method's settings."""

    init: Callable
    objective: Objective
    data: PyTree
    cfg: TrainConfig


def sane_training(spec: Any, zoo: Zoo, cfg: TrainConfig) -> Training:
    """SANE's autoencoder objective on the zoo's standardised networks, as ``train_sane`` fits it."""
    from probegen_jax.methods.sane.method import _config, _layout
    from probegen_jax.methods.sane.model import make_sane
    from probegen_jax.methods.sane.tokens import fit_standardization, layer_params, standardize
    from probegen_jax.methods.sane.train import sane_objective

    layout, config = _layout(spec, zoo), _config(spec, zoo)
    model = make_sane(config)
    nets = layer_params(zoo.params, layout)
    nets = standardize(nets, fit_standardization(nets, layout), layout)
    loss = sane_objective(model, layout)
    return Training(model.init, lambda p, b, k: loss(p, b, k)[0], nets, cfg)


def method_training(name: str, spec: Any, zoo: Zoo) -> Training:
    """The training ``contract.train`` would run for method ``name`` at ``spec`` on ``zoo``."""
    method = get_method(name)
    spec = spec_with_zoo_defaults(make_spec(method, spec), zoo)
    if name == "sane":
        return sane_training(spec, zoo, method.train_config)
    target = task_defaults(zoo).target
    task, y, members = task_for(zoo, target), zoo.target(target), zoo.indices("train")
    learner = method.learner(spec, zoo, task, method.prepare(spec, zoo, members, y[members], task))
    return Training(learner.init, supervised_objective(learner, task), (method.inputs(spec, zoo, members), y[members]),
                    method.train_config)


class Epoch(NamedTuple):
    """A training's scanned epoch compiled for ``steps`` batches, with its inputs."""

    compiled: jax.stages.Compiled
    compile_seconds: float
    state: TrainState
    data: PyTree
    order: jax.Array


def compiled_epoch(training: Training, batch: int, steps: int, seed: int = 0) -> Epoch:
    """``fit``'s scanned epoch of ``steps`` batches of ``batch`` networks, compiled."""
    optimizer = make_optimizer(training.cfg, steps)
    params = training.init(jax.random.key(seed))
    state, data = TrainState(params, optimizer.init(params)), jax.tree.map(jnp.asarray, training.data)
    n = int(jax.tree.leaves(data)[0].shape[0])
    order = jnp.asarray(batch_order(seed, 0, n, batch)[:steps])
    compiled, seconds = compile_timed(_epoch_fn(training.objective, optimizer, None, seed, scan=True), state, data,
                                      order, jnp.asarray(0))
    return Epoch(compiled, seconds, state, data, order)


def sines(training: Training, batch: int, seed: int = 0) -> int:
    """XLA sines in a training step's objective (SIRENs applied with the exact sine add theirs)."""
    batch_data = jax.tree.map(lambda a: jnp.asarray(a[:batch]), training.data)
    return sum(eqn.primitive.name == "sin" for eqn in
               equations(training.objective, training.init(jax.random.key(seed)), batch_data, jax.random.key(seed)))


def epoch_row(group: str, computation: str, setting: str, training: Training, batch: int, steps: int,
              budget_s: float, seed: int = 0, counted: Training | None = None) -> Row:
    """``steps`` training steps of ``batch`` networks as ``fit`` runs them (one scanned epoch, or a
    loop of compiled steps where ``fit`` prefers one), counted per step on a one-step epoch of
    ``counted`` (default: the same training; the exact-sine variant where it applies SIRENs)."""
    if counted is not None and sines(counted, batch, seed) == sines(training, batch, seed):
        counted = None  # the step never applies a SIREN: the same computation
    timed = compiled_epoch(training, batch, steps, seed)
    one_step = timed if counted is None and steps == 1 else compiled_epoch(counted or training, batch, 1, seed)
    state, data, order, epoch_index = {"state": timed.state}, timed.data, timed.order, jnp.asarray(0)
    batch_data = jax.tree.map(lambda a: a[order[0]], data)
    scan = prefers_scan(training.objective, state["state"].params, batch_data, jax.random.key(seed),
                        platform=jax.default_backend())
    epoch = timed.compiled if scan else _epoch_fn(training.objective, make_optimizer(training.cfg, steps), None, seed,
                                                  scan=False)

    def call():
        state["state"], loss = epoch(state["state"], data, order, epoch_index)
        return loss

    how = "" if scan else "; a loop of compiled steps, as fit runs it here"
    return timed_row(group, computation, setting + how, call, timed.compiled, timed.compile_seconds, budget_s,
                     cost=scaled(compiled_cost(one_step.compiled), steps), warmup=0 if scan else 1)


def feature_row(name: str, zoo: Zoo, batch: int, budget_s: float) -> Row:
    """A method without gradient steps: the XLA part of its training, its features of a batch."""
    features = get_method(name).inputs.features
    params = jax.tree.map(lambda a: jnp.asarray(a[:batch]), zoo.params)
    compiled, compile_s = compile_timed(jax.jit(features), params)
    return timed_row("methods", f"{name} step ({batch} networks)", NO_STEP[name], lambda: compiled(params), compiled,
                     compile_s, budget_s, warmup=0)


class MethodCase(NamedTuple):
    """One methods row: the method, the zoo it reads, its preset and the networks in its step."""

    method: str
    zoo: str
    preset: str
    label: str
    spec: Any
    batch: int


def method_cases(sizes: Sizes, names: Sequence[str] | None = None, seed: int = 0) -> list[MethodCase]:
    """The methods rows: each method (every registered one by default) at each of its presets in
    ``sizes.presets`` (all of a method that has one)."""
    cases, zoos = [], {}
    for name in methods() if names is None else names:
        kind = ZOO_OF.get(name, "inr")
        zoos[kind] = zoos.get(kind) or case_zoo(kind, 2, sizes.image, seed, zeros=True)
        for preset, label, spec in presets(name, zoos[kind]):
            if preset == "only" or preset in sizes.presets:
                batch = sizes.paper_batch if preset == "paper" else sizes.batch or get_method(name).train_config.batch_size
                cases.append(MethodCase(name, kind, preset, label, spec, batch))
    return cases


def method_row(case: MethodCase, sizes: Sizes, seed: int = 0) -> Row:
    """One training step of ``case`` on a fresh zoo of one batch."""
    zoo = case_zoo(case.zoo, case.batch, sizes.image, seed)
    if case.method in NO_STEP:
        return feature_row(case.method, zoo, case.batch, sizes.budget_s)
    return epoch_row("methods", f"{case.method} step ({case.batch} networks, {case.zoo} zoo)", case.label,
                     method_training(case.method, case.spec, zoo), case.batch, 1, sizes.budget_s, seed,
                     counted=method_training(case.method, case.spec, counted_zoo(zoo)))


def method_rows(sizes: Sizes, names: Sequence[str] | None = None, seed: int = 0,
                progress: Callable[[str], None] = lambda s: None) -> list[Row]:
    rows = []
    for case in method_cases(sizes, names, seed):
        progress(f"{case.method} ({case.preset})")
        rows.append(method_row(case, sizes, seed))
    return rows


def probegen_epoch_rows(sizes: Sizes, seed: int = 0) -> list[Row]:
    """ProbeGen's whole epoch (K=128) over ``sizes.epoch_nets`` SIRENs, as ``fit`` runs it."""
    zoo = case_zoo("inr", sizes.epoch_nets, sizes.image, seed)
    training = method_training("probegen", {"num_probes": 128}, zoo)
    batch = sizes.batch or training.cfg.batch_size
    steps = sizes.epoch_nets // batch
    return [epoch_row("probegen_epoch", f"ProbeGen epoch ({sizes.epoch_nets:,} SIRENs, {steps} steps of {batch})",
                      "K=128, the scanned epoch fit runs", training, batch, steps, sizes.budget_s, seed,
                      counted=method_training("probegen", {"num_probes": 128}, counted_zoo(zoo)))]


# ----------------------------------------------------------------------------- zoo generation


def inr_step_cost(arch: Any, init: PyTree, coords: jax.Array, pixels: jax.Array, learning_rate: float) -> Cost:
    """XLA's count of one Adam step of a chunk of INRs fitting their images, by autodiff of the
    MSE of the counted variant: the work any implementation of the step does."""
    optimizer = optax.adam(learning_rate)

    def mse(params: PyTree, target: jax.Array) -> jax.Array:
        return jnp.mean((arch.apply(params, coords) - target) ** 2)

    def step(params: PyTree, state: optax.OptState) -> tuple[PyTree, optax.OptState]:
        _, grads = jax.vmap(jax.value_and_grad(mse))(params, pixels)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return xla_cost(step, init, optimizer.init(init))


def inr_fit_call(arch: Any, init: PyTree, coords: jax.Array, pixels: jax.Array, steps: int,
                 cfg: INRZooConfig) -> Callable[[], object]:
    """``fit_inrs`` of the chunk for ``steps`` steps (the architecture's ``apply`` where
    ``fit_inrs`` is the jitted function that took it before it took the ``Arch``)."""
    first = arch.apply if hasattr(fit_inrs, "lower") else arch
    return lambda: fit_inrs(first, init, coords, pixels, steps=steps, learning_rate=cfg.learning_rate,
                            target_psnr=float("inf"))  # every step taken: no INR stops early


def inr_fit_rows(sizes: Sizes, seed: int = 0) -> list[Row]:
    """One Adam step of ``sizes.inr_chunk`` SIRENs in ``fit_inrs`` (the zoo's default settings),
    timed as the ``inr_steps``-step fit less the 0-step one (its final evaluation), over its steps;
    compile: the first call's time over the median's; no memory (the fit is not one compiled call)."""
    cfg, arch, side = INRZooConfig(), make_arch("siren"), sizes.image
    coords = coordinate_grid(side, side)
    pixels = jax.random.uniform(jax.random.key(seed), (sizes.inr_chunk, side * side, 1))
    init = random_zoo_params(arch, sizes.inr_chunk, seed + 1)
    zero = median_seconds_and_cores(inr_fit_call(arch, init, coords, pixels, 0, cfg), budget_s=sizes.budget_s)[0]
    fit = inr_fit_call(arch, init, coords, pixels, sizes.inr_steps, cfg)
    start = time.perf_counter()
    jax.block_until_ready(fit())
    first = time.perf_counter() - start
    seconds, cores = median_seconds_and_cores(fit, warmup=0, budget_s=sizes.budget_s)
    return [Row("inr_fit", f"INR fitting step ({sizes.inr_chunk} SIRENs, {side}x{side} images)",
                f"fit_inrs, Adam; {sizes.inr_steps}-step fit less the 0-step one",
                inr_step_cost(counted_arch(arch), init, coords, pixels, cfg.learning_rate),
                (seconds - zero) / sizes.inr_steps, max(first - seconds, 0.0), None, cores)]


def cnn_train_rows(sizes: Sizes, seed: int = 0) -> list[Row]:
    """One step of a chunk of small CNNs in ``train_steps`` (each network its own hyper-parameters)."""
    args, keywords = cnn_chunk_arguments(sizes.cnn_chunk, sizes.image, sizes.cnn_pool, seed=seed)
    compiled, compile_s = compile_timed(train_steps, *args, **keywords, steps=1)
    side = sizes.image
    return [timed_row("cnn_train", f"small-CNN zoo step ({sizes.cnn_chunk} CNNs, {side}x{side} images)",
                      f"train_steps, batch {keywords['batch_size']}", lambda: compiled(*args[1:]), compiled, compile_s,
                      sizes.budget_s, warmup=0)]


# ----------------------------------------------------------------------------- the table


def _percent(x: float) -> str:
    return f"{x * 100:.0f}%" if x >= 0.1 else f"{x * 100:.1f}%"


def table(rows: Sequence[Row], rates: Rates) -> str:
    """The markdown table of ``rows`` against ``rates``."""
    out = [[r.computation, r.setting, _fmt(r.cost.flops), _fmt(r.cost.transcendentals),
            "—" if r.analytic_ratio is None else f"{r.analytic_ratio:.3f}", f"{r.seconds * 1e3:.3g}",
            f"{r.compile_seconds:.2f}", f"{r.floor_seconds(rates) * 1e3:.3g}", _percent(r.share(rates)),
            "—" if r.memory_bytes is None else f"{r.memory_bytes / 2**20:.1f}", f"{r.cores_busy:.2f}"]
           for r in rows]
    return markdown_table(["computation", "setting", "FLOPs", "transcendentals", "analytic / XLA", "measured ms",
                           "compile s", "floor ms", "share of floor", "peak MB", "cores busy"], out)


class Table(NamedTuple):
    """A run's rows and its rates: the fastest of the calibrations before its first row and
    after its last (``matmul_rates``: those two matmul rates)."""

    rates: Rates
    rows: list[Row]
    matmul_rates: tuple[float, float]


def build_rows(groups: Sequence[str], sizes: Sizes, names: Sequence[str] | None = None, seed: int = 0,
               progress: bool = False) -> Table:
    """The calibrations (always: the floor needs them) and the rows of ``groups``."""
    builders: dict[str, Callable[[], list[Row]]] = {
        "probing": lambda: probing_rows(sizes, seed),
        "methods": lambda: method_rows(sizes, names, seed, progress=bar.set_postfix_str),
        "probegen_epoch": lambda: probegen_epoch_rows(sizes, seed),
        "inr_fit": lambda: inr_fit_rows(sizes, seed),
        "cnn_train": lambda: cnn_train_rows(sizes, seed),
    }
    first, rows = rate_rows(sizes, seed), []
    bar = tqdm([g for g in GROUPS if g in groups and g != "rates"], desc="floor", unit="group", disable=not progress)
    for group in bar:
        bar.set_postfix_str(group)
        rows += builders[group]()
    last = rate_rows(sizes, seed)
    calibration = fastest(first, last)
    return Table(rates_of(calibration), (calibration if "rates" in groups else []) + rows,
                 (rates_of(first).matmul, rates_of(last).matmul))


def report(run: Table, header: Sequence[str]) -> str:
    """The table under ``header`` and the rates."""
    rates, (start, end) = run.rates, run.matmul_rates
    return "\n".join([*header, f"rates: matmul {rates.matmul / 1e9:.1f} GFLOP/s (the faster of {start / 1e9:.1f} "
                      f"before the first row and {end / 1e9:.1f} after the last); sine {rates.sine / 1e6:,.0f} M "
                      f"elements/s (jnp.sin {rates.xla_sine / 1e6:,.0f} M/s, fast_sin {rates.fast_sine / 1e6:,.0f} "
                      "M/s)", "", table(run.rows, rates)])


def parse_list(text: str | None, known: Sequence[str], what: str) -> list[str] | None:
    if text is None:
        return None
    items = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(items) - set(known))
    if unknown:
        raise SystemExit(f"floor.py: unknown {what} {unknown}; available: {list(known)}")
    return items


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help=f"comma-separated groups of rows (default all): {','.join(GROUPS)}")
    p.add_argument("--methods", help="comma-separated registered methods for the methods rows (default all)")
    p.add_argument("--quick", action="store_true", help="small sizes, small presets, batch 8: a smoke run")
    p.add_argument("--budget", type=float, help="seconds of timed calls per row (default 2; --quick 0.3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the table (markdown) to this file")
    args = p.parse_args(argv)
    groups = parse_list(args.only, GROUPS, "groups") or list(GROUPS)
    names = parse_list(args.methods, list(methods()), "methods")
    sizes = QUICK if args.quick else FULL
    if args.budget is not None:
        sizes = dataclasses.replace(sizes, budget_s=args.budget)
    load_before, stopwatch = os.getloadavg()[0], Stopwatch()
    run = build_rows(groups, sizes, names, args.seed, progress=sys.stderr.isatty())
    whole = stopwatch.elapsed()
    command = "python benchmarks/floor.py " + " ".join(sys.argv[1:] if argv is None else argv)
    header = [f"`{command.strip()}`, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
              f"machine: {machine_description()}",
              f"whole run: {whole.wall_seconds:.0f} s, {whole.cores_busy:.2f} of {os.cpu_count()} cores busy "
              f"(this process); load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"]
    text = report(run, header)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
