"""CNN Wild Park: checkpoints written as the reference trainer writes them (torch dicts with
``model`` and ``config``), read into architecture buckets whose JAX outputs match PyTorch's,
residual connections included."""

import contextlib
import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from probegen_jax.errors import DataFileError, ShapeMismatchError, ZooFormatError  # noqa: E402
from probegen_jax.zoo import Zoo  # noqa: E402
from probegen_jax.zoo.formats import import_zoo  # noqa: E402

ACT = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "leaky_relu": F.leaky_relu}


class ParkCNN(torch.nn.Module):
    """The Wild Park CNN: conv, residual add on shared channels, activation; GAP; fc."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        ch = cfg["channels"]
        self.layers = torch.nn.ModuleList(
            torch.nn.Conv2d(ch[i], ch[i + 1], cfg["kernel_size"][i], stride=cfg["stride"][i], padding=cfg["padding"][i])
            for i in range(len(ch) - 1))
        self.fc = torch.nn.Linear(ch[-1], cfg["n_classes"])

    def forward(self, x):
        saved = {}
        for i, layer in enumerate(self.layers):
            x = layer(x)
            r = self.cfg["residual"][i]
            if r > -1:
                ch = min(self.cfg["channels"][r + 1], self.cfg["channels"][i + 1])
                x = x.clone()
                x[:, :ch] += saved[r][:, :ch]
            x = ACT[self.cfg["activation"][i]](x)
            if i in self.cfg["residual"]:
                saved[i] = x
        return self.fc(x.mean(dim=(2, 3)))


CONFIGS = [
    dict(n_layers=3, n_classes=10, channels=[3, 8, 4, 16], kernel_size=[3, 5, 3], stride=[1, 1, 1], padding=[1, 2, 1],
         residual=[-1, -1, 0], activation=["relu", "gelu", "tanh"]),
    dict(n_layers=2, n_classes=10, channels=[3, 4, 8], kernel_size=[7, 3], stride=[1, 1], padding=[3, 1],
         residual=[-1, -1], activation=["sigmoid", "leaky_relu"]),
    dict(n_layers=4, n_classes=10, channels=[3, 16, 8, 8, 4], kernel_size=[3, 3, 5, 3], stride=[1, 1, 1, 1],
         padding=[1, 1, 2, 1], residual=[-1, -1, 0, 1], activation=["relu", "tanh", "gelu", "relu"]),
]
X = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)


def torch_out(model):
    with torch.no_grad():
        return model(torch.from_numpy(X.transpose(0, 3, 1, 2))).numpy()


def jax_out(zoo, i):
    return np.asarray(zoo.arch.apply(jax.tree.map(lambda a: a[i], zoo.params), jnp.asarray(X)))


def make_park(root, checkpoints=2, splits=True, config=dict):
    """Trials trial_<t> with checkpoint_<k>/checkpoint.pt (the config as ``config(cfg)`` makes it);
    returns {path: model}."""
    torch.manual_seed(0)
    made, listing = {}, {"train": {"path": [], "score": [], "step": []}, "test": {"path": [], "score": [], "step": []}}
    for t in range(5):
        cfg = CONFIGS[t % len(CONFIGS)]
        for k in range(1, checkpoints + 1):
            model = ParkCNN(cfg)
            path = root / "cifar10_zooV2" / f"trial_{t}" / f"checkpoint_{k:06d}" / "checkpoint.pt"
            path.parent.mkdir(parents=True)
            torch.save({"model": model.state_dict(), "config": config(cfg), "iteration": k,
                        "last_result": {"test/acc": 0.1 * t + 0.01 * k}}, path)
            made[path] = model
            split = "test" if t == 4 else "train"
            listing[split]["path"].append(str(path.relative_to(root)))
            listing[split]["score"].append(0.1 * t + 0.01 * k)
            listing[split]["step"].append(k)
    if splits:
        (root / "cnn_park_splits.json").write_text(json.dumps(listing))
    return made, listing


def test_buckets_match_torch_with_residuals(tmp_path):
    made, listing = make_park(tmp_path)
    zoos = import_zoo("wild-park", tmp_path, progress=False)
    assert isinstance(zoos, list) and all(isinstance(z, Zoo) for z in zoos)
    assert sorted(len(z) for z in zoos) == [2, 4, 4]
    paths = [tmp_path / p for s in ("train", "test") for p in listing[s]["path"]]
    scores = [x for s in ("train", "test") for x in listing[s]["score"]]
    seen = set()
    for zoo in zoos:
        assert zoo.arch.name == "torch_cnn" and zoo.meta["format"] == "wild-park"
        for i, order in enumerate(zoo.meta["order"]):
            np.testing.assert_allclose(jax_out(zoo, i), torch_out(made[paths[order]]), atol=1e-4, rtol=1e-4)
            assert zoo.targets["test_accuracy"][i] == pytest.approx(scores[order])
            seen.add(order)
        in_test = [paths[o].parent.parent.name == "trial_4" for o in zoo.meta["order"]]
        np.testing.assert_array_equal(np.flatnonzero(in_test), zoo.splits.get("test", []))
    assert seen == set(range(len(paths)))
    assert any(c["residual"] >= 0 for z in zoos for c in z.arch.config["convs"])

    final = import_zoo("wild-park", tmp_path, final_only=True, progress=False)
    assert sum(len(z) for z in final) == 5 and all((z.targets["step"] == 2).all() for z in final)


def test_without_splits_json_splits_by_network(tmp_path):
    made, _ = make_park(tmp_path, checkpoints=3, splits=False)
    zoos = import_zoo("wild-park", tmp_path, progress=False)
    assert sum(len(z) for z in zoos) == 15
    for zoo in zoos:
        for split, idx in zoo.splits.items():
            nets = set(zoo.targets["network"][idx].tolist())
            for other, jdx in zoo.splits.items():
                if other != split:
                    assert not nets & set(zoo.targets["network"][jdx].tolist())
        assert np.isfinite(zoo.targets["test_accuracy"]).all()


def test_errors(tmp_path):
    made, listing = make_park(tmp_path, checkpoints=1)
    first = tmp_path / listing["train"]["path"][0]
    ckpt = torch.load(first, weights_only=True)
    del ckpt["config"]["kernel_size"]
    torch.save(ckpt, first)
    with pytest.raises(ZooFormatError, match=r"checkpoint.pt: config: missing key 'kernel_size'"):
        import_zoo("wild-park", tmp_path, progress=False)
    ckpt["config"]["kernel_size"] = [5, 5, 3]  # disagrees with the weights
    torch.save(ckpt, first)
    with pytest.raises(ShapeMismatchError, match=r"checkpoint.pt/layers.0.weight: expected shape \(8, 3, 5, 5\)"):
        import_zoo("wild-park", tmp_path, progress=False)
    (tmp_path / listing["test"]["path"][0]).unlink()
    with pytest.raises(DataFileError, match=r"cnn_park_splits.json: 1 listed model files do not exist"):
        import_zoo("wild-park", tmp_path, progress=False)


def test_buckets_as_one_heterogeneous_zoo(tmp_path):
    import probegen_jax.zoo.hetero as hetero
    from probegen_jax.zoo.formats import to_hetero

    made, listing = make_park(tmp_path)
    zoos = import_zoo("wild-park", tmp_path, progress=False)
    zoo = to_hetero(zoos)
    assert isinstance(zoo, hetero.HeteroZoo) and len(zoo) == 10
    scores = [x for s in ("train", "test") for x in listing[s]["score"]]
    np.testing.assert_allclose(zoo.target("test_accuracy"), scores, rtol=1e-6)  # the splits file's order
    np.testing.assert_array_equal(zoo.indices("test"), [8, 9])
    paths = [tmp_path / p for s in ("train", "test") for p in listing[s]["path"]]
    for i in (0, 5, 9):
        bucket = zoo.buckets[zoo.bucket[i]]
        np.testing.assert_allclose(jax_out(bucket, zoo.position[i]), torch_out(made[paths[i]]), atol=1e-4, rtol=1e-4)


@contextlib.contextmanager
def omegaconf_stand_in():
    """``omegaconf`` importable while the block runs: stand-ins whose pickles are OmegaConf's own
    (tests/fixtures/omegaconf_standin); afterwards gone again, as for a user without OmegaConf."""
    folder = str(Path(__file__).parent / "fixtures" / "omegaconf_standin")
    sys.path.insert(0, folder)
    try:
        import omegaconf

        yield omegaconf
    finally:
        sys.path.remove(folder)
        for name in [m for m in sys.modules if m.split(".")[0] == "omegaconf"]:
            del sys.modules[name]


def test_omegaconf_configs_read_as_plain_dicts_without_trust(tmp_path):
    with omegaconf_stand_in() as omegaconf:
        made, listing = make_park(tmp_path, checkpoints=1, config=omegaconf.create)
    first = tmp_path / listing["train"]["path"][0]
    with pytest.raises(Exception, match="omegaconf"):  # what torch's own safe loading says of these files
        torch.load(first, weights_only=True)
    zoos = import_zoo("wild-park", tmp_path, progress=False)
    assert "omegaconf" not in sys.modules
    assert sorted(len(z) for z in zoos) == [1, 2, 2]
    paths = [tmp_path / p for s in ("train", "test") for p in listing[s]["path"]]
    for zoo in zoos:
        for i, order in enumerate(zoo.meta["order"]):
            np.testing.assert_allclose(jax_out(zoo, i), torch_out(made[paths[order]]), atol=1e-4, rtol=1e-4)

    from probegen_jax.zoo.formats.common import load_torch

    assert load_torch(first)["config"] == CONFIGS[0]  # lists, ints, strings: plain values


def test_other_classes_in_a_config_stay_refused(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.makedirs, (str(marker),)

    with omegaconf_stand_in() as omegaconf:
        enum_config = omegaconf.create(CONFIGS[0])
        enum_config._content["activation"] = omegaconf.nodes.EnumNode(enum_config, None, _val="relu")
        for name, config in (("enum", enum_config), ("payload", {**CONFIGS[0], "x": Payload()})):
            path = tmp_path / name / "trial_0" / "checkpoint_000001" / "checkpoint.pt"
            path.parent.mkdir(parents=True)
            torch.save({"model": ParkCNN(CONFIGS[0]).state_dict(), "config": config, "iteration": 1,
                        "last_result": {"test/acc": 0.5}}, path)
    for name, refused in (("enum", "nodes.EnumNode"), ("payload", "os.makedirs")):
        with pytest.raises(ZooFormatError, match=f"(?s){refused}.*trust_pickle"):
            import_zoo("wild-park", tmp_path / name, progress=False)
    assert not marker.exists()
