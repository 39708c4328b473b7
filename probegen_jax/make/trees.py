"""Model trees: a base model pretrained here, and hundreds of children fine-tuned from it.

Discriminative trees (``make_tree``): a base classifier pretrained on every class of an image
dataset; each child replaces the head by a freshly initialised one and fine-tunes the whole
network on a random subset of the classes (a softmax over its own classes only), with its own
learning rate, number of steps and seed. Targets: ``classes`` (multi-hot ``[N, C]``) and
``tree`` (the tree's id).

Generative trees (``make_lora_tree``): a base denoising autoencoder pretrained on every image;
each child is a rank-``r`` LoRA fine-tune on a few images of one class (like personalised
Stable Diffusion LoRAs). Targets: ``label`` (the class) and ``tree``.

All children of a chunk train together in one vmapped, jit-compiled ``lax.scan`` of Adam
steps: per-child learning rates are arrays, per-child step counts are a mask that freezes a
child once its steps are done, per-child class subsets are a mask over the logits and the
classes it samples from. Child ``i`` draws everything from ``fold_in(key(seed), i)``, so the
tree does not depend on the chunk size; finished chunks are kept on disk (``run_chunks``).

A tree is saved as a directory holding ``base`` (a one-network zoo), ``children`` (the zoo)
and, for LoRA trees, ``base.npz`` (the flattened base params the LoRA arch reads).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from probegen_jax.archs import Arch, flatten_params, make_arch
from probegen_jax.data import ImageDataset, load_dataset
from probegen_jax.errors import ZooFormatError
from probegen_jax.io import atomic_write, write_checked_bytes
from probegen_jax.timing import Stopwatch
from probegen_jax.types import Array, Params, PRNGKey, PyTree
from probegen_jax.make.chunks import concat_chunks, remove_work_dir, run_chunks, time_spent, work_dir_for
from probegen_jax.zoo.store import load_zoo, save_zoo
from probegen_jax.zoo.zoo import Zoo

LossFn = Callable[[Params, PyTree, PRNGKey], Array]  # (trainable params, per-model data, key) -> scalar

HEADS = {"vit": "head", "mixer": "head"}
EVAL_CHILDREN = 10  # children evaluated on the test images at once (activations: 10 x 2000 images)  # the classifier layer a child replaces; mlp: dense{depth}


@dataclasses.dataclass(frozen=True)
class TreeConfig:
    """One discriminative model tree."""

    name: str = "vit"
    arch: str = "vit"
    arch_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dataset: str = "fashion_mnist"
    pool_size: int = 12_000  # training images children (and the base) sample from
    pretrain_steps: int = 1000
    pretrain_lr: float = 2e-3
    num_children: int = 300
    classes_per_child: tuple[int, int] = (3, 5)  # inclusive range
    steps: tuple[int, int] = (30, 120)  # inclusive range of fine-tuning steps
    learning_rate: tuple[float, float] = (1e-3, 5e-3)  # log-uniform range
    batch_size: int = 32
    head: str | None = None  # default: HEADS[arch] or the MLP's last layer
    splits: tuple[float, float] = (0.6, 0.2)  # train, val fractions; the rest is test
    chunk_size: int = 100
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class LoraTreeConfig:
    """One generative tree: LoRA fine-tunes of a denoising autoencoder, one class each."""

    name: str = "lora"
    dataset: str = "fashion_mnist"
    pool_size: int = 12_000
    hidden: int = 128
    pretrain_steps: int = 1000
    pretrain_lr: float = 2e-3
    noise: float = 0.3
    rank: int = 4
    layers: tuple[str, ...] = ("dense0", "dense1")
    num_children: int = 300
    # Images of its class a child is fine-tuned on, and its step/learning-rate ranges: enough shots
    # and a gentle rate that a child learns its class (its denoising loss is lowest on held-out
    # images of that class for ~93% of FMNIST children) instead of memorising a handful of images
    # (5 shots at 3e-3..1e-2: 17%, worse than the base on its own class).
    shots: int = 50
    steps: tuple[int, int] = (50, 150)
    learning_rate: tuple[float, float] = (1e-3, 3e-3)
    batch_size: int = 10
    splits: tuple[float, float] = (0.6, 0.2)
    chunk_size: int = 100
    seed: int = 0


# ----------------------------------------------------------------------------- training


@partial(jax.jit, static_argnames=("loss_fn", "max_steps"))
def adam_steps(loss_fn: LossFn, params: Params, data: PyTree, key: PRNGKey, learning_rate: Array,
               steps: Array, *, max_steps: int) -> tuple[Params, Array]:
    """``steps`` Adam steps on ``loss_fn(params, data, key_t)`` for one model (vmap it for many).

    The scan runs ``max_steps``; steps past ``steps`` leave params and optimiser state unchanged,
    so models with different step counts share one compiled call. Returns (params, loss of the
    last step taken).
    """
    opt = optax.adam(learning_rate)

    def step(carry, t):
        p, state, last = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, data, jax.random.fold_in(key, t))
        updates, new_state = opt.update(grads, state, p)
        live = t < steps
        keep = lambda new, old: jnp.where(live, new, old)  # noqa: E731
        return (jax.tree.map(keep, optax.apply_updates(p, updates), p),
                jax.tree.map(keep, new_state, state), keep(loss, last)), None

    carry = (params, opt.init(params), jnp.float32(jnp.nan))
    (params, _, last), _ = jax.lax.scan(step, carry, jnp.arange(max_steps))
    return params, last


def class_sampler(labels: np.ndarray, num_classes: int) -> Callable[[PRNGKey, Array, int], Array]:
    """``sample(key, class_mask[C], n) -> indices[n]`` of images drawn from the masked classes:
    a class uniformly among the allowed ones, then an image of it uniformly."""
    order = jnp.asarray(np.argsort(labels, kind="stable"))
    counts = np.bincount(labels, minlength=num_classes)
    starts, counts = jnp.asarray(np.concatenate([[0], np.cumsum(counts)[:-1]])), jnp.asarray(counts)

    def sample(key: PRNGKey, class_mask: Array, n: int) -> Array:
        kc, ki = jax.random.split(key)
        cls = jax.random.categorical(kc, jnp.where(class_mask > 0, 0.0, -jnp.inf), shape=(n,))
        offset = jnp.floor(jax.random.uniform(ki, (n,)) * counts[cls]).astype(jnp.int32)
        return order[starts[cls] + offset]

    return sample


def classifier_loss(apply, images: Array, labels: Array, num_classes: int, batch_size: int) -> LossFn:
    """Cross-entropy on a batch sampled from the classes in ``class_mask`` (the per-model data),
    over the logits of those classes only."""
    sample = class_sampler(np.asarray(labels), num_classes)

    def loss(params: Params, class_mask: Array, key: PRNGKey) -> Array:
        idx = sample(key, class_mask, batch_size)
        logits = jnp.where(class_mask > 0, apply(params, images[idx]), -1e9)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean()

    return loss


def denoising_loss(apply, noise: float) -> LossFn:
    """MSE of reconstructing images (the per-model data, ``[B, H, W, C]``) from noisy copies."""

    def loss(params: Params, images: Array, key: PRNGKey) -> Array:
        noisy = images + noise * jax.random.normal(key, images.shape)
        return jnp.mean((apply(params, noisy) - images.reshape(images.shape[0], -1)) ** 2)

    return loss


def test_accuracy(apply, params: Params, images: Array, labels: Array, class_mask: Array | None = None) -> Array:
    """Top-1 accuracy on ``images`` (restricted to ``class_mask``'s classes and logits if given)."""
    logits = apply(params, images)
    if class_mask is None:
        return jnp.mean(jnp.argmax(logits, -1) == labels)
    logits = jnp.where(class_mask > 0, logits, -1e9)
    valid = class_mask[labels] > 0
    return jnp.sum((jnp.argmax(logits, -1) == labels) * valid) / jnp.maximum(valid.sum(), 1)


# ----------------------------------------------------------------------------- per-child settings


def child_settings(key: PRNGKey, num_classes: int, classes_per_child: tuple[int, int], steps: tuple[int, int],
                   learning_rate: tuple[float, float]) -> dict[str, Array]:
    """A child's random class subset (multi-hot), step count and log-uniform learning rate."""
    kk, kc, ks, kl = jax.random.split(key, 4)
    k = jax.random.randint(kk, (), classes_per_child[0], classes_per_child[1] + 1)
    rank = jnp.argsort(jax.random.uniform(kc, (num_classes,)))
    mask = (rank < k).astype(jnp.float32)
    lo, hi = np.log(learning_rate[0]), np.log(learning_rate[1])
    return {"classes": mask, "steps": jax.random.randint(ks, (), steps[0], steps[1] + 1),
            "lr": jnp.exp(jax.random.uniform(kl, (), minval=lo, maxval=hi))}


def split_indices(n: int, fractions: tuple[float, float], seed: int) -> dict[str, np.ndarray]:
    """Seeded train/val/test partition of ``range(n)``."""
    perm = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(round(fractions[0] * n)), int(round(fractions[1] * n))
    return {"train": np.sort(perm[:n_train]), "val": np.sort(perm[n_train:n_train + n_val]),
            "test": np.sort(perm[n_train + n_val:])}


def _pool(data: ImageDataset, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).permutation(len(data.train_images))[:size]
    return data.train_images[idx], data.train_labels[idx]


def _children(num: int, chunk_size: int, seed: int, make: Callable[[Array, Array], Mapping[str, Array]],
              work_dir, plan: Mapping[str, Any], desc: str, progress: bool) -> dict[str, np.ndarray]:
    """Run ``make(indices[chunk], keys[chunk])`` over padded chunks with ``run_chunks``; concatenated."""
    root = jax.random.key(seed)

    def chunk(c: int) -> dict[str, np.ndarray]:
        idx = np.arange(c * chunk_size, (c + 1) * chunk_size)
        valid = idx < num
        idx = np.where(valid, idx, 0)  # pad the last chunk: one compiled shape
        keys = jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.asarray(idx))
        return {k: np.asarray(v)[valid] for k, v in make(jnp.asarray(idx), keys).items()}

    chunks = run_chunks(work_dir, plan, -(-num // chunk_size), chunk, desc=desc, progress=progress)
    return concat_chunks(chunks)


def pretrained_base(work_dir: Path | None, arch: Arch,
                    pretrain: Callable[[], tuple[Params, Array]]) -> tuple[Params, Array]:
    """``pretrain()`` -> (params, loss), kept in the tree's work directory until the tree is
    complete, so a resumed run fine-tunes its remaining children from the very same base
    (pretraining is not bit-reproducible across CPU thread counts)."""
    path = work_dir / "base.npz" if work_dir is not None else None
    if path is not None and path.exists():
        with np.load(path) as saved:
            flat = {k: saved[k] for k in saved.files}
        loss = flat.pop("__loss__")
        return arch.unflatten({k: jnp.asarray(v) for k, v in flat.items()}, where=str(path)), jnp.asarray(loss)
    params, loss = pretrain()
    if path is not None:
        flat = {k: np.asarray(v) for k, v in flatten_params(params).items()}
        atomic_write(path, lambda f: np.savez(f, __loss__=np.asarray(loss), **flat))
    return params, loss


def _unflatten_chunk(arch: Arch, merged: Mapping[str, np.ndarray], where: str) -> Params:
    return arch.unflatten({k[len("params/"):]: v for k, v in merged.items() if k.startswith("params/")},
                          where=where)


def _tree_arch(cfg: TreeConfig, data: ImageDataset) -> tuple[Arch, str]:
    config = {"input_shape": list(data.image_shape), **dict(cfg.arch_config)}
    if cfg.arch == "mlp":
        config.setdefault("out_dim", data.num_classes)
    else:
        config.setdefault("num_classes", data.num_classes)
    arch = make_arch(cfg.arch, **config)
    head = cfg.head or HEADS.get(cfg.arch) or (f"dense{arch.config['depth']}" if cfg.arch == "mlp" else None)
    if head is None or head not in arch.param_shapes():
        raise ValueError(f"tree {cfg.name!r}: give head= (the classifier layer of {cfg.arch!r}); top-level "
                         f"layers: {sorted(arch.param_shapes())}")
    return arch, head


# ----------------------------------------------------------------------------- discriminative trees


def make_tree(cfg: TreeConfig, out: str | os.PathLike | None = None, *, tree_id: int = 0,
              data: ImageDataset | None = None, data_dir: str | os.PathLike | None = None,
              progress: bool = True) -> tuple[Zoo, Zoo]:
    """Pretrain the base, fine-tune ``cfg.num_children`` children; returns (base zoo of 1, children).

    With ``out`` both are saved there (``out/base``, ``out/children``) and the children's chunks
    are kept until the tree is complete, so an interrupted run resumes. ``data``: the dataset
    ``cfg.dataset`` names (``load_dataset(cfg.dataset)``), if already loaded.
    """
    data = data if data is not None else load_dataset(cfg.dataset, data_dir)
    c = data.num_classes
    if not 1 <= cfg.classes_per_child[0] <= cfg.classes_per_child[1] <= c:
        raise ValueError(f"tree {cfg.name!r}: classes_per_child {cfg.classes_per_child} must be a range within "
                         f"1..{c} ({data.name} has {c} classes)")
    arch, head = _tree_arch(cfg, data)
    images, labels = (jnp.asarray(a) for a in _pool(data, cfg.pool_size, cfg.seed))
    test_images, test_labels = jnp.asarray(data.test_images[:2000]), jnp.asarray(data.test_labels[:2000])
    loss = classifier_loss(arch.apply, images, labels, c, cfg.batch_size)
    out = Path(out) if out is not None else None

    base_key = jax.random.fold_in(jax.random.key(cfg.seed), 2**30)
    work_dir = work_dir_for(out / "children") if out is not None else None
    stopwatch = Stopwatch(time_spent(work_dir))  # with the time of interrupted runs
    base_params, base_loss = pretrained_base(
        work_dir, arch, lambda: adam_steps(loss, arch.init(base_key), jnp.ones(c), base_key,
                                           jnp.float32(cfg.pretrain_lr), jnp.int32(cfg.pretrain_steps),
                                           max_steps=cfg.pretrain_steps))
    base_acc = float(test_accuracy(arch.apply, base_params, test_images, test_labels))
    if progress:
        print(f"tree {cfg.name}: base {arch.name} ({arch.num_params()} params) test accuracy {base_acc:.3f}")

    max_steps = cfg.steps[1]

    @jax.jit
    def make(idx: Array, keys: Array) -> dict[str, Array]:
        settings = jax.vmap(lambda k: child_settings(jax.random.fold_in(k, 0), c, cfg.classes_per_child,
                                                     cfg.steps, cfg.learning_rate))(keys)
        init = jax.vmap(lambda k: {**base_params, head: arch.init(jax.random.fold_in(k, 1))[head]})(keys)
        params, final_loss = jax.vmap(
            lambda p, m, k, lr, s: adam_steps(loss, p, m, jax.random.fold_in(k, 2), lr, s, max_steps=max_steps)
        )(init, settings["classes"], keys, settings["lr"], settings["steps"])
        acc = jax.lax.map(lambda pm: test_accuracy(arch.apply, pm[0], test_images, test_labels, pm[1]),
                          (params, settings["classes"]), batch_size=EVAL_CHILDREN)  # bounded memory
        return {**{f"params/{k}": v for k, v in flatten_params(params).items()}, **settings,
                "test_accuracy": acc, "final_loss": final_loss}

    plan = {"generator": "tree", "config": _jsonable(cfg), "tree_id": tree_id}
    merged = _children(cfg.num_children, cfg.chunk_size, cfg.seed, make, work_dir, plan,
                       f"tree {cfg.name}: fine-tuning", progress)
    meta = {"generator": "tree", "tree": cfg.name, "tree_id": tree_id, "config": _jsonable(cfg),
            "dataset": data.name, "class_names": list(data.class_names), "num_classes": c, "head": head,
            "base_test_accuracy": base_acc, **stopwatch.elapsed().as_meta()}
    targets = {"classes": merged["classes"], "tree": np.full(cfg.num_children, tree_id, np.int32),
               "steps": merged["steps"], "lr": merged["lr"], "test_accuracy": merged["test_accuracy"]}
    return tree_zoos(arch, merged, base_params, targets, cfg=cfg, meta=meta, out=out, work_dir=work_dir)


# ----------------------------------------------------------------------------- generative (LoRA) trees


def make_lora_tree(cfg: LoraTreeConfig, out: str | os.PathLike | None = None, *, tree_id: int = 0,
                   data: ImageDataset | None = None, data_dir: str | os.PathLike | None = None,
                   progress: bool = True) -> tuple[Zoo, Zoo]:
    """Pretrain a denoising autoencoder, then LoRA-fine-tune it on ``cfg.shots`` images of one
    class per child. Returns (base zoo of 1, children zoo of LoRA factors)."""
    data = data if data is not None else load_dataset(cfg.dataset, data_dir)
    images, labels = _pool(data, cfg.pool_size, cfg.seed)
    c, shape = data.num_classes, data.image_shape
    dim = int(np.prod(shape))
    base_arch = make_arch("mlp", input_shape=list(shape), hidden=cfg.hidden, depth=1, out_dim=dim)
    out = Path(out) if out is not None else None

    jimages = jnp.asarray(images)
    pool_loss = denoising_loss(base_arch.apply, cfg.noise)
    base_key = jax.random.fold_in(jax.random.key(cfg.seed), 2**30)

    def pretrain_loss(p, _, key):
        idx = jax.random.randint(key, (64,), 0, len(images))
        return pool_loss(p, jimages[idx], jax.random.fold_in(key, 1))

    work_dir = work_dir_for(out / "children") if out is not None else None
    stopwatch = Stopwatch(time_spent(work_dir))  # with the time of interrupted runs
    base_params, base_loss = pretrained_base(
        work_dir, base_arch, lambda: adam_steps(pretrain_loss, base_arch.init(base_key), (), base_key,
                                                jnp.float32(cfg.pretrain_lr), jnp.int32(cfg.pretrain_steps),
                                                max_steps=cfg.pretrain_steps))
    if progress:
        print(f"tree {cfg.name}: base denoiser ({base_arch.num_params()} params) loss {float(base_loss):.4f}")
    base_file = (out / "base.npz") if out is not None else None
    base_flat = {k: np.asarray(v) for k, v in flatten_params(base_params).items()}
    if base_file is not None:
        out.mkdir(parents=True, exist_ok=True)
        import io

        buf = io.BytesIO()
        np.savez(buf, **base_flat)
        write_checked_bytes(base_file, buf.getvalue())
        arch = make_arch("lora", base=base_arch.spec(), base_params=str(base_file.absolute()),
                         layers=list(cfg.layers), rank=cfg.rank)
    else:
        arch = _in_memory_lora(base_arch, base_flat, cfg)

    sample = class_sampler(labels, c)
    by_class = jax.vmap(lambda k, m: sample(k, m, cfg.shots), in_axes=(0, 0))
    max_steps = cfg.steps[1]

    def lora_loss(p, shots, key):
        idx = jax.random.randint(key, (cfg.batch_size,), 0, cfg.shots)
        return denoising_loss(arch.apply, cfg.noise)(p, shots[idx], jax.random.fold_in(key, 1))

    @jax.jit
    def make(idx: Array, keys: Array) -> dict[str, Array]:
        settings = jax.vmap(lambda k: child_settings(jax.random.fold_in(k, 0), c, (1, 1), cfg.steps,
                                                     cfg.learning_rate))(keys)
        shots = jimages[by_class(jax.vmap(lambda k: jax.random.fold_in(k, 3))(keys), settings["classes"])]
        init = jax.vmap(lambda k: arch.init(jax.random.fold_in(k, 1)))(keys)
        params, final_loss = jax.vmap(
            lambda p, s, k, lr, n: adam_steps(lora_loss, p, s, jax.random.fold_in(k, 2), lr, n, max_steps=max_steps)
        )(init, shots, keys, settings["lr"], settings["steps"])
        return {**{f"params/{k}": v for k, v in flatten_params(params).items()},
                "label": jnp.argmax(settings["classes"], -1).astype(jnp.int32), "steps": settings["steps"],
                "lr": settings["lr"], "final_loss": final_loss}

    plan = {"generator": "lora tree", "config": _jsonable(cfg), "tree_id": tree_id}
    merged = _children(cfg.num_children, cfg.chunk_size, cfg.seed, make, work_dir, plan,
                       f"tree {cfg.name}: LoRA fine-tuning", progress)
    meta = {"generator": "lora tree", "tree": cfg.name, "tree_id": tree_id, "config": _jsonable(cfg),
            "dataset": data.name, "class_names": list(data.class_names), "num_classes": c,
            "base_loss": float(base_loss), **stopwatch.elapsed().as_meta()}
    targets = {"label": merged["label"], "tree": np.full(cfg.num_children, tree_id, np.int32),
               "steps": merged["steps"], "lr": merged["lr"], "final_loss": merged["final_loss"]}
    return tree_zoos(arch, merged, base_params, targets, cfg=cfg, meta=meta, out=out, work_dir=work_dir,
                     base_arch=base_arch)


def _in_memory_lora(base_arch: Arch, base_flat: Mapping[str, np.ndarray], cfg: LoraTreeConfig) -> Arch:
    """The ``lora`` arch over params held in memory (no ``out``: nothing is written)."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="lora_base_")) / "base.npz"
    np.savez(tmp, **base_flat)
    return make_arch("lora", base=base_arch.spec(), base_params=str(tmp), layers=list(cfg.layers), rank=cfg.rank)


# ----------------------------------------------------------------------------- saving and loading


def _jsonable(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def tree_zoos(arch: Arch, merged: Mapping[str, np.ndarray], base_params: Params, targets: Mapping[str, np.ndarray],
              *, cfg: Any, meta: Mapping[str, Any], out: Path | None, work_dir: Path | None,
              base_arch: Arch | None = None) -> tuple[Zoo, Zoo]:
    """(base zoo of one, children zoo) of a tree whose chunks are ``merged`` (``params/...``), split
    by ``cfg.splits`` and ``cfg.seed``; saved to ``out`` (and its chunks removed) when given."""
    children = Zoo(arch, _unflatten_chunk(arch, merged, f"tree {cfg.name} chunks"), targets=targets,
                   splits=split_indices(cfg.num_children, cfg.splits, cfg.seed), meta=meta)
    base = Zoo(base_arch or arch, jax.tree.map(lambda a: np.asarray(a)[None], base_params),
               targets={"tree": np.asarray(targets["tree"][:1])}, meta={**meta, "generator": f"{meta['generator']} base"})
    if out is not None:
        _save_tree(out, base, children, work_dir)
    return base, children


def _save_tree(out: Path, base: Zoo, children: Zoo, work_dir: Path) -> None:
    save_zoo(base, out / "base", overwrite=(out / "base").exists())
    save_zoo(children, out / "children", overwrite=(out / "children").exists())
    remove_work_dir(work_dir)


def _is_saved_zoo(path: Path) -> bool:
    """A zoo is saved at ``path`` (``manifest.json``; format 1: ``meta/``)."""
    return (path / "manifest.json").is_file() or (path / "meta").exists()


def load_tree(path: str | os.PathLike) -> tuple[Zoo, Zoo]:
    """(base, children) of a tree saved by ``make_tree``/``make_lora_tree``."""
    path = Path(path)
    return load_zoo(path / "base"), load_zoo(path / "children")


def make_trees(configs: Sequence[TreeConfig | LoraTreeConfig], out: str | os.PathLike | None = None, *,
               tree_ids: Sequence[int] | None = None, data_dir: str | os.PathLike | None = None,
               progress: bool = True) -> dict[str, tuple[Zoo, Zoo]]:
    """Several trees, ``out/<name>`` each; a tree already saved is loaded (``ZooFormatError`` if it
    was made with other settings). Tree ids are ``tree_ids`` (default: the configs' order); trees
    made into one folder by several calls should keep distinct ids, e.g. their places in
    ``default_trees``."""
    tree_ids = list(range(len(configs))) if tree_ids is None else list(tree_ids)
    if len({c.name for c in configs}) != len(configs) or len(set(tree_ids)) != len(configs):
        raise ValueError(f"trees need distinct names and one distinct id each; got names "
                         f"{[c.name for c in configs]} and ids {tree_ids}")
    trees, datasets = {}, {}
    for tree_id, cfg in zip(tree_ids, configs):
        path = Path(out) / cfg.name if out is not None else None
        if path is not None and _is_saved_zoo(path / "children"):
            base, children = load_tree(path)
            saved, wanted = children.meta.get("config", {}), _jsonable(cfg)
            if saved != wanted:
                differ = {k: (saved.get(k), wanted.get(k)) for k in sorted(set(saved) | set(wanted))
                          if saved.get(k) != wanted.get(k)}
                raise ZooFormatError(f"{path}: a tree made with other settings is saved here (saved, asked): "
                                     f"{differ}; remove it or use another output folder")
            trees[cfg.name] = base, children
            continue
        data = datasets.get(cfg.dataset) or datasets.setdefault(cfg.dataset, load_dataset(cfg.dataset, data_dir))
        maker = make_lora_tree if isinstance(cfg, LoraTreeConfig) else make_tree
        trees[cfg.name] = maker(cfg, path, tree_id=tree_id, data=data, progress=progress)
    return trees


def default_trees(num_children: int = 300, dataset: str = "fashion_mnist", seed: int = 0,
                  generative: bool = True, width: int = 32,
                  fine_tuning: Mapping[str, Any] | None = None) -> list[TreeConfig | LoraTreeConfig]:
    """The experiment's trees: a small ViT (7x7 patches), an MLP-Mixer, an MLP and, with
    ``generative``, a LoRA tree of a denoising autoencoder. Digits (8x8) use 4x4 patches.

    ``width`` sets the layer sizes: the ViT and Mixer have model dimension ``width`` and MLPs of
    ``2 * width`` (qkv is ``[3 * width, width]``), the MLP tree hidden ``2 * width``, the LoRA
    autoencoder hidden ``4 * width``. The dense expert's parameters grow with the layer (times the
    labels), ProbeX's with its sides only. ``dataset="fashion_mnist/10"`` gives 100 labels (``data.split_classes``);
    ``fine_tuning`` overrides the discriminative trees' ``TreeConfig`` fields, e.g.
    ``{"classes_per_child": (50, 50)}`` (the paper: 50 of CIFAR-100's classes per child)."""
    patch = 4 if dataset.startswith("digits") else 7
    vision = {"patch": patch, "dim": width}
    trees: list[TreeConfig | LoraTreeConfig] = [
        TreeConfig(name="vit", arch="vit", arch_config={**vision, "mlp_dim": 2 * width}, dataset=dataset,
                   num_children=num_children, seed=seed),
        TreeConfig(name="mixer", arch="mixer", arch_config={**vision, "token_dim": width, "channel_dim": 2 * width},
                   dataset=dataset, num_children=num_children, seed=seed + 1),
        mlp_tree("mlp", width, dataset, num_children, seed=seed + 2),
    ]
    trees = [dataclasses.replace(t, **(fine_tuning or {})) for t in trees]
    if generative:
        trees.append(LoraTreeConfig(name="lora", dataset=dataset, hidden=4 * width, num_children=num_children,
                                    seed=seed + 3))
    return trees


def forest_trees(num_trees: int = 4, num_children: int = 300, dataset: str = "fashion_mnist", seed: int = 0,
                 width: int = 32) -> list[TreeConfig]:
    """Trees of one architecture (the MLP tree of ``default_trees``) grown from differently seeded
    bases, named ``mlp0, mlp1, ...``: their layers share one shape, so only the weights tell the
    trees apart (the setting of ProbeX's in-tree vs across-tree comparison)."""
    return [mlp_tree(f"mlp{i}", width, dataset, num_children, seed=seed + 100 + i) for i in range(num_trees)]


def mlp_tree(name: str, width: int, dataset: str, num_children: int, *, seed: int) -> TreeConfig:
    """The MLP tree of ``default_trees``: two hidden layers of ``2 * width``."""
    return TreeConfig(name=name, arch="mlp", arch_config={"hidden": 2 * width, "depth": 2}, dataset=dataset,
                      num_children=num_children, seed=seed)


def load_trees(path: str | os.PathLike) -> dict[str, tuple[Zoo, Zoo]]:
    """Every tree saved under ``path`` (``path/<name>/{base,children}``), in tree-id order."""
    path = Path(path)
    dirs = sorted(p for p in path.iterdir() if _is_saved_zoo(p / "children")) if path.is_dir() else []
    if not dirs:
        raise FileNotFoundError(f"{path}: no saved trees here (expected {path}/<name>/children); make them with "
                                "`probegen-jax zoo make trees`")
    trees = {d.name: load_tree(d) for d in dirs}
    return dict(sorted(trees.items(), key=lambda kv: kv[1][1].meta.get("tree_id", 0)))
