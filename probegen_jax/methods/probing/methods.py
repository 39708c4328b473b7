"""The former name of ``probing.spec``, kept so that code importing ``ProbingSpec`` from here runs."""

from probegen_jax.methods.probing.spec import ProbingSpec

__all__ = ["ProbingSpec"]
