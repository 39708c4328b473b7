import json

import pytest

from probegen_jax.errors import CheckpointError, DataFileError
from probegen_jax.training.runlog import RUNS_FILE, RunLog, run_key

SETTINGS = {"train": {"epochs": 150, "batch_size": 32}, "response": "softmax"}


def test_finished_runs_are_read_back_and_only_by_the_same_settings(tmp_path):
    log = RunLog(tmp_path, SETTINGS)
    key = run_key("zoos/z", "probegen", 128, 0)
    assert log.get(key) is None
    log.record(key, {"test_tau": 0.8, "seed": 0})

    again = RunLog(tmp_path, SETTINGS)
    assert again.get(key) == {"test_tau": 0.8, "seed": 0}
    assert again.get(run_key("zoos/z", "probegen", 128, 1)) is None

    other = {**SETTINGS, "train": {"epochs": 30, "batch_size": 32}}
    with pytest.raises(CheckpointError, match=r"runs.json: runs made with other settings \(train: .*150.*30"):
        RunLog(tmp_path, other)


def test_a_damaged_log_is_named_not_silently_replaced(tmp_path):
    (tmp_path / RUNS_FILE).write_text('{"settings": {"train": ')
    with pytest.raises(CheckpointError, match="runs.json: not a run log"):
        RunLog(tmp_path, SETTINGS)
    assert (tmp_path / RUNS_FILE).read_text() == '{"settings": {"train": '


def test_runs_of_other_processes_are_gathered_once_and_only_with_the_same_settings(tmp_path):
    parts = [tmp_path / f"seed{s}" for s in (1, 2)]
    for seed, folder in enumerate(parts, 1):
        RunLog(folder, SETTINGS).record(run_key("z", "synthetic", 128, seed), {"test_tau": seed / 10})
    main = RunLog(tmp_path / "all", SETTINGS)
    main.record(run_key("z", "synthetic", 128, 0), {"test_tau": 0.0})

    assert main.gather(parts) == 2
    assert main.gather(parts) == 0
    saved = json.loads((tmp_path / "all" / RUNS_FILE).read_text())
    assert {k: v["test_tau"] for k, v in saved["runs"].items()} == {
        "z|synthetic|128|0": 0.0, "z|synthetic|128|1": 0.1, "z|synthetic|128|2": 0.2}

    RunLog(tmp_path / "other", {**SETTINGS, "response": "logits"}).record("z|x|1|0", {})
    with pytest.raises(CheckpointError, match="response: 'logits' there, 'softmax' now"):
        main.gather([tmp_path / "other"])
    with pytest.raises(DataFileError, match="missing/runs.json: no run log here"):
        main.gather([tmp_path / "missing"])
