"""sparkad.core.heap: freed chunk buffers stay in the process for the next chunk; long-lived objects leave the
collector's view."""
import ctypes
import sys

import numpy as np
import pytest

from sparkad.core.heap import freeze_long_lived, keep_freed_memory


class _MallInfo2(ctypes.Structure):
    _fields_ = [(k, ctypes.c_size_t) for k in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]


def _free_heap_bytes() -> int:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2().fordblks


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_chunk_buffer_stays_in_the_heap_for_reuse():
    assert keep_freed_memory()
    assert keep_freed_memory()  # idempotent
    size = 50 << 20  # above glibc's largest default mmap threshold (32 MB): without the setting the
    a = np.ones(size, np.uint8)  # buffer is an mmap returned to the kernel on free, and the next
    before = _free_heap_bytes()  # chunk page-faults and zeroes a new one
    del a
    assert _free_heap_bytes() - before >= 0.9 * size  # (less a few chunk headers; without: ~0)


def test_frozen_objects_leave_the_collectors_view():
    import gc

    keep = [[i] for i in range(1000)]
    freeze_long_lived()
    assert gc.get_freeze_count() >= len(keep)
    oldest = {id(o) for o in gc.get_objects(generation=2)}  # by identity: frozen objects are in no generation
    assert not any(id(x) in oldest for x in keep)
    gc.unfreeze()  # leave the test process as it was
