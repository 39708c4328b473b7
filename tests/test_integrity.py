"""Integrity of the library's own files: whatever happens to a saved zoo, run or checkpoint
(truncation, flipped bits, garbage, deletion), loading gives back exactly what was saved or raises
one of this library's errors naming the file; a resume never continues from a damaged checkpoint;
a full disk leaves nothing behind; paths with any characters round-trip."""

import errno
import json
import os
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probegen_jax import io
from probegen_jax.archs import siren
from probegen_jax.errors import CheckpointError, IntegrityError, ProbegenError, ZooFormatError, user_error_message
from probegen_jax.training.checkpoints import CheckpointManager
from probegen_jax.training.loop import TrainConfig, TrainState, config_record
from probegen_jax.zoo import Zoo, load_zoo, save_zoo
from probegen_jax.zoo.hetero import HeteroZoo, load_hetero_zoo, save_hetero_zoo

N = 6


def tiny_zoo(hidden: int = 4, n: int = N, seed: int = 0) -> Zoo:
    arch = siren(hidden=hidden)
    params = jax.tree.map(lambda *a: np.stack(a), *[arch.init(jax.random.key(seed + i)) for i in range(n)])
    return Zoo(arch, jax.tree.map(np.asarray, params),
               {"label": np.arange(n, dtype=np.int32), "psnr": np.linspace(20, 30, n).astype(np.float32)},
               {"train": np.arange(n - 2), "val": np.asarray([n - 2]), "test": np.asarray([n - 1])},
               {"generator": "test", "note": "ünïcode [x]"})


def tiny_state(seed: int = 0) -> TrainState:
    params = {"w": jax.random.normal(jax.random.key(seed), (3, 4)), "b": jnp.zeros(4)}
    return TrainState(params, optax.adam(1e-3).init(params))


def trees_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return (jax.tree.structure(a) == jax.tree.structure(b) and len(la) == len(lb)
            and all(np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y) for x, y in zip(la, lb)))


def zoos_equal(a: Zoo, b: Zoo) -> bool:
    return (a.arch.spec() == b.arch.spec() and trees_equal(a.params, b.params)
            and trees_equal(dict(a.targets), dict(b.targets)) and trees_equal(dict(a.splits), dict(b.splits))
            and dict(a.meta) == dict(b.meta))


# ----------------------------------------------------------------------------- what is saved, and how it loads


def _zoo():
    return tiny_zoo()


def _hetero():
    return HeteroZoo.concat([tiny_zoo(4, 3), tiny_zoo(6, 2, seed=9)],
                            splits={"train": np.arange(4), "test": np.asarray([4])})


RUN_RECORD = {"method": "probegen", "spec": {"num_probes": 4}, "zoo": {"path": "z"}}


def _save_run(root):
    """A run as methods/run.py writes one: params by ``save_pytree``, the record by ``write_json``."""
    io.save_pytree(root / "params", tiny_state().params)
    io.write_json(root / "run.json", RUN_RECORD)


def _load_run_is_same(root) -> bool:
    params = tiny_state().params
    return (trees_equal(io.load_pytree(root / "params", jax.eval_shape(lambda: params)), params)
            and io.read_json(root / "run.json", CheckpointError) == RUN_RECORD)


def _save_checkpoints(root):
    manager = CheckpointManager(root, config_record(TrainConfig(epochs=3)))
    for epoch in range(2):
        state = tiny_state(epoch)
        manager.save(epoch, state, {"params": state.params, "epoch": epoch, "val": {"acc": 0.5}, "score": 0.5},
                     [{"epoch": epoch}], 1.0 + epoch)


def _restored_checkpoint_is_same(root) -> bool:
    """The newest checkpoint, or (with a warning) the one before it: never anything else."""
    state, best, history, next_epoch, _ = CheckpointManager(root, config_record(TrainConfig(epochs=3))).restore(tiny_state())
    return (trees_equal(state, tiny_state(next_epoch - 1)) and history == [{"epoch": next_epoch - 1}]
            and trees_equal(best["params"], tiny_state(next_epoch - 1).params))


def _hetero_is_same(root) -> bool:
    back, zoo = load_hetero_zoo(root), _hetero()
    return (all(zoos_equal(x, y) for x, y in zip(back.buckets, zoo.buckets, strict=True))
            and np.array_equal(back.bucket, zoo.bucket) and np.array_equal(back.position, zoo.position)
            and trees_equal(dict(back.splits), dict(zoo.splits)))


