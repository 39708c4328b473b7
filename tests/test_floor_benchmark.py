"""benchmarks/floor.py at toy sizes: what its rows count, and that every registered method has one."""

import dataclasses
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import floor  # noqa: E402

from probegen_jax.flops import xla_cost  # noqa: E402
from probegen_jax.methods.registry import methods  # noqa: E402

# rates at sizes where the calls' overhead does not count, everything else at toy sizes
TOY = floor.Sizes(matmul=1024, sine=1 << 20, siren_nets=64, siren_probes=16, cnn_nets=4, cnn_probes=4, image=8,
                  epoch_nets=16, inr_chunk=8, inr_steps=20, cnn_chunk=4, cnn_pool=64, batch=4, paper_batch=2,
                  budget_s=0.05)


@pytest.fixture(scope="module")
def rates():
    return floor.measure_rates(TOY)


def test_matmul_is_counted_as_2mnk_and_defines_the_rate(rates):
    measured, rows = rates
    matmul = rows[0]
    assert matmul.cost.flops == 2 * TOY.matmul**3 and matmul.analytic_ratio == 1.0
    assert measured.matmul == pytest.approx(matmul.cost.flops / matmul.seconds)
    assert matmul.share(measured) == pytest.approx(1.0)
    m, k, n = 24, 40, 56
    rectangular = floor.calibration_row("mkn", "", jnp.matmul, (jnp.ones((m, k)), jnp.ones((k, n))), 0.01,
                                        analytic=2 * m * n * k)
    assert rectangular.analytic_ratio == 1.0
    # XLA's sine is a transcendental each; the library's is a polynomial of plain FLOPs
    assert rows[1].cost.transcendentals == TOY.sine and rows[1].cost.flops == 0
    assert rows[2].cost.transcendentals == 0 and rows[2].cost.flops > 10 * TOY.sine
    assert measured.sine == max(measured.xla_sine, measured.fast_sine) > 0


def test_rows_are_within_the_floor(rates):
    measured, _ = rates
    siren, cnn = floor.probing_rows(TOY)
    for row in (siren, cnn):
        assert 0 < row.share(measured) <= 1.5, row
        assert row.memory_bytes > 0 and row.compile_seconds > 0
    assert cnn.analytic_ratio is None and cnn.cost.transcendentals == 0  # ReLU CNNs: no analytic count, no sines
    # the analytic count (a sine is one operation) equals XLA's count of the exact-sine SIRENs
    assert siren.analytic_ratio == pytest.approx(1.0, abs=1e-3)
    assert siren.cost.transcendentals == TOY.siren_nets * TOY.siren_probes * 64


def test_an_inr_fitting_step_is_one_step_of_every_inr():
    [row] = floor.inr_fit_rows(TOY)
    assert math.isfinite(row.seconds) and row.memory_bytes is None  # a difference of times: noise at toy size
    pixels = TOY.inr_chunk * TOY.image**2
    # every pixel's forward and backward matmuls, and a sine and its cosine per hidden unit
    assert row.cost.flops > 3 * 2 * (2 * 32 + 32 * 32 + 32 * 1) * pixels
    assert row.cost.transcendentals >= 2 * 64 * pixels


def test_every_registered_method_has_a_row():
    both = floor.method_cases(dataclasses.replace(TOY, presets=("paper", "small")))
    assert {case.method for case in both} == set(methods())
    graph = {"ng_gnn", "ng_t", "scalegmn", "nfn_hnp", "nft", "nfn"} & set(methods())
    for name in graph:
        assert {c.preset for c in both if c.method == name} == {"paper", "small"}
    assert all(c.batch == TOY.paper_batch for c in both if c.preset == "paper")
    small = floor.method_cases(dataclasses.replace(TOY, presets=("small",)))
    assert {case.method for case in small} == set(methods())
    assert {c.method for c in small if c.preset == "paper"} == set()


@pytest.mark.parametrize("name", ["flat", "statnn_gbt"])
def test_method_rows_count_a_training_step(name, rates):
    measured, _ = rates
    [case] = floor.method_cases(TOY, [name])
    row = floor.method_row(case, TOY)
    assert 0 < row.share(measured) <= 1.5
    assert row.cost.flops > 0


def test_a_training_step_is_counted_once():
    """The one-step epoch counts the batch's gradient once, plus Adam's few FLOPs per parameter."""
    training = floor.method_training("vanilla", {"num_probes": 4}, floor.case_zoo("inr", 8, 8))
    row = floor.epoch_row("t", "", "", training, 4, 1, 0.01)
    params = training.init(jax.random.key(0))
    batch = jax.tree.map(lambda a: jnp.asarray(a[:4]), training.data)
    gradient = xla_cost(jax.value_and_grad(training.objective), params, batch, jax.random.key(0)).flops
    size = sum(a.size for a in jax.tree.leaves(params))
    assert gradient < row.cost.flops < gradient + 20 * size


def test_command_line_writes_the_table(tmp_path, capsys):
    out = tmp_path / "floor.md"
    floor.main(["--only", "rates", "--quick", "--budget", "0.01", "--out", str(out)])
    text = out.read_text()
    assert text.strip() == capsys.readouterr().out.strip()
    assert "| computation | setting | FLOPs |" in text and "share of floor" in text
    assert text.count("| matmul") == 1 and "cores busy" in text
    with pytest.raises(SystemExit):
        floor.main(["--only", "nothing"])
