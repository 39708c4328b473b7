"""A probing method's settings (``ProbingSpec``), saved as a JSON spec and rebuilt for evaluation."""

from __future__ import annotations

import dataclasses

from probegen_jax.archs import Arch
from probegen_jax.training.learner import Learner
from probegen_jax.methods.probing.image_sources import image_probe_source
from probegen_jax.methods.probing.probegen import probing_learner
from probegen_jax.methods.probing.sources import ProbeSource, coordinate_probe_source


@dataclasses.dataclass(frozen=True)
class ProbingSpec:
    """A probing method: probe source kind, number of probes, and the head's size."""

    source: str = "probegen"  # probegen | vanilla | synthetic | nonlinear (images also: probegen5)
    num_probes: int = 128
    head_hidden: int = 256
    head_layers: int = 6
    probe_seed: int = 0  # for synthetic probes
    response: str = "raw"  # raw | softmax: what the head reads of each network's outputs (RESPONSES)

    def make_source(self, arch: Arch) -> ProbeSource:
        if len(arch.input_shape) == 1:
            return coordinate_probe_source(self.source, self.num_probes, arch.input_shape[0], seed=self.probe_seed)
        if len(arch.input_shape) == 3:
            return image_probe_source(self.source, self.num_probes, arch.input_shape, seed=self.probe_seed)
        raise NotImplementedError(f"no probe sources for inputs of shape {arch.input_shape} yet")

    def make_learner(self, arch: Arch, num_outputs: int) -> tuple[Learner, ProbeSource]:
        source = self.make_source(arch)
        learner = probing_learner(arch, source, num_outputs, head_hidden=self.head_hidden,
                                  head_layers=self.head_layers, response=self.response)
        return learner, source
