"""Zoo generation: INR fits, small-CNN sweeps, heterogeneous CNNs and model trees, each trained
by this library on real images and saved chunk by chunk so interrupted work resumes."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any


def finished_zoo(out: str | os.PathLike, config: Any) -> Any | None:
    """The zoo already made at ``out`` with exactly ``config`` (a generator's config dataclass),
    said on stderr; None where ``out`` holds no zoo. A zoo made there with other settings is
    refused (``ZooFormatError`` naming the settings that differ)."""
    from probegen_jax.errors import ZooFormatError
    from probegen_jax.zoo.hetero import is_hetero_zoo, load_any_zoo
    from probegen_jax.zoo.store import read_zoo_meta

    out = Path(out)
    if not out.exists():
        return None
    hetero = load_any_zoo(out) if is_hetero_zoo(out) else None  # its record is read with its buckets
    made = (hetero.meta if hetero is not None else read_zoo_meta(out)["meta"]).get("config", {})
    wanted = json.loads(json.dumps(dataclasses.asdict(config)))
    differ = sorted(k for k in {*made, *wanted} if made.get(k) != wanted.get(k))
    if differ:
        raise ZooFormatError(f"{out}: a zoo made with other settings is here ("
                             + "; ".join(f"{k}: {made.get(k)!r} there, {wanted.get(k)!r} now" for k in differ)
                             + "); use another --out, or --overwrite to replace it")
    print(f"the zoo at {out} is already made with these settings; using it (--overwrite remakes it)",
          file=sys.stderr)
    return hetero if hetero is not None else load_any_zoo(out)
