"""Zoo-member architectures as pure ``init``/``apply`` pairs, and adapters for user code."""

from probegen_jax.archs.base import (
    Arch,
    arch_from_function,
    arch_from_linen,
    arch_from_nnx,
    arch_from_spec,
    check_finite,
    flatten_params,
    layer_order,
    make_arch,
    register_arch,
    registered_archs,
    tree_path_name,
    unregistered_arch_error,
)
from probegen_jax.archs.cnn import small_cnn, wild_cnn
from probegen_jax.archs.dense import mlp, siren
from probegen_jax.archs.lora import lora
from probegen_jax.archs.minilm import minilm_top
from probegen_jax.archs.vision import mixer, vit
from probegen_jax.archs.tensors import tensors
from probegen_jax.archs.torch_cnn import torch_cnn

__all__ = [
    "Arch", "arch_from_function", "arch_from_linen", "arch_from_nnx", "arch_from_spec",
    "check_finite", "flatten_params", "layer_order", "lora", "make_arch", "minilm_top", "mixer", "mlp", "register_arch", "registered_archs", "siren", "small_cnn", "tensors", "torch_cnn",
    "tree_path_name", "unregistered_arch_error", "vit", "wild_cnn",
]
