"""Blocks of 1 MiB and more always straight from (and back to) the kernel: glibc's mmap threshold fixed.

Why: glibc raises its mmap threshold each time a mapped block is freed (up to 32 MiB), so after the first
batches most of a step's tensors come from its heaps, and what a step frees stays resident as free heap space.
The trainer's RSS then counts that space on top of what is live, and the space grows with the batch: at
products' shape the gap between RSS and live memory grew by ~100 MiB from 0.5M to 5M nodes, with the same live
memory. A fixed threshold turns the dynamic rise off, so a freed tensor of 1 MiB or more is unmapped at once
(bench/RESULTS.md: the measurement and the step-time cost). ``GNN_MMAP_THRESHOLD`` sets another threshold in
bytes (0: glibc's dynamic default); ``MALLOC_MMAP_THRESHOLD_`` or a ``GLIBC_TUNABLES`` mmap threshold in the
environment (glibc's own settings) is the user's choice and is left alone, as is any libc other than glibc.
"""
from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

VARIABLE = "MALLOC_MMAP_THRESHOLD_"
OURS = "GNN_MMAP_THRESHOLD"
THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def fix_mmap_threshold() -> bool:
    """``mallopt(M_MMAP_THRESHOLD, GNN_MMAP_THRESHOLD or 1 MiB)`` unless the user set glibc's variable or 0;
    True when set here."""
    try:
        threshold = int(os.environ.get(OURS, THRESHOLD))
    except ValueError:
        log.warning("%s=%r is not a number of bytes; using %d", OURS, os.environ[OURS], THRESHOLD)
        threshold = THRESHOLD
    if VARIABLE in os.environ or "mmap_threshold" in os.environ.get("GLIBC_TUNABLES", "") or threshold <= 0:
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to fix
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    if not ok:
        log.warning("glibc refused %s=%d (it takes at most 32 MiB); its dynamic threshold stays", OURS, threshold)
    return ok
