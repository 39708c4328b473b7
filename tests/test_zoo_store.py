"""The Zoo container and its on-disk store: round trips and every documented refusal."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probegen_jax.archs import arch_from_function, siren
from probegen_jax.errors import (
    MissingSplitError,
    NonFiniteWeightsError,
    ShapeMismatchError,
    IntegrityError,
    UnknownNameError,
    ZooFormatError,
)
from probegen_jax.io import write_json
from probegen_jax.zoo import FORMAT_VERSION, Zoo, load_zoo, read_zoo_meta, save_zoo
from probegen_jax.zoo.zoo import shrink_split

N = 10


def small_zoo(arch=None, n=N, seed=0) -> Zoo:
    arch = arch or siren(hidden=8)
    params = jax.tree.map(lambda *a: jnp.stack(a), *[arch.init(jax.random.key(seed * 1000 + i)) for i in range(n)])
    rng = np.random.default_rng(seed)
    return Zoo(
        arch=arch,
        params=params,
        targets={
            "label": rng.integers(0, 10, n).astype(np.int32),
            "test_accuracy": rng.uniform(size=n).astype(np.float32),
            "multi_hot": (rng.uniform(size=(n, 4)) > 0.5).astype(np.float32),
        },
        splits={"train": np.arange(0, 6), "val": np.arange(6, 8), "test": np.arange(8, n)},
        meta={"generator": "test", "config": {"lr": 1e-3, "layers": [1, 2]}, "note": "ünïcode"},
    )


def assert_zoos_equal(a: Zoo, b: Zoo) -> None:
    assert a.arch.spec() == b.arch.spec()
    assert jax.tree.structure(a.params) == jax.tree.structure(b.params)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert sorted(a.targets) == sorted(b.targets) and sorted(a.splits) == sorted(b.splits)
    for k in a.targets:
        assert a.targets[k].dtype == b.targets[k].dtype
        np.testing.assert_array_equal(a.targets[k], b.targets[k])
    for k in a.splits:
        np.testing.assert_array_equal(a.splits[k], b.splits[k])
    assert dict(a.meta) == dict(b.meta)


# ------------------------------------------------------------------------------------- Zoo


def test_zoo_split_subset_and_arrays():
    zoo = small_zoo()
    assert len(zoo) == N
    val = zoo.split("val")
    assert len(val) == 2 and val.splits == {}
    np.testing.assert_array_equal(val.targets["label"], zoo.targets["label"][6:8])
    np.testing.assert_array_equal(val.params["dense1"]["kernel"], np.asarray(zoo.params["dense1"]["kernel"])[6:8])
    arrays = zoo.split_arrays("test_accuracy")
    assert sorted(arrays) == ["test", "train", "val"]
    params, y = arrays["train"]
    np.testing.assert_array_equal(y, zoo.targets["test_accuracy"][:6])
    np.testing.assert_array_equal(params["dense0"]["bias"], np.asarray(zoo.params["dense0"]["bias"])[:6])
    assert "10 networks" in zoo.describe()


def test_shrink_split_keeps_nested_members_of_one_split():
    zoo = small_zoo(n=20)  # train 0-5, val 6-7, test 8-19; test_accuracy tells the members apart

    def train_members(size, seed=3):
        cut = shrink_split(zoo, "train", size, seed=seed)
        return set(cut.target("test_accuracy")[cut.indices("train")].tolist())

    assert train_members(2) < train_members(4) < train_members(6) == set(zoo.target("test_accuracy")[:6].tolist())
    assert len(train_members(4)) == 4
    assert len({frozenset(train_members(2, seed)) for seed in range(6)}) > 1  # the seed draws the members
    small = shrink_split(zoo, "train", 2, seed=3)
    assert len(small) == 16
    for split in ("val", "test"):  # the other splits: the same members, in order
        np.testing.assert_array_equal(small.target("test_accuracy")[small.indices(split)],
                                      zoo.target("test_accuracy")[zoo.indices(split)])
    for size in (0, 7):
        with pytest.raises(ShapeMismatchError, match=f"cannot keep {size} of its 6 members"):
            shrink_split(zoo, "train", size)
    with pytest.raises(MissingSplitError, match="available"):
        shrink_split(zoo, "holdout", 1)


def test_missing_split_lists_available():
    zoo = small_zoo()
    no_val = zoo.subset(np.arange(N), splits={"train": np.arange(5), "test": np.arange(5, N)})
    with pytest.raises(MissingSplitError) as err:
        no_val.split("val")
    msg = str(err.value)
    assert "'val'" in msg and "train" in msg and "test" in msg
    with pytest.raises(MissingSplitError, match="none"):
        zoo.split("train").split("train")  # a split zoo has no splits of its own
    with pytest.raises(MissingSplitError, match="label"):
        zoo.target("accuracy")


def test_nan_weights_are_refused_naming_the_tensor():
    zoo = small_zoo()
    params = jax.tree.map(np.array, zoo.params)
    params["dense2"]["kernel"][3, 0, 0] = np.nan
    with pytest.raises(NonFiniteWeightsError) as err:
        Zoo(zoo.arch, params, zoo.targets, zoo.splits)
    assert "dense2/kernel" in str(err.value) and "1 of 10" in str(err.value)
    assert "dense1" not in str(err.value)


def test_zoo_refuses_misshaped_targets_splits_and_params():
    zoo = small_zoo()
    with pytest.raises(ShapeMismatchError, match="label"):
        Zoo(zoo.arch, zoo.params, {"label": np.zeros(N - 1)})
    with pytest.raises(ShapeMismatchError, match="val"):
        Zoo(zoo.arch, zoo.params, {}, {"val": np.array([0, N])})
    with pytest.raises(ShapeMismatchError, match=r"dense0/(kernel|bias).*\(N, 16\)"):
        Zoo(siren(hidden=16), zoo.params, {})


# ----------------------------------------------------------------------------------- store


def test_save_load_round_trip_is_bit_exact(tmp_path):
    zoo = small_zoo()
    path = save_zoo(zoo, tmp_path / "zoo")
    assert path == (tmp_path / "zoo").absolute()
    back = load_zoo(tmp_path / "zoo")
    assert_zoos_equal(zoo, back)
    assert back.arch.registered and back.arch.name == "siren"
    meta = read_zoo_meta(tmp_path / "zoo")
    assert meta["format_version"] == FORMAT_VERSION and meta["size"] == N


def test_round_trip_of_a_zoo_without_targets_or_splits(tmp_path):
    zoo = small_zoo()
    bare = Zoo(zoo.arch, zoo.params, {})
    save_zoo(bare, tmp_path / "bare")
    assert_zoos_equal(bare, load_zoo(tmp_path / "bare"))


def test_save_refuses_existing_path_unless_overwrite(tmp_path):
    first, second = small_zoo(seed=0), small_zoo(seed=1)
    save_zoo(first, tmp_path / "zoo")
    with pytest.raises(FileExistsError) as err:
        save_zoo(second, tmp_path / "zoo")
    assert str(tmp_path / "zoo") in str(err.value)
    assert_zoos_equal(first, load_zoo(tmp_path / "zoo"))  # untouched
    save_zoo(second, tmp_path / "zoo", overwrite=True)
    assert_zoos_equal(second, load_zoo(tmp_path / "zoo"))


def _edit_record(zoo_dir, edit) -> None:
    """Rewrite the zoo's record as another writer would (a valid checksum over the edited record)."""
    manifest = json.loads((zoo_dir / "manifest.json").read_text())
    manifest["record"] = edit(manifest["record"])
    write_json(zoo_dir / "manifest.json", manifest)


