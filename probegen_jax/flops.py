"""Inference FLOPs per evaluated network, counted by XLA and cross-checked by analytic counts.

XLA's count (``jax.jit(f).lower(...).compile().cost_analysis()``) is taken on loop-free,
unsharded functions: a multiply-add is 2 FLOPs, an elementwise op 1, and each transcendental
(``sin``) is added as 1. The per-network cost is the difference between a batch of ``2B`` and a
batch of ``B`` networks divided by ``B``, so work done once per batch does not count.

For probing methods the probe source (ProbeGen's generator) runs once after training and its
probes are cached, so ``probing_flops`` reports it apart from the per-network cost (zoo forward
on K probes plus the head).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from probegen_jax.archs import Arch
from probegen_jax.training.learner import Learner
from probegen_jax.methods.probing.spec import ProbingSpec
from probegen_jax.methods.probing.probe import probe
from probegen_jax.methods.probing.probegen import mlp_head, response_transform
from probegen_jax.types import Params, PRNGKey

# Published inference costs per MNIST-INR network of methods not implemented here, in FLOPs.
CITED_INR_GFLOPS = {"NFN (published)": 2.58, "NFT": 10.60, "NG-GNN": 2.13, "NG-T": 14.82}
CITED_SOURCE = "cost per MNIST-INR as reported in the literature (REFERENCE.md section 5)"


@dataclasses.dataclass(frozen=True)
class Cost:
    """FLOPs of one compiled call: ``flops`` (arithmetic) + ``transcendentals`` = ``total``."""

    flops: float
    transcendentals: float

    @property
    def total(self) -> float:
        return self.flops + self.transcendentals

    def __sub__(self, other: Cost) -> Cost:
        return Cost(self.flops - other.flops, self.transcendentals - other.transcendentals)

    def __truediv__(self, k: float) -> Cost:
        return Cost(self.flops / k, self.transcendentals / k)


def xla_cost(fn: Callable, *args) -> Cost:
    """XLA's cost analysis of ``jit(fn)(*args)`` (args may be ``jax.ShapeDtypeStruct``s)."""
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax returned one dict per computation
        analysis = analysis[0]
    return Cost(float(analysis.get("flops", 0.0)), float(analysis.get("transcendentals", 0.0)))


def _batched(tree, n: int):
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct((n, *s.shape), s.dtype), tree)


def per_network_cost(fn: Callable[..., jax.Array], one_network: Params, *extra, batch: int = 16) -> Cost:
    """Cost of ``fn(zoo_params, *extra)`` per network: ``(cost(2B) - cost(B)) / B``.

    ``one_network`` is a (shape) pytree of a single network's params; ``fn`` takes them stacked.
    ``extra`` (e.g. the learner's params) are passed as arguments, not closed over, so XLA cannot
    fold them as constants.
    """
    shapes = jax.eval_shape(lambda p: p, one_network)
    extra = jax.eval_shape(lambda e: e, extra)
    return (xla_cost(fn, _batched(shapes, 2 * batch), *extra)
            - xla_cost(fn, _batched(shapes, batch), *extra)) / batch


def learner_cost(learner: Learner, one_network: Params, *, key: PRNGKey | None = None, batch: int = 16) -> Cost:
    """Inference cost per network of a learner whose inputs are stacked zoo params."""
    params = jax.eval_shape(learner.init, key if key is not None else jax.random.key(0))
    return per_network_cost(lambda zp, p: learner.apply(p, zp), one_network, params, batch=batch)


def num_params(learner: Learner, key: PRNGKey | None = None) -> int:
    """Trainable parameter count of a learner."""
    shapes = jax.eval_shape(learner.init, key if key is not None else jax.random.key(0))
    return sum(math.prod(s.shape) for s in jax.tree.leaves(shapes))


@dataclasses.dataclass(frozen=True)
class ProbingCost:
    per_network: Cost  # zoo forward on the K cached probes + head
    generator: Cost  # the probe source, once after training
    params: int  # trainable params (source + head)


def probing_flops(arch: Arch, spec: ProbingSpec, num_outputs: int, *, batch: int = 16) -> ProbingCost:
    """Inference cost of a probing method on zoo ``arch``: per network and, separately, the generator."""
    learner, source = spec.make_learner(arch, num_outputs)
    params = jax.eval_shape(learner.init, jax.random.key(0))
    head = mlp_head(source.num_probes * arch.output_dim, num_outputs, hidden=spec.head_hidden,
                    layers=spec.head_layers)
    probes = jax.ShapeDtypeStruct((source.num_probes, *arch.input_shape), jnp.float32)

    transform = response_transform(spec.response)

    def per_network(zoo_params, head_params, probes):
        responses = transform(probe(arch.apply, zoo_params, probes))
        return head.apply(head_params, responses.reshape(responses.shape[0], -1))

    one = jax.eval_shape(arch.init, jax.random.key(0))
    generator = xla_cost(source.apply, params["source"]) if jax.tree.leaves(params["source"]) else Cost(0.0, 0.0)
    return ProbingCost(per_network_cost(per_network, one, params["head"], probes, batch=batch), generator,
                       num_params(learner))


# ----------------------------------------------------------------------------- analytic counts


def matmul_flops(m: int, k: int, n: int) -> int:
    """``[m, k] @ [k, n]``: ``2 m k n`` (XLA turns a ``k = 1`` contraction into ``m n`` multiplies)."""
    return m * n * (2 * k if k > 1 else 1)


