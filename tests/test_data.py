"""Image datasets: IDX files written here byte by byte, scikit-learn digits, the real Fashion-MNIST."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from probegen_jax.data import (
    FASHION_MNIST_DIR,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_fashion_mnist_idx,
    read_idx,
    split_classes,
)
from probegen_jax.errors import DataFileError, UnknownNameError

STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """The IDX format: two zero bytes, type code, ndim, big-endian uint32 dims, big-endian data."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool, type_code: int = 0x08) -> Path:
    data = idx_bytes(array, type_code)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_fake_fashion(rng: np.random.Generator, n_train: int = 12, n_test: int = 7):
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    # Make sure every pixel range end occurs, so scaling is pinned down.
    for key in ("train_images", "test_images"):
        arrays[key][0, 0, 0], arrays[key][0, 0, 1] = 0, 255
    return arrays


def write_fake_fashion(folder: Path, arrays, *, gz: bool) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {k: write_idx(folder / STEMS[k], v, gz=gz) for k, v in arrays.items()}


# --------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_load_fashion_mnist_idx_reads_what_was_written(tmp_path, gz):
    arrays = make_fake_fashion(np.random.default_rng(0))
    paths = write_fake_fashion(tmp_path, arrays, gz=gz)
    # The files are in the documented layout: magic 0x00000803 / 0x00000801, big-endian dims.
    raw = (gzip.decompress if gz else bytes)(paths["train_images"].read_bytes())
    assert struct.unpack(">IIII", raw[:16]) == (0x00000803, 12, 28, 28) and len(raw) == 16 + 12 * 28 * 28
    raw = (gzip.decompress if gz else bytes)(paths["test_labels"].read_bytes())
    assert struct.unpack(">II", raw[:8]) == (0x00000801, 7) and len(raw) == 8 + 7
    assert paths["train_images"].name == "train-images-idx3-ubyte" + (".gz" if gz else "")

    ds = load_fashion_mnist_idx(tmp_path)

    assert ds.train_images.shape == (12, 28, 28, 1) and ds.test_images.shape == (7, 28, 28, 1)
    assert ds.train_images.dtype == np.float32 and ds.test_images.dtype == np.float32
    np.testing.assert_allclose(ds.train_images[..., 0], arrays["train_images"] / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_allclose(ds.test_images[..., 0], arrays["test_images"] / 255.0, rtol=0, atol=1e-7)
    assert ds.train_images.min() == 0.0 and ds.train_images.max() == 1.0
    assert np.issubdtype(ds.train_labels.dtype, np.integer) and np.issubdtype(ds.test_labels.dtype, np.integer)
    np.testing.assert_array_equal(ds.train_labels, arrays["train_labels"])
    np.testing.assert_array_equal(ds.test_labels, arrays["test_labels"])
    assert ds.num_classes == 10 and ds.image_shape == (28, 28, 1)


def test_load_fashion_mnist_with_data_dir_uses_the_idx_files(tmp_path):
    arrays = make_fake_fashion(np.random.default_rng(1), n_train=5, n_test=3)
    write_fake_fashion(tmp_path, arrays, gz=True)
    ds = load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(ds.test_labels, arrays["test_labels"])
    np.testing.assert_allclose(ds.test_images[..., 0], arrays["test_images"] / 255.0, atol=1e-7)


def test_idx_scaling_does_not_depend_on_the_pixel_values(tmp_path):
    arrays = make_fake_fashion(np.random.default_rng(2), n_train=4, n_test=3)
    arrays["test_images"] = np.random.default_rng(3).integers(0, 2, (3, 28, 28), dtype=np.uint8)
    arrays["test_images"][0, 0, 0] = 1
    write_fake_fashion(tmp_path, arrays, gz=False)
    ds = load_fashion_mnist_idx(tmp_path)
    np.testing.assert_allclose(ds.test_images[..., 0], arrays["test_images"] / 255.0, atol=1e-7)


@pytest.mark.parametrize("type_code", [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E])
def test_read_idx_every_type_code(tmp_path, type_code):
    rng = np.random.default_rng(type_code)
    values = rng.integers(-100, 100, (3, 4, 5)) if type_code != 0x08 else rng.integers(0, 256, (3, 4, 5))
    if type_code in (0x0D, 0x0E):
        values = values + 0.25
    path = write_idx(tmp_path / "x-idx3", values, gz=False, type_code=type_code)
    got = read_idx(path)
    assert got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, values)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_truncated_idx_file_names_the_file(tmp_path, gz):
    arrays = make_fake_fashion(np.random.default_rng(4), n_train=5, n_test=3)
    paths = write_fake_fashion(tmp_path, arrays, gz=gz)
    victim = paths["train_images"]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 100])

    with pytest.raises(DataFileError) as err:
        load_fashion_mnist_idx(tmp_path)
    assert str(victim) in str(err.value)


def test_truncated_header_names_the_file(tmp_path):
    path = tmp_path / STEMS["train_images"]
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">I", 5))  # two of three dims missing
    with pytest.raises(DataFileError, match="header") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_bad_magic_is_refused(tmp_path):
    arrays = make_fake_fashion(np.random.default_rng(5), n_train=5, n_test=3)
    paths = write_fake_fashion(tmp_path, arrays, gz=False)
    victim = paths["test_labels"]
    data = bytearray(victim.read_bytes())
    data[0:4] = struct.pack("<I", 0x00000801)  # little-endian magic: a classic mistake
    victim.write_bytes(bytes(data))

    with pytest.raises(DataFileError, match="magic") as err:
        load_fashion_mnist_idx(tmp_path)
    assert str(victim) in str(err.value)


