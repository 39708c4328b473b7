"""Image datasets that zoos are trained on.

Images are float32 ``[N, H, W, C]`` in [0, 1]; labels int32 ``[N]``. Nothing downloads:
Fashion-MNIST comes from IDX files (Debian's ``dataset-fashion-mnist`` puts them under
``/usr/share/datasets/fashion-mnist``) or from a tfds data directory that already holds it;
scikit-learn's digits ship inside scikit-learn and are the embedded default.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
from pathlib import Path

import numpy as np

from probegen_jax.errors import DataFileError, UnknownNameError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_HINT = (
    "install Debian's package with `apt-get install dataset-fashion-mnist`, or pass --data-dir "
    "pointing at a folder with the four IDX files (train-images-idx3-ubyte[.gz], ...)"
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot",
)


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """A labelled image dataset with its train and test parts."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped). Raises ``DataFileError`` naming the file."""
    path = Path(path)
    try:
        raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    except FileNotFoundError as e:
        raise DataFileError(f"{path}: file not found; {FASHION_MNIST_HINT}") from e
    except (OSError, EOFError) as e:
        raise DataFileError(f"{path}: cannot be read ({e}); the file is corrupt, reinstall it") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataFileError(f"{path}: not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFileError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataFileError(
            f"{path}: truncated or corrupt: header says shape {dims} ({expected} bytes of data), "
            f"file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def _find_idx(data_dir: Path, stem: str) -> Path:
    for candidate in (data_dir / stem, data_dir / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise DataFileError(f"{data_dir / stem}[.gz]: file not found; {FASHION_MNIST_HINT}")


def _to_dataset(name, xtr, ytr, xte, yte, classes) -> ImageDataset:
    def images(x):
        x = np.asarray(x)
        x = x.astype(np.float32) / 255.0 if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32)
        return x[..., None] if x.ndim == 3 else x

    return ImageDataset(name, images(xtr), np.asarray(ytr, np.int32), images(xte),
                        np.asarray(yte, np.int32), tuple(classes))


def load_fashion_mnist_idx(data_dir: str | os.PathLike = FASHION_MNIST_DIR) -> ImageDataset:
    """Fashion-MNIST from the four standard IDX files in ``data_dir`` (raw or .gz)."""
    data_dir = Path(data_dir)
    parts = [read_idx(_find_idx(data_dir, s)) for s in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte")]
    for images, labels, split in ((parts[0], parts[1], "train"), (parts[2], parts[3], "t10k")):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataFileError(
                f"{data_dir}: {split} images {images.shape} and labels {labels.shape} do not match "
                "(expected [N, 28, 28] and [N])"
            )
    return _to_dataset("fashion_mnist", *parts, FASHION_MNIST_CLASSES)


def load_fashion_mnist_tfds(data_dir: str | os.PathLike | None = None) -> ImageDataset:
    """Fashion-MNIST from a tfds data directory that already holds it (no download)."""
    try:
        import tensorflow_datasets as tfds

        splits = {}
        for split in ("train", "test"):
            source = tfds.data_source("fashion_mnist", split=split, data_dir=data_dir, download=False)
            records = [source[i] for i in range(len(source))]
            splits[split] = (np.stack([r["image"] for r in records]),
                             np.array([r["label"] for r in records]))
    except Exception as e:  # tfds raises many types for a missing dataset
        raise DataFileError(
            f"tfds fashion_mnist not found in {data_dir or 'the default tfds data dir'} ({e}); "
            f"{FASHION_MNIST_HINT}"
        ) from e
    return _to_dataset("fashion_mnist", *splits["train"], *splits["test"], FASHION_MNIST_CLASSES)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> ImageDataset:
    """Fashion-MNIST from IDX files in ``data_dir`` (default: Debian's folder), else from tfds."""
    idx_dir = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    if data_dir is not None or FASHION_MNIST_DIR.exists():
        return load_fashion_mnist_idx(idx_dir)
    try:
        return load_fashion_mnist_tfds()
    except DataFileError as e:
        raise DataFileError(f"{FASHION_MNIST_DIR}: folder not found and {e}") from e


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images), split deterministically."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = bunch.images.astype(np.float32) / 16.0
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(test_fraction * len(images)))
    test, train = order[:n_test], order[n_test:]
    return _to_dataset("digits", images[train], bunch.target[train], images[test],
                       bunch.target[test], [str(d) for d in range(10)])


def split_classes(data: ImageDataset, per_class: int, seed: int = 0) -> ImageDataset:
    """Every class cut into ``per_class`` finer classes by k-means on its training images' pixels;
    a test image joins its class's nearest centroid. Part ``j`` of class ``c`` is label
    ``c * per_class + j``, named ``"{name} {j}"``: a many-label task from a ten-class dataset, as
    CIFAR-100's fine classes sit within its superclasses."""
    from sklearn.cluster import KMeans

    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    if per_class == 1:
        return data
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    train_labels, test_labels = data.train_labels.copy(), data.test_labels.copy()
    for c in range(data.num_classes):
        members = flat(data.train_images[data.train_labels == c])
        if len(members) < per_class:
            raise ValueError(f"{data.name}: class {data.class_names[c]!r} has {len(members)} training images, "
                             f"fewer than per_class={per_class}")
        kmeans = KMeans(per_class, n_init=3, random_state=seed).fit(members)
        train_labels[data.train_labels == c] = c * per_class + kmeans.labels_
        test = data.test_labels == c
        if test.any():
            test_labels[test] = c * per_class + kmeans.predict(flat(data.test_images[test]))
    names = tuple(f"{name} {j}" for name in data.class_names for j in range(per_class))
    return dataclasses.replace(data, name=f"{data.name}/{per_class}", train_labels=train_labels,
                               test_labels=test_labels, class_names=names)


DATASETS = {"digits": load_digits, "fashion_mnist": load_fashion_mnist}


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> ImageDataset:
    """Load a dataset by name: ``digits`` (embedded) or ``fashion_mnist``; ``"NAME/K"`` cuts each
    class in ``K`` (``split_classes``, seed 0), e.g. ``"fashion_mnist/10"`` has 100 classes."""
    base, slash, per_class = name.partition("/")
    if base not in DATASETS or (slash and not (per_class.isdigit() and int(per_class) > 1)):
        raise UnknownNameError(f"unknown dataset {name!r}; available: {sorted(DATASETS)}, each optionally "
                               "with '/K' (K > 1: every class split in K by k-means)")
    data = load_fashion_mnist(data_dir) if base == "fashion_mnist" else DATASETS[base]()
    return split_classes(data, int(per_class)) if slash else data
