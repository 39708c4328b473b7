"""The persistent compilation cache: on by default in the user's cache folder, off when asked,
never over a cache folder the process chose itself; a second process loads what the first compiled."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, os, sys
import probegen_jax as pj
imported_jax = "jax" in sys.modules
import jax, jax.numpy as jnp
if os.environ.get("MIN0"):
    pj.enable_compilation_cache(None, min_compile_seconds=0)
jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((8, 8))).block_until_ready()
print(json.dumps({"imported_jax": imported_jax, "dir": jax.config.jax_compilation_cache_dir,
                  "min": jax.config.jax_persistent_cache_min_compile_time_secs}))
"""


def run(tmp_path: Path, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION", "JAX_PERSISTENT", "PROBEGEN_JAX"))}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env={**clean, "XDG_CACHE_HOME": str(tmp_path), **env},
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def entries(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file()}


def test_on_by_default_without_importing_jax_and_reused_by_the_next_process(tmp_path):
    first = run(tmp_path, MIN0="1")
    folder = Path(first["dir"])
    assert not first["imported_jax"]
    assert folder.is_relative_to(tmp_path / "probegen_jax" / "xla") and first["min"] == 0
    written = entries(folder)
    assert written, "the compiled program was not written to the cache"
    run(tmp_path, MIN0="1")
    assert entries(folder) == written  # the second process loaded it: nothing new was compiled
    default = run(tmp_path)
    assert default["dir"] == first["dir"] and default["min"] > 0  # small programs are not cached by default


def test_switched_off_or_chosen_elsewhere(tmp_path):
    assert run(tmp_path, PROBEGEN_JAX_COMPILATION_CACHE="0")["dir"] is None
    mine = tmp_path / "mine"
    assert run(tmp_path, JAX_COMPILATION_CACHE_DIR=str(mine))["dir"] == str(mine)
    assert not (tmp_path / "probegen_jax").exists()
    assert run(tmp_path, PROBEGEN_JAX_CACHE_DIR=str(tmp_path / "ours"))["dir"] == str(tmp_path / "ours")


def test_an_unwritable_cache_folder_turns_the_cache_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert run(tmp_path, PROBEGEN_JAX_CACHE_DIR=str(blocker / "xla"))["dir"] is None
