"""Model-J trees: safetensors files in the dataset's cache layout, classes in the header
metadata; one zoo per tree of the chosen layer (a linear map matching PyTorch's F.linear)."""

import hashlib
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from probegen_jax.errors import DataFileError, NonFiniteWeightsError, ShapeMismatchError, ZooFormatError
from probegen_jax.zoo import load_zoo, save_zoo
from probegen_jax.zoo.formats import import_zoo
from probegen_jax.zoo.formats.model_j import CIFAR100_CLASSES

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
    assert vocab == list(CIFAR100_CLASSES) and zoos[0].meta["num_classes"] == 100  # the reference's label encoder
    assert zoos[0].meta["weight_layout"] == "torch"
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


def test_class_list_defaults_to_cifar100_and_otherwise_to_the_names_present(tmp_path):
    assert len(CIFAR100_CLASSES) == len(set(CIFAR100_CLASSES)) == 100 and list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)
    assert {"apple", "aquarium_fish", "maple_tree", "sweet_pepper", "willow_tree", "worm"} <= set(CIFAR100_CLASSES)
    made = make_tree(tmp_path, "SupViT")
    path, (tensors, chosen) = next(iter(made.items()))
    save_file(tensors, str(path), metadata={"dataset_chosen_targets": str(["zebra", *chosen])})  # not CIFAR-100
    (zoo,) = import_zoo("model-j", tmp_path / "SupViT", layers=[LAYER], progress=False)
    assert zoo.meta["classes"] == sorted({c for _, cs in made.values() for c in cs} | {"zebra"})
    assert zoo.meta["num_classes"] == zoo.targets["classes"].shape[1]


def test_probex_layer_names_follow_the_reference_index():
    from probegen_jax.zoo.formats.model_j import probex_layer_names

    vit = [f"vit.encoder.layer.{i}.{part}.weight" for i in (0, 1, 2, 10, 11)
           for part in ("attention.attention.query", "attention.attention.key", "attention.attention.value",
                        "attention.output.dense", "intermediate.dense", "output.dense", "layernorm_before")]
    vit += ["vit.embeddings.cls_token", "vit.embeddings.position_embeddings", "classifier.weight", "classifier.bias",
            "vit.embeddings.patch_embeddings.projection.weight", "vit.encoder.layer.0.output.dense.bias"]
    names = probex_layer_names(vit)
    assert names[:3] == ["classifier.weight", "vit.embeddings.position_embeddings",
                         "vit.encoder.layer.0.attention.attention.key.weight"]
    assert len(names) == 2 + 5 * 6 and names.index("vit.encoder.layer.10.attention.attention.key.weight") == 14
    resnet = ["resnet.embedder.embedder.convolution.weight", "resnet.embedder.embedder.normalization.weight",
              "resnet.encoder.stages.0.layers.0.shortcut.convolution.weight", "classifier.1.weight", "classifier.1.bias"]
    assert probex_layer_names(resnet) == ["classifier.1.weight", "resnet.embedder.embedder.convolution.weight",
                                          "resnet.encoder.stages.0.layers.0.shortcut.convolution.weight"]


# ----------------------------------------------------------------------------- a Model-J tree, import to ProbeX

POOL = ["apple", "bear", "bicycle", "cloud", "maple_tree", "rose", "tulip", "whale"]  # the classes the tiny trees use
SIGNAL = {"SupViT": "vit.encoder.layer.1.attention.output.dense.weight",
          "ResNet": "resnet.encoder.stages.0.layers.0.layer.1.convolution.weight"}


def vit_shapes(d=8, tokens=5, mlp=12, head=4, patch=2):
    """A tiny ViT's state dict shapes, Hugging Face ``ViTForImageClassification`` names."""
    shapes = {"vit.embeddings.cls_token": (1, 1, d), "vit.embeddings.position_embeddings": (1, tokens, d),
              "vit.embeddings.patch_embeddings.projection.weight": (d, 3, patch, patch),
              "vit.embeddings.patch_embeddings.projection.bias": (d,)}
    for i in range(2):
        p = f"vit.encoder.layer.{i}."
        for name in ("attention.attention.query", "attention.attention.key", "attention.attention.value",
                     "attention.output.dense"):
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (d, d), (d,)
        shapes[p + "intermediate.dense.weight"], shapes[p + "output.dense.weight"] = (mlp, d), (d, mlp)
        for norm in ("layernorm_before", "layernorm_after"):
            shapes[p + norm + ".weight"], shapes[p + norm + ".bias"] = (d,), (d,)
    return {**shapes, "vit.layernorm.weight": (d,), "classifier.weight": (head, d), "classifier.bias": (head,)}


