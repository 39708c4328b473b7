"""Training checkpoints: (optimiser state, best params, progress) after each evaluation, so an
interrupted ``fit`` resumes where it stopped with the same final result."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax

from probegen_jax.errors import CheckpointError


class CheckpointManager:
    """Orbax checkpoints of (state, best params, progress) after each evaluation."""

    def __init__(self, directory: str | os.PathLike, cfg: Any):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        self.config = json.loads(json.dumps(dataclasses.asdict(cfg)))
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
        )

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def save(self, epoch: int, state: Any, best: dict, history: list, seconds: float) -> None:
        ocp = self._ocp
        progress = {"config": self.config, "epoch": epoch, "best_epoch": best["epoch"], "best_val": best["val"],
                    "best_score": float(best["score"]), "history": history, "seconds": seconds}
        self.manager.save(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), best=ocp.args.StandardSave(best["params"]),
            progress=ocp.args.JsonSave(progress)))
        self.manager.wait_until_finished()

    def restore(self, template: Any):
        ocp = self._ocp
        step = self.latest()
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        try:
            got = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), best=ocp.args.StandardRestore(abstract.params),
                progress=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises many types for mismatched or damaged checkpoints
            raise CheckpointError(
                f"{self.directory}/{step}: cannot resume from this checkpoint ({type(e).__name__}: {e}); "
                "it was written by a different model or is damaged: use a fresh checkpoint directory"
            ) from e
        progress = got["progress"]
        if progress["config"] != self.config:
            raise CheckpointError(
                f"{self.directory}: checkpoint was written with settings {progress['config']}, not "
                f"{self.config}; use a fresh checkpoint directory to train with new settings"
            )
        best = {"params": got["best"], "epoch": progress["best_epoch"], "val": progress["best_val"],
                "score": progress["best_score"]}
        return got["state"], best, progress["history"], progress["epoch"] + 1, progress["seconds"]
