"""glibc malloc settings for the import's worker processes (set as each is configured, never in
the importing process).

A worker handles chunk after chunk of one shape: for each it allocates the 8 MiB chunk, a run
buffer of ~20 MB and many medium buffers, and frees them all again. By default glibc moves its
mmap threshold to the size of what was last freed, and gives the heap's top back to the kernel
when more than twice that is free; so whether a chunk's buffers reuse memory the process already
holds, or fresh pages the kernel must zero and fault in, depends on the order of earlier
allocations: two timing harnesses differing by one imported module saw a 10^7-row import's chunk
phase take 8.3-8.9 s and 7.1-7.4 s (bench/README.md, "Session 8", 3). Fixed settings make it
the same every time: blocks up to :data:`MMAP_THRESHOLD` come from the heap, and up to
:data:`TRIM_THRESHOLD` of free heap is kept for the next chunk (a worker's peak memory does not
change; it keeps it until it exits).

The merge that follows holds its partition in a mapping of its own (``runs.RangeReader``), not in
the heap, so a worker hands the chunk phase's free heap back (:func:`hand_back_freed_memory`)
before its first partition: kept, it added ~30 MiB to a worker's peak.
"""

from __future__ import annotations

import ctypes
from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""Above a worker's largest buffers at the default 8 MiB chunks (the run buffer, ~20 MB)."""
TRIM_THRESHOLD = 256 << 20


def _libc(name: str) -> Any:
    """The C library's function ``name``, or None where it has none (not glibc)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Apply the settings to this process's allocator; False where the C library has no
    ``mallopt`` (not glibc: nothing changes)."""
    mallopt = _libc("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def hand_back_freed_memory() -> bool:
    """Give the free memory of this process's heap back to the kernel (glibc's ``malloc_trim``);
    False where the C library has none."""
    malloc_trim = _libc("malloc_trim")
    if malloc_trim is None:
        return False
    malloc_trim.argtypes = (ctypes.c_size_t,)
    malloc_trim.restype = ctypes.c_int
    malloc_trim(0)
    return True
