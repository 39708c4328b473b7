"""Image datasets: Fashion-MNIST (IDX files or tfds) and scikit-learn digits (embedded)."""

from probegen_jax.data.images import (
    FASHION_MNIST_DIR,
    ImageDataset,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_fashion_mnist_idx,
    read_idx,
    split_classes,
)

__all__ = ["FASHION_MNIST_DIR", "ImageDataset", "load_dataset", "load_digits", "load_fashion_mnist",
           "load_fashion_mnist_idx", "read_idx", "split_classes"]
