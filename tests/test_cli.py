"""The ``probegen-jax`` command, end to end on a tiny digits INR zoo."""

from __future__ import annotations

import json

import pytest

from probegen_jax.cli import build_parser, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("zoo", "train", "eval"):
        assert command in out


def test_make_info_train_eval(tmp_path, capsys):
    zoo_dir, run_dir = tmp_path / "zoo", tmp_path / "run"
    assert main(["zoo", "make", "inr", "--dataset", "digits", "--out", str(zoo_dir), "--train", "96",
                 "--val", "32", "--test", "32", "--steps", "20", "--chunk-size", "64"]) == 0
    assert zoo_dir.is_dir() and not (tmp_path / "zoo.partial").exists()
    assert main(["zoo", "info", str(zoo_dir)]) == 0
    assert "zoo of 160 networks" in capsys.readouterr().out
    make = ["zoo", "make", "inr", "--dataset", "digits", "--out", str(zoo_dir), "--train", "96", "--val", "32",
            "--test", "32", "--steps", "20", "--chunk-size", "64"]
    assert main(make) == 0  # made already with these settings: found, not made again
    assert "already made with these settings" in capsys.readouterr().err
    assert main([*make[:-2], "--chunk-size", "32"]) == 2  # other settings: refused, naming them
    assert "chunk_size: 64 there, 32 now" in capsys.readouterr().err

    assert main(["train", "probegen", "--zoo", str(zoo_dir), "--out", str(run_dir), "--probes", "8",
                 "--epochs", "2", "--batch-size", "16"]) == 0
    trained = json.loads(capsys.readouterr().out)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["spec"]["num_probes"] == 8 and record["result"]["test"] == trained["test"]

    assert main(["eval", "--run", str(run_dir), "--split", "test"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test"]["accuracy"] == pytest.approx(trained["test"]["accuracy"])

    (run_dir / "run.json").write_text(json.dumps(record)[:40])  # cut short
    assert main(["eval", "--run", str(run_dir), "--zoo", str(zoo_dir)]) == 2
    err = capsys.readouterr().err
    assert "run.json" in err and "damaged" in err and "Traceback" not in err


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["zoo", "info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("probegen-jax: error:") and "missing" in err and "Traceback" not in err
    assert main(["eval", "--run", str(tmp_path)]) == 2
    assert "run.json" in capsys.readouterr().err


def test_parser_rejects_unknown_probe_source():
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "probegen", "--zoo", "z", "--out", "o", "--source", "bogus"])
    assert exit_info.value.code == 2


def test_a_train_command_imports_only_its_own_method_family():
    """``train probegen`` builds one method's parser and loads neither SANE (flax) nor the graph
    metanetworks; ``train --help`` still lists every method; the family table is what the
    modules register."""
    import subprocess
    import sys

    from probegen_jax.methods.registry import METHOD_FAMILIES, methods

    script = ("import sys; from probegen_jax.cli import build_parser; "
              "a = build_parser(sys.argv[1:]).parse_args(sys.argv[1:]); "
              "print(a.method, sorted(m for m in sys.modules if m.startswith('probegen_jax.methods.') "
              "and m.count('.') == 3), 'scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script, "--debug", "train", "probegen", "--zoo", "z", "--out", "o"],
                         capture_output=True, text=True, check=True).stdout.split(maxsplit=1)
    assert out[0] == "probegen"
    assert "sane" not in out[1] and "graphs" not in out[1] and "probing" in out[1] and out[1].endswith("False\n")
    check = ("import importlib, sys, probegen_jax.methods.registry as r; importlib.import_module(sys.argv[1]); "
             "print(' '.join(sorted(r._REGISTRY)))")
    for module, names in METHOD_FAMILIES.items():
        registered = subprocess.run([sys.executable, "-c", check, module], capture_output=True, text=True,
                                    check=True).stdout.split()
        assert set(names) <= set(registered), module
    assert set(methods()) >= {n for names in METHOD_FAMILIES.values() for n in names}
