"""Keep freed CPU memory in the process instead of returning it to the kernel after every step.

glibc serves every allocation above 32 MiB with its own mmap and unmaps it on free, so each training step
on CPU faults in its large activations page by page again (a spatial broadcast decoder over B*K slots at
64x64 holds several of 300 MB): measured on SRI's step, that kernel time was a third of the step. With mmap
off and the trim threshold raised, freed blocks stay in the heap and the next step reuses them. A
process-wide setting of glibc's allocator (Linux); elsewhere it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory(trim_threshold: int = 2**31 - 1) -> bool:
    """Serve large allocations from the heap and keep up to `trim_threshold` bytes of freed memory there.
    Returns whether glibc accepted both settings."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
