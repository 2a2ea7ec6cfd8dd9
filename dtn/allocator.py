"""Keeping freed memory for the next bundle (glibc): a node passes megabyte bundles through
several buffers each, and glibc gives a freed megabyte back to the kernel (an mmap of its own,
or the heap's top trimmed) so the next one starts on fresh pages. A fresh page costs a fault:
on this kind of VM about 8 µs, 2 ms a megabyte, more than all the copying of it. Without this
a node sending 1 MiB bundles faulted 250-430 times a bundle; with it, about 35.

Called by the node daemon at start and by an application that receives large bundles (the
benchmarks'). The process's memory then stays near its high-water mark instead of shrinking.
"""

from __future__ import annotations

import ctypes
import platform

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_ABOVE = 64 << 20  # allocations larger than this still get their own mapping
TRIM_ABOVE = 512 << 20  # free memory at the heap's top kept up to this


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed large blocks; False where the C library is not
    glibc (musl, macOS: their allocators are left as they are)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_ABOVE)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_ABOVE)
    )