def resnet_shapes(c=4, head=4):
    """A tiny ResNet's (one bottleneck block) shapes, Hugging Face ``ResNetForImageClassification`` names."""
    shapes = {}

    def conv_bn(prefix, out, inp, k):
        shapes[prefix + "convolution.weight"] = (out, inp, k, k)
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            shapes[prefix + "normalization." + leaf] = (out,)

    conv_bn("resnet.embedder.embedder.", c, 3, 3)
    block = "resnet.encoder.stages.0.layers.0."
    conv_bn(block + "shortcut.", 2 * c, c, 1)
    conv_bn(block + "layer.0.", c, c, 1)
    conv_bn(block + "layer.1.", 3, c, 3)
    conv_bn(block + "layer.2.", 2 * c, 3, 1)
    return {**shapes, "classifier.1.weight": (head, 2 * c), "classifier.1.bias": (head,)}


def write_hf_model(split_dir, repo, tensors, classes):
    """One model as ``snapshot_download(cache_dir=split_dir)`` leaves it: the file in blobs/, a
    snapshot link to it and refs/main naming the snapshot."""
    from safetensors.numpy import save

    data = save(tensors, metadata={"format": "pt", "dataset_chosen_targets": str(classes), "lr": "0.0001",
                                   "epochs": "3"})
    folder = split_dir / f"models--ProbeX--Model-J__{repo}"
    sha, commit = hashlib.sha256(data).hexdigest(), hashlib.sha1(repo.encode()).hexdigest()
    (folder / "blobs").mkdir(parents=True)
    (folder / "blobs" / sha).write_bytes(data)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / "model.safetensors").symlink_to(f"../../blobs/{sha}")
    (split_dir / ".locks" / folder.name).mkdir(parents=True, exist_ok=True)


def make_hf_tree(root, name, shapes, sizes=(64, 16, 16), seed=0):
    """Fine-tunes of one ancestor: every tensor near the ancestor's; the ``SIGNAL`` layer moved along one
    direction per class the model was fine-tuned on (4 of ``POOL``). Returns {split: [classes, ...]}."""
    rng = np.random.default_rng(seed)
    base = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    directions = {c: rng.normal(size=shapes[SIGNAL[name]]).astype(np.float32) for c in POOL}
    made = {}
    for split, n in zip(("train", "val", "test"), sizes):
        made[split] = []
        for i in range(n):
            classes = sorted(rng.choice(POOL, 4, replace=False).tolist())
            tensors = {k: v + 0.02 * rng.normal(size=v.shape).astype(np.float32) for k, v in base.items()}
            tensors[SIGNAL[name]] += 0.3 * sum(directions[c] for c in classes)
            tensors.update({k.replace("running_var", "num_batches_tracked"): np.asarray(7, np.int64)
                            for k in base if k.endswith("running_var")})
            write_hf_model(root / name / split, f"{name}_{split}_{i:03d}", tensors, classes)
            made[split].append(classes)
    return made


@pytest.fixture(scope="module")
def hf_trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_j")
    made = {"SupViT": make_hf_tree(root, "SupViT", vit_shapes(), seed=1),
            "ResNet": make_hf_tree(root, "ResNet", resnet_shapes(), seed=2)}
    return root, made


def test_hugging_face_cache_layout_imports_with_torch_orientation_and_the_reference_shapes(hf_trees):
    from probegen_jax.methods.probex.experts import all_layer_names, layer_splits, probex_trees

    root, made = hf_trees
    trees = probex_trees(root, progress=False)  # layers="probex": the layers ProbeX's reference code reads
    assert list(trees) == ["ResNet", "SupViT"]
    vit, resnet = trees["SupViT"], trees["ResNet"]
    assert {k: len(v) for k, v in vit.splits.items()} == {"train": 64, "val": 16, "test": 16}
    assert all_layer_names(vit)[:2] == ["classifier.weight", "vit.embeddings.position_embeddings"]
    assert len(all_layer_names(vit)) == 2 + 2 * 6 and len(all_layer_names(resnet)) == 1 + 5
    first = Path(vit.meta["files"][vit.indices("train")[0]])
    assert first.is_symlink() and first.parent.parent.name == "snapshots"
    stored = load_file(str(first))
    expect = {  # X as the reference reader gives it, and where ProbeX's probes act (X.shape[1])
        "vit.encoder.layer.1.intermediate.dense.weight": stored["vit.encoder.layer.1.intermediate.dense.weight"],
        "vit.embeddings.position_embeddings": stored["vit.embeddings.position_embeddings"][0],
        "classifier.weight": stored["classifier.weight"]}
    for layer, want in expect.items():
        data, _ = layer_splits(vit, layer, "classes")
        np.testing.assert_array_equal(data["train"][0][0], want)  # [out, in] unnormalised, not transposed
    conv_file = Path(resnet.meta["files"][resnet.indices("train")[0]])
    conv = load_file(str(conv_file))
    data, _ = layer_splits(resnet, SIGNAL["ResNet"], "classes")
    w = conv[SIGNAL["ResNet"]]  # [3, 4, 3, 3]: weight.reshape(-1, out), memory order
    np.testing.assert_array_equal(data["train"][0][0], w.reshape(-1, 3))
    data, _ = layer_splits(resnet, "resnet.encoder.stages.0.layers.0.shortcut.convolution.weight", "classes")
    shortcut = conv["resnet.encoder.stages.0.layers.0.shortcut.convolution.weight"]  # 1x1: [out, in]
    np.testing.assert_array_equal(data["train"][0][0], shortcut[:, :, 0, 0])
    labels = vit.target("classes")
    assert labels.shape == (96, 100)
    for i, classes in enumerate(made["SupViT"]["train"]):
        assert [CIFAR100_CLASSES[j] for j in np.flatnonzero(labels[vit.indices("train")[i]])] == classes