def test_changed_format_version_is_refused(tmp_path):
    save_zoo(small_zoo(), tmp_path / "zoo")
    assert read_zoo_meta(tmp_path / "zoo")["format_version"] == FORMAT_VERSION
    _edit_record(tmp_path / "zoo", lambda r: {**r, "format_version": FORMAT_VERSION + 98})
    with pytest.raises(ZooFormatError) as err:
        load_zoo(tmp_path / "zoo")
    msg = str(err.value)
    assert f"version {FORMAT_VERSION + 98}" in msg and str(tmp_path / "zoo") in msg


@pytest.mark.parametrize("record, message", [
    ([1, 2], "not a probegen_jax zoo"),
    ({"format": "someone.else"}, "someone.else"),
    ({"format": "probegen_jax.zoo", "format_version": 2, "meta": {}}, "no architecture spec"),
    ({"format": "probegen_jax.zoo", "format_version": 2, "arch": {"name": "siren", "config": {}}, "meta": [1]},
     "'meta' is not a JSON object"),
])
def test_malformed_records_are_refused_naming_the_file(tmp_path, record, message):
    save_zoo(small_zoo(), tmp_path / "zoo")
    _edit_record(tmp_path / "zoo", lambda r: record)
    with pytest.raises(ZooFormatError, match=message) as err:
        load_zoo(tmp_path / "zoo")
    assert str((tmp_path / "zoo" / "manifest.json").absolute()) in str(err.value)


