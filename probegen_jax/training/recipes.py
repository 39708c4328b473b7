"""Recipes: how each method is trained, as data. A recipe is a named ``TrainConfig`` (optimiser,
AMSGrad, warm-up and schedule, gradient clipping, head dropout, label smoothing, batch size,
epochs or steps, weight-space augmentation) that ``train(..., recipe=NAME)`` and
``probegen-jax train METHOD --recipe NAME`` use and the run records.

- ``default``: every method's own ``Method.train_config`` (the settings runs used before recipes);
- ``official``: the training of the method's reference code (REFERENCE.md section 7);
- ``dwsnets``, ``shamsian``: the DWSNets trainer and Shamsian et al.'s augmented trainer, for any
  method trained by the loop on the networks' own params.

Where this library differs from the reference code, it says so here:

- evaluation is once per epoch (the references: every 1,000 or 3,000 steps);
- AMSGrad is optax's ``scale_by_amsgrad``, the running maximum of the bias-corrected second
  moment; PyTorch keeps the maximum of the raw moment and corrects that, which differs while the
  correction is far from 1 (the first few thousand steps);
- dropout is applied to the hidden units of the method's head (NG-GNN, NG-T, ScaleGMN: the readout
  MLP; NFN: the head MLP); the graph references also drop inside their message-passing layers.
  NFT's reference dropout (0.1) sits in its transformer blocks, which take none here: off;
- NFN's ``extra_aug`` (each image's INR fitted again from other seeds) is a property of the zoo, not
  of training, and is not part of these recipes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from probegen_jax.errors import UnknownNameError
from probegen_jax.training.loop import TrainConfig
from probegen_jax.weightspace.augment import Augmenter, WeightAugment, batch_augmenter

# mkofinas/neural-graphs experiments/inr_classification (configs/base.yaml, scripts/*.sh, data.py)
NEURAL_GRAPHS = TrainConfig(epochs=200, batch_size=128, learning_rate=1e-3, schedule="constant", optimizer="adamw",
                            weight_decay=5e-4, amsgrad=True, warmup_steps=1000, clip_norm=10.0, dropout=0.2,
                            augment=WeightAugment.reference(), recipe="official")
# jkalogero/scalegmn configs/fmnist_cls/scalegmn.yml (no augmentation on MNIST / FMNIST INRs)
SCALEGMN = TrainConfig(epochs=200, batch_size=128, learning_rate=1e-3, schedule="constant", optimizer="adamw",
                       weight_decay=0.01, warmup_steps=1000, clip_norm=10.0, dropout=0.2, recipe="official")
# AllanYangZhou/nfn experiments/classify_siren_configs (main.yaml, nfnet/inv_ff.yaml: head dropout 0.5)
NFN = TrainConfig(steps=200_000, batch_size=32, learning_rate=1e-4, schedule="constant", optimizer="adam",
                  warmup_steps=10_000, dropout=0.5, recipe="official")
NFT = dataclasses.replace(NFN, dropout=0.0)  # nfnet/nft_ff.yaml: its dropout is in the blocks (see above)
# ProbeGen's paper: Adam 3e-4, cosine decay, batch 32, 30 epochs
PROBEGEN = TrainConfig(epochs=30, batch_size=32, learning_rate=3e-4, schedule="cosine", optimizer="adam",
                       recipe="official")

OFFICIAL: dict[str, TrainConfig] = {"ng_gnn": NEURAL_GRAPHS, "ng_t": NEURAL_GRAPHS, "scalegmn": SCALEGMN,
                                    "nfn": NFN, "nfn_hnp": NFN, "nft": NFT, "probegen": PROBEGEN}
# recipes for any method trained by the loop on member params
SHARED: dict[str, TrainConfig] = {
    # AvivNavon/DWSNets experiments/mnist/trainer.py: AdamW amsgrad, no scheduler, the INR augmentation
    "dwsnets": TrainConfig(epochs=100, batch_size=512, learning_rate=5e-3, schedule="constant", optimizer="adamw",
                           weight_decay=5e-4, amsgrad=True, augment=WeightAugment.reference(), recipe="dwsnets"),
    # AvivSham/deep-weight-space-augmentations: its trainer (Adam wd 5e-4, lr 1e-3, batch 256, 200 epochs,
    # 1,000 warm-up steps) with CombinationAugmentation: translation, Gaussian noise, SIREN negation,
    # MixUp with the partner aligned by weight matching
    "shamsian": TrainConfig(epochs=200, batch_size=256, learning_rate=1e-3, schedule="constant", optimizer="adam",
                            weight_decay=5e-4, warmup_steps=1000,
                            augment=WeightAugment(translation=0.25, noise=0.32, sign_flip=0.5, mixup="aligned"),
                            recipe="shamsian"),
}


def _trains_on_params(method: Any) -> bool:
    from probegen_jax.methods.registry import member_params

    return method.fit is None and method.inputs is member_params


def recipe_names(method: Any) -> list[str]:
    """The recipes ``method`` (a name or ``Method``) can be trained with."""
    from probegen_jax.methods.registry import get_method

    method = get_method(method)
    return ["default"] + (["official"] if method.name in OFFICIAL else []) + \
        (sorted(SHARED) if _trains_on_params(method) else [])


def recipe_config(method: Any, name: str) -> TrainConfig:
    """The ``TrainConfig`` of recipe ``name`` for ``method``."""
    from probegen_jax.methods.registry import get_method

    method = get_method(method)
    if name not in recipe_names(method):
        raise UnknownNameError(f"method {method.name!r} has no recipe {name!r}; available: {recipe_names(method)}")
    if name == "default":
        return method.train_config
    return OFFICIAL[method.name] if name == "official" else SHARED[name]


def augmenter_for(method: Any, zoo: Any, augment: WeightAugment) -> Augmenter:
    """``batch_augmenter(augment)`` for training ``method`` on ``zoo``, refused where the batch is not
    the params of dense networks (or the settings need a SIREN and the zoo has none)."""
    if not _trains_on_params(method) or zoo.packs_inputs:
        raise ValueError(f"weight-space augmentation transforms the networks' own params: method {method.name!r} "
                         f"{'on a zoo of several architectures ' if zoo.packs_inputs else ''}does not train on them; "
                         "use a recipe without augmentation")
    arch = zoo.archs[0]
    if any(len(s["kernel"].shape) != 2 for s in arch.param_shapes().values() if "kernel" in s):
        raise ValueError(f"weight-space augmentation takes dense networks (INRs); the zoo's {arch.name!r} is not "
                         "one: use a recipe without augmentation")
    if augment.siren_only and arch.name != "siren":
        raise ValueError(f"sign flips and bias shifts are SIREN symmetries; the zoo's networks are {arch.name!r}")
    return batch_augmenter(augment, arch.config.get("w0"))
