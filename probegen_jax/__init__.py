"""probegen_jax: weight-space learning in JAX (ProbeGen, ProbeX, SANE and their baselines)."""

__version__ = "0.1.0"
