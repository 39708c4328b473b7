"""Worker for ``benchmarks/probegen_official.py``: runs the official ProbeGen ``main.py``
(jonkahana/ProbeGen) unchanged, in its own Python environment, and reports its epoch times.

Not meant to be run by hand: the driver starts it as
``PY benchmarks/probegen_official_worker.py CHECKOUT [main.py arguments...]`` in a folder that holds
``experiments/inr_classification/dataset/mnist_splits.json`` (main.py reads its splits from there,
relative to the working folder). The epoch loop is timed by standing a timing generator in for
``tqdm.tqdm`` (main.py wraps its epoch range in it); nothing else of the script is touched. After
main.py returns, its own ``evaluate`` scores the last weights on val and test (main.py evaluates
every ``--eval_every`` steps only and keeps no best-validation weights). One JSON line on stdout:
``{"end": wall clock when main.py returned, "epochs": [s, ...], "val_acc", "test_acc", "logged": [...]}``.

Needs torch, numpy, pandas, scipy, scikit-learn, tqdm. ProbeGen.py imports torchvision for a
probe source not used here; where it is missing (or does not load beside a CPU torch) an empty
module stands in for it.
"""

from __future__ import annotations

import json
import runpy
import sys
import time
import types
from pathlib import Path


def main() -> None:
    code, args = Path(sys.argv[1]), sys.argv[2:]
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        sys.modules["torchvision"] = types.ModuleType("torchvision")
    import tqdm

    stamps: list[float] = []

    def timed(iterable, *_, **__):
        for item in iterable:
            stamps.append(time.time())
            yield item
        stamps.append(time.time())

    tqdm.tqdm = timed
    sys.path.insert(0, str(code))
    sys.argv = [str(code / "main.py"), *args]
    run = runpy.run_path(str(code / "main.py"), run_name="__main__")
    end = time.time()
    scores = {f"{split}_acc": run["evaluate"](run["model"], run[f"{split}_loader"], run["device"])["avg_acc"]
              for split in ("val", "test")}
    logged = run["logging"][["global_step", "val_acc", "test_acc"]].to_dict("records")
    print(json.dumps({"end": end, "epochs": [b - a for a, b in zip(stamps, stamps[1:])], **scores,
                      "logged": logged}, default=float), flush=True)


if __name__ == "__main__":
    main()
