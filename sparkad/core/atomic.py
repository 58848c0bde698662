"""Atomic file writing, defined once: every output is written to a hidden temporary file in its own
folder and renamed over the final name, so readers see the old file or the whole new one, never half
a file, and an interrupted write leaves no temporary behind."""
from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` (same suffix, so writers that infer the format from it
    work); on a clean exit it replaces ``path``, on an error it is removed."""
    path = Path(path)
    tmp = path.parent / f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(data: bytes, path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(text: str, path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(obj, path) -> Path:
    """``obj`` as standard JSON (``jsonsafe.jsonable``: NaN and infinities as null, numpy as Python)."""
    from sparkad.core.jsonsafe import jsonable

    return write_text_atomic(json.dumps(jsonable(obj), indent=2, allow_nan=False, default=str) + "\n", path)


def keep_only(folder: Path, keep, what: str = "file") -> int:
    """A local staging folder holding exactly ``keep`` (paths inside it): checks each is there (else one
    line naming the folder), removes every other file — what attempts that did not finish left (the
    temporary file of a task or chunk whose worker was killed; its retry wrote the final file).
    Returns the number of files removed."""
    from sparkad.core.errors import SparkadError

    folder, keep = Path(folder), {Path(p) for p in keep}
    missing = sorted(str(p) for p in keep if not p.is_file())
    if missing:
        raise SparkadError(f"{folder}: {len(missing)} {what}(s) missing after the pass, e.g. {missing[0]}")
    removed = 0
    for p in folder.rglob("*"):
        if p.is_file() and p not in keep:
            p.unlink()
            removed += 1
    return removed
