"""Short runnable scripts to copy from; run each from the repository root as ``python -m examples.NAME``."""
