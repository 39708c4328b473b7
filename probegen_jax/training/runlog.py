"""A log of an experiment's finished runs, so that an interrupted experiment resumes and seeds run in
separate processes can be gathered into one table."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

from probegen_jax.errors import CheckpointError, DataFileError
from probegen_jax.io import write_json

RUNS_FILE = "runs.json"


def run_key(*parts: Hashable) -> str:
    """The JSON key of one run, e.g. ``run_key(zoo_path, source, k, seed)``."""
    return "|".join(str(p) for p in parts)


def config_settings(config: Any, *varying: str) -> dict[str, Any]:
    """A dataclass config (e.g. ``TrainConfig``) as log settings, without the fields that vary from run
    to run and so belong in each run's key (``"seed"``, ...)."""
    from probegen_jax.training.loop import config_record  # a TrainConfig's recipe settings only where set

    return {k: v for k, v in config_record(config).items() if k not in varying}


def add_run_arguments(parser: argparse.ArgumentParser, default_out: str) -> None:
    """``--seeds``, ``--out`` and ``--runs-from``: the arguments of an experiment that logs its runs."""
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default=default_out,
                        help="output folder; runs finished there with the same settings are not trained again")
    parser.add_argument("--runs-from", nargs="*", default=[], metavar="DIR",
                        help="output folders of runs made elsewhere with the same settings (e.g. one seed per process)")


class RunLog:
    """Finished runs of one experiment's settings, saved to ``<folder>/runs.json`` as each one ends.

    ``settings`` (JSON-able) is everything shared by the runs that decides their results, such as the
    training config; each run is named by a key (``run_key``) holding what varies (zoo, method,
    seed). A log opened on a folder whose runs were made with other settings raises
    ``CheckpointError`` naming the settings that differ, instead of mixing the two.
    """

    def __init__(self, folder: str | os.PathLike, settings: Mapping[str, Any]):
        self.path = Path(folder) / RUNS_FILE
        self.settings = json.loads(json.dumps(dict(settings)))  # as it reads back from the file
        self.runs: dict[str, dict] = self._read(self.path) if self.path.exists() else {}

    def _read(self, path: Path) -> dict[str, dict]:
        try:
            saved = json.loads(path.read_text())
            settings, runs = saved["settings"], saved["runs"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path}: not a run log ({type(e).__name__}: {e}); move it away to "
                                  "start afresh") from e
        differ = sorted(k for k in {*settings, *self.settings} if settings.get(k) != self.settings.get(k))
        if differ:
            raise CheckpointError(f"{path}: runs made with other settings "
                                  f"({', '.join(f'{k}: {settings.get(k)!r} there, {self.settings.get(k)!r} now' for k in differ)}); "
                                  "use another output folder or move the file away")
        return dict(runs)

    def get(self, key: str) -> dict | None:
        """The row of a finished run, or None."""
        return self.runs.get(key)

    def record(self, key: str, row: Mapping[str, Any]) -> None:
        """Add a finished run and save the log (atomically: a crash leaves the previous log)."""
        self.runs[key] = dict(row)
        self._save()

    def gather(self, folders: Iterable[str | os.PathLike]) -> int:
        """Add the runs logged in other folders with the same settings (seeds run in separate
        processes); returns how many were new. Saves the log when any were."""
        new = 0
        for folder in folders:
            path = Path(folder) / RUNS_FILE
            if not path.is_file():
                raise DataFileError(f"{path}: no run log here (is {folder} an experiment's output folder?)")
            for key, row in self._read(path).items():
                new += key not in self.runs
                self.runs.setdefault(key, row)
        if new:
            self._save()
        return new

    def _save(self) -> None:
        write_json(self.path, {"settings": self.settings, "runs": self.runs})
