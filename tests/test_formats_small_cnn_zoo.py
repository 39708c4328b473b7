"""Small CNN Zoo files: written from a small_cnn zoo and read back (same outputs, targets,
protocol: final step, finite rows, NFN's split with the published permutation), read by NFN's
own rules; files written here in the published layout (bias before kernel, exact TF names) read
in any column order and computing what a numpy forward pass with TF's semantics computes; runs
that stopped early; and every documented refusal."""

import csv
import gzip
import random
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probegen_jax.archs import make_arch
from probegen_jax.archs.cnn import ACTIVATION_LEAF
from probegen_jax.errors import DataFileError, ShapeMismatchError, UnknownNameError, ZooFormatError
from probegen_jax.zoo import Zoo
from probegen_jax.zoo.formats import export_zoo, import_zoo

X = np.random.default_rng(0).uniform(-1, 1, (5, 28, 28, 1)).astype(np.float32)


PUBLISHED = (("sequential/conv2d/bias:0", (16,)), ("sequential/conv2d/kernel:0", (3, 3, 1, 16)),
             ("sequential/conv2d_1/bias:0", (16,)), ("sequential/conv2d_1/kernel:0", (3, 3, 16, 16)),
             ("sequential/conv2d_2/bias:0", (16,)), ("sequential/conv2d_2/kernel:0", (3, 3, 16, 16)),
             ("sequential/dense/bias:0", (10,)), ("sequential/dense/kernel:0", (16, 10)))


def cnn_zoo(n=40, epochs=(0, 86), padding="valid"):
    """n networks x len(epochs) checkpoints, activations relu/tanh per network."""
    arch = make_arch("small_cnn", input_shape=(28, 28, 1), activation=("relu", "tanh"), padding=padding)
    members = n * len(epochs)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(0, 0.5, (members, *s.shape)).astype(np.float32)
                          if s.dtype == jnp.float32 else np.zeros((members, *s.shape), np.int32), arch.param_shapes())
    params[ACTIVATION_LEAF] = np.repeat(np.arange(n) % 2, len(epochs)).astype(np.int32)
    rng = np.random.default_rng(1)
    targets = {"network": np.repeat(np.arange(n), len(epochs)), "epoch": np.tile(np.asarray(epochs, np.int32), n),
               "test_accuracy": rng.uniform(size=members).astype(np.float32),
               "train_accuracy": rng.uniform(size=members).astype(np.float32),
               "optimizer": rng.integers(0, 3, members).astype(np.int32),
               "l2": rng.uniform(size=members).astype(np.float32)}
    meta = {"dataset": "mnist", "codes": {"activation": ["relu", "tanh"], "optimizer": ["adam", "sgd", "rmsprop"]}}
    return Zoo(arch=arch, params=params, targets=targets, meta=meta)


def outputs(zoo, i):
    return np.asarray(zoo.arch.apply(jax.tree.map(lambda a: a[i], zoo.params), jnp.asarray(X)))


def test_round_trip_keeps_final_checkpoints_and_outputs(tmp_path):
    zoo = cnn_zoo()
    out = export_zoo("small-cnn-zoo", zoo, tmp_path / "z", progress=False)
    assert np.load(out / "weights.npy").shape == (80, 4970)
    back = import_zoo("small-cnn-zoo", out, progress=False)
    final = np.flatnonzero(zoo.targets["epoch"] == 86)
    assert len(back) == 40 and back.arch.config["activation"] == ["relu", "tanh"]
    np.testing.assert_array_equal(back.targets["network"], final)  # the row in weights.npy
    for j, i in enumerate(final):
        np.testing.assert_allclose(outputs(back, j), outputs(zoo, i), atol=1e-5)
        assert back.targets["test_accuracy"][j] == zoo.targets["test_accuracy"][i]
        assert back.targets["l2"][j] == zoo.targets["l2"][i]
        assert (back.meta["codes"]["optimizer"][back.targets["optimizer"][j]]
                == zoo.meta["codes"]["optimizer"][zoo.targets["optimizer"][i]])
    assert {k: len(v) for k, v in back.splits.items()} == {"train": 16, "val": 4, "test": 20}
    assert back.meta["skipped"]["count"] == 0 and back.arch.config["padding"] == "valid"
    for name in ("conv0", "conv1", "conv2", "dense0"):  # exactly the exported tensors
        for kind in ("kernel", "bias"):
            np.testing.assert_array_equal(back.params[name][kind], zoo.params[name][kind][final])
    with open(out / "layout.csv") as f:  # the published layout: TF's name order, bias before kernel
        assert [(r["varname"], eval(r["shape"])) for r in csv.DictReader(f)] == list(PUBLISHED)
    everything = import_zoo("small-cnn-zoo", out, step=0, progress=False)
    np.testing.assert_array_equal(everything.targets["epoch"], 0)


