"""Keep freed batch buffers in the process instead of handing them back to the kernel (glibc only).

Why: every mini-batch allocates a fresh feature matrix of tens of MB (amazon_cs, 12k rows x 767
float32 = 37 MB). glibc serves blocks above its mmap threshold (at most 32 MB) with a fresh
``mmap`` and unmaps them on free, so each batch page-faults and zeroes its whole buffer again:
measured 80-140 ms for that gather against 17-30 ms into reused memory (bench/sampler.py,
amazon_cs). With mmap off and a high trim threshold, freed buffers stay in the heap and the next
batch reuses them; the retained memory is bounded by the trim threshold.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_done = False


def retain_freed_memory(trim_threshold_mb: int = 256) -> bool:
    """Tell glibc malloc to reuse large freed blocks (once per process); False where that is not possible."""
    global _done
    if _done:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:  # not glibc (e.g. macOS, musl): keep the allocator's defaults
        log.debug("mallopt not available; batch buffers are allocated afresh")
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, trim_threshold_mb << 20) == 1
    _done = ok
    log.debug("malloc: mmap off, trim threshold %d MiB (%s)", trim_threshold_mb, "ok" if ok else "refused")
    return ok
