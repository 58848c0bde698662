"""Process-wide memory settings for chunked array workloads (extraction, generation workers).

``keep_freed_memory`` (glibc allocator):

By default glibc serves every allocation above a (dynamic, at most 32 MB) threshold with a fresh
mmap and returns it to the kernel on free, and trims the heap top past 128 KB-64 MB of free space. A
loop that allocates the same chunk-sized numpy buffers over and over therefore page-faults and
zeroes them again on every chunk: 20-25 % of the detector simulation's time was the kernel's
clear_page (perf), and 1.9 s of sys time in a 17 s, 10 M-event extraction. Serving allocations up
to 256 MB from the heap and keeping up to 1 GB of freed heap lets chunk k+1 reuse chunk k's pages.
Peak RSS is set by one chunk and does not change.

``freeze_long_lived`` (Python's cyclic collector): a worker holds ~250 k long-lived objects (numba,
awkward, coffea, uproot modules and caches) that every full collection walks again; the writer's
and NanoEvents' many small objects trigger such collections repeatedly (5-7 % of generation time,
~70 ms per extraction chunk). Frozen objects are still freed by reference counting; only cycles
among them are never collected.
"""
from __future__ import annotations

import gc

_APPLIED: bool | None = None  # the outcome of the first call
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Apply the setting once per process; False where glibc's mallopt is unavailable (a no-op)."""
    global _APPLIED
    if _APPLIED is None:
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            _APPLIED = bool(libc.mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))
                            and libc.mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
        except (OSError, AttributeError):
            _APPLIED = False
    return _APPLIED


def freeze_long_lived() -> None:
    """Collect, then move every object alive now out of the collector's view (gc.freeze)."""
    gc.collect()
    gc.freeze()