def test_same_padding_zoos_round_trip_through_their_padding_column(tmp_path):
    """Files without ``config.padding`` (the published ones) are valid; this library's files say which."""
    zoo = cnn_zoo(n=4, padding="same")
    out = export_zoo("small-cnn-zoo", zoo, tmp_path / "z", progress=False)
    back = import_zoo("small-cnn-zoo", out, progress=False)
    assert back.arch.config["padding"] == "same"
    final = np.flatnonzero(zoo.targets["epoch"] == 86)
    for j, i in enumerate(final):
        np.testing.assert_allclose(outputs(back, j), outputs(zoo, i), rtol=1e-5, atol=1e-5)
    rows = gzip.decompress((out / "metrics.csv.gz").read_bytes()).decode().splitlines()
    column = rows[0].split(",").index("config.padding")
    published = "\n".join(",".join(c for k, c in enumerate(r.split(",")) if k != column) for r in rows)
    (out / "metrics.csv.gz").write_bytes(gzip.compress(published.encode()))
    assert import_zoo("small-cnn-zoo", out, progress=False).arch.config["padding"] == "valid"
    (out / "metrics.csv.gz").write_bytes(gzip.compress("\n".join(r.replace(",same,", ",full,") for r in rows).encode()))
    with pytest.raises(ZooFormatError, match=r"metrics.csv.gz: config.padding must be one of \['same', 'valid'\]"):
        import_zoo("small-cnn-zoo", out, progress=False)


# ----------------------------------------------------------------------------- the published layout


