import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# One compilation cache for the whole test run, shared by the xdist workers (they inherit this
# environment): the many tests that compile the same small programs compile them once.
os.environ.setdefault("PROBEGEN_JAX_TEST_XLA_CACHE", tempfile.mkdtemp(prefix="probegen-jax-xla-cache-"))
# and the processes the tests start use it too, never the user's own cache
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ["PROBEGEN_JAX_TEST_XLA_CACHE"])

import fcntl  # noqa: E402
import json  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["PROBEGEN_JAX_TEST_XLA_CACHE"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

from probegen_jax.archs import flatten_params  # noqa: E402
from probegen_jax.zoo import Zoo  # noqa: E402
from probegen_jax.make.inr import INRZooConfig, make_inr_zoo  # noqa: E402

# The one small INR zoo most tests share: SIRENs fitted to scikit-learn digits.
DIGITS_CFG = INRZooConfig(
    dataset="digits", num_train=600, num_val=150, num_test=200, steps=200, chunk_size=256, seed=0
)


@pytest.fixture(scope="session")
def digits_cfg() -> INRZooConfig:
    return DIGITS_CFG


def _zoo_to_npz(zoo: Zoo, path: Path) -> None:
    """A plain ``.npz`` copy of ``zoo`` (not the library's own store, which is under test), with its
    architecture spec and meta in JSON beside it."""
    arrays = {f"params/{k}": np.asarray(v) for k, v in flatten_params(zoo.params).items()}
    arrays.update({f"targets/{k}": v for k, v in zoo.targets.items()})
    arrays.update({f"splits/{k}": v for k, v in zoo.splits.items()})
    path.with_suffix(".json").write_text(json.dumps({"arch": zoo.arch.spec(), "meta": dict(zoo.meta)}))
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _zoo_from_npz(path: Path) -> Zoo:
    from probegen_jax.archs import arch_from_spec

    record = json.loads(path.with_suffix(".json").read_text())
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}

    def part(prefix):
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

    arch = arch_from_spec(record["arch"])
    return Zoo(arch=arch, params=arch.unflatten(part("params/")), targets=part("targets/"),
               splits=part("splits/"), meta=record["meta"])


def zoo_shared_by_workers(tmp_path_factory, name: str, make: Callable[[], Zoo]) -> Zoo:
    """``make()``, called once per test run: the first xdist worker to get here makes the zoo and
    leaves a copy in the run's shared temporary folder; the others read that (bit for bit)."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return make()
    shared = tmp_path_factory.getbasetemp().parent
    cache = shared / f"{name}.npz"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if cache.exists():
                return _zoo_from_npz(cache)
            zoo = make()
            _zoo_to_npz(zoo, cache)
            return zoo
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def digits_zoo(tmp_path_factory) -> Zoo:
    """The digits INR zoo, fitted once per test run and shared by the xdist workers."""
    return zoo_shared_by_workers(tmp_path_factory, "digits_zoo", lambda: make_inr_zoo(DIGITS_CFG, progress=False))


@pytest.fixture(scope="session")
def eight_devices():
    devices = jax.devices()
    assert len(devices) == 8, f"conftest asks XLA for 8 CPU devices, got {devices}"
    return devices
