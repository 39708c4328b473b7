"""DWSNets and NFN INR formats: files written exactly as the reference code writes them, read back
into JAX zoos whose outputs match PyTorch's; the writer's files read by the same rules; errors."""

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from probegen_jax.archs import siren  # noqa: E402
from probegen_jax.errors import (  # noqa: E402
    DataFileError,
    NonFiniteWeightsError,
    ShapeMismatchError,
    UnknownNameError,
    ZooFormatError,
)
from probegen_jax.zoo import Zoo  # noqa: E402
from probegen_jax.zoo.formats import FORMATS, export_zoo, import_zoo  # noqa: E402


class DwsSiren(torch.nn.Module):
    """DWSNets' Siren layer: its own weight [out, in] and bias, then sin(30 x)."""

    def __init__(self, i, o):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(o, i).uniform_(-0.3, 0.3))
        self.bias = torch.nn.Parameter(torch.empty(o).uniform_(-0.1, 0.1))

    def forward(self, x):
        return torch.sin(30.0 * torch.nn.functional.linear(x, self.weight, self.bias))


class DwsINR(torch.nn.Module):
    """DWSNets' INR: seq = Siren, Siren, Linear (keys seq.{0,1,2}.{weight,bias}); output + 0.5."""

    def __init__(self, hidden=32):
        super().__init__()
        self.seq = torch.nn.Sequential(DwsSiren(2, hidden), DwsSiren(hidden, hidden), torch.nn.Linear(hidden, 1))

    def forward(self, x):
        return self.seq(x) + 0.5


