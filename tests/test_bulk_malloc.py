"""The import workers' fixed allocator settings (registry.bulk.malloc)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import ctypes, sys
from registry.bulk.malloc import keep_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
applied = keep_freed_memory() if sys.argv[1] == "on" else False
mapped = libc.mallinfo2().hblkhd
block = bytearray(16 << 20)
mapped_for_it = libc.mallinfo2().hblkhd - mapped
del block
print(applied, mapped_for_it >= 16 << 20, libc.mallinfo2().fordblks >= 16 << 20)
"""


def _probe(mode: str) -> str:
    """In a process of its own: the settings stay for the life of a process."""
    return subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and mallinfo2 are glibc's")
def test_a_worker_keeps_a_16_mib_buffer_in_its_heap_after_freeing_it() -> None:
    """With glibc's defaults a 16 MiB block is mapped afresh and given back when freed; with the
    workers' settings it comes from the heap and stays there, free, for the next chunk."""
    assert _probe("off") == "False True False"
    assert _probe("on") == "True False True"


TRIM_PROBE = """
import os
from registry.bulk.malloc import hand_back_freed_memory, keep_freed_memory

def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

keep_freed_memory()
block = bytearray(16 << 20)  # zero-filled: every page touched
del block
kept = resident()
handed_back = hand_back_freed_memory()
print(handed_back, kept - resident() >= 12 << 20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_the_merge_hands_the_chunk_phases_free_heap_back() -> None:
    """What the workers' settings keep (the test above), hand_back_freed_memory gives back."""
    out = subprocess.run(
        [sys.executable, "-c", TRIM_PROBE],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout.strip()
    assert out == "True True"
