"""Weight-space MixUp (Shamsian et al., ICML 2024): two networks interpolated entry by entry, plainly
or after the partner's hidden neurons are aligned to the first by weight matching (Ainsworth et
al., "Git Re-Basin").

Weight matching runs on the host: for one hidden layer at a time it maximises the inner product
between the networks' incoming kernels, biases and outgoing kernels over permutations of the
partner's neurons, a linear assignment solved exactly by ``scipy.optimize.linear_sum_assignment``
(Hungarian), and sweeps the layers in forward order until no layer improves (at most
``iterations`` sweeps). It is called through ``jax.pure_callback``, so ``align`` jits and vmaps
(sequentially over a batch); it is deterministic, as every step of it is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.types import Array, Params
from probegen_jax.weightspace.layers import hidden_widths, layers_of
from probegen_jax.weightspace.symmetry import permute


def mixup(params: Params, partner: Params, alpha: Array) -> Params:
    """``alpha * params + (1 - alpha) * partner``, every leaf."""
    return jax.tree.map(lambda a, b: alpha * a + (1 - alpha) * b, params, partner)


def _match(kernels_a: list[np.ndarray], biases_a: list[np.ndarray], kernels_b: list[np.ndarray],
           biases_b: list[np.ndarray], iterations: int) -> list[np.ndarray]:
    """Permutations of b's hidden neurons maximising ``sum_l <W_l^a, P_l W_l^b P_{l-1}^T> + <b_l^a, P_l b_l^b>``."""
    from scipy.optimize import linear_sum_assignment

    widths = [len(b) for b in biases_a[:-1]]
    perms = [np.arange(w) for w in widths]
    for _ in range(iterations):
        improved = False
        for i, w in enumerate(widths):
            prev = perms[i - 1] if i else np.arange(kernels_b[0].shape[0])
            nxt = perms[i + 1] if i + 1 < len(widths) else np.arange(kernels_b[i + 1].shape[1])
            gain = (kernels_a[i].T @ kernels_b[i][prev, :] + np.outer(biases_a[i], biases_b[i])
                    + kernels_a[i + 1] @ kernels_b[i + 1][:, nxt].T)  # [neuron of a, neuron of b]
            _, cols = linear_sum_assignment(gain, maximize=True)
            if gain[np.arange(w), cols].sum() > gain[np.arange(w), perms[i]].sum() + 1e-12:
                perms[i], improved = cols, True
        if not improved:
            break
    return [p.astype(np.int32) for p in perms]


def weight_matching(params: Params, partner: Params, iterations: int = 100) -> list[Array]:
    """Per hidden layer the permutation ``perms`` with ``permute(partner, perms)`` closest to ``params``."""
    (_, ka, ba), (_, kb, bb) = layers_of(params), layers_of(partner)
    shapes = [jax.ShapeDtypeStruct((w,), jnp.int32) for w in hidden_widths(params)]

    def host(ka, ba, kb, bb):
        as_np = lambda xs: [np.asarray(x, np.float64) for x in xs]  # noqa: E731
        return _match(as_np(ka), as_np(ba), as_np(kb), as_np(bb), iterations)

    return jax.pure_callback(host, shapes, ka, ba, kb, bb, vmap_method="sequential")


def align(params: Params, partner: Params, iterations: int = 100) -> Params:
    """``partner`` with its hidden neurons permuted to match ``params`` (the same function as ``partner``)."""
    return permute(partner, weight_matching(params, partner, iterations))


def aligned_mixup(params: Params, partner: Params, alpha: Array, iterations: int = 100) -> Params:
    """MixUp with the partner aligned by weight matching first."""
    return mixup(params, align(params, partner, iterations), alpha)
