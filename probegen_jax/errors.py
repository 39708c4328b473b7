"""Errors raised on bad input. Every message names the file or tensor and what was expected."""

from __future__ import annotations


class ProbegenError(Exception):
    """Base class of every error this library raises on bad input."""


class DataFileError(ProbegenError, FileNotFoundError):
    """A dataset file is missing or corrupt."""


class ShapeMismatchError(ProbegenError, ValueError):
    """A tensor's shape does not match what an architecture or probe source expects."""


class NonFiniteWeightsError(ProbegenError, ValueError):
    """A zoo holds NaN or inf weights."""


class ZooFormatError(ProbegenError, ValueError):
    """A saved zoo or checkpoint is missing, corrupt or written by an incompatible version."""


class MissingSplitError(ProbegenError, KeyError):
    """A split (train/val/test) that was asked for does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class UnknownNameError(ProbegenError, KeyError):
    """A registry lookup (architecture, dataset, probe source, method) failed."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CheckpointError(ProbegenError, ValueError):
    """A training checkpoint is corrupt or belongs to a different run configuration."""


class IntegrityError(ZooFormatError, CheckpointError):
    """A file the library wrote no longer matches the checksum recorded when it was written."""


class MissingDependencyError(ProbegenError, ImportError):
    """An optional package that a feature needs is not installed."""


class NoMatchingTreeError(ProbegenError, ValueError):
    """A model is farther from every model tree's centroid than that tree's radius."""
