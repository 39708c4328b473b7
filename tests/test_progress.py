"""Progress written to a file or a pipe is one line per finished stage, never bar frames; a
terminal gets the bar."""

import io

import pytest
from tqdm.std import tqdm

from probegen_jax.make.chunks import run_chunks
from probegen_jax.methods.probing.probegen import probing_learner
from probegen_jax.methods.probing.sources import coordinate_probe_source
from probegen_jax.progress import StageLine, progress
from probegen_jax.training.loop import TrainConfig, fit
from probegen_jax.training.tasks import classification
from probegen_jax.zoo.formats.common import progress_bar

from test_contract import tiny_zoo


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_one_line_per_stage_and_a_terminal_the_bar():
    log = io.StringIO()
    bar = progress(range(3), desc="training", unit="epoch", file=log)
    assert isinstance(bar, StageLine)
    for _ in bar:
        assert log.getvalue() == ""  # nothing while the stage runs
        bar.set_postfix(loss="0.5000")
    with progress(total=5, desc="reading INRs", unit="net", file=log) as reading:
        reading.update(3)
    assert "\r" not in log.getvalue()
    first, second = log.getvalue().splitlines()
    assert first.startswith("training: 3/3 epochs in ") and first.endswith("s (loss=0.5000)")
    assert second.startswith("reading INRs: stopped at 3/5 nets in ")

    with pytest.raises(OSError):  # a stage ended by an error: the error says it, not a line
        with progress(total=5, desc="writing", file=log) as writing:
            raise OSError("disk full")
    assert len(log.getvalue().splitlines()) == 2 and not writing.closed

    assert isinstance(progress(range(3), desc="training", file=Terminal()), tqdm)
    assert isinstance(progress(range(3), file=log, disable=True), tqdm)  # off: tqdm's pass-through


def test_training_zoo_reading_and_generation_write_lines_to_a_pipe(capsys):
    zoo = tiny_zoo(40)
    splits = {s: (zoo.inputs(zoo.indices(s)), zoo.target("label")[zoo.indices(s)]) for s in ("train", "val")}
    learner = probing_learner(zoo.arch, coordinate_probe_source("probegen", 4), 4, head_hidden=8, head_layers=2)
    fit(learner, classification(4), splits, TrainConfig(epochs=2, batch_size=8), desc="probegen")
    with progress_bar(total=4, desc="reading INRs", progress=True) as bar:
        bar.update(4)
    run_chunks(None, {}, 2, lambda i: {"x": [i]}, desc="chunks")
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["probegen", "reading INRs", "chunks"], lines
    assert lines[0].startswith("probegen: 2/2 epochs in ") and "accuracy=" in lines[0]
    assert lines[1].startswith("reading INRs: 4/4 nets") and lines[2].startswith("chunks: 2/2 chunks")


def test_a_long_stage_in_a_pipe_says_it_is_alive():
    """Written to a pipe, a stage longer than ``every`` seconds writes interim lines while it runs
    (not for its last step, which the end line reports), then its end line."""
    import io

    from probegen_jax.progress import StageLine

    out = io.StringIO()
    stage = StageLine(total=3, desc="fitting INRs", unit="chunk", file=out, every=0.0)
    stage.update()
    stage.update()
    stage.update()
    stage.close()
    lines = out.getvalue().splitlines()
    assert [ln.split(" after ")[0] for ln in lines[:2]] == ["fitting INRs: 1/3 chunks", "fitting INRs: 2/3 chunks"]
    assert len(lines) == 3 and lines[2].startswith("fitting INRs: 3/3 chunks in ")
    quiet = io.StringIO()
    with StageLine(total=2, desc="slow", file=quiet) as s:  # the default: a line a minute at most
        s.update()
        s.update()
    assert len(quiet.getvalue().splitlines()) == 1