def write_published(root, tensors, order, metrics, quoting=csv.QUOTE_MINIMAL):
    """Small CNN Zoo files written without the library: ``tensors`` {varname: [rows, *shape]}, the
    variables' columns in ``order``, ``metrics`` a list of row dicts (``config.*``, ``modeldir``,
    ``step``, ``test_accuracy``)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = len(next(iter(tensors.values())))
    np.save(root / "weights.npy", np.concatenate([tensors[v].reshape(rows, -1) for v in order], axis=1))
    lines, position = ["varname,start_idx,end_idx,shape"], 0
    for varname in order:
        size = int(np.prod(tensors[varname].shape[1:]))
        lines.append(f'{varname},{position},{position + size},"{tuple(tensors[varname].shape[1:])}"')
        position += size
    (root / "layout.csv").write_text("\n".join(lines) + "\n")
    with gzip.open(root / "metrics.csv.gz", "wt", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(metrics[0]), quoting=quoting)
        writer.writeheader()
        writer.writerows(metrics)
    return root


def published_tensors(rows, seed=0):
    rng = np.random.default_rng(seed)
    return {v: rng.normal(0, 0.4, (rows, *shape)).astype(np.float32) for v, shape in PUBLISHED}


def run_metrics(steps_per_run, activations, seed=1):
    """One metrics row per (run, step), runs in order; test accuracy random."""
    rng = np.random.default_rng(seed)
    return [{"config.activation": act, "config.dataset": "mnist", "config.optimizer": "adam", "modeldir": f"/runs/{r}",
             "step": step, "test_accuracy": float(rng.uniform())}
            for r, (steps, act) in enumerate(zip(steps_per_run, activations)) for step in steps]


def numpy_forward(tensors, row, x, activation):
    """The published network in numpy from TF's semantics: HWIO kernels, VALID, stride 2, bias,
    activation; global average pooling; dense."""
    act = {"relu": lambda a: np.maximum(a, 0.0), "tanh": np.tanh}[activation]
    h = x.astype(np.float64)
    for layer in ("conv2d", "conv2d_1", "conv2d_2"):
        k = tensors[f"sequential/{layer}/kernel:0"][row].astype(np.float64)
        b = tensors[f"sequential/{layer}/bias:0"][row].astype(np.float64)
        oh, ow = (h.shape[1] - 3) // 2 + 1, (h.shape[2] - 3) // 2 + 1
        out = np.zeros((h.shape[0], oh, ow, k.shape[3]))
        for i in range(oh):
            for j in range(ow):
                patch = h[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3, :]  # [B, 3, 3, C]
                out[:, i, j] = np.einsum("bhwc,hwco->bo", patch, k)
        h = act(out + b)
    pooled = h.mean(axis=(1, 2))
    return pooled @ tensors["sequential/dense/kernel:0"][row] + tensors["sequential/dense/bias:0"][row]


def test_bias_first_and_kernel_first_rows_give_the_same_zoo(tmp_path):
    tensors = published_tensors(12)
    metrics = run_metrics([(0, 86)] * 6, ["relu", "tanh"] * 3)
    bias_first = [v for v, _ in PUBLISHED]
    kernel_first = [v for pair in zip(bias_first[1::2], bias_first[::2]) for v in pair]
    shuffled = list(np.random.default_rng(3).permutation(bias_first))
    zoos = [import_zoo("small-cnn-zoo", write_published(tmp_path / str(i), tensors, order, metrics), progress=False)
            for i, order in enumerate((bias_first, kernel_first, shuffled))]
    rows = np.arange(1, 12, 2)  # step 86
    names = {"conv0": "conv2d", "conv1": "conv2d_1", "conv2": "conv2d_2", "dense0": "dense"}
    for zoo in zoos:
        np.testing.assert_array_equal(zoo.targets["network"], rows)
        for layer, keras in names.items():
            for kind in ("kernel", "bias"):
                np.testing.assert_array_equal(zoo.params[layer][kind], tensors[f"sequential/{keras}/{kind}:0"][rows])
        np.testing.assert_array_equal(zoo.targets["test_accuracy"], zoos[0].targets["test_accuracy"])


@pytest.mark.parametrize("size", [28, 32])
def test_imported_networks_compute_tfs_valid_forward_pass(tmp_path, size):
    tensors = published_tensors(4, seed=size)
    dataset = {28: "mnist", 32: "cifar10"}[size]
    metrics = [{**m, "config.dataset": dataset} for m in run_metrics([(86,)] * 4, ["relu", "tanh", "tanh", "relu"])]
    zoo = import_zoo("small-cnn-zoo", write_published(tmp_path, tensors, [v for v, _ in PUBLISHED], metrics),
                     progress=False)
    assert zoo.arch.config["padding"] == "valid" and zoo.arch.input_shape == (size, size, 1)
    x = np.random.default_rng(1).uniform(-1, 1, (6, size, size, 1)).astype(np.float32)
    worst = 0.0
    for row, activation in enumerate(m["config.activation"] for m in metrics):
        expected = numpy_forward(tensors, row, x, activation)
        got = np.asarray(zoo.arch.apply(jax.tree.map(lambda a, r=row: a[r], zoo.params), jnp.asarray(x)))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        worst = max(worst, float(np.abs(got - expected).max()))
    print(f"max |imported - numpy reference| at {size}x{size}: {worst:.2e}")


def test_layout_refusals_name_the_variable(tmp_path):
    tensors = published_tensors(2)
    metrics = run_metrics([(86,)] * 2, ["relu", "relu"])
    order = [v for v, _ in PUBLISHED]
    root = write_published(tmp_path, tensors, order[:3] + order[4:], metrics)  # conv2d_1 without its kernel
    with pytest.raises(ZooFormatError, match=r"layout.csv: layer 'sequential/conv2d_1' has a bias "
                                             r"\(sequential/conv2d_1/bias:0\) but no kernel"):
        import_zoo("small-cnn-zoo", root, progress=False)
    wrong = {**tensors, "sequential/dense/bias:0": np.zeros((2, 16), np.float32)}
    write_published(tmp_path, wrong, order, metrics)
    with pytest.raises(ShapeMismatchError, match=r"layout.csv: sequential/dense/bias:0 has shape \(16,\), "
                                                 r"expected \(10,\) for its kernel sequential/dense/kernel:0"):
        import_zoo("small-cnn-zoo", root, progress=False)
    write_published(tmp_path, tensors, order[2:], metrics)  # no first conv layer
    with pytest.raises(ZooFormatError, match=r"layout.csv: expected 3 conv layers \(4-D kernels\) and one dense layer"):
        import_zoo("small-cnn-zoo", root, progress=False)
    twice = {**tensors, "sequential/dense/kernel_1:0": tensors["sequential/dense/kernel:0"]}
    write_published(tmp_path, twice, order + ["sequential/dense/kernel_1:0"], metrics)
    with pytest.raises(ZooFormatError, match=r"layout.csv: layer 'sequential/dense' has two kernels"):
        import_zoo("small-cnn-zoo", root, progress=False)
    write_published(tmp_path, tensors, order, metrics)
    layout = (root / "layout.csv").read_text()
    (root / "layout.csv").write_text(layout.replace("sequential/conv2d_1/bias:0,160,176", "sequential/conv2d_1/bias:0,161,177"))
    with pytest.raises(ZooFormatError, match=r"layout.csv: line \d: columns 161:177|starts at column 161, expected 160"):
        import_zoo("small-cnn-zoo", root, progress=False)


def colab_last_checkpoints(metrics):
    """The dataset colab's rule, written out: per modeldir, the row of its largest step."""
    best = {}
    for i, m in enumerate(metrics):
        if m["modeldir"] not in best or float(m["step"]) > float(metrics[best[m["modeldir"]]]["step"]):
            best[m["modeldir"]] = i
    return sorted(best.values())