TRAIN = dict(epochs=50, batch_size=16, learning_rate=2e-2, weight_decay=1e-5, eval_every=25)


def pool_accuracy(result, e, x, y):
    """Per-label accuracy of expert ``e`` on the classes the trees use (chance 0.5: 4 of 8 each)."""
    logits = np.asarray(result.learner(e).apply(result.params(e), jnp.asarray(x)))
    cols = [CIFAR100_CLASSES.index(c) for c in POOL]
    return float(((logits > 0)[:, cols] == (y[:, cols] > 0.5)).mean())


def test_imported_tree_chooses_its_layer_among_the_reference_names_and_trains_probex(hf_trees, tmp_path):
    from probegen_jax.methods.probex.experts import layer_splits, probex_trees, train_tree_experts
    from probegen_jax.methods.probex.probex import ProbeXConfig
    from probegen_jax.training.loop import TrainConfig

    root, _ = hf_trees
    quiet = "vit.encoder.layer.0.attention.output.dense.weight"  # same shape, no class signal
    trees = probex_trees(root / "SupViT", layers=[quiet, SIGNAL["SupViT"], "vit.layernorm.weight"], progress=False)
    save_zoo(trees["SupViT"], tmp_path / "saved")  # a saved zoo reads back as the same tree
    (name, saved), = probex_trees(tmp_path / "saved").items()
    assert name == "SupViT" and saved.meta["weight_layout"] == "torch" and saved.meta["num_classes"] == 100
    out = train_tree_experts({name: saved}, TrainConfig(**TRAIN), ProbeXConfig(8, 8, 8), progress=False)
    assert set(out["selection"]["SupViT"]) == {quiet, SIGNAL["SupViT"]}  # only the layers ProbeX reads
    assert out["layers"] == {"SupViT": SIGNAL["SupViT"]}
    test = out["per_tree"]["SupViT"]["test"]["per_label_accuracy"]  # over all 100 labels, as the reference
    assert test > 0.96 + 0.02  # predicting no class at all scores 1 - 4/100
    x, y = layer_splits(trees["SupViT"], SIGNAL["SupViT"], "classes")[0]["test"]
    assert pool_accuracy(out["result"], 0, x, y) > 0.8


def test_cli_imports_a_model_j_tree_and_trains_probex(hf_trees, tmp_path, capsys):
    from probegen_jax.cli import main

    root, _ = hf_trees
    assert main(["zoo", "import", "model-j", str(root / "ResNet"), "--out", str(tmp_path / "zoo")]) == 0
    args = ["train", "probex", "--trees", str(tmp_path / "zoo"), "--out", str(tmp_path / "run"), "--rank", "8",
            "--layer", f"ResNet={SIGNAL['ResNet']}", "--epochs", "50", "--batch-size", "16", "--lr", "2e-2",
            "--eval-every", "25"]
    assert main(args) == 0
    capsys.readouterr()
    forest = json.loads((tmp_path / "run" / "forest.json").read_text())
    assert forest["layers"] == {"ResNet": SIGNAL["ResNet"]}
    assert forest["test"]["ResNet"]["per_label_accuracy"] > 0.96 + 0.02
    assert forest["routing_accuracy_test"] == 1.0
    tree_run = json.loads((tmp_path / "run" / "ResNet" / "run.json").read_text())  # one run per tree
    assert tree_run["method"] == "probex" and tree_run["spec"]["normalize"] == "auto"
    assert main(["eval", "--run", str(tmp_path / "run" / "ResNet"), "--zoo", str(tmp_path / "zoo")]) == 0  # as any run
    assert json.loads(capsys.readouterr().out)["test"] == forest["test"]["ResNet"]