# name: (save to a folder, load from it and compare with what was saved)
SAVERS = {
    "zoo": (lambda root: save_zoo(_zoo(), root), lambda root: zoos_equal(load_zoo(root), _zoo())),
    "hetero zoo": (lambda root: save_hetero_zoo(_hetero(), root), _hetero_is_same),
    "run": (_save_run, _load_run_is_same),
    "checkpoints": (_save_checkpoints, _restored_checkpoint_is_same),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    made = {}
    for name, (save, same) in SAVERS.items():
        root = tmp_path_factory.mktemp(name.replace(" ", "_")) / "saved"
        save(root)
        assert same(root)
        made[name] = root
    return made


def corrupt(path, kind: str, position: float, value: int) -> None:
    data = path.read_bytes()
    at = int(position * len(data))
    if kind == "truncate":
        path.write_bytes(data[:at])
    elif kind == "flip bit":
        if data:
            data = bytearray(data)
            data[at] ^= 1 << (value % 8)
            path.write_bytes(bytes(data))
    elif kind == "flip bytes":
        data = bytearray(data)
        for k in range(8):
            if data:
                data[(at + 97 * k) % len(data)] ^= value
        path.write_bytes(bytes(data))
    elif kind == "garbage":
        path.write_bytes(bytes([value]) * (at % 64 + 1))
    elif kind == "delete":
        path.unlink()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(what=st.sampled_from(sorted(SAVERS)), pick=st.floats(0, 1, exclude_max=True),
       kind=st.sampled_from(["truncate", "flip bit", "flip bytes", "garbage", "delete"]),
       position=st.floats(0, 1, exclude_max=True), value=st.integers(1, 255))
def test_damaged_files_load_exactly_or_raise_naming_the_folder(pristine, tmp_path_factory, what, pick, kind,
                                                               position, value):
    root = tmp_path_factory.mktemp("damaged") / "saved"
    shutil.copytree(pristine[what], root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    victim = files[int(pick * len(files))]
    corrupt(victim, kind, position, value)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a checkpoint fallback warns
            same = SAVERS[what][1](root)
        assert same, f"{what}: {kind} of {victim.relative_to(root)} loaded different data without an error"
    except ProbegenError as e:
        assert str(root) in str(e), str(e)  # names the saved folder (and the file at fault)
    shutil.rmtree(root.parent)


# ----------------------------------------------------------------------------- checkpoints


def _flip_last_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("victim, damage", [("arrays.bin", _flip_last_byte), ("manifest.json", os.unlink),
                                            ("arrays.bin", os.unlink)])
def test_resume_falls_back_past_a_damaged_checkpoint_and_never_uses_one(tmp_path, victim, damage):
    _save_checkpoints(tmp_path / "ckpt")
    damage(tmp_path / "ckpt" / "1" / victim)
    manager = CheckpointManager(tmp_path / "ckpt", config_record(TrainConfig(epochs=3)))
    with pytest.warns(UserWarning, match=rf"ckpt/1/{victim}.*resuming from the checkpoint of epoch 0"):
        state, _, history, next_epoch, seconds = manager.restore(tiny_state())
    assert next_epoch == 1 and seconds == 1.0 and trees_equal(state, tiny_state(0))
    _flip_last_byte(tmp_path / "ckpt" / "0" / "manifest.json")
    with pytest.raises(CheckpointError, match="no undamaged checkpoint") as err:
        manager.restore(tiny_state())
    assert str(tmp_path / "ckpt" / "0" / "manifest.json") in str(err.value)


@pytest.mark.parametrize("progress, message", [
    ({"epoch": 1}, "'config'"),
    ("history", "'history'"),
    ("epoch", "'epoch'"),
])
def test_malformed_progress_is_refused_naming_the_file(tmp_path, progress, message):
    _save_checkpoints(tmp_path / "ckpt")
    manifest_file = tmp_path / "ckpt" / "1" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    record = manifest["record"]
    if progress == "history":
        del record["history"]
    elif progress == "epoch":
        record["epoch"] = "1"
    else:
        manifest["record"] = progress
    io.write_json(manifest_file, manifest)  # as another writer would: a valid checksum
    with pytest.raises(CheckpointError, match=message) as err:
        CheckpointManager(tmp_path / "ckpt", config_record(TrainConfig(epochs=3))).restore(tiny_state())
    assert str(manifest_file) in str(err.value)


def test_params_of_another_shape_or_dtype_are_refused(tmp_path):
    params = tiny_state().params
    io.save_pytree(tmp_path / "params", params)
    wrong_shape = {"w": jax.ShapeDtypeStruct((3, 5), jnp.float32), "b": jax.ShapeDtypeStruct((4,), jnp.float32)}
    with pytest.raises(CheckpointError, match=r"w is float32\[3, 4\], the model expects float32\[3, 5\]"):
        io.load_pytree(tmp_path / "params", wrong_shape)
    wrong_dtype = {"w": jax.ShapeDtypeStruct((3, 4), jnp.float16), "b": jax.ShapeDtypeStruct((4,), jnp.float32)}
    with pytest.raises(CheckpointError, match="float16"):
        io.load_pytree(tmp_path / "params", wrong_dtype)
    with pytest.raises(CheckpointError, match="missing"):
        io.load_pytree(tmp_path / "params", {"w": wrong_dtype["w"]})


def test_zoo_arrays_rewritten_in_a_narrower_dtype_are_refused(tmp_path):
    zoo = tiny_zoo()
    arrays = {"params": jax.tree.map(lambda a: a.astype(np.float16), zoo.params), "targets": dict(zoo.targets),
              "splits": dict(zoo.splits)}
    save_zoo(zoo, tmp_path / "zoo")
    record = io.load_record(tmp_path / "zoo")
    io.save_pytree(tmp_path / "zoo", arrays, record=record)  # consistent checksums, but float16 weights
    with pytest.raises(ZooFormatError, match=r"float16.*float32"):
        load_zoo(tmp_path / "zoo")


def test_edited_json_record_is_refused_until_its_checksum_is_removed(tmp_path):
    io.write_json(tmp_path / "run.json", {"a": 1})
    assert (tmp_path / "run.json.sha256").read_text().split()[1] == "run.json"  # sha256sum -c reads it
    (tmp_path / "run.json").write_text('{"a": 2}')
    with pytest.raises(IntegrityError, match="run.json.sha256"):
        io.read_json(tmp_path / "run.json", CheckpointError)
    (tmp_path / "run.json.sha256").unlink()
    assert io.read_json(tmp_path / "run.json", CheckpointError) == {"a": 2}


# ----------------------------------------------------------------------------- paths, modes, disks


@pytest.mark.parametrize("name", ["zoo [1]", "a]b[c", "with spaces", "ünï cödé ✓"])
def test_paths_with_any_characters_round_trip(tmp_path, name):
    zoo = tiny_zoo()
    folder = tmp_path / f"dir [{name}]" / name
    save_zoo(zoo, folder)
    assert zoos_equal(load_zoo(folder), zoo)
    _save_checkpoints(folder / "ckpt")
    state, *_ = CheckpointManager(folder / "ckpt", config_record(TrainConfig(epochs=3))).restore(tiny_state())
    assert trees_equal(state, tiny_state(1))


def test_saved_files_get_the_ordinary_mode(tmp_path):
    old = os.umask(0o022)
    try:
        save_zoo(tiny_zoo(), tmp_path / "zoo")
        io.write_json(tmp_path / "run.json", {})
    finally:
        os.umask(old)
    for path in [tmp_path / "zoo", tmp_path / "zoo" / "arrays.bin", tmp_path / "run.json"]:
        assert path.stat().st_mode & 0o777 == (0o755 if path.is_dir() else 0o644), path


def _full_disk(monkeypatch, after: int = 0) -> None:
    """Every fsync after the first ``after`` fails as a full disk does (delayed allocation)."""
    real, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(io.os, "fsync", fsync)


@pytest.mark.parametrize("after", [0, 1, 2])
def test_full_disk_leaves_nothing_behind_and_the_old_zoo_intact(tmp_path, monkeypatch, after):
    first = tiny_zoo()
    save_zoo(first, tmp_path / "zoo")
    _full_disk(monkeypatch, after)
    with pytest.raises(OSError) as err:
        save_zoo(tiny_zoo(seed=5), tmp_path / "zoo", overwrite=True)
    assert err.value.errno == errno.ENOSPC
    assert "no space left" in user_error_message(err.value)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo"]  # no temporary folder left
    assert zoos_equal(load_zoo(tmp_path / "zoo"), first)


def test_temporary_folders_of_killed_writes_are_removed_by_the_next_write(tmp_path):
    stale = tmp_path / ".zoo.tmp-999999999-abc"  # no such process
    stale.mkdir()
    (stale / "arrays.bin").write_bytes(b"partial")
    with pytest.warns(UserWarning, match="killed"):
        save_zoo(tiny_zoo(), tmp_path / "zoo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo"]
    live = tmp_path / f".zoo.tmp-{os.getpid()}-abc"  # a write in progress (this process) is left alone
    live.mkdir()
    save_zoo(tiny_zoo(), tmp_path / "zoo", overwrite=True)
    assert live.exists()


def test_temporary_files_of_killed_record_writes_are_removed_by_the_next_write(tmp_path):
    stale = [tmp_path / ".run.json.tmp-999999999-x1", tmp_path / ".run.json.sha256.tmp-999999999-x2"]
    for path in stale:
        path.write_text("{partial")
    with pytest.warns(UserWarning, match="killed"):
        io.write_json(tmp_path / "run.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.json.sha256"]


def test_params_saved_by_orbax_before_still_load_with_a_warning(tmp_path):
    import orbax.checkpoint as ocp

    params = tiny_state().params
    ocp.Checkpointer(ocp.StandardCheckpointHandler()).save((tmp_path / "params").absolute(),
                                                          args=ocp.args.StandardSave(params))
    with pytest.warns(UserWarning, match="without checksums"):
        assert trees_equal(jax.device_get(io.load_pytree(tmp_path / "params", jax.eval_shape(lambda: params))),
                           jax.device_get(params))
