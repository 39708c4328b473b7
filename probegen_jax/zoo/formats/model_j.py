"""Model-J model trees (ProbeX): one safetensors file per fine-tuned model.

Layout (as the dataset's download script leaves it, the Hugging Face cache layout):
``<tree>/{train,val,test}/<model>/refs/main`` names a snapshot and
``<tree>/{train,val,test}/<model>/snapshots/<ref>/model.safetensors`` holds the weights; plain
``<tree>/<split>/<model>/*.safetensors`` or ``<tree>/<split>/*.safetensors`` files are read too.
The header's ``__metadata__["dataset_chosen_targets"]`` lists the classes the model was
fine-tuned on (a Python or JSON list of names).

``read_model_j`` returns one zoo per tree (``path`` is a tree, or a folder of trees). With
``layers=[name]`` it reads that one layer, which is what ProbeX learns from: the zoo's
architecture is the layer as a linear map (``tensors`` arch), so probing it multiplies the weight
matrix by probes. With several names, ``layers="probex"`` (the layers ProbeX's reference code
reads, ``probex_layer_names``, those each tree has) or ``layers=None`` (every tensor: the full
model), the zoo holds the tensors without a forward pass. Only the chosen tensors are read from
each file. Tensors keep PyTorch's layout (``meta["weight_layout"] = "torch"``: a linear weight is
``[out, in]``).

Targets: ``classes`` (multi-hot over the class vocabulary, as the reference code's label encoder
fitted on all CIFAR-100 names: ``classes=`` if given (sorted), else the 100 CIFAR-100 names when
every class in the files is one of them, else every class named in the files, sorted; in
``meta["classes"]``, its size in ``meta["num_classes"]``) and ``tree`` (the tree's index; its name
in ``meta["tree"]``).
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from probegen_jax.archs import make_arch
from probegen_jax.errors import DataFileError, MissingDependencyError, ShapeMismatchError, ZooFormatError
from probegen_jax.zoo.formats.common import FlatStack, progress_iter, require_dir, require_finite
from probegen_jax.zoo.zoo import SPLITS, Zoo

CLASSES_KEY = "dataset_chosen_targets"
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm")
# The layers ProbeX's reference code trains on (its layer-name lists), as Hugging Face names them.
PROBEX_LAYER = re.compile(
    r"classifier(\.1)?\.weight|vit\.embeddings\.position_embeddings"
    r"|vit\.encoder\.layer\.\d+\.(attention\.attention\.(key|query|value)|attention\.output\.dense|intermediate\.dense"
    r"|output\.dense)\.weight|resnet\..*convolution\.weight")


def probex_layer_names(names) -> list[str]:
    """The tensors among ``names`` that ProbeX's reference code reads, in its index order (sorted as
    strings: for a ViT the classifier, the position embeddings, then blocks 0, 1, 10, 11, 2, ... with
    attention key, query, value, attention output, intermediate and output weights; for a ResNet
    the classifier and every convolution)."""
    return sorted(n for n in names if PROBEX_LAYER.fullmatch(n))


def default_classes(named: set[str]) -> list[str]:
    """All CIFAR-100 classes when every class named is one of them, else the names themselves; sorted."""
    return list(CIFAR100_CLASSES) if named <= set(CIFAR100_CLASSES) else sorted(named)


def _safe_open(path: Path):
    try:
        from safetensors import safe_open
    except ImportError as e:
        raise MissingDependencyError("reading Model-J needs safetensors; pip install safetensors==0.8.0") from e
    try:
        return safe_open(str(path), framework="numpy")
    except Exception as e:  # safetensors raises SafetensorError / OSError for damaged headers
        raise ZooFormatError(f"{path}: cannot read safetensors file ({type(e).__name__}: {e})") from e


def parse_classes(value: str | None, *, where: str) -> list[str]:
    """The class list of a model's metadata (a Python or JSON list literal, never evaluated)."""
    if value is None:
        raise ZooFormatError(f"{where}: metadata has no {CLASSES_KEY!r} (the model's classes)")
    try:
        classes = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        try:
            classes = json.loads(value)
        except ValueError as e:
            raise ZooFormatError(f"{where}: {CLASSES_KEY!r} is not a list literal ({value[:80]!r})") from e
    if not isinstance(classes, (list, tuple, set)) or not all(isinstance(c, str) for c in classes):
        raise ZooFormatError(f"{where}: {CLASSES_KEY!r} must list class names, got {value[:80]!r}")
    return sorted(classes)


def model_files(split_dir: Path) -> list[Path]:
    """The model files of one split folder, sorted."""
    files = []
    for entry in sorted(split_dir.iterdir()):
        if entry.is_file() and entry.suffix == ".safetensors":
            files.append(entry)
        elif entry.is_dir() and not entry.name.startswith("."):
            ref = entry / "refs" / "main"
            if ref.is_file():
                files.append(_snapshot(ref))
            else:
                files += sorted(entry.glob("*.safetensors"))
    return files


def _snapshot(ref: Path) -> Path:
    """The model file a ``refs/main`` names: ``../../snapshots/<ref>/model.safetensors``."""
    try:
        name = ref.read_text().strip()
        snapshot = ref.parent.parent / "snapshots" / name / "model.safetensors"
        found = bool(name) and "/" not in name and snapshot.is_file()
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ZooFormatError(f"{ref}: unreadable snapshot reference ({type(e).__name__}: {e})") from e
    if not found:
        raise DataFileError(f"{ref}: names snapshot {name[:40]!r}, but {snapshot} is missing")
    return snapshot


