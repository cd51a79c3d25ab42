"""Keep freed CPU memory in the process instead of returning it to the kernel after every step.

glibc serves every allocation above 32 MiB with its own mmap and unmaps it on free, so each training step
on CPU faults in its large activations page by page again (a spatial broadcast decoder over B*K slots at
64x64 holds several of 300 MB): measured on SRI's step, that kernel time was a third of the step. With mmap
off and trimming off, freed blocks stay in the heap and the next step reuses them, so the process keeps
its peak heap. A process-wide setting of glibc's allocator (Linux); elsewhere it does nothing.

Trimming must be off, not merely rare: glibc returns the whole free top of the heap once it exceeds the
threshold, and mallopt's int caps that at 2 GiB, below what SRI's step frees at its end (peak 4.4 GB), so
with a 2 GiB threshold the step still faulted 590K pages (3.8 s of kernel time) every step; -1 turns
trimming off (mallopt(3)) and left none.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory(trim_threshold: int = -1) -> bool:
    """Serve large allocations from the heap and keep freed memory there: all of it by default (-1), else
    hand the free top of the heap back once it exceeds `trim_threshold` bytes. Returns whether glibc accepted
    both settings."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
