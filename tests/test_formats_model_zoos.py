"""Model Zoos: model folders written as the reference trainer writes them (params.json,
result.json lines, checkpoint_N/checkpoints state dicts), every epoch read back with JAX outputs
matching PyTorch's; unreadable or NaN checkpoints skipped and counted, as the reference loader does."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from probegen_jax.errors import DataFileError, ZooFormatError  # noqa: E402
from probegen_jax.zoo.formats import import_zoo  # noqa: E402

NLIN = {"leakyrelu": nn.LeakyReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU}


def reference_cnn(kind, channels_in, nlin, dropout=0.1):
    """def_net.py's CNN / CNN3 module lists (dropout modules shift the layer indices)."""
    layers = []
    if kind == "CNN":
        spec, flat = [(channels_in, 8, 5, True), (8, 6, 5, True), (6, 4, 2, False)], 3 * 3 * 4
    else:
        spec, flat = [(channels_in, 16, 3, True), (16, 32, 3, True), (32, 15, 3, True)], 15 * 2 * 2
    for i, (cin, cout, k, pool) in enumerate(spec):
        layers.append(nn.Conv2d(cin, cout, k))
        if pool:
            layers.append(nn.MaxPool2d(2, 2))
        layers.append(NLIN[nlin]())
        if dropout > 0 and i < 2 or kind == "CNN3":
            layers.append(nn.Dropout(dropout))
    layers += [nn.Flatten(), nn.Linear(flat, 20), NLIN[nlin](), nn.Dropout(dropout), nn.Linear(20, 10)]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.module_list = nn.ModuleList(layers)

        def forward(self, x):
            for layer in self.module_list:
                x = layer(x)
            return x

    return Net().eval()


def make_zoo(root, models=(("CNN", 1, "leakyrelu"), ("CNN", 1, "tanh"), ("CNN3", 3, "gelu")), epochs=3):
    torch.manual_seed(0)
    made = {}
    for m, (kind, cin, nlin) in enumerate(models):
        d = root / f"NN_tune_trainable_{m:05d}_lr=0.001"
        d.mkdir(parents=True)
        config = {"model::type": kind, "model::channels_in": cin, "model::nlin": nlin, "model::dropout": 0.1,
                  "model::init_type": "kaiming_uniform", "optim::optimizer": "adam", "optim::lr": 1e-3 * (m + 1),
                  "optim::wd": 0.0, "seed": m}
        (d / "params.json").write_text(json.dumps(config))
        lines = []
        for e in range(epochs + 1):
            net = reference_cnn(kind, cin, nlin)
            (d / f"checkpoint_{e:06d}").mkdir()
            torch.save(net.state_dict(), d / f"checkpoint_{e:06d}" / "checkpoints")
            lines.append(json.dumps({"train_loss": 1.0 / (e + 1), "train_acc": 0.1 * e, "test_loss": 2.0 / (e + 1),
                                     "test_acc": 0.05 * e + 0.01 * m, "training_iteration": e}))
            made[(m, e)] = (net, cin, 28 if kind == "CNN" else 32)
        (d / "result.json").write_text("\n".join(lines) + "\n")
    return made


def check_outputs(zoo, made):
    for i in range(len(zoo)):
        m, e = int(zoo.targets["model"][i]), int(zoo.targets["epoch"][i])
        net, cin, size = made[(m, e)]
        x = np.random.default_rng(i).normal(size=(3, size, size, cin)).astype(np.float32)
        with torch.no_grad():
            want = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
        got = zoo.arch.apply(jax.tree.map(lambda a: a[i], zoo.params), jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=1e-4)
        assert zoo.targets["test_accuracy"][i] == pytest.approx(0.05 * e + 0.01 * m)


def test_every_epoch_matches_torch(tmp_path):
    made = make_zoo(tmp_path)
    zoos = import_zoo("model-zoos", tmp_path, progress=False)
    assert sum(len(z) for z in zoos) == 12 and len(zoos) == 3  # CNN/leakyrelu, CNN/tanh, CNN3/gelu
    for zoo in zoos:
        check_outputs(zoo, made)
        assert zoo.meta["skipped"]["count"] == 0
        assert set(zoo.meta["categories"]["activation"]) == {"leakyrelu", "tanh", "gelu"}
        for idx in zoo.splits.values():  # all epochs of a model share its split
            assert len(set(zoo.targets["model"][idx].tolist())) * 4 == len(idx)


def test_broken_checkpoints_are_skipped_and_counted(tmp_path):
    made = make_zoo(tmp_path, models=(("CNN", 1, "relu"),), epochs=4)
    d = next(tmp_path.iterdir())
    (d / "checkpoint_000001" / "checkpoints").write_bytes(b"truncated")
    state = torch.load(d / "checkpoint_000002" / "checkpoints", weights_only=True)
    state["module_list.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, d / "checkpoint_000002" / "checkpoints")
    (zoo,) = import_zoo("model-zoos", tmp_path, progress=False)
    assert sorted(zoo.targets["epoch"].tolist()) == [0, 3, 4]
    assert zoo.meta["skipped"]["count"] == 2
    assert any("checkpoint_000001" in r and "cannot read" in r for r in zoo.meta["skipped"]["examples"])
    check_outputs(zoo, made)


def test_errors(tmp_path):
    with pytest.raises(DataFileError, match="no Model Zoos models"):
        import_zoo("model-zoos", tmp_path, progress=False)
    make_zoo(tmp_path, models=(("CNN", 1, "relu"),), epochs=0)
    d = next(tmp_path.iterdir())
    (d / "params.json").write_text("{broken")
    with pytest.raises(ZooFormatError, match="params.json: not valid JSON"):
        import_zoo("model-zoos", tmp_path, progress=False)
    (d / "params.json").write_text(json.dumps({"model::type": "ResNet18"}))
    with pytest.raises(ZooFormatError, match="no readable checkpoint.*ResNet18.*not supported"):
        import_zoo("model-zoos", tmp_path, progress=False)


def test_models_and_epochs_without_params_or_results_are_skipped_and_counted(tmp_path):
    make_zoo(tmp_path, models=(("CNN", 1, "relu"), ("CNN", 1, "tanh"), ("CNN", 1, "gelu")), epochs=2)
    first, second, third = sorted(tmp_path.iterdir())
    (first / "params.json").unlink()  # a model without its config: 3 checkpoints
    lines = (second / "result.json").read_text().splitlines()
    (second / "result.json").write_text("\n".join(lines[:1] + ["{damaged"] + lines[2:]) + "\n")  # epoch 1 lost
    (third / "result.json").unlink()  # no metrics at all: 3 checkpoints
    (zoo,) = import_zoo("model-zoos", tmp_path, progress=False)
    assert len(zoo) == 2 and np.isfinite(zoo.targets["test_accuracy"]).all()
    assert zoo.meta["skipped"]["count"] == 7
    assert zoo.meta["skipped"]["reasons"] == {"checkpoints of models without a readable params.json": 3,
                                              "checkpoints without a result.json line": 4}
    from probegen_jax.zoo.formats import describe

    assert "skipped 7: 3 checkpoints of models without a readable params.json" in describe(zoo)