def _trees(root: Path) -> list[Path]:
    if any((root / s).is_dir() for s in SPLITS):
        return [root]
    trees = sorted(d for d in root.iterdir() if d.is_dir() and any((d / s).is_dir() for s in SPLITS))
    if not trees:
        raise DataFileError(f"{root}: no Model-J tree here (expected train/val/test folders, or trees holding them)")
    return trees


def _header(path: Path) -> tuple[list[str], dict[str, tuple[int, ...]], dict[str, str]]:
    with _safe_open(path) as f:
        keys = list(f.keys())
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
        return keys, shapes, dict(f.metadata() or {})


def _read_tensors(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    with _safe_open(path) as f:
        try:
            return {n: np.asarray(f.get_tensor(n), np.float32) for n in names}
        except Exception as e:
            raise ZooFormatError(f"{path}: cannot read tensors {list(names)} ({type(e).__name__}: {e})") from e


def _chosen(layers: Sequence[str] | str | None, keys: list[str], file: Path) -> list[str]:
    if layers is None:
        return keys
    if isinstance(layers, str):
        if layers != "probex":
            raise ValueError(f"layers must be a list of tensor names, 'probex' or None, got {layers!r}")
        chosen = probex_layer_names(keys)
        if not chosen:
            raise ZooFormatError(f"{file}: none of its tensors is a layer ProbeX reads (Hugging Face ViT or ResNet "
                                 f"names); tensors: {keys[:10]}{' ...' if len(keys) > 10 else ''}")
        return chosen
    return list(layers)


def read_model_j(path: str | os.PathLike, *, layers: Sequence[str] | str | None = None,
                 classes: Sequence[str] | None = None, progress: bool = True) -> list[Zoo]:
    """One zoo per Model-J tree under ``path``, of the named ``layers`` (``"probex"``: the layers
    ProbeX reads; ``None``: every tensor)."""
    root = require_dir(Path(path), "Model-J tree")
    trees = _trees(root)
    listing: list[tuple[int, str, Path, list[str]]] = []
    shapes: dict[int, dict[str, tuple[int, ...]]] = {}
    for t, tree in enumerate(trees):
        for split in SPLITS:
            if not (tree / split).is_dir():
                continue
            for file in model_files(tree / split):
                keys, file_shapes, meta = _header(file)
                chosen = list(shapes[t]) if t in shapes else _chosen(layers, keys, file)
                missing = [n for n in chosen if n not in file_shapes]
                if missing:
                    raise ZooFormatError(f"{file}: no tensor {missing[0]!r}; tensors: {keys[:10]}"
                                         f"{' ...' if len(keys) > 10 else ''}")
                expected = shapes.setdefault(t, {n: file_shapes[n] for n in chosen})
                for n in chosen:
                    if file_shapes.get(n) != expected.get(n):
                        raise ShapeMismatchError(f"{file}: tensor {n!r} has shape {file_shapes.get(n)}, other "
                                                 f"models of {tree.name} {expected.get(n)}")
                listing.append((t, split, file, parse_classes(meta.get(CLASSES_KEY), where=str(file))))
    if not listing:
        raise DataFileError(f"{root}: no model files (*.safetensors) in the split folders")
    vocab = sorted(classes) if classes is not None else default_classes({c for *_, cs in listing for c in cs})
    index = {c: i for i, c in enumerate(vocab)}
    zoos = []
    for t, tree in enumerate(trees):
        members = [m for m in listing if m[0] == t]
        if not members:
            continue
        names = list(shapes[t])
        safe = {n: n.replace("/", "|") for n in names}
        stack = FlatStack(len(members), {safe[n]: s for n, s in shapes[t].items()})
        multi_hot = np.zeros((len(members), len(vocab)), np.float32)
        for i, (_, _, file, model_classes) in enumerate(progress_iter(
                members, total=len(members), desc=f"reading {tree.name}", progress=progress)):
            tensors = {safe[n]: v for n, v in _read_tensors(file, names).items()}
            require_finite(tensors, where=str(file))
            stack.put(i, tensors, where=str(file))
            unknown = [c for c in model_classes if c not in index]
            if unknown:
                raise ZooFormatError(f"{file}: classes {unknown} are not in the given class list")
            multi_hot[i, [index[c] for c in model_classes]] = 1.0
        arch = make_arch("tensors", shapes={safe[n]: s for n, s in shapes[t].items()})
        split_names = np.asarray([m[1] for m in members])
        zoos.append(Zoo(
            arch=arch, params=arch.unflatten(stack.arrays, where=str(tree)),
            targets={"classes": multi_hot, "tree": np.full(len(members), t, np.int32)},
            splits={s: np.flatnonzero(split_names == s) for s in SPLITS if (split_names == s).any()},
            meta={"format": "model-j", "source": str(tree), "tree": tree.name, "classes": vocab,
                  "num_classes": len(vocab), "weight_layout": "torch", "layers": names,
                  "files": [str(m[2]) for m in members]}))
    return zoos