def test_not_a_zoo_is_refused(tmp_path):
    with pytest.raises(ZooFormatError, match="not found"):
        load_zoo(tmp_path / "nothing-here")
    save_zoo(small_zoo(), tmp_path / "zoo")
    manifest = tmp_path / "zoo" / "manifest.json"
    manifest.write_text("{not json")
    with pytest.raises(IntegrityError) as err:
        load_zoo(tmp_path / "zoo")
    assert str(manifest) in str(err.value)
    manifest.unlink()
    with pytest.raises(ZooFormatError, match="no manifest.json") as err:
        load_zoo(tmp_path / "zoo")
    assert str(tmp_path / "zoo") in str(err.value)


def test_deleted_arrays_file_names_the_path(tmp_path):
    save_zoo(small_zoo(), tmp_path / "zoo")
    (tmp_path / "zoo" / "arrays.bin").unlink()
    with pytest.raises(ZooFormatError) as err:
        load_zoo(tmp_path / "zoo")
    assert str((tmp_path / "zoo" / "arrays.bin").absolute()) in str(err.value)


def _flip_bytes(path):
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("victim", ["manifest.json", "manifest.json.sha256", "arrays.bin"])
@pytest.mark.parametrize("damage", [_flip_bytes, _truncate], ids=["garbage", "truncated"])
def test_corrupt_files_raise_integrity_error_naming_the_file(tmp_path, victim, damage):
    save_zoo(small_zoo(), tmp_path / "zoo")
    damage(tmp_path / "zoo" / victim)
    with pytest.raises(IntegrityError) as err:
        load_zoo(tmp_path / "zoo")
    assert str((tmp_path / "zoo").absolute()) in str(err.value)
    assert (victim.split(".sha256")[0] if victim != "arrays.bin" else "arrays.bin") in str(err.value)


def test_verify_false_skips_the_array_checksums(tmp_path):
    save_zoo(small_zoo(), tmp_path / "zoo")
    data = tmp_path / "zoo" / "arrays.bin"
    raw = bytearray(data.read_bytes())
    raw[0] ^= 1  # the lowest bit of the first weight: still finite
    data.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="fails its checksum"):
        load_zoo(tmp_path / "zoo")
    assert len(load_zoo(tmp_path / "zoo", verify=False)) == N


def _save_format_1(zoo: Zoo, path) -> None:
    """A zoo as format version 1 wrote it: an orbax composite checkpoint (arrays + JSON meta)."""
    import orbax.checkpoint as ocp

    arrays = {"params": jax.tree.map(np.asarray, zoo.params), "targets": dict(zoo.targets), "splits": dict(zoo.splits)}
    meta = {"format": "probegen_jax.zoo", "format_version": 1, "arch": zoo.arch.spec(), "arch_registered": True,
            "size": len(zoo), "saved_at": "2026-01-01T00:00:00", "meta": dict(zoo.meta)}
    ocp.Checkpointer(ocp.CompositeCheckpointHandler()).save(
        path.absolute(), ocp.args.Composite(arrays=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)))


