"""The one training loop, tasks, metrics and learners (pure ``init``/``apply`` pairs)."""
