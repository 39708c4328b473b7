import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# One compilation cache for the whole test run, shared by the xdist workers (they inherit this
# environment): the many tests that compile the same small programs compile them once.
os.environ.setdefault("PROBEGEN_JAX_TEST_XLA_CACHE", tempfile.mkdtemp(prefix="probegen-jax-xla-cache-"))

import fcntl  # noqa: E402
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
    arrays = {f"params/{k}": np.asarray(v) for k, v in flatten_params(zoo.params).items()}
    arrays.update({f"targets/{k}": v for k, v in zoo.targets.items()})
    arrays.update({f"splits/{k}": v for k, v in zoo.splits.items()})
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _zoo_from_npz(path: Path, arch) -> Zoo:
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}

    def part(prefix):
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

    return Zoo(arch=arch, params=arch.unflatten(part("params/")), targets=part("targets/"),
               splits=part("splits/"), meta={"dataset": "digits", "num_classes": 10})


@pytest.fixture(scope="session")
def digits_zoo(tmp_path_factory) -> Zoo:
    """The digits INR zoo, fitted once per test run and shared by the xdist workers.

    The first worker to get here fits it and leaves a plain ``.npz`` copy (not the library's own
    store, which is under test) in the run's shared temporary folder; the others read that.
    """
    from probegen_jax.archs import make_arch

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return make_inr_zoo(DIGITS_CFG, progress=False)
    shared = tmp_path_factory.getbasetemp().parent
    cache = shared / "digits_zoo.npz"
    with open(shared / "digits_zoo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if cache.exists():
                arch = make_arch("siren", in_dim=2, hidden=DIGITS_CFG.hidden, depth=DIGITS_CFG.depth,
                                 out_dim=1, w0=DIGITS_CFG.w0)
                return _zoo_from_npz(cache, arch)
            zoo = make_inr_zoo(DIGITS_CFG, progress=False)
            _zoo_to_npz(zoo, cache)
            return zoo
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def eight_devices():
    devices = jax.devices()
    assert len(devices) == 8, f"conftest asks XLA for 8 CPU devices, got {devices}"
    return devices