def test_format_1_zoos_still_load_with_a_warning(tmp_path):
    zoo = small_zoo()
    _save_format_1(zoo, tmp_path / "old")
    with pytest.warns(UserWarning, match="format version 1 has no checksums"):
        assert_zoos_equal(zoo, load_zoo(tmp_path / "old"))
    assert read_zoo_meta(tmp_path / "old")["format_version"] == 1


def test_unregistered_arch_needs_arch_argument(tmp_path):
    def init(key):
        return {"w": jax.random.normal(key, (2, 3)), "b": jnp.zeros(3)}

    def apply(params, x):
        return jnp.tanh(x @ params["w"] + params["b"])

    arch = arch_from_function(apply, init, (2,), name="my_tanh_layer")
    zoo = small_zoo(arch=arch)
    save_zoo(zoo, tmp_path / "zoo")
    with pytest.raises(UnknownNameError) as err:
        load_zoo(tmp_path / "zoo")
    assert "my_tanh_layer" in str(err.value) and "arch=" in str(err.value)
    back = load_zoo(tmp_path / "zoo", arch=arch)
    assert_zoos_equal(zoo, back)
    x = jnp.ones((4, 2))
    np.testing.assert_array_equal(back.arch.apply(jax.tree.map(lambda a: a[0], back.params), x),
                                  apply(jax.tree.map(lambda a: a[0], zoo.params), x))


def test_loading_with_the_wrong_arch_names_the_tensor(tmp_path):
    save_zoo(small_zoo(), tmp_path / "zoo")  # siren(hidden=8)
    with pytest.raises(ShapeMismatchError, match=r"dense0/(kernel|bias).*\(N, 16\)"):
        load_zoo(tmp_path / "zoo", arch=siren(hidden=16))


# ----------------------------------------------------------------------------- partial reads


def _multi_block_zoo(n=200) -> Zoo:
    """SIRENs whose hidden kernel (16 KiB a network) spans several 1 MiB checksum blocks."""
    arch = siren(in_dim=2, hidden=64, depth=2, out_dim=1)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(0, 0.1, (n, *s.shape)).astype(np.float32), arch.param_shapes())
    return Zoo(arch, params, {"label": rng.integers(0, 3, n)}, {"train": np.arange(n)})


def _leaf_entry(zoo_dir, name):
    manifest = json.loads((zoo_dir / "manifest.json").read_text())
    return next(leaf for leaf in manifest["leaves"] if "/".join(leaf["path"]) == name)


def test_lazy_zoo_reads_only_the_rows_asked_for_and_matches_the_eager_one(tmp_path):
    from probegen_jax.stored import rows_read

    zoo = _multi_block_zoo()
    save_zoo(zoo, tmp_path / "zoo")
    lazy = load_zoo(tmp_path / "zoo", lazy=True)
    assert all(len(r) == 0 for r in rows_read(lazy.params).values())  # loading reads no params
    idx = np.array([7, 150, 3, 7])
    got, want = lazy.inputs(idx), zoo.inputs(idx)
    jax.tree.map(lambda g, w: np.testing.assert_array_equal(np.asarray(g), w), got, want)
    kernel = lazy.params["dense1"]["kernel"]
    np.testing.assert_array_equal(kernel[5:9, 2], zoo.params["dense1"]["kernel"][5:9, 2])
    np.testing.assert_array_equal(kernel[11], zoo.params["dense1"]["kernel"][11])
    assert rows_read(lazy.params)["params/dense1/kernel"].tolist() == [3, 5, 6, 7, 8, 11, 150]
    assert_zoos_equal(lazy.in_memory(), zoo)