def test_runs_that_stopped_early_by_either_rule(tmp_path):
    steps = [(0, 20, 86), (0, 20, 40), (0, 20, 86), (0, 20), (0, 20, 86)]  # runs 1 and 3 stopped early
    metrics = run_metrics(steps, ["relu", "tanh", "relu", "tanh", "relu"])
    tensors = published_tensors(len(metrics))
    root = write_published(tmp_path, tensors, [v for v, _ in PUBLISHED], metrics)
    nfn = import_zoo("small-cnn-zoo", root, progress=False)  # the default: step 86 for every run
    np.testing.assert_array_equal(nfn.targets["network"], [i for i, m in enumerate(metrics) if m["step"] == 86])
    skipped = nfn.meta["skipped"]
    assert skipped["reasons"] == {"stopped before the final step": 2} and skipped["count"] == 2
    assert skipped["last_steps"] == {"20": 1, "40": 1}
    assert any("/runs/1 ends at step 40, before the final step 86" in e for e in skipped["examples"])
    at_40 = import_zoo("small-cnn-zoo", root, step=40, progress=False)  # only run 1 has a step-40 row
    assert at_40.targets["network"].tolist() == [5] and at_40.meta["skipped"]["reasons"] == {"no checkpoint at the step": 4}
    colab = import_zoo("small-cnn-zoo", root, last_checkpoint="run", progress=False)
    rows = colab_last_checkpoints(metrics)
    np.testing.assert_array_equal(colab.targets["network"], rows)
    np.testing.assert_array_equal(colab.targets["epoch"], [metrics[i]["step"] for i in rows])
    np.testing.assert_allclose(colab.targets["test_accuracy"], [metrics[i]["test_accuracy"] for i in rows], rtol=1e-6)
    np.testing.assert_array_equal(colab.params["conv1"]["kernel"], tensors["sequential/conv2d_1/kernel:0"][rows])
    assert colab.meta["skipped"]["count"] == 0 and colab.meta["skipped"]["runs_below_final_step"] == 2
    write_published(tmp_path, tensors, [v for v, _ in PUBLISHED], metrics, quoting=csv.QUOTE_NONNUMERIC)
    quoted = import_zoo("small-cnn-zoo", root, last_checkpoint="run", progress=False)  # runs told apart by csv
    np.testing.assert_array_equal(quoted.targets["network"], rows)
    with pytest.raises(UnknownNameError, match="unknown last_checkpoint rule 'latest'"):
        import_zoo("small-cnn-zoo", root, last_checkpoint="latest", progress=False)
    no_runs = [{k: v for k, v in m.items() if k != "modeldir"} for m in metrics]
    write_published(tmp_path, tensors, [v for v, _ in PUBLISHED], no_runs)
    with pytest.raises(ZooFormatError, match=r"metrics.csv.gz: last_checkpoint='run' needs the 'modeldir' column"):
        import_zoo("small-cnn-zoo", root, last_checkpoint="run", progress=False)


