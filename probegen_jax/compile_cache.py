"""A persistent XLA compilation cache, on by default.

A run compiles its epoch, its evaluation and its probing once per process; with the cache a later
process with the same programs loads them from disk instead. JAX keys every entry by the
compiled program itself (its HLO, compile options, jax/jaxlib version and device), so entries
written by another version of this library or of JAX are never taken for this one's: a changed
computation is a new key. CPU programs are compiled for the processor's instruction set, which
the key does not hold, so each kind of processor gets a folder of its own (a home folder shared
by the nodes of a cluster never hands one node's code to another). The folder is
``$PROBEGEN_JAX_CACHE_DIR`` or, by default, ``$XDG_CACHE_HOME/probegen_jax/xla/<processor>``
(``~/.cache/probegen_jax/xla/...``).

``import probegen_jax`` turns it on unless the process already chose a cache folder of its own
(``jax_compilation_cache_dir`` or ``JAX_COMPILATION_CACHE_DIR``) or sets
``PROBEGEN_JAX_COMPILATION_CACHE=0``. It touches JAX's configuration only, never imports JAX.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from pathlib import Path

SWITCH = "PROBEGEN_JAX_COMPILATION_CACHE"  # "0" turns the default cache off
DIR_VARIABLE = "PROBEGEN_JAX_CACHE_DIR"
MIN_COMPILE_SECONDS = 0.3  # programs that compile faster than this are not worth a disk entry


def processor_key() -> str:
    """A short name for this processor's kind and instruction set (its model and feature flags)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    described = [ln for ln in lines if ln.split(":")[0].strip() in ("model name", "flags", "Features")][:2]
    digest = hashlib.sha256("\n".join([platform.machine(), *described]).encode()).hexdigest()[:12]
    return f"{platform.machine()}-{digest}"


def default_cache_dir() -> Path:
    """Where the cache lives unless ``$PROBEGEN_JAX_CACHE_DIR`` says otherwise."""
    if os.environ.get(DIR_VARIABLE):
        return Path(os.environ[DIR_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "probegen_jax" / "xla" / processor_key()


def _chosen_elsewhere() -> bool:
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return True
    jax = sys.modules.get("jax")
    return jax is not None and bool(jax.config.jax_compilation_cache_dir)


def enable_compilation_cache(path: str | os.PathLike | None = None, *,
                             min_compile_seconds: float = MIN_COMPILE_SECONDS) -> Path | None:
    """Keep compiled programs in ``path`` (default :func:`default_cache_dir`); returns the folder,
    or ``None`` where it cannot be created (a read-only home: nothing is cached, nothing fails).

    Before JAX is imported this sets JAX's own environment variables, so importing this library
    does not import JAX; afterwards it updates ``jax.config``.
    """
    folder = Path(path) if path is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    settings = {"jax_compilation_cache_dir": str(folder),
                "jax_persistent_cache_min_compile_time_secs": min_compile_seconds}
    jax = sys.modules.get("jax")
    for name, value in settings.items():
        if jax is None:
            os.environ[name.upper()] = str(value)
        else:
            jax.config.update(name, value)
    return folder


def enable_default_cache() -> Path | None:
    """What ``import probegen_jax`` does: the default cache, unless switched off or chosen elsewhere."""
    if os.environ.get(SWITCH, "1") == "0" or _chosen_elsewhere():
        return None
    return enable_compilation_cache()
