"""Weight-space augmentation of dense networks (INRs): pure functions of one network's params
``{"dense0": {"kernel": [in, out], "bias": [out]}, ...}``, drawn from a key, vmapped over a batch.

- ``inr``: the reference INR augmentations (translation, rotation, constant shift, weight dropout,
  scale, positive scale, quantile dropout) with their exact semantics;
- ``symmetry``: hidden-neuron permutations, SIREN sign flips and bias shifts, Gaussian noise;
- ``mixup``: weight-space MixUp, plain or with the partner aligned by weight matching;
- ``augment``: ``WeightAugment`` (the settings, as data) and ``batch_augmenter`` (the training step's
  augmentation, from the step key).
"""

from probegen_jax.weightspace.augment import Augmented, WeightAugment, augment_network, batch_augmenter
from probegen_jax.weightspace.inr import (
    constant_shift,
    first_layer_scale,
    positive_scale,
    quantile_dropout,
    reference_augment,
    rotate,
    rotation_matrix,
    translate,
    weight_dropout,
)
from probegen_jax.weightspace.mixup import align, aligned_mixup, mixup, weight_matching
from probegen_jax.weightspace.symmetry import (
    flip_signs,
    gaussian_noise,
    permute,
    random_permutations,
    random_shifts,
    random_signs,
    shift_biases,
)

__all__ = [
    "Augmented",
    "WeightAugment",
    "align",
    "aligned_mixup",
    "augment_network",
    "batch_augmenter",
    "constant_shift",
    "first_layer_scale",
    "flip_signs",
    "gaussian_noise",
    "mixup",
    "permute",
    "positive_scale",
    "quantile_dropout",
    "random_permutations",
    "random_shifts",
    "random_signs",
    "reference_augment",
    "rotate",
    "rotation_matrix",
    "shift_biases",
    "translate",
    "weight_dropout",
    "weight_matching",
]
