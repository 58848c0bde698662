"""numba's compiled-kernel cache is keyed on the source of all of sparkad's numba modules (a change to
an inlined helper in another file must not leave a stale kernel in use)."""
import os
import subprocess
import sys
import time
from pathlib import Path

from sparkad.core import numba_cache


def _tree(root: Path, files: dict) -> Path:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_key_follows_numba_modules_only(tmp_path):
    root = _tree(tmp_path / "pkg", {"a.py": "from numba import njit\n", "sub/b.py": "import numba  # helper\n",
                                    "cli.py": "print('no jit here')\n"})
    key = numba_cache.source_key(root)
    (root / "cli.py").write_text("print('still no jit')\n")
    assert numba_cache.source_key(root) == key
    (root / "sub" / "b.py").write_text("import numba  # helper, changed\n")
    changed = numba_cache.source_key(root)
    assert changed != key
    (root / "sub" / "b.py").rename(root / "sub" / "c.py")  # same content, another module
    assert numba_cache.source_key(root) != changed


def _clean_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    return env


SETUP = "import os\nfrom sparkad.core.runtime import setup_process\nsetup_process()\n"


def _python(code: str, tmp_path) -> str:
    """stdout of ``code`` in a fresh interpreter whose cache home is tmp_path (asserting it succeeded)."""
    p = subprocess.run([sys.executable, "-c", code], env=_clean_env(tmp_path), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def test_importing_sparkad_does_no_work(tmp_path):
    """No cache folder, no NUMBA_CACHE_DIR, no patched uproot: set-up is the entry points' explicit call."""
    out = _python("import os, sys, sparkad, sparkad.model.directory, sparkad.extract.run, sparkad.score.engines\n"
                  "import uproot\nprint(os.environ.get('NUMBA_CACHE_DIR'), uproot.ZLIB.library)\n", tmp_path)
    assert out.split() == ["None", "zlib"]
    assert not (tmp_path / "sparkad").exists()


def test_kernels_are_cached_under_the_source_key(tmp_path):
    out = _python(SETUP + "import numpy as np, sparkad.extract.kernels as k\n"
                  "k.lepton_met(np.ones(3), np.zeros(3), np.ones(3), np.zeros(3))\n"
                  "print(os.environ['NUMBA_CACHE_DIR'])\n", tmp_path)
    folder = tmp_path / "sparkad" / "numba" / numba_cache.source_key()
    assert out.strip() == str(folder)
    assert any(f.name.startswith("kernels.lepton_met") for f in folder.rglob("*.nbi")), list(folder.rglob("*"))


def test_a_users_numba_cache_dir_is_kept(tmp_path):
    env = _clean_env(tmp_path)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")
    p = subprocess.run([sys.executable, "-c", SETUP + "print(os.environ['NUMBA_CACHE_DIR'])"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == str(tmp_path / "mine"), p.stderr[-2000:]


def test_folders_of_old_sources_are_pruned(tmp_path):
    root = tmp_path / "sparkad" / "numba"
    old, recent = root / "0ld", root / "recent"
    for d in (old, recent):
        d.mkdir(parents=True)
    stale = time.time() - (numba_cache.KEEP_UNUSED_DAYS + 1) * 86400
    os.utime(old, (stale, stale))
    out = _python(SETUP + "print(os.environ['NUMBA_CACHE_DIR'])", tmp_path)
    assert out.strip() == str(root / numba_cache.source_key())
    assert not old.exists() and recent.exists()
