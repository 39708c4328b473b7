"""One thin script per result table; run each from the repository root as ``python -m experiments.NAME``."""
