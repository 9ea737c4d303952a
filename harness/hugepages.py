"""Back the process's malloc heap with transparent huge pages (Linux, glibc; else a no-op).

Why: a MACAW meta-iteration streams ~5 M weight-transform parameters, their gradients and Adam
moments (~80 MB) through memory several times, plus hundreds of short-lived activation tensors.
With 4 KiB pages that is ~20 000 TLB entries per pass, and on a virtual machine every TLB miss is a
two-level page walk; freed tensors above glibc's mmap threshold are also returned to the kernel and
page-faulted in again on the next step. Measured on the 2-core CI machine class: the MACAW step
is ~5 % faster with the heap on huge pages and kept (docs/speed.md).

What it does, once per process: keeps tensors up to 64 MB on the heap and freed heap memory in
the process (``mallopt``), grows the heap once by ``reserve_mb`` of *virtual* memory (only
chunk headers are touched, so almost nothing is committed), and asks the kernel to back that
range with huge pages (``madvise(MADV_HUGEPAGE)``). Physical memory is only used as tensors
touch it.
Equivalent to starting Python with
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=67108864:...``, which cannot
be set from inside a running process.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_MADV_HUGEPAGE = 14
_HUGE = 2 << 20
_done: bool | None = None


def thp_available() -> bool:
    """The kernel offers transparent huge pages to regions that ask (``madvise`` or ``always``)."""
    try:
        mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False
    return "[madvise]" in mode or "[always]" in mode


def heap_range() -> tuple[int, int] | None:
    """Start and end address of the main malloc heap (its ``[heap]`` mappings), if any."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    spans = [
        tuple(int(x, 16) for x in line.split()[0].split("-"))
        for line in lines
        if line.endswith("[heap]")
    ]
    return (min(s for s, _ in spans), max(e for _, e in spans)) if spans else None


def use_huge_pages(reserve_mb: int = 768) -> bool:
    """Apply the settings above to this process; True if the heap is now huge-page backed.

    Safe to call repeatedly (only the first call acts) and anywhere: off Linux/glibc, where the
    kernel has huge pages disabled, or with ``OMRL_HUGEPAGES=0`` in the environment, it changes
    nothing and returns False.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("OMRL_HUGEPAGES", "1") == "0":
        return False
    if not sys.platform.startswith("linux") or not thp_available():
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mallopt, malloc, free, madvise = libc.mallopt, libc.malloc, libc.free, libc.madvise
    except (OSError, AttributeError):  # not glibc
        return False
    malloc.restype, malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    free.argtypes = [ctypes.c_void_p]
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    keep = 2 * reserve_mb << 20  # above the reserve, or freeing it would trim it right away
    if not (mallopt(_M_MMAP_THRESHOLD, 64 << 20) and mallopt(_M_TRIM_THRESHOLD, keep)):
        return False
    blocks = [malloc(16 << 20) for _ in range(max(1, reserve_mb // 16))]  # below the threshold
    for block in blocks:
        if block:
            free(block)  # coalesces into the heap top, which the trim threshold now keeps
    heap = heap_range()
    if heap is None:
        return False
    start = (heap[0] + _HUGE - 1) & ~(_HUGE - 1)
    if heap[1] - start < _HUGE:
        return False
    _done = madvise(start, heap[1] - start, _MADV_HUGEPAGE) == 0
    return _done
