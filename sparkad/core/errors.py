"""User-facing errors: one clear line naming the file (or config) and the problem.

The CLI prints ``str(error)`` and exits non-zero instead of showing a traceback.
"""
from __future__ import annotations

import functools
import sys


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


def one_line_errors(fn):
    """Turn SparkadError (and Ctrl-C) into a one-line message and a non-zero exit code. An OSError that
    names a path (an output folder under a file, a full disk, a permission) is a user's problem too:
    one line with the path and the reason."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SparkadError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("interrupted: no output was marked complete", file=sys.stderr)
            sys.exit(130)
        except OSError as e:
            if e.filename is None:
                raise
            print(f"error: {e.filename}: {e.strerror or e}", file=sys.stderr)
            sys.exit(1)

    return wrapper