class SineLayer(torch.nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.linear = torch.nn.Linear(i, o)

    def forward(self, x):
        return torch.sin(30.0 * self.linear(x))


class NfnSiren(torch.nn.Module):
    """NFN's SIREN for MNIST: net = SineLayer, SineLayer, Linear (outermost linear), no offset."""

    def __init__(self, hidden=32):
        super().__init__()
        self.net = torch.nn.Sequential(SineLayer(2, hidden), SineLayer(hidden, hidden), torch.nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x)


COORDS = np.random.default_rng(0).uniform(-1, 1, (50, 2)).astype(np.float32)


def torch_outputs(model):
    with torch.no_grad():
        return model(torch.from_numpy(COORDS)).numpy()


def jax_outputs(zoo, i):
    params = jax.tree.map(lambda a: a[i], zoo.params)
    return np.asarray(zoo.arch.apply(params, jnp.asarray(COORDS)))


def make_mnist_folder(root: Path, n_train=12, n_test=5, seed=0):
    """MNIST-INR layout; returns {path: (model, label)}."""
    torch.manual_seed(seed)
    made = {}
    for split, n in (("training", n_train), ("testing", n_test)):
        for i in range(n):
            label = (i * 7 + len(split)) % 10
            model = DwsINR()
            path = root / f"mnist_png_{split}_{label}_{1000 + i}" / "checkpoints" / "model_final.pth"
            path.parent.mkdir(parents=True)
            torch.save(model.state_dict(), path)
            made[path] = (model, label)
    return made


def test_registry_lists_formats_and_refuses_unknown(tmp_path):
    assert {"dwsnets", "nfn-siren", "small-cnn-zoo", "wild-park", "model-zoos", "model-j"} <= set(FORMATS)
    with pytest.raises(UnknownNameError, match="unknown zoo format 'nope'.*dwsnets"):
        import_zoo("nope", tmp_path)
    with pytest.raises(UnknownNameError, match="cannot be write.*dwsnets"):
        export_zoo("wild-park", None, tmp_path)


def test_mnist_folder_matches_torch(tmp_path):
    made = make_mnist_folder(tmp_path)
    assert list(next(iter(made.values()))[0].state_dict()) == [f"seq.{i}.{k}" for i in range(3) for k in ("weight", "bias")]
    zoo = import_zoo("dwsnets", tmp_path, val_size=5000, progress=False)
    assert isinstance(zoo, Zoo) and len(zoo) == 17
    assert zoo.arch.config["output_offset"] == 0.5 and zoo.arch.config["hidden"] == 32
    assert {k: len(v) for k, v in zoo.splits.items()} == {"train": 11, "val": 1, "test": 5}
    paths = sorted(made)
    files = [p for p in paths if "training" in str(p)] + [p for p in paths if "testing" in str(p)]
    # members are listed train, val, test; check every member against its own file
    for i in range(len(zoo)):
        matches = [p for p in files if np.allclose(jax_outputs(zoo, i), torch_outputs(made[p][0]), atol=1e-5)]
        assert len(matches) == 1
        assert zoo.targets["label"][i] == made[matches[0]][1]
    test_paths = [p for p in paths if "testing" in str(p)]
    for j, i in enumerate(zoo.splits["test"]):
        np.testing.assert_allclose(jax_outputs(zoo, i), torch_outputs(made[test_paths[j]][0]), atol=1e-5)


def test_fmnist_splits_json_with_label_key(tmp_path):
    torch.manual_seed(1)
    data = tmp_path / "fmnist_inrs"
    listing, models = {}, []
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        listing[split] = {"path": [], "label": []}
        for i in range(n):
            model = DwsINR()
            label = (3 * i + len(split)) % 10
            path = data / f"{split}_{i}" / "model.pth"
            path.parent.mkdir(parents=True)
            torch.save({**model.state_dict(), "label": label}, path)
            listing[split]["path"].append(f"fmnist_inrs/{split}_{i}/model.pth")  # relative to the JSON
            listing[split]["label"].append(label)
            models.append((model, label))
    (tmp_path / "fmnist_splits.json").write_text(json.dumps(listing))
    zoo = import_zoo("dwsnets", tmp_path / "fmnist_splits.json", progress=False)
    assert {k: v.tolist() for k, v in zoo.splits.items()} == {"train": [0, 1, 2, 3], "val": [4, 5], "test": [6, 7, 8]}
    for i, (model, label) in enumerate(models):
        np.testing.assert_allclose(jax_outputs(zoo, i), torch_outputs(model), atol=1e-5)
        assert zoo.targets["label"][i] == label
    # the raw FMNIST-INR listing {split: [paths]} takes labels from the files
    raw = {s: [str(tmp_path / p) for p in v["path"]] for s, v in listing.items()}
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    raw_zoo = import_zoo("dwsnets", tmp_path / "raw.json", progress=False)
    np.testing.assert_array_equal(raw_zoo.targets["label"], zoo.targets["label"])


def write_nfn_sirens(root, n=7):
    """``n`` NFN SIRENs as NFN writes them; returns [(model, label)]."""
    torch.manual_seed(2)
    models = []
    for idx in range(n):
        model, label = NfnSiren(), idx % 3
        path = root / f"randinit_smaller_{label}s" / f"net{idx}.pth"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
        models.append((model, label))
    return models


def test_nfn_siren_layout(tmp_path):
    models = write_nfn_sirens(tmp_path)
    assert list(models[0][0].state_dict()) == ["net.0.linear.weight", "net.0.linear.bias", "net.1.linear.weight",
                                               "net.1.linear.bias", "net.2.weight", "net.2.bias"]
    zoo = import_zoo("nfn-siren", tmp_path, split_points=(4, 6), progress=False)
    assert zoo.arch.config["output_offset"] == 0.0
    assert {k: v.tolist() for k, v in zoo.splits.items()} == {"train": [0, 1, 2, 3], "val": [4, 5], "test": [6]}
    for i, (model, label) in enumerate(models):
        np.testing.assert_allclose(jax_outputs(zoo, i), torch_outputs(model), atol=1e-5)
        assert zoo.targets["label"][i] == label
    (tmp_path / "randinit_smaller_2s" / "net5.pth").unlink()
    with pytest.raises(DataFileError, match="net5.pth"):
        import_zoo("nfn-siren", tmp_path, progress=False)


def test_splits_left_empty_are_named_with_their_option(tmp_path, capsys):
    import probegen_jax as pj
    from probegen_jax.cli import main
    from probegen_jax.errors import MissingSplitError

    write_nfn_sirens(tmp_path / "nets", n=30)  # fewer than the default split points (45000, 50000)
    with pytest.warns(UserWarning, match=r"'val' and 'test' splits are empty \(30 networks\).*split_points=\[A,B\]"):
        zoo = import_zoo("nfn-siren", tmp_path / "nets", progress=False)
    cfg = pj.TrainConfig(epochs=1, batch_size=8)
    with pytest.raises(MissingSplitError, match=r"split 'val' is empty.*selects its best epoch on it.*"
                                                r"--option split_points=\[A,B\]"):
        pj.train("probegen", zoo, {"num_probes": 4}, cfg, progress=False)

    assert main(["zoo", "import", "nfn-siren", str(tmp_path / "nets"), "--out", str(tmp_path / "zoo")]) == 0
    assert "'val' and 'test' splits are empty" in capsys.readouterr().err
    assert main(["train", "probegen", "--zoo", str(tmp_path / "zoo"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("probegen-jax: error: ") and "split 'val' is empty" in err[0], err
    assert "ZeroDivisionError" not in err[0] and "split_points" in err[0]

    # an empty test split alone: trained and selected, no test metrics, said once
    with pytest.warns(UserWarning, match="'test' split is empty"):
        zoo = import_zoo("nfn-siren", tmp_path / "nets", split_points=(20, 30), progress=False)
    with pytest.warns(UserWarning, match="split 'test' is empty, so no test metrics"):
        run = pj.train("probegen", zoo, {"num_probes": 4}, cfg, progress=False)
    assert run.result.test == {} and "accuracy" in run.result.val
    with pytest.raises(MissingSplitError, match="split 'test' of the zoo is empty"):
        pj.evaluate(run, zoo, "test")


def small_siren_zoo(n=9, w0=30.0, offset=0.5):
    arch = siren(hidden=16, w0=w0, output_offset=offset)
    params = jax.vmap(arch.init)(jax.random.split(jax.random.key(3), n))
    return Zoo(arch=arch, params=params, targets={"label": np.arange(n, dtype=np.int32) % 10},
               splits={"train": np.arange(0, 5), "val": np.arange(5, 7), "test": np.arange(7, n)},
               meta={"dataset": "digits"})


@pytest.mark.parametrize("w0,offset", [(30.0, 0.5), (12.0, 0.0)])
def test_writer_round_trip_and_reference_loader(tmp_path, w0, offset):
    zoo = small_siren_zoo(w0=w0, offset=offset)
    out = export_zoo("dwsnets", zoo, tmp_path / "inrs", progress=False)
    back = import_zoo("dwsnets", out, progress=False)
    np.testing.assert_array_equal(back.targets["label"], zoo.targets["label"])
    assert {k: v.tolist() for k, v in back.splits.items()} == {k: v.tolist() for k, v in zoo.splits.items()}
    listing = json.loads((out / "splits.json").read_text())
    for i in range(len(zoo)):
        np.testing.assert_allclose(jax_outputs(back, i), jax_outputs(zoo, i), atol=1e-5)
    # DWSNets' own loader: torch.load, keep keys with "weight"/"bias", run its INR
    for split, entry in listing.items():
        for path, label, i in zip(entry["path"], entry["label"], zoo.splits[split]):
            state = torch.load(path, weights_only=True)
            model = DwsINR(hidden=16)
            model.load_state_dict({k: v for k, v in state.items() if "weight" in k or "bias" in k})
            np.testing.assert_allclose(torch_outputs(model), jax_outputs(zoo, i), atol=1e-4)
            assert int(label) == int(zoo.targets["label"][i]) == state["label"]
    # an export of this library without its splits.json is incomplete: refused
    (out / "splits.json").unlink()
    with pytest.raises(ZooFormatError, match="without its splits.json"):
        import_zoo("dwsnets", out, progress=False)
    # the folder layout alone (no splits.json, no export record) reads by DWSNets' name rules
    (out / "zoo_meta.json").unlink()
    assert len(import_zoo("dwsnets", out, progress=False)) == len(zoo)
    with pytest.raises(FileExistsError):
        export_zoo("dwsnets", zoo, out, progress=False)


def test_export_names_folders_by_dataset_and_old_names_still_read(tmp_path):
    out = export_zoo("dwsnets", small_siren_zoo(), tmp_path / "inrs", progress=False)  # meta dataset: digits
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders[0] == "digits_testing_7_00007" and all(f.startswith("digits_") for f in folders)
    assert len(folders) == 9
    (out / "splits.json").unlink()
    (out / "zoo_meta.json").unlink()
    for folder in folders:  # as exports named them before: DWSNets' MNIST names
        (out / folder).rename(out / folder.replace("digits_", "mnist_png_", 1))
    back = import_zoo("dwsnets", out, progress=False)
    assert len(back) == 9 and sorted(back.targets["label"].tolist()) == sorted(np.arange(9) % 10)
    assert len(back.indices("test")) == 2


def test_errors_name_file_and_problem(tmp_path):
    made = make_mnist_folder(tmp_path / "z", n_train=3, n_test=1)
    first = sorted(made)[0]
    state = made[first][0].state_dict()

    del state["seq.1.bias"]
    torch.save(state, first)
    with pytest.raises(ZooFormatError, match=r"model_final.pth.*missing key 'seq.1.bias'"):
        import_zoo("dwsnets", tmp_path / "z", progress=False)

    state = made[first][0].state_dict()
    state["seq.1.weight"] = torch.zeros(32, 31)
    torch.save(state, first)
    with pytest.raises(ShapeMismatchError, match=r"model_final.pth"):
        import_zoo("dwsnets", tmp_path / "z", progress=False)

    state = made[first][0].state_dict()
    state["seq.2.weight"][0, 0] = math.nan
    torch.save(state, first)
    with pytest.raises(NonFiniteWeightsError, match=rf"{first.parent.parent.name}/.*model_final.pth.*dense2/kernel"):
        import_zoo("dwsnets", tmp_path / "z", progress=False)

    torch.save(made[first][0].state_dict(), first)
    data = first.read_bytes()
    first.write_bytes(data[: len(data) // 2])
    with pytest.raises(ZooFormatError, match=r"model_final.pth: cannot read PyTorch file"):
        import_zoo("dwsnets", tmp_path / "z", progress=False)

    missing = {"train": {"path": [str(tmp_path / "nowhere" / "a.pth")], "label": [1]}}
    (tmp_path / "splits.json").write_text(json.dumps(missing))
    with pytest.raises(DataFileError, match=r"splits.json: 1 listed model files do not exist.*a.pth"):
        import_zoo("dwsnets", tmp_path / "splits.json", progress=False)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ZooFormatError, match="bad.json: not valid JSON"):
        import_zoo("dwsnets", tmp_path / "bad.json", progress=False)
    with pytest.raises(DataFileError, match="not found"):
        import_zoo("dwsnets", tmp_path / "absent", progress=False)


def test_plain_files_read_without_torch_others_say_how_to_install(tmp_path, monkeypatch):
    import builtins

    from probegen_jax.errors import MissingDependencyError
    from probegen_jax.zoo.formats.common import load_torch

    made = make_mnist_folder(tmp_path / "z", n_train=3, n_test=1)
    legacy = tmp_path / "legacy.pth"
    torch.save(DwsINR().state_dict(), legacy, _use_new_zipfile_serialization=False)
    reference = import_zoo("dwsnets", tmp_path / "z", progress=False)
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("no torch")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    zoo = import_zoo("dwsnets", tmp_path / "z", progress=False)  # plain zip files: no torch needed
    for a, b in zip(jax.tree.leaves(zoo.params), jax.tree.leaves(reference.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert len(made) == len(zoo)
    with pytest.raises(MissingDependencyError, match=r"legacy.pth.*probegen_jax\[torch\].*torch==2.13.0"):
        load_torch(legacy)


def test_fast_reader_agrees_with_torch_load(tmp_path):
    from probegen_jax.zoo.formats import torchfile
    from probegen_jax.zoo.formats.common import load_torch

    x = torch.randn(6, 5, dtype=torch.float64)
    obj = {"model": torch.nn.Conv2d(3, 4, 3).state_dict(), "views": [x.t(), x[2:, 1:3]], "half": x.half(),
           "ints": torch.arange(7), "config": {"channels": [3, 4], "activation": ["relu"], "lr": 0.1}}
    torch.save(obj, tmp_path / "f.pt")
    fast, ref = torchfile.load(tmp_path / "f.pt"), torch.load(tmp_path / "f.pt", weights_only=True)
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(ref)):
        b = b.numpy() if hasattr(b, "numpy") else b
        np.testing.assert_array_equal(a, b)
        assert np.asarray(a).dtype == np.asarray(b).dtype
    torch.save({"w": torch.zeros(2, dtype=torch.bfloat16)}, tmp_path / "bf16.pt")
    with pytest.raises(torchfile.Unsupported):
        torchfile.load(tmp_path / "bf16.pt")
    assert load_torch(tmp_path / "bf16.pt")["w"].dtype == torch.bfloat16  # falls back to torch.load

    import fractions

    torch.save({"w": torch.zeros(2), "obj": fractions.Fraction(1, 3)}, tmp_path / "custom.pt")
    with pytest.raises(ZooFormatError, match=r"custom.pt: cannot read PyTorch file.*trust_pickle=True"):
        load_torch(tmp_path / "custom.pt")


def test_fast_zip_parser_matches_zipfile_and_checks_crc(tmp_path):
    import zipfile

    from probegen_jax.zoo.formats import torchfile
    from probegen_jax.zoo.formats.common import load_torch

    torch.save({"w": torch.randn(4, 3), "b": torch.randn(4)}, tmp_path / "f.pt")
    data = (tmp_path / "f.pt").read_bytes()
    with zipfile.ZipFile(tmp_path / "f.pt") as archive:
        expected = {name: archive.read(name) for name in archive.namelist()}
    assert {k: bytes(v) for k, v in torchfile.zip_entries(data).items()} == expected
    # a zip of stored entries with zip64 local headers, as other writers produce
    with zipfile.ZipFile(tmp_path / "z64.zip", "w", zipfile.ZIP_STORED) as archive:
        for name, contents in expected.items():
            with archive.open(name, "w", force_zip64=True) as f:
                f.write(contents)
    assert {k: bytes(v) for k, v in torchfile.zip_entries((tmp_path / "z64.zip").read_bytes()).items()} == expected

    storage = data.index(expected[next(n for n in expected if n.endswith("/data/0"))])
    flipped = bytearray(data)
    flipped[storage + 5] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    with pytest.raises(ZooFormatError, match=r"flipped.pt: cannot read PyTorch file.*CRC-32 mismatch"):
        load_torch(tmp_path / "flipped.pt")
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ZooFormatError, match=r"cut.pt: cannot read PyTorch file"):
        load_torch(tmp_path / "cut.pt")


def test_files_written_alike_are_replayed_from_a_template_and_checked_like_any_other(tmp_path):
    from probegen_jax.zoo.formats import torchfile
    from probegen_jax.zoo.formats.common import load_torch

    def save(name, state):
        path = tmp_path / name / "model.pt"  # one file name: one archive name, as in a zoo's folders
        path.parent.mkdir()
        torch.save(state, path)
        return path

    def state(seed, key="seq.0.weight", label=3):
        g = torch.Generator().manual_seed(seed)
        return {key: torch.randn(8, 2, generator=g), "seq.0.bias": torch.randn(8, generator=g),
                "t": torch.randn(3, 4, generator=g).t(), "label": label}

    torchfile._TEMPLATES.clear()
    first, second = save("a", state(0)), save("b", state(1))
    assert first.stat().st_size == second.stat().st_size
    load_torch(first)
    assert len(torchfile._TEMPLATES) == 1
    template = torchfile._TEMPLATES[-1]
    assert template.replay(second.read_bytes()) is not None  # this file takes the replay path
    expected = torch.load(second, weights_only=True)
    got = load_torch(second)
    assert list(got) == list(expected) and got["label"] == 3
    for key in ("seq.0.weight", "seq.0.bias", "t"):  # "t" is a transposed (non-contiguous) view
        np.testing.assert_array_equal(got[key], expected[key].numpy())

    # Same size, different pickle (a renamed key, another label): parsed, not replayed.
    for name, other in (("c", state(2, key="seq.9.weight")), ("d", state(2, label=5))):
        path = save(name, other)
        assert path.stat().st_size == first.stat().st_size and template.replay(path.read_bytes()) is None
        got = load_torch(path)
        assert list(got) == list(other) and got["label"] == other["label"]
        np.testing.assert_array_equal(got["seq.0.bias"], other["seq.0.bias"].numpy())

    # A damaged storage is declined by the replay and named by the full parse.
    data = bytearray(second.read_bytes())
    data[data.index(expected["seq.0.bias"].numpy().tobytes()) + 3] ^= 0xFF
    damaged = tmp_path / "e" / "model.pt"
    damaged.parent.mkdir()
    damaged.write_bytes(bytes(data))
    assert template.replay(bytes(data)) is None
    with pytest.raises(ZooFormatError, match=r"model.pt: cannot read PyTorch file.*CRC-32 mismatch"):
        load_torch(damaged)

    # Replayed together: only the files written like a template and intact, tensors stacked.
    torchfile._TEMPLATES.clear()
    load_torch(first)
    files = [first, second, tmp_path / "c" / "model.pt", tmp_path / "d" / "model.pt", damaged, save("f", state(4))]
    contents = [f.read_bytes() for f in files]
    [(rows, obj)] = torchfile.load_stacked(contents)
    assert rows.tolist() == [0, 1, 5] and obj["label"] == 3
    for key in ("seq.0.weight", "seq.0.bias", "t"):
        expected = np.stack([torch.load(files[r], weights_only=True)[key].numpy() for r in rows])
        np.testing.assert_array_equal(obj[key], expected)
    load_torch(files[3])  # the first file with label 5 makes its own template
    groups = torchfile.load_stacked(contents)
    assert sorted((r.tolist(), o["label"]) for r, o in groups) == [([0, 1, 5], 3), ([3], 5)]


def test_files_read_ahead_and_in_worker_processes_arrive_in_order_and_errors_name_the_file(tmp_path):
    import functools

    from probegen_jax.errors import DataFileError
    from probegen_jax.zoo.formats.common import map_file_chunks
    from probegen_jax.zoo.formats.dwsnets import list_mnist_folder
    from probegen_jax.zoo.formats.inr_files import read_inr_chunk, read_inr_file, siren_flat

    make_mnist_folder(tmp_path / "z", n_train=14, n_test=6)
    paths = [Path(p) for p in list_mnist_folder(tmp_path / "z", val_size=2).paths]
    serial = [read_inr_file(p) for p in paths]  # each file opened by the parser itself
    shapes = {k: v.shape for k, v in siren_flat(serial[0][0]).items()}
    read = functools.partial(read_inr_chunk, shapes=shapes, like=str(paths[0]), trust_pickle=False)
    for workers in (1, 2):
        chunks = list(map_file_chunks(read, paths, workers=workers, chunk=3))
        assert [len(labels) for _, labels in chunks] == [3] * 6 + [2]
        labels = [label for _, chunk_labels in chunks for label in chunk_labels]
        stacked = {k: np.concatenate([arrays[k] for arrays, _ in chunks]) for k in shapes}
        assert labels == [label for _, label in serial]
        for i, (layers, _) in enumerate(serial):
            for k, v in siren_flat(layers).items():
                np.testing.assert_array_equal(stacked[k][i], v)
    intact = paths[8].read_bytes()  # same size, a weight changed: declined by the replay too
    data = bytearray(intact)
    data[data.index(serial[8][0][0][1].tobytes()) + 1] ^= 0x40
    paths[8].write_bytes(bytes(data))
    with pytest.raises(ZooFormatError, match=rf"{paths[8].parent.parent.name}.*CRC-32 mismatch"):
        list(map_file_chunks(read, paths, workers=1, chunk=20))
    paths[8].write_bytes(intact)
    paths[11].write_bytes(paths[11].read_bytes()[:300])
    for workers in (1, 2):
        with pytest.raises(ZooFormatError, match=rf"{paths[11].parent.parent.name}.*cannot read PyTorch file"):
            list(map_file_chunks(read, paths, workers=workers, chunk=3))
    paths[5].unlink()
    with pytest.raises(DataFileError, match=rf"{paths[5].parent.parent.name}.*file not found"):
        list(map_file_chunks(read, paths, workers=1))
