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


class ZooKindError(UnknownNameError, ValueError):
    """A zoo of a kind the method does not read (several architectures for a method of one).
    An ``UnknownNameError`` too, which it was raised as before."""


class CheckpointError(ProbegenError, ValueError):
    """A training checkpoint is corrupt or belongs to a different run configuration."""


class IntegrityError(ZooFormatError, CheckpointError):
    """A file the library wrote no longer matches the checksum recorded when it was written."""


class MissingDependencyError(ProbegenError, ImportError):
    """An optional package that a feature needs is not installed."""


class NoMatchingTreeError(ProbegenError, ValueError):
    """A model is farther from every model tree's centroid than that tree's radius."""


def user_error_message(error: BaseException) -> str | None:
    """The one-line message for an error caused by the user's files, disk or input (the library's
    own errors, refused overwrites, bad values, a full disk, missing permissions), or None for
    an error that is a bug and deserves its traceback."""
    import errno

    if isinstance(error, (ProbegenError, FileExistsError)):
        return str(error)
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        hints = {errno.ENOSPC: "no space left on the device: free some space or write elsewhere",
                 errno.EDQUOT: "disk quota exceeded: free some space or write elsewhere",
                 errno.EACCES: "permission denied: check the permissions or use another path",
                 errno.EPERM: "operation not permitted: check the permissions or use another path",
                 errno.EROFS: "read-only file system: write elsewhere",
                 errno.ENOENT: "no such file or directory: check the path"}
        return where + hints.get(error.errno, error.strerror or str(error))
    if isinstance(error, ValueError):
        return str(error)
    return None
