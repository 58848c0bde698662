"""User-facing errors: one clear line naming the file (or config) and the problem.

The CLI prints ``str(error)`` and exits non-zero instead of showing a traceback.
"""
from __future__ import annotations

import functools
import re
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


_EXC_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception))(?:: (.*))?$")


def task_error(exc: BaseException) -> str:
    """The innermost exception line of a failed task: Spark wraps a worker's exception (with its
    Python traceback as text) in PythonException / Py4JJavaError; Dask re-raises the original."""
    if isinstance(exc, SparkadError):
        return str(exc)
    lines = [ln.strip() for ln in str(exc).splitlines()]
    for ln in reversed(lines):
        m = _EXC_LINE.match(ln)
        if m and m.group(1) not in ("PythonException", "Py4JJavaError", "SparkException"):
            if m.group(1) in ("SparkadError", "ConfigError", "InputFileError"):
                return m.group(2) or ln
            return f"{m.group(1)}: {m.group(2) or ''}".strip().rstrip(":")
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
