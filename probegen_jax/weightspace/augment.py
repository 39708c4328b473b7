"""Weight-space augmentation as data: ``WeightAugment`` says which transforms a training batch of
networks goes through; ``batch_augmenter`` turns it into one pure, jittable function of the step
key, so the same key gives the same batch and a resumed run sees the batches it would have seen.

Order, for each network (each with its own key): the reference INR augmentation
(``inr.reference_augment``: translation, rotation, constant shift, weight dropout, first-layer
scale, positive scale, quantile dropout), then the symmetries (hidden-neuron permutation, SIREN
sign flips, SIREN bias shifts), then Gaussian noise; finally MixUp of each network with a partner
drawn from the same batch (any class), weight ``alpha ~ U(0, 1)`` on its own label.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax

from probegen_jax.types import Array, Params, PRNGKey
from probegen_jax.weightspace.inr import reference_augment
from probegen_jax.weightspace.mixup import align, mixup
from probegen_jax.weightspace.symmetry import (
    flip_signs,
    gaussian_noise,
    permute,
    random_permutations,
    random_shifts,
    random_signs,
    shift_biases,
)

MIXUPS = ("none", "plain", "aligned")
INR_FIELDS = ("translation", "rotation", "shift", "weight_dropout", "scale", "positive_scale", "quantile")


@dataclasses.dataclass(frozen=True)
class WeightAugment:
    """Transforms of a training batch of dense networks (``0`` / ``False`` / ``"none"``: off)."""

    # the reference INR augmentation (inr.py), with its semantics
    translation: float = 0.0  # t ~ U(-s, s)^in, pushed into a bias
    rotation: float = 0.0  # degrees, first kernel; 2-D inputs (skipped otherwise, as the reference does)
    shift: float = 0.0  # the reference's "noise": a constant + shift * std per tensor
    weight_dropout: float = 0.0  # rate; survivors divided by 1 - rate
    scale: float = 0.0  # first kernel times 1 + U(-s, s)
    positive_scale: float = 0.0  # hidden neurons times U(1 - s, 1 + s), next kernel divided
    quantile: float = 0.0  # magnitudes below the U(0, q) quantile zeroed
    # symmetries
    permute: bool = False  # hidden neurons in a uniformly random order
    sign_flip: float = 0.0  # probability a SIREN hidden neuron is negated
    bias_shift: int = 0  # k_max: SIREN hidden biases + k pi / w0, k in [-k_max, k_max - 1]
    # Shamsian et al.
    noise: float = 0.0  # Gaussian noise, std noise * std(tensor)
    mixup: str = "none"  # none | plain | aligned (weight matching first)
    matching_iterations: int = 100

    def __post_init__(self):
        if self.mixup not in MIXUPS:
            raise ValueError(f"mixup must be one of {MIXUPS}, got {self.mixup!r}")
        if not 0 <= self.weight_dropout < 1:
            raise ValueError(f"weight_dropout must be in [0, 1), got {self.weight_dropout}")

    @classmethod
    def reference(cls, **changes: Any) -> WeightAugment:
        """The reference INR augmentation's defaults (``INRDataset(augmentation=True)``)."""
        return dataclasses.replace(cls(translation=0.25, rotation=45.0, shift=0.1, weight_dropout=0.01, scale=0.2),
                                   **changes)

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> WeightAugment | None:
        return None if record is None else cls(**record)

    @property
    def siren_only(self) -> bool:
        return bool(self.sign_flip or self.bias_shift)


class Augmented(NamedTuple):
    """A batch after augmentation; ``weight`` (``[B]``, MixUp's alpha, else ``None``) is the share of
    the loss on ``targets``, the rest on ``partner_targets``."""

    inputs: Params
    targets: Array
    partner_targets: Array
    weight: Array | None


def augment_network(key: PRNGKey, params: Params, cfg: WeightAugment, w0: float | None = None) -> Params:
    """One network through every transform ``cfg`` turns on but MixUp; ``w0``: the SIREN's frequency."""
    k_inr, k_perm, k_sign, k_shift, k_noise = jax.random.split(key, 5)
    if any(getattr(cfg, f) for f in INR_FIELDS):
        params = reference_augment(k_inr, params, cfg)
    if cfg.permute:
        params = permute(params, random_permutations(k_perm, params))
    if cfg.sign_flip:
        params = flip_signs(params, random_signs(k_sign, params, cfg.sign_flip))
    if cfg.bias_shift:
        params = shift_biases(params, random_shifts(k_shift, params, cfg.bias_shift), w0)
    if cfg.noise:
        params = gaussian_noise(k_noise, params, cfg.noise)
    return params


Augmenter = Callable[[PRNGKey, Params, Array], Augmented]


def batch_augmenter(cfg: WeightAugment, w0: float | None = None) -> Augmenter:
    """``augment(key, params [B, ...], targets [B, ...]) -> Augmented``: ``augment_network`` on every
    network with its own key, then MixUp within the batch. ``w0``: the SIREN frequency, needed by
    ``sign_flip`` (checked by the caller) and ``bias_shift``."""
    if cfg.bias_shift and w0 is None:
        raise ValueError("bias_shift needs the SIREN's w0")

    def augment(key: PRNGKey, params: Params, targets: Array) -> Augmented:
        b = jax.tree.leaves(params)[0].shape[0]
        chex.assert_tree_shape_prefix(params, (b,))
        k_nets, k_partner, k_alpha = jax.random.split(key, 3)
        params = jax.vmap(lambda k, p: augment_network(k, p, cfg, w0))(jax.random.split(k_nets, b), params)
        if cfg.mixup == "none":
            return Augmented(params, targets, targets, None)
        partner = jax.random.permutation(k_partner, b)
        others = jax.tree.map(lambda a: a[partner], params)
        if cfg.mixup == "aligned":
            others = jax.vmap(lambda p, o: align(p, o, cfg.matching_iterations))(params, others)
        alpha = jax.random.uniform(k_alpha, (b,))
        return Augmented(jax.vmap(mixup)(params, others, alpha), targets, targets[partner], alpha)

    return augment
