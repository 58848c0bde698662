"""Process set-up, made explicitly once per process by the entry points (the ``sparkad`` command,
``jobs/*.py``) and by worker initialisers (the coffea processor module, which workers import before
they read a chunk). Nothing here runs at import time."""
from __future__ import annotations

import os

_done = False


def setup_process() -> None:
    """Idempotent:
    - TensorFlow's C++ INFO/WARNING lines (CPU features, CUDA absent) are noise for sparkad's users;
    - numba's kernel cache in a folder keyed on the source of every numba module (``numba_cache``),
      before any module that defines a cached kernel is imported (numba reads the folder then); worker
      processes inherit it through ``NUMBA_CACHE_DIR``;
    - zlib baskets through ISA-L (``root_zlib``): the 2012 Open Data files inflate ~2x, the CMS-like
      generator presets deflate ~6x faster."""
    global _done
    if _done:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from sparkad.core import numba_cache
    from sparkad.core.root_zlib import use_isal
    numba_cache.configure()
    use_isal()
    _done = True
