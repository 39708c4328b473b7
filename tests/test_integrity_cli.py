"""User-caused errors on the command line are one clean line (no traceback, no orbax noise):
damaged files, a full disk, odd paths; and an export killed with SIGKILL leaves nothing that
imports."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probegen_jax import io
from probegen_jax.cli import main
from probegen_jax.errors import ZooFormatError
from probegen_jax.zoo import load_zoo, save_zoo
from probegen_jax.zoo.formats import import_zoo

from test_integrity import tiny_zoo, zoos_equal

torch = pytest.importorskip("torch")


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def assert_one_clean_line(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]  # (progress bars aside)
    assert len(lines) == 1 and lines[0].startswith("probegen-jax: error: "), err
    assert "Traceback" not in err and "asyncio" not in err and "tensorstore" not in err.lower(), err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def test_zoo_info_of_a_bracket_path_and_of_a_damaged_zoo(tmp_path, capsys):
    folder = tmp_path / "zoos [v2]" / "a]b[ ü"
    save_zoo(tiny_zoo(), folder)
    code, err = run_cli(capsys, "zoo", "info", str(folder))
    assert code == 0 and not err
    data = folder / "arrays.bin"
    data.write_bytes(data.read_bytes()[:-3])
    code, err = run_cli(capsys, "zoo", "info", str(folder))
    assert code == 2
    assert_one_clean_line(err, str(data), "damaged")
    with pytest.raises(ZooFormatError):
        main(["--debug", "zoo", "info", str(folder)])


def test_a_zoo_of_format_version_1_loads_with_a_one_line_warning(tmp_path, capsys):
    from test_zoo_store import _save_format_1

    _save_format_1(tiny_zoo(), tmp_path / "old zoo")
    assert main(["zoo", "info", str(tmp_path / "old zoo")]) == 0
    captured = capsys.readouterr()
    assert "zoo of" in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("probegen-jax: warning: ") and "format version 1" in lines[0], lines


def test_full_disk_during_export_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    save_zoo(tiny_zoo(), tmp_path / "zoo")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.os, "fsync", full)
    code, err = run_cli(capsys, "zoo", "export", "dwsnets", str(tmp_path / "zoo"), "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_clean_line(err, str(tmp_path), "no space left on the device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo"]


def test_damaged_torch_file_is_not_answered_with_trust_pickle(tmp_path, capsys):
    from probegen_jax.zoo.formats import export_zoo

    out = export_zoo("dwsnets", tiny_zoo(), tmp_path / "inrs", progress=False)
    victim = sorted(out.rglob("*.pth"))[0]
    data = bytearray(victim.read_bytes())
    data[:4] = b"XXXX"  # not a zip file any more: torch.load's own error, no class named
    victim.write_bytes(bytes(data))
    code, err = run_cli(capsys, "zoo", "import", "dwsnets", str(out), "--out", str(tmp_path / "saved"))
    assert code == 2
    assert_one_clean_line(err, str(victim))
    assert "trust" not in err


def test_unreadable_file_says_permission_denied(tmp_path, capsys, monkeypatch):
    save_zoo(tiny_zoo(), tmp_path / "zoo")
    if os.geteuid() == 0:  # root reads files whatever their mode: refuse as the kernel would for others
        real = Path.read_bytes

        def read_bytes(path):
            if path.name == "manifest.json":
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real(path)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)
    else:
        (tmp_path / "zoo" / "manifest.json").chmod(0)
    code, err = run_cli(capsys, "zoo", "info", str(tmp_path / "zoo"))
    assert code == 2
    assert_one_clean_line(err, "manifest.json", "permission denied")


KILLED_EXPORT = """
import sys
from probegen_jax.zoo import load_zoo
from probegen_jax.zoo.formats import export_zoo
export_zoo("dwsnets", load_zoo(sys.argv[1]), sys.argv[2], progress=False)
"""


def test_export_killed_with_sigkill_leaves_nothing_that_imports(tmp_path):
    zoo = tiny_zoo(n=3000)
    save_zoo(zoo, tmp_path / "zoo")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, str(tmp_path / "zoo"), str(out)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(".out.tmp-") and any(p.rglob("*.pth")) for p in tmp_path.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, "the export ended before it could be killed"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    temp = next(p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-"))
    assert not out.exists()
    with pytest.raises(ZooFormatError, match="did not complete"):
        import_zoo("dwsnets", temp, progress=False)
    from probegen_jax.zoo.formats import export_zoo

    small = tiny_zoo()
    with pytest.warns(UserWarning, match="killed"):
        export_zoo("dwsnets", small, out, progress=False)
    assert not temp.exists()
    back = import_zoo("dwsnets", out, progress=False)
    assert len(back) == len(small) and (back.targets["label"] == small.targets["label"]).all()
    assert zoos_equal(load_zoo(tmp_path / "zoo"), zoo)
