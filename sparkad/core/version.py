"""Code version recorded in every output: the package version (sparkad.__version__, the one version
string; pyproject.toml reads it) plus the git commit when run from a checkout."""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from sparkad import __version__


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():  # an installed wheel: site-packages is nobody's checkout
        return __version__
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return f"{__version__}+g{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__
