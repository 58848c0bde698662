"""Where numba keeps sparkad's compiled kernels: a folder keyed by the source of every sparkad module
that uses numba.

numba's on-disk cache (`cache=True`) is invalidated only when the file that defines a kernel changes,
not when a helper it inlines from another file does (numba/numba#8396, still open): after an edit to
generate/kinematics.py, the cached detector kernel of generate/detector.py would go on running the
old helper, silently. Keying the cache folder on a hash of all those modules makes any change compile
afresh (~1 min once), and processes that run the same source (Spark and Dask workers, which inherit
NUMBA_CACHE_DIR) share one cache. A NUMBA_CACHE_DIR set by the user is left alone.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # the sparkad package
KEEP_UNUSED_DAYS = 14


def source_key(root: Path = PACKAGE) -> str:
    """Hash of the relative paths and contents of the .py files under `root` that mention numba."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        data = p.read_bytes()
        if b"numba" in data:
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:16]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "sparkad" / "numba"


def _prune(root: Path, keep: Path) -> None:
    """Remove cache folders of other sources unused for KEEP_UNUSED_DAYS (one per past version)."""
    limit = time.time() - KEEP_UNUSED_DAYS * 86400
    for d in root.iterdir():
        if d != keep and d.is_dir() and d.stat().st_mtime < limit:
            shutil.rmtree(d, ignore_errors=True)


def configure() -> str | None:
    """Point numba's cache at cache_root()/source_key() unless NUMBA_CACHE_DIR is set; returns the folder
    used (None: numba's default, when the user's cache folder cannot be written)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    try:
        root = cache_root()
        folder = root / source_key()
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder)  # marks it used, for _prune
        _prune(root, folder)
    except (OSError, RuntimeError):  # no writable cache folder, or no home directory at all
        return None
    os.environ["NUMBA_CACHE_DIR"] = str(folder)  # inherited by worker processes
    if "numba" in sys.modules:  # numba read its configuration already: set it there too
        sys.modules["numba"].config.CACHE_DIR = str(folder)
    return str(folder)