def test_a_damaged_block_fails_only_the_reads_of_its_rows(tmp_path):
    from probegen_jax.io import BLOCK_BYTES

    save_zoo(_multi_block_zoo(), tmp_path / "zoo")
    leaf = _leaf_entry(tmp_path / "zoo", "params/dense1/kernel")
    row_bytes = leaf["nbytes"] // 200
    assert leaf["nbytes"] > 3 * BLOCK_BYTES
    data = tmp_path / "zoo" / "arrays.bin"
    raw = bytearray(data.read_bytes())
    raw[leaf["offset"] + 2 * BLOCK_BYTES + 4] ^= 1  # the third block: a finite weight, one bit off
    data.write_bytes(bytes(raw))
    lazy = load_zoo(tmp_path / "zoo", lazy=True)
    kernel = lazy.params["dense1"]["kernel"]
    first_block_rows = np.arange(BLOCK_BYTES // row_bytes)
    assert np.asarray(lazy.inputs(first_block_rows)["dense1"]["kernel"]).shape == (len(first_block_rows), 64, 64)
    damaged_row = (2 * BLOCK_BYTES + 4) // row_bytes
    with pytest.raises(IntegrityError, match=rf"arrays\.bin: leaf params/dense1/kernel fails its checksum \(bytes "
                                             rf"{2 * BLOCK_BYTES}-{3 * BLOCK_BYTES} of the leaf\)"):
        kernel[damaged_row]
    with pytest.raises(IntegrityError, match="dense1/kernel fails its checksum"):
        load_zoo(tmp_path / "zoo")


def test_nan_rows_are_refused_when_a_lazy_zoo_reads_them(tmp_path):
    zoo = _multi_block_zoo()
    zoo.params["dense0"]["bias"][17, 3] = np.nan
    zoo_dir = tmp_path / "zoo"
    from probegen_jax.io import save_pytree

    save_pytree(zoo_dir, {"params": zoo.params, "targets": dict(zoo.targets), "splits": dict(zoo.splits)},
                record={"format": "probegen_jax.zoo", "format_version": FORMAT_VERSION, "arch": zoo.arch.spec(),
                        "arch_registered": True, "size": len(zoo), "meta": {}})
    lazy = load_zoo(zoo_dir, lazy=True)
    np.asarray(lazy.inputs(np.arange(10))["dense0"]["bias"])
    with pytest.raises(NonFiniteWeightsError, match=r"leaf params/dense0/bias: NaN or inf weights in 1 of the 4"):
        np.asarray(lazy.inputs(np.arange(15, 19))["dense0"]["bias"])
    with pytest.raises(NonFiniteWeightsError):
        load_zoo(zoo_dir)


def test_arrays_of_format_version_1_one_checksum_per_leaf_still_load(tmp_path):
    """Folders saved before checksums per block: one checksum per leaf, verified, read whole."""
    from probegen_jax.io import DIGESTS, _leaf_checksum_v1

    zoo = _multi_block_zoo(40)
    save_zoo(zoo, tmp_path / "zoo")
    manifest = json.loads((tmp_path / "zoo" / "manifest.json").read_text())
    raw = (tmp_path / "zoo" / "arrays.bin").read_bytes()
    for leaf in manifest["leaves"]:
        del leaf[DIGESTS]
        leaf["blocksums-sha256"] = _leaf_checksum_v1(memoryview(raw)[leaf["offset"]:leaf["offset"] + leaf["nbytes"]])
    manifest["version"] = 1
    del manifest["block_bytes"]
    write_json(tmp_path / "zoo" / "manifest.json", manifest)
    assert_zoos_equal(load_zoo(tmp_path / "zoo"), zoo)
    assert_zoos_equal(load_zoo(tmp_path / "zoo", lazy=True).in_memory(), zoo)
    damaged = bytearray(raw)
    damaged[-200] ^= 1
    (tmp_path / "zoo" / "arrays.bin").write_bytes(bytes(damaged))
    with pytest.raises(IntegrityError, match="fails its checksum"):
        load_zoo(tmp_path / "zoo")
