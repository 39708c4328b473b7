"""The examples run end to end at toy size: a user's own Flax zoo -> probing -> a saved run ->
loaded in a fresh call, predicting and drawing its probes."""

from examples import load_and_predict, own_flax_zoo


def test_own_flax_zoo_then_load_and_predict(tmp_path):
    test = own_flax_zoo.main(["--out", str(tmp_path), "--networks", "140", "--max-steps", "30", "--probes", "4",
                              "--epochs", "4"])
    assert -1.0 <= test["kendall_tau"] <= 1.0
    tau = load_and_predict.main(["--run", str(tmp_path / "run"), "--out", str(tmp_path)])
    assert tau == test["kendall_tau"]  # the loaded run predicts exactly what it reported
    assert (tmp_path / "probes.png").stat().st_size > 0
