"""ROOT's zlib baskets through Intel's ISA-L (python-isal) instead of Python's zlib: the same zlib
streams, read ~2x and written ~6x faster.

zlib is what the CMS 2012 Open Data files carry (ROOT's default, level 1) and what the generator's
CMS-like presets write, so inflating and deflating baskets is a large part of both extraction and
generation. uproot supports ISA-L but only as an opt-in, and its public switch `uproot.ZLIB.library`
reaches writing only: reading goes through the module's own `_decompress_ZLIB`, which this sets too.

The output stays standard zlib that ROOT reads; only the compressed bytes differ from zlib's (arrays
are unchanged). ISA-L has 4 levels; uproot maps zlib level N to round(N / 3), so `zlib:4`..`zlib:7`
write ISA-L level 1 (~13% larger than zlib:1, at 1/6 of its time), while `zlib:1` maps to ISA-L 0,
which is both larger and slower. Set SPARKAD_ZLIB=zlib to keep Python's zlib (to compare, or where
isal is missing: then nothing changes).
"""
from __future__ import annotations

import os
import warnings

ENV = "SPARKAD_ZLIB"
_active: str | None = None


def use_isal() -> str:
    """Route uproot's zlib (de)compression through ISA-L unless SPARKAD_ZLIB=zlib or isal is not
    installed. Idempotent; returns the library in use ("isal" or "zlib")."""
    global _active
    if _active is not None:
        return _active
    import uproot
    import uproot.compression

    want = os.environ.get(ENV, "isal").strip().lower() or "isal"
    if want not in ("isal", "zlib"):
        warnings.warn(f"{ENV}={want!r} is neither 'isal' nor 'zlib'; using isal", stacklevel=2)
        want = "isal"
    if want == "isal":
        try:
            import isal.isal_zlib  # noqa: F401
        except ImportError:
            want = "zlib"
    uproot.ZLIB.library = want
    decompressor = getattr(uproot.compression, "_decompress_ZLIB", None)
    if decompressor is not None:  # private in uproot 5; without it reading keeps zlib, writing switches
        decompressor.library = want
    _active = want
    return want