def dense_flops(widths: Sequence[int], rows: int = 1, *, activation_flops: int = 1) -> int:
    """Dense stack on ``rows`` inputs: ``2 in out`` per matmul, ``out`` per bias add,
    ``activation_flops * out`` per hidden activation."""
    total = 0
    for i, (fi, fo) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        total += matmul_flops(1, fi, fo) + fo
        if i < len(widths) - 2:
            total += activation_flops * fo
    return rows * total


def siren_flops(widths: Sequence[int], rows: int = 1) -> int:
    """SIREN forward on ``rows`` coordinates: dense layers, ``w0 *`` and ``sin`` per hidden unit,
    plus the output offset."""
    return dense_flops(widths, rows, activation_flops=2) + rows * widths[-1]


def mlp_head_flops(in_dim: int, out_dim: int, hidden: int, layers: int) -> int:
    """ProbeGen-style head of ``layers`` linear layers with ReLU."""
    return dense_flops([in_dim] + [hidden] * (layers - 1) + [out_dim])


def probegen_inr_flops(widths: Sequence[int], num_probes: int, num_outputs: int, *, head_hidden: int = 256,
                       head_layers: int = 6) -> int:
    """Analytic per-network FLOPs of probing a SIREN of ``widths`` with K probes, then the head."""
    return (siren_flops(widths, num_probes)
            + mlp_head_flops(num_probes * widths[-1], num_outputs, head_hidden, head_layers))


def nfn_np_flops(layers: Sequence[tuple[int, int, int]], channels: Sequence[int], num_outputs: int, *,
                 in_channels: int = 1, head_hidden: int = 256, head_layers: int = 3,
                 fourier_features: int = 0) -> int:
    """Analytic per-network FLOPs of an invariant NFN-NP.

    ``layers``: ``(n_out, n_in, s)`` of each weight layer (``s`` filter positions). Counts the
    Fourier encoding, each NP layer's matmuls, broadcast adds, means and ReLU, the pooling and the
    head.
    """
    num = len(layers)
    sizes = [o * i * s for o, i, s in layers]  # weight entries per layer
    biases = [o for o, _, _ in layers]
    total = 0
    c = in_channels
    if fourier_features:
        c = 2 * fourier_features
        # x @ B (2 m), 2 pi * (m), sin + cos (2 m) per scalar
        total += (sum(sizes) + sum(biases)) * (4 * fourier_features)
    global_dim = lambda ch: (sum(s for _, _, s in layers) + num) * ch  # noqa: E731
    for c_out in channels:
        g = global_dim(c)
        # means: row, column and global of each weight map, mean of each bias
        total += sum(3 * n * c for n in sizes) + sum(b * c for b in biases)
        for i, (o, n_in, s) in enumerate(layers):
            row_in = s + (layers[i - 1][2] + 1 if i > 0 else 0)
            col_in = s + 1 + (layers[i + 1][2] if i < num - 1 else 0)
            entries = o * n_in
            total += matmul_flops(entries, s * c, s * c_out)  # pointwise
            total += matmul_flops(1, g, s * c_out) + s * c_out  # global term + its bias
            total += matmul_flops(n_in, row_in * c, s * c_out)  # row broadcast
            total += matmul_flops(o, col_in * c, s * c_out)  # column broadcast
            total += 3 * entries * s * c_out  # three broadcast adds
            total += matmul_flops(o, col_in * c, c_out) + matmul_flops(1, g, c_out) + c_out + o * c_out  # bias
            total += entries * s * c_out + o * c_out  # ReLU
        c = c_out
    total += sum(n * c for n in sizes) + sum(b * c for b in biases)  # pooling
    pooled = global_dim(c)
    return total + mlp_head_flops(pooled, num_outputs, head_hidden, head_layers)


# ----------------------------------------------------------------------------- any registered method

# Published inference cost per MNIST-INR network (GFLOPs) of each method, by registered name, shown
# beside the cost measured here (REFERENCE.md sections 5 and 6). NFT is not implemented here.
PUBLISHED_INR_GFLOPS = {"nfn": 2.58, "ng_gnn": 2.13, "ng_t": 14.82}


def method_cost(method: str, spec, arch: Arch, num_outputs: int, *, batch: int = 16) -> tuple[Cost, int]:
    """``(inference cost per network, trainable params)`` of registered ``method`` at ``spec`` on
    networks of ``arch`` (its constants fitted on a few freshly initialised networks)."""
    import numpy as np

    from probegen_jax.methods.registry import get_method, make_spec
    from probegen_jax.training.tasks import classification, regression
    from probegen_jax.zoo.zoo import Zoo

    m = get_method(method)
    spec = make_spec(m, spec)
    params = jax.jit(jax.vmap(arch.init))(jax.random.split(jax.random.key(0), 4))
    zoo = Zoo(arch, params, {}, {"train": np.arange(4)})
    task = classification(num_outputs) if num_outputs > 1 else regression()
    learner = m.learner(spec, zoo, task, m.prepare(spec, zoo, np.arange(4), np.zeros(4), task))
    features = getattr(m.inputs, "features", None)  # a feature method: its features are computed per network too
    if features is not None:
        learner = learner._replace(apply=lambda p, zp, apply=learner.apply: apply(p, features(zp)))
    return learner_cost(learner, jax.eval_shape(arch.init, jax.random.key(0)), batch=batch), num_params(learner)
