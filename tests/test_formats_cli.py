"""`probegen-jax zoo import / export / info` on small zoos in the public formats."""

import numpy as np
import pytest

from probegen_jax.cli import main
from probegen_jax.zoo import load_zoo, save_zoo
from probegen_jax.zoo.formats import load_imported

torch = pytest.importorskip("torch")


def test_import_info_export_round_trip(tmp_path, capsys):
    from test_formats_dwsnets import small_siren_zoo

    from probegen_jax.zoo.formats import export_zoo

    zoo = small_siren_zoo()
    export_zoo("dwsnets", zoo, tmp_path / "dws", progress=False)
    assert main(["zoo", "import", "dwsnets", str(tmp_path / "dws"), "--out", str(tmp_path / "saved")]) == 0
    out = capsys.readouterr().out
    assert "zoo of 9 networks, architecture siren" in out and "imported from dwsnets" in out
    np.testing.assert_array_equal(load_zoo(tmp_path / "saved").targets["label"], zoo.targets["label"])
    assert main(["zoo", "info", str(tmp_path / "saved")]) == 0
    info = capsys.readouterr().out
    assert all(part in info for part in ("train 5", "val 2", "test 2", "targets: label"))
    assert main(["zoo", "export", "dwsnets", str(tmp_path / "saved"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "splits.json").is_file()


def test_small_cnn_zoo_export_import(tmp_path, capsys):
    from test_formats_small_cnn_zoo import cnn_zoo

    save_zoo(cnn_zoo(n=5), tmp_path / "cnn")
    assert main(["zoo", "export", "small-cnn-zoo", str(tmp_path / "cnn"), "--out", str(tmp_path / "scz")]) == 0
    assert main(["zoo", "import", "small-cnn-zoo", str(tmp_path / "scz"), "--out", str(tmp_path / "scz_in"),
                 "--option", f"split_file={tmp_path / 'scz' / 'split.csv'}"]) == 0
    assert len(load_zoo(tmp_path / "scz_in")) == 5


def test_buckets_and_errors(tmp_path, capsys):
    from test_formats_wild_park import make_park

    make_park(tmp_path / "park", checkpoints=1)
    assert main(["zoo", "import", "wild-park", str(tmp_path / "park"), "--out", str(tmp_path / "buckets"),
                 "--option", "final_only=true"]) == 0
    saved = load_imported(tmp_path / "buckets")
    buckets = list(getattr(saved, "buckets", saved))  # a HeteroZoo where zoo.hetero exists
    assert len(buckets) == 3 and sum(len(b) for b in buckets) == 5
    assert main(["zoo", "info", str(tmp_path / "buckets")]) == 0
    info = capsys.readouterr().out
    assert "5 networks" in info and "3 architecture buckets" in info and "bucket 2: " in info
    capsys.readouterr()
    assert main(["zoo", "import", "wild-park", str(tmp_path / "park"), "--out", str(tmp_path / "x"),
                 "--option", "colour=red"]) == 2
    assert "KEY one of" in capsys.readouterr().err
    assert main(["zoo", "import", "dwsnets", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")]) == 2
    assert "nowhere" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["zoo", "import", "no-such-format", str(tmp_path), "--out", str(tmp_path / "z")])
    assert "invalid choice" in capsys.readouterr().err
