"""Model-J trees: safetensors files in the dataset's cache layout, classes in the header
metadata; one zoo per tree of the chosen layer (a linear map matching PyTorch's F.linear)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from probegen_jax.errors import DataFileError, NonFiniteWeightsError, ShapeMismatchError, ZooFormatError
from probegen_jax.zoo import load_zoo, save_zoo
from probegen_jax.zoo.formats import import_zoo

CLASSES = ["apple", "bear", "bicycle", "cloud", "maple_tree", "rose"]
LAYER = "vit.encoder.layer.11.output.dense.weight"


def make_tree(root, name, n_per_split=(4, 2, 2), seed=0, hf_layout=True):
    rng = np.random.default_rng(seed)
    made = {}
    for split, n in zip(("train", "val", "test"), n_per_split):
        for i in range(n):
            tensors = {LAYER: rng.normal(size=(6, 5)).astype(np.float32),
                       "vit.encoder.layer.11.output.dense.bias": rng.normal(size=6).astype(np.float32),
                       "classifier.weight": rng.normal(size=(3, 6)).astype(np.float32)}
            chosen = sorted(rng.choice(CLASSES, 3, replace=False).tolist())
            model_dir = root / name / split / f"models--ModelJ--{name}_{split}_{i}"
            if hf_layout:
                (model_dir / "refs").mkdir(parents=True)
                (model_dir / "refs" / "main").write_text("abc123\n")
                path = model_dir / "snapshots" / "abc123" / "model.safetensors"
                path.parent.mkdir(parents=True)
            else:
                model_dir.mkdir(parents=True)
                path = model_dir / "model.safetensors"
            save_file(tensors, str(path), metadata={"dataset_chosen_targets": str(chosen), "lr": "0.001"})
            made[path] = (tensors, chosen)
    return made


def test_one_layer_per_tree(tmp_path):
    made = {**make_tree(tmp_path, "DINO"), **make_tree(tmp_path, "MAE", seed=1, hf_layout=False)}
    zoos = import_zoo("model-j", tmp_path, layers=[LAYER], progress=False)
    assert [z.meta["tree"] for z in zoos] == ["DINO", "MAE"]
    vocab = zoos[0].meta["classes"]
    assert set(vocab) <= set(CLASSES)
    for t, zoo in enumerate(zoos):
        assert len(zoo) == 8 and (zoo.targets["tree"] == t).all()
        assert {k: len(v) for k, v in zoo.splits.items()} == {"train": 4, "val": 2, "test": 2}
        assert zoo.arch.input_shape == (5,) and zoo.arch.output_dim == 6
        x = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
        for i, file in enumerate(zoo.meta["files"]):
            tensors, chosen = made[type(next(iter(made)))(file)]
            np.testing.assert_array_equal(np.asarray(zoo.params[LAYER][i]), tensors[LAYER])
            want = x @ tensors[LAYER].T  # torch.nn.functional.linear(x, W) without bias
            got = zoo.arch.apply({LAYER: zoo.params[LAYER][i]}, jnp.asarray(x))
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
            assert sorted(np.asarray(vocab)[zoo.targets["classes"][i] == 1].tolist()) == chosen
    # the full model (every tensor) and a save/load round trip with dotted tensor names
    (full,) = import_zoo("model-j", tmp_path / "DINO", layers=None, progress=False)
    assert sorted(full.params) == sorted(made[next(iter(made))][0])
    save_zoo(full, tmp_path / "saved")
    back = load_zoo(tmp_path / "saved")
    np.testing.assert_array_equal(np.asarray(back.params[LAYER]), np.asarray(full.params[LAYER]))
    with pytest.raises(ShapeMismatchError, match="no forward pass"):
        full.arch.apply(full.params, jnp.zeros((1, 5)))


def test_given_class_list_and_errors(tmp_path):
    made = make_tree(tmp_path, "SupViT")
    (zoo,) = import_zoo("model-j", tmp_path / "SupViT", layers=[LAYER], classes=CLASSES + ["zebra"], progress=False)
    assert zoo.targets["classes"].shape == (8, 7) and zoo.targets["classes"][:, -1].sum() == 0
    with pytest.raises(ZooFormatError, match=r"model.safetensors: no tensor 'nope'"):
        import_zoo("model-j", tmp_path, layers=["nope"], progress=False)
    with pytest.raises(ZooFormatError, match=r"classes \[.*\] are not in the given class list"):
        import_zoo("model-j", tmp_path, layers=[LAYER], classes=["apple"], progress=False)
    path, (tensors, _) = next(iter(made.items()))
    save_file(tensors, str(path), metadata={"lr": "0.1"})
    with pytest.raises(ZooFormatError, match=r"model.safetensors: metadata has no 'dataset_chosen_targets'"):
        import_zoo("model-j", tmp_path, layers=[LAYER], progress=False)
    save_file(tensors, str(path), metadata={"dataset_chosen_targets": "__import__('os')"})
    with pytest.raises(ZooFormatError, match=r"not a list literal"):
        import_zoo("model-j", tmp_path, layers=[LAYER], progress=False)
    bad = dict(tensors, **{LAYER: np.full((6, 5), np.nan, np.float32)})
    save_file(bad, str(path), metadata={"dataset_chosen_targets": json.dumps(["apple"])})
    with pytest.raises(NonFiniteWeightsError, match=r"model.safetensors.*vit.encoder"):
        import_zoo("model-j", tmp_path, layers=[LAYER], progress=False)
    save_file(dict(tensors, **{LAYER: np.zeros((6, 4), np.float32)}), str(path),
              metadata={"dataset_chosen_targets": "['apple']"})
    with pytest.raises(ShapeMismatchError, match=r"tensor 'vit.*' has shape \(6, 5\), other models of SupViT \(6, 4\)"):
        import_zoo("model-j", tmp_path, layers=[LAYER], progress=False)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ZooFormatError, match=r"model.safetensors: cannot read safetensors file"):
        import_zoo("model-j", tmp_path, layers=[LAYER], progress=False)
    (path.parents[2] / "refs" / "main").write_text("deadbeef")
    with pytest.raises(DataFileError, match=r"refs/main: names snapshot 'deadbeef'"):
        import_zoo("model-j", tmp_path, layers=[LAYER], progress=False)