def test_images_and_labels_of_different_lengths_are_refused(tmp_path):
    arrays = make_fake_fashion(np.random.default_rng(6), n_train=5, n_test=3)
    arrays["test_labels"] = arrays["test_labels"][:2]
    write_fake_fashion(tmp_path, arrays, gz=False)
    with pytest.raises(DataFileError, match="t10k") as err:
        load_fashion_mnist_idx(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_missing_folder_points_at_the_debian_package(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DataFileError, match="dataset-fashion-mnist") as err:
        load_fashion_mnist_idx(missing)
    assert str(missing) in str(err.value)
    assert isinstance(err.value, FileNotFoundError)  # callers may catch the builtin


def test_without_idx_folder_or_tfds_data_the_error_points_at_the_debian_package(tmp_path, monkeypatch):
    import probegen_jax.data.images as images

    missing = tmp_path / "fashion-mnist"
    real_tfds = images.load_fashion_mnist_tfds
    monkeypatch.setattr(images, "FASHION_MNIST_DIR", missing)
    monkeypatch.setattr(images, "load_fashion_mnist_tfds", lambda: real_tfds(tmp_path / "tfds"))  # empty
    with pytest.raises(DataFileError, match="dataset-fashion-mnist") as err:
        images.load_fashion_mnist()
    assert str(missing) in str(err.value)


def test_one_missing_file_names_it(tmp_path):
    arrays = make_fake_fashion(np.random.default_rng(7), n_train=5, n_test=3)
    paths = write_fake_fashion(tmp_path, arrays, gz=True)
    paths["test_images"].unlink()
    with pytest.raises(DataFileError, match=STEMS["test_images"]):
        load_fashion_mnist_idx(tmp_path)


# ------------------------------------------------------------------------------------ digits


def test_load_digits_shapes_ranges_and_determinism():
    from sklearn.datasets import load_digits as sk_digits

    a, b = load_digits(), load_digits()
    n = len(sk_digits().images)  # 1797
    n_test = int(round(0.2 * n))
    assert a.train_images.shape == (n - n_test, 8, 8, 1) and a.test_images.shape == (n_test, 8, 8, 1)
    assert a.train_labels.shape == (n - n_test,) and a.test_labels.shape == (n_test,)
    assert a.train_images.dtype == np.float32
    assert 0.0 <= a.train_images.min() and a.train_images.max() <= 1.0
    assert a.num_classes == 10 and set(np.unique(a.train_labels)) == set(range(10))
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))

    # The split is a partition of scikit-learn's images (scaled by 1/16), labels kept with them.
    bunch = sk_digits()
    ref = sorted((bytes((bunch.images[i] / 16.0).astype(np.float32).tobytes()), int(bunch.target[i]))
                 for i in range(n))
    got = sorted((bytes(x[..., 0].tobytes()), int(y)) for x, y in zip(
        np.concatenate([a.train_images, a.test_images]), np.concatenate([a.train_labels, a.test_labels])))
    assert got == ref

    other = load_digits(seed=1)
    assert not np.array_equal(other.test_labels, a.test_labels)


def test_load_dataset_by_name():
    ds = load_dataset("digits")
    np.testing.assert_array_equal(ds.train_images, load_digits().train_images)
    with pytest.raises(UnknownNameError) as err:
        load_dataset("imagenet")
    msg = str(err.value)
    assert "imagenet" in msg and "digits" in msg and "fashion_mnist" in msg


def test_split_classes_cuts_each_class_into_nearest_centroid_parts():
    digits = load_digits()
    fine = split_classes(digits, 3)
    assert fine.num_classes == 30 and fine.class_names[:4] == ("0 0", "0 1", "0 2", "1 0")
    np.testing.assert_array_equal(fine.train_images, digits.train_images)
    # Every fine label lies within its coarse class; each part is used in train.
    np.testing.assert_array_equal(fine.train_labels // 3, digits.train_labels)
    np.testing.assert_array_equal(fine.test_labels // 3, digits.test_labels)
    assert set(np.unique(fine.train_labels)) == set(range(30))
    # The parts are k-means cells: a test image's part is its class's nearest part centroid.
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    centroids = np.stack([flat(digits.train_images[fine.train_labels == k]).mean(0) for k in range(30)])
    for image, coarse, label in zip(flat(digits.test_images), digits.test_labels, fine.test_labels):
        own = np.arange(3 * coarse, 3 * coarse + 3)
        assert own[np.argmin(((centroids[own] - image) ** 2).sum(1))] == label
    # The same split by name, deterministic; one part is the dataset itself.
    np.testing.assert_array_equal(load_dataset("digits/3").train_labels, fine.train_labels)
    assert split_classes(digits, 1) is digits
    for bad in ("digits/1", "digits/x", "digits/"):
        with pytest.raises(UnknownNameError, match="'/K'"):
            load_dataset(bad)
    with pytest.raises(ValueError, match="fewer than per_class"):
        split_classes(digits, 1000)


@pytest.mark.skipif(not FASHION_MNIST_DIR.exists(), reason=f"{FASHION_MNIST_DIR} not installed")
def test_real_fashion_mnist():
    ds = load_fashion_mnist_idx(FASHION_MNIST_DIR)
    assert ds.train_images.shape == (60000, 28, 28, 1)
    assert ds.test_images.shape == (10000, 28, 28, 1)
    assert ds.train_labels.shape == (60000,) and ds.test_labels.shape == (10000,)
    assert set(np.unique(ds.train_labels)) == set(range(10)) == set(np.unique(ds.test_labels))
    assert ds.num_classes == 10
    # Fashion-MNIST is balanced: 6,000 train and 1,000 test images per class.
    assert set(np.bincount(ds.train_labels)) == {6000} and set(np.bincount(ds.test_labels)) == {1000}
    assert ds.train_images.min() == 0.0 and ds.train_images.max() == 1.0