@pytest.mark.parametrize("bad", ["nan", "", "n/a"])
def test_non_finite_test_accuracy_is_dropped_and_counted(tmp_path, bad):
    metrics = run_metrics([(0, 86)] * 4, ["relu"] * 4)
    metrics[3]["test_accuracy"] = bad  # run 1 at step 86
    metrics[4]["test_accuracy"] = bad  # run 2 at step 0: not a final row
    root = write_published(tmp_path, published_tensors(8), [v for v, _ in PUBLISHED], metrics)
    zoo = import_zoo("small-cnn-zoo", root, progress=False)
    np.testing.assert_array_equal(zoo.targets["network"], [1, 5, 7])
    assert np.isfinite(zoo.targets["test_accuracy"]).all()
    assert zoo.meta["skipped"]["reasons"] == {"non-finite test accuracy": 1}
    assert "metrics.csv.gz: row 3 has a NaN or inf test_accuracy" in zoo.meta["skipped"]["examples"][0]
    for m in metrics:
        m["test_accuracy"] = bad
    write_published(tmp_path, published_tensors(8), [v for v, _ in PUBLISHED], metrics)
    with pytest.raises(ZooFormatError, match="no row at step 86 has finite weights and test accuracy"):
        import_zoo("small-cnn-zoo", root, progress=False)


def nfn_zoo_dataset(root, idcs_file, mode):
    """NFN's ZooDataset, without pandas: permute, keep step 86, assert finite, iid split, TF->torch."""
    data = np.load(root / "weights.npy")
    perm = np.loadtxt(idcs_file, dtype=np.int64)
    with gzip.open(root / "metrics.csv.gz", "rt") as f:
        metrics = list(csv.DictReader(f))
    data, metrics = data[perm], [metrics[i] for i in perm]
    final = np.asarray([float(m["step"]) == 86 for m in metrics])
    data, metrics = data[final], [m for m, k in zip(metrics, final) if k]
    assert np.isfinite(data).all()
    test_point = int(0.5 * len(data))
    trainval = list(range(test_point))
    val_point = int(0.8 * len(trainval))
    random.Random(0).shuffle(trainval)
    idcs = {"train": trainval[:val_point], "val": trainval[val_point:], "test": list(range(test_point, len(data)))}[mode]
    data = data[idcs]
    weights = []
    with open(root / "layout.csv") as f:
        for row in csv.DictReader(f):
            arr = data[:, int(row["start_idx"]):int(row["end_idx"])].reshape(len(data), *eval(row["shape"]))
            if row["varname"].endswith("kernel:0"):
                weights.append(arr.transpose(0, 4, 3, 1, 2) if arr.ndim == 5 else arr.transpose(0, 2, 1))
    return weights, [float(metrics[i]["test_accuracy"]) for i in idcs]


