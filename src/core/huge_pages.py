"""Back large tensors with transparent huge pages: torch's ``THP_MEM_ALLOC_ENABLE``, set before torch is imported.

Why: every mini-batch allocates fresh buffers of tens to hundreds of MB (the batch's feature rows,
the first layer's messages, activations and their gradients). glibc maps blocks above its mmap
threshold afresh and unmaps them on free, so every batch page-faults all of them again, 4 KiB at a
time. With ``THP_MEM_ALLOC_ENABLE=1`` torch aligns allocations of 2 MiB and more to 2 MiB and asks
the kernel for huge pages there (``madvise``; this works where
``/sys/kernel/mm/transparent_hugepage/enabled`` is ``always`` or ``madvise``): 512x fewer faults.
numpy already does the same for its own arrays of 4 MiB and more.

The earlier fix, telling glibc to keep freed blocks in its heap (``mallopt``: mmap off), saved the
faults too but fragmented the heap: the trainer's RSS crept up batch after batch, by ~1 GB at
products scale, at the same step time (bench/RESULTS.md).

torch reads the variable once, at its first allocation, which happens while it is imported: so
:func:`enable_huge_pages` runs when ``src`` is imported. It does nothing when torch came first (a
user script that imports torch before ``src``: export ``THP_MEM_ALLOC_ENABLE=1`` there) or when
the variable is already set (``THP_MEM_ALLOC_ENABLE=0`` turns it off).
"""
from __future__ import annotations

import os
import sys

VARIABLE = "THP_MEM_ALLOC_ENABLE"


def enable_huge_pages() -> bool:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` unless torch is already imported or the user chose; True when set here."""
    if "torch" in sys.modules or VARIABLE in os.environ:
        return False
    os.environ[VARIABLE] = "1"
    return True


def huge_pages_requested() -> bool:
    """Whether this process asked torch for huge pages (its environment says so; meaningful only when
    torch was imported after it was set, as the entry scripts do)."""
    return os.environ.get(VARIABLE, "") not in ("", "0")
