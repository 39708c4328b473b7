"""Probing: probe sources, the vmapped probe() operation, heads and ProbeGen."""

from probegen_jax.methods.probing.probe import probe, probe_zoo

__all__ = ["probe", "probe_zoo"]