def test_published_permutation_matches_nfn_loader(tmp_path):
    zoo = cnn_zoo(n=30)
    out = export_zoo("small-cnn-zoo", zoo, tmp_path / "z", progress=False)
    perm = np.random.default_rng(5).permutation(len(zoo))
    np.savetxt(tmp_path / "cifar10_split.csv", perm, fmt="%d")
    back = import_zoo("small-cnn-zoo", out, split_file=tmp_path / "cifar10_split.csv", progress=False)
    for mode in ("train", "val", "test"):
        weights, accuracy = nfn_zoo_dataset(out, tmp_path / "cifar10_split.csv", mode)
        idx = back.splits[mode]
        np.testing.assert_allclose(back.targets["test_accuracy"][idx], accuracy, rtol=1e-6)
        for layer, w in zip(["conv0", "conv1", "conv2"], weights):
            np.testing.assert_array_equal(np.asarray(back.params[layer]["kernel"])[idx].transpose(0, 4, 3, 1, 2), w)
        np.testing.assert_array_equal(np.asarray(back.params["dense0"]["kernel"])[idx].transpose(0, 2, 1), weights[3])
    # the identity permutation the writer leaves gives the plain file order
    plain = import_zoo("small-cnn-zoo", out, split_file=out / "split.csv", progress=False)
    np.testing.assert_array_equal(plain.targets["network"], import_zoo("small-cnn-zoo", out, progress=False).targets["network"])


def test_non_finite_rows_are_skipped_and_counted(tmp_path):
    out = export_zoo("small-cnn-zoo", cnn_zoo(n=10), tmp_path / "z", progress=False)
    w = np.load(out / "weights.npy")
    w[3, 7] = np.nan  # row 3 is network 1 at step 86
    w[2, 0] = np.inf  # row 2 is a step-0 row: not kept anyway
    np.save(out / "weights.npy", w)
    back = import_zoo("small-cnn-zoo", out, progress=False)
    assert len(back) == 9 and 3 not in back.targets["network"]
    assert back.meta["skipped"]["count"] == 1 and "row 3" in back.meta["skipped"]["examples"][0]
    assert back.meta["skipped"]["reasons"] == {"non-finite weights": 1}


