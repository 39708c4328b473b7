"""Training checkpoints: (optimiser state, best params, progress) after each evaluation, so an
interrupted ``fit`` resumes where it stopped with the same final result.

Each checkpoint is a folder ``<directory>/<epoch>`` written by ``io.save_pytree`` (arrays and the
progress record, checksummed, renamed into place when complete); the last ``KEEP`` are kept. A
resume verifies the newest checkpoint and, when it is damaged, falls back to the one before
(with a warning naming both); it never continues from a damaged checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from probegen_jax.errors import CheckpointError, IntegrityError
from probegen_jax.io import check_fields, load_pytree, read_manifest, remove_stale_temps, save_pytree

KEEP = 2  # checkpoints kept: the newest, and one to fall back to if it is damaged
NUMBER = (int, float)
PROGRESS_KEYS = {"config": dict, "epoch": int, "best_epoch": int, "best_val": dict, "best_score": NUMBER,
                 "history": list, "seconds": NUMBER}


class CheckpointManager:
    """Checksummed checkpoints of (state, best params, progress) after each evaluation."""

    def __init__(self, directory: str | os.PathLike, config: Mapping[str, Any]):
        """``config``: the JSON record of the run's settings (``training.loop.config_record``),
        which a checkpoint must have been written with to be restored."""
        self.directory = Path(directory).absolute()
        self.config = json.loads(json.dumps(dict(config)))
        self.directory.mkdir(parents=True, exist_ok=True)

    def steps(self) -> list[int]:
        """Epochs with a checkpoint folder, oldest first; an older (orbax) checkpoint is refused."""
        steps = sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit() and p.is_dir())
        legacy = [s for s in steps if not (self.directory / str(s) / "manifest.json").exists()
                  and (self.directory / str(s) / "_CHECKPOINT_METADATA").exists()]
        if legacy:
            raise CheckpointError(f"{self.directory}: checkpoints written by an older version (without checksums) "
                                  "cannot be resumed; use a fresh checkpoint directory")
        return steps

    def latest(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, epoch: int, state: Any, best: dict, history: list, seconds: float) -> None:
        progress = {"config": self.config, "epoch": epoch, "best_epoch": best["epoch"], "best_val": best["val"],
                    "best_score": float(best["score"]), "history": history, "seconds": seconds}
        remove_stale_temps(self.directory / str(epoch))
        save_pytree(self.directory / str(epoch), {"state": state, "best": best["params"]}, record=progress)
        for old in self.steps()[:-KEEP]:
            shutil.rmtree(self.directory / str(old), ignore_errors=True)

    def restore(self, template: Any):
        """(state, best, history, next epoch, seconds) from the newest good checkpoint."""
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), getattr(a, "dtype", np.asarray(a).dtype)),
                                {"state": template, "best": template.params})
        damaged = []
        for step in reversed(self.steps()):
            path = self.directory / str(step)
            try:
                progress = self._progress(path)
                got = load_pytree(path, abstract)
            except IntegrityError as e:
                damaged.append(f"{e}")
                continue
            if damaged:
                warnings.warn(f"{self.directory}: newer checkpoints are damaged ({'; '.join(damaged)}); resuming "
                              f"from the checkpoint of epoch {step}", stacklevel=2)
            best = {"params": got["best"], "epoch": progress["best_epoch"], "val": progress["best_val"],
                    "score": progress["best_score"]}
            return got["state"], best, progress["history"], progress["epoch"] + 1, progress["seconds"]
        raise CheckpointError(f"{self.directory}: no undamaged checkpoint to resume from ({'; '.join(damaged)}); "
                              "remove the directory to train from the start")

    def _progress(self, path: Path) -> dict[str, Any]:
        """The progress record of checkpoint ``path``, checked for its fields and the run's settings."""
        file = path / "manifest.json"
        progress = read_manifest(path).get("record")
        check_fields(progress, PROGRESS_KEYS, file, CheckpointError)
        if progress["config"] != self.config:
            raise CheckpointError(
                f"{self.directory}: checkpoint was written with settings {progress['config']}, not "
                f"{self.config}; use a fresh checkpoint directory to train with new settings"
            )
        return progress
