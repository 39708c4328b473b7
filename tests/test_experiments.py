"""The experiment scripts end to end at toy sizes: `make demo` must keep working as the API moves."""

import importlib.util
import json
from pathlib import Path


EXPERIMENTS = Path(__file__).parent.parent / "experiments"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    demo = load_script("demo")
    argv = ["--out", str(tmp_path / "demo"), "--train", "60", "--val", "20", "--test", "20", "--inr-steps", "20",
            "--epochs", "2"]
    table = demo.main(argv)
    for method in ("ProbeGen", "Vanilla", "Synthetic"):
        assert any(line.startswith(f"| {method}") for line in table.splitlines()), (method, table)
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert len(results["runs"]) == 3 * 2  # three methods, two seeds
    assert all(0.0 <= run["test"] <= 1.0 for run in results["runs"])
    assert (tmp_path / "demo" / "probes.png").stat().st_size > 0
    assert "probegen K=64" in capsys.readouterr().err  # the training progress bar

    again = demo.main(argv)  # everything is logged: nothing is fitted or trained again
    assert again == table
    assert "probegen K=64" not in capsys.readouterr().err


def test_inr_classification_with_every_baseline(tmp_path, capsys):
    experiment = load_script("inr_classification")
    out = tmp_path / "inr"
    experiment.main(["--make", "digits", "--train", "60", "--val", "20", "--test", "20", "--inr-steps", "20",
                     "--probes", "8", "--epochs", "2", "--seeds", "0", "--baselines", "statnn", "flat", "nfn",
                     "--out", str(out)])
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert sorted(r["source"] for r in runs) == ["flat", "nfn", "probegen", "statnn", "synthetic", "vanilla"]
    assert (out / "results.md").read_text().count("| NFN-NP |") == 1
    capsys.readouterr()


def test_cnn_generalization_with_baselines_at_toy_size(tmp_path):
    from probegen_jax.make.cnn import CNNTraining, SmallCNNZooConfig, make_small_cnn_zoo

    cfg = SmallCNNZooConfig(training=CNNTraining(dataset="digits", train_size=128, test_size=64, train_eval_size=64,
                                                 epochs=(0, 1)), num_networks=40, chunk_size=40, seed=0)
    make_small_cnn_zoo(cfg, tmp_path / "zoo", progress=False)
    experiment = load_script("cnn_generalization")
    argv = ["--zoo", str(tmp_path / "zoo"), "--sources", "synthetic", "--probes", "4", "--baselines", "statnn",
            "--epochs", "2", "--seeds", "0", "--out", str(tmp_path / "out")]
    experiment.main(argv)
    runs = json.loads((tmp_path / "out" / "runs.json").read_text())["runs"]
    assert sorted(r["source"] for r in runs.values()) == ["statnn", "synthetic"]
    assert all(-1.0 <= r["test_tau"] <= 1.0 for r in runs.values())
    experiment.main(argv)  # logged: taken from the log, not trained again
    assert json.loads((tmp_path / "out" / "runs.json").read_text())["runs"] == runs