def test_errors(tmp_path):
    out = export_zoo("small-cnn-zoo", cnn_zoo(n=6), tmp_path / "z", progress=False)
    raw = (out / "weights.npy").read_bytes()
    (out / "weights.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ZooFormatError, match=r"weights.npy: unreadable or truncated"):
        import_zoo("small-cnn-zoo", out, progress=False)
    (out / "weights.npy").write_bytes(raw)

    np.savetxt(tmp_path / "bad_split.csv", np.arange(5), fmt="%d")
    with pytest.raises(ZooFormatError, match=r"bad_split.csv: not a permutation of the 12 rows"):
        import_zoo("small-cnn-zoo", out, split_file=tmp_path / "bad_split.csv", progress=False)
    (tmp_path / "empty_split.csv").write_text("")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "input contained no data" stays inside
        with pytest.raises(ZooFormatError, match=r"empty_split.csv: not a permutation of the 12 rows of weights.npy \(0 entries\)"):
            import_zoo("small-cnn-zoo", out, split_file=tmp_path / "empty_split.csv", progress=False)
    with pytest.raises(DataFileError, match=r"nowhere.csv: file not found"):
        import_zoo("small-cnn-zoo", out, split_file=tmp_path / "nowhere.csv", progress=False)

    layout = (out / "layout.csv").read_text()
    (out / "layout.csv").write_text(layout.replace('"(3, 3, 1, 16)"', '"(3, 3, 2, 16)"'))
    with pytest.raises(ZooFormatError, match=r"layout.csv: line 3: columns 16:160 cannot hold shape \(3, 3, 2, 16\)$"):
        import_zoo("small-cnn-zoo", out, progress=False)
    (out / "layout.csv").write_text(layout)

    metrics = gzip.decompress((out / "metrics.csv.gz").read_bytes()).decode()
    (out / "metrics.csv.gz").write_bytes(gzip.compress(metrics.replace("\nrelu,", "\nswish,").encode()))
    with pytest.raises(UnknownNameError, match=r"metrics.csv.gz: activation 'swish'"):
        import_zoo("small-cnn-zoo", out, progress=False)
    (out / "metrics.csv.gz").write_bytes(gzip.compress("\n".join(metrics.splitlines()[:-2]).encode()))
    with pytest.raises(ZooFormatError, match=r"metrics.csv.gz: 10 rows, weights.npy 12"):
        import_zoo("small-cnn-zoo", out, progress=False)
    (out / "metrics.csv.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(ZooFormatError, match=r"metrics.csv.gz: unreadable metrics"):
        import_zoo("small-cnn-zoo", out, progress=False)
    (out / "layout.csv").unlink()
    with pytest.raises(DataFileError, match=r"layout.csv: file not found"):
        import_zoo("small-cnn-zoo", out, progress=False)
    with pytest.raises(ZooFormatError, match="holds small_cnn networks.*siren"):
        export_zoo("small-cnn-zoo", Zoo(arch=make_arch("siren"), params=jax.vmap(make_arch("siren").init)(
            jax.random.split(jax.random.key(0), 2)), targets={}), tmp_path / "x", progress=False)


def test_metrics_columns_parse_alike_by_numpy_and_by_rows(tmp_path):
    from probegen_jax.zoo.formats.small_cnn_zoo import METRIC_SAMPLE_ROWS, read_metrics

    n = METRIC_SAMPLE_ROWS + 500
    rows = [[str(i % 3), ("relu", "tanh")[i % 2], str(i * 0.5), f"/runs/{i},x"] for i in range(n)]

    def metrics(rows, columns=None):
        path = tmp_path / "metrics.csv.gz"
        with gzip.open(path, "wt", newline="") as f:
            csv.writer(f).writerows([["step", "config.activation", "test_accuracy", "modeldir"], *rows])
        return read_metrics(path, columns)

    columns = metrics(rows)  # numeric columns by numpy's parser, the quoted modeldir skipped
    assert sorted(columns) == ["config.activation", "step", "test_accuracy"]
    np.testing.assert_array_equal(columns["step"].numeric(), np.arange(n) % 3)
    np.testing.assert_array_equal(columns["test_accuracy"].numeric(), np.arange(n) * 0.5)
    assert columns["config.activation"].numeric() is None
    assert list(columns["config.activation"].strings()[:3]) == ["relu", "tanh", "relu"]

    late = n - 10  # past the sampled rows: the file is parsed again row by row
    rows[late][2] = "n/a"
    strings = metrics(rows)["test_accuracy"]
    assert strings.numeric() is None and strings.strings()[late] == "n/a" and strings.strings()[3] == "1.5"
    for chosen in (["config.activation", "absent"], ["test_accuracy"]):  # only these (and step), either parser
        assert sorted(metrics(rows, chosen)) == sorted({"step", *chosen} - {"absent"})
    rows[late][2] = ""
    assert np.isnan(metrics(rows)["test_accuracy"].numeric()[late])
    rows[late] = rows[late][:2]
    with pytest.raises(ZooFormatError, match=rf"metrics.csv.gz: line {late + 2} has 2 fields, the header 4"):
        metrics(rows)


def test_streamed_step_column_and_early_prefetch(tmp_path, monkeypatch):
    """The step column parsed piece by piece as the file decompresses (here in 64-byte pieces)
    equals the whole-file parse; each piece's rows reach ``on_steps`` in order; a quoted cell
    ends the streaming; the rows guessed for the final step are asked for early."""
    from probegen_jax.zoo.formats import small_cnn_zoo as scz

    steps = np.asarray([0, 1, 86] * 20 + [0, 1, 90], np.float64)  # the last network trains longer
    lines = ["step,test_accuracy,modeldir"] + [f"{s:g},{i / 100},/runs/{i // 3}" for i, s in enumerate(steps)]
    path = tmp_path / "metrics.csv.gz"
    path.write_bytes(gzip.compress(("\r\n".join(lines) + "\r\n").encode()))
    monkeypatch.setattr(scz, "DECOMPRESS_BYTES", 64)

    class Rows:  # stands in for NpyRows: records what is asked for
        shape = (len(steps), 8)
        asked: list = []

        def prefetch(self, rows):
            self.asked.append(np.asarray(rows))

    seen = []
    early = scz.EarlyPrefetch(Rows(), None)
    parsed = scz.read_step_column(scz.MetricsFile(path), on_steps=lambda r, s: (seen.append((r, len(s))), early(r, s)))
    np.testing.assert_array_equal(parsed, steps)
    assert len(seen) > 5 and [r for r, _ in seen] == list(np.cumsum([0] + [n for _, n in seen])[:-1])
    # step 90 came last: every final row was asked for, and besides only rows at the largest step
    # up to the end of their piece (86, and 1 where a piece ended before the first 86)
    asked = np.concatenate(Rows.asked)
    assert set(np.flatnonzero(steps == 90)) <= set(asked.tolist())
    piece_end = {row: r + n for r, n in seen for row in range(r, r + n)}
    assert all(steps[row] == steps[:piece_end[row]].max() for row in asked.tolist())
    assert 59 not in asked and 56 in asked  # 86 in the piece that holds the 90: not asked for
    Rows.asked = []
    scz.read_step_column(scz.MetricsFile(path), on_steps=scz.EarlyPrefetch(Rows(), 1.0))
    np.testing.assert_array_equal(np.concatenate(Rows.asked), np.flatnonzero(steps == 1))

    whole = scz.MetricsFile(path)
    chosen = np.asarray([62, 2, 5])
    subset = whole.rows(chosen, len(steps))
    assert subset.data.decode().splitlines()[1:] == [lines[i + 1] for i in chosen]
    quoted = lines[:30] + ['86,0.5,"/runs/a,\nb"'] + lines[31:]  # a quoted cell with a line end
    path.write_bytes(gzip.compress("\n".join(quoted).encode()))
    np.testing.assert_array_equal(scz.read_step_column(scz.MetricsFile(path)), np.r_[steps[:29], 86, steps[30:]])
    assert scz.MetricsFile(path).rows(chosen, len(steps)) is None
    path.write_bytes(gzip.compress("\n".join(lines[:10] + [""] + lines[10:]).encode()))  # a blank line
    assert scz.MetricsFile(path).rows(chosen, len(steps)) is None


def test_import_parses_only_the_chosen_metrics_rows_alike(tmp_path, monkeypatch):
    """Reading the chosen rows' metrics alone, in small decompressed pieces, or the whole file (a
    quoted cell makes lines and rows differ) gives the same zoo."""
    from probegen_jax.zoo.formats import small_cnn_zoo as scz

    out = export_zoo("small-cnn-zoo", cnn_zoo(n=12, epochs=(0, 5, 86)), tmp_path / "z", progress=False)
    perm = np.random.default_rng(2).permutation(36)
    np.savetxt(tmp_path / "split.csv", perm, fmt="%d")
    reference = import_zoo("small-cnn-zoo", out, split_file=tmp_path / "split.csv", progress=False)
    metrics = gzip.decompress((out / "metrics.csv.gz").read_bytes()).decode()
    (out / "metrics.csv.gz").write_bytes(gzip.compress(metrics.replace("net_0,", '"net_0",').encode()))
    monkeypatch.setattr(scz, "DECOMPRESS_BYTES", 256)
    for _ in ("whole file", "chosen rows"):
        back = import_zoo("small-cnn-zoo", out, split_file=tmp_path / "split.csv", progress=False)
        assert sorted(back.targets) == sorted(reference.targets)
        for name in reference.targets:
            np.testing.assert_array_equal(back.targets[name], reference.targets[name], err_msg=name)
        for a, b in zip(jax.tree.leaves(back.params), jax.tree.leaves(reference.params)):
            np.testing.assert_array_equal(a, b)
        (out / "metrics.csv.gz").write_bytes(gzip.compress(metrics.encode()))
    assert reference.targets["epoch"].tolist() == [86] * 12
