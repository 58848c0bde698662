"""User-facing errors: one clear line naming the file (or config) and the problem.

The CLI prints ``str(error)`` and exits non-zero instead of showing a traceback.
"""
from __future__ import annotations


class SparkadError(Exception):
    """Base class of every error sparkad reports to a user as one line."""


class ConfigError(SparkadError):
    """A configuration file or value is invalid."""


class InputFileError(SparkadError):
    """An input file cannot be used; carries the file and the reason separately."""

    def __init__(self, path: str, reason: str, entries: int | None = None):
        self.path = str(path)
        self.reason = reason
        self.entries = entries
        super().__init__(f"{self.path}: {reason}")


class FeatureUnavailableError(SparkadError):
    """The requested features cannot be computed from this input format."""
