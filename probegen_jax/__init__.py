"""probegen_jax: weight-space learning in JAX (ProbeGen, ProbeX, SANE, graph metanetworks and
their baselines), vmapped over whole model zoos.

    import probegen_jax as pj
    zoo = pj.load_zoo("zoos/digits_inr")
    run = pj.train("probegen", zoo, {"num_probes": 64})
    pj.evaluate(run, zoo, "test"); pj.predict(run, zoo)

Names are imported on first use, so ``import probegen_jax`` is instant and loads JAX only when a
name that needs it is touched.
"""

import importlib
from typing import Any

from probegen_jax.compile_cache import enable_compilation_cache, enable_default_cache

__version__ = "0.2.0"

enable_default_cache()  # a persistent compilation cache unless this process chose its own

_NAMES = {
    # zoos
    "Zoo": "probegen_jax.zoo.zoo", "HeteroZoo": "probegen_jax.zoo.hetero", "task_defaults": "probegen_jax.zoo.zoo",
    "at_epoch": "probegen_jax.zoo.zoo", "save_zoo": "probegen_jax.zoo.store",
    "save_hetero_zoo": "probegen_jax.zoo.hetero", "import_zoo": "probegen_jax.zoo.formats",
    "export_zoo": "probegen_jax.zoo.formats",
    # architectures
    "Arch": "probegen_jax.archs", "make_arch": "probegen_jax.archs", "arch_from_function": "probegen_jax.archs",
    "arch_from_linen": "probegen_jax.archs", "arch_from_nnx": "probegen_jax.archs",
    # text: all-MiniLM-L6-v2 sentence embeddings
    "embed_text": "probegen_jax.archs.minilm",
    # probing
    "probe": "probegen_jax.methods.probing.probe", "probe_zoo": "probegen_jax.methods.probing.probe",
    "learned_probes": "probegen_jax.methods.probing.method",
    # methods and runs
    "Method": "probegen_jax.methods.registry", "methods": "probegen_jax.methods.registry",
    "get_method": "probegen_jax.methods.registry", "register": "probegen_jax.methods.registry",
    "train": "probegen_jax.methods.contract", "evaluate": "probegen_jax.methods.contract",
    "predict": "probegen_jax.methods.contract", "Run": "probegen_jax.methods.run",
    "save_run": "probegen_jax.methods.run", "load_run": "probegen_jax.methods.run",
    # training
    "fit": "probegen_jax.training.loop", "TrainConfig": "probegen_jax.training.loop",
    "Learner": "probegen_jax.training.learner", "task_for": "probegen_jax.training.tasks",
    "recipe_config": "probegen_jax.training.recipes", "recipe_names": "probegen_jax.training.recipes",
    "WeightAugment": "probegen_jax.weightspace.augment",
    # several devices and processes
    "zoo_mesh": "probegen_jax.parallel", "initialize_distributed": "probegen_jax.parallel",
}
_RENAMED = {"load_zoo": ("probegen_jax.zoo.hetero", "load_any_zoo")}  # one loader for every saved zoo


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        module, attr = _RENAMED[name]
        return getattr(importlib.import_module(module), attr)
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_NAMES[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES, *_RENAMED])


__all__ = sorted([*_NAMES, *_RENAMED, "__version__", "enable_compilation_cache"])
