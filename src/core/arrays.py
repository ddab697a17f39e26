"""Numpy kernels shared by every path (samplers, loaders, feature fetch): no database, no torch.

Why one module: the same segment and row operations were written in several places; each has
one vectorised form here, measured once (bench/RESULTS.md).
"""
from __future__ import annotations

import numpy as np


def segment_arange(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for every (s, n), without a Python loop."""
    total = int(lengths.sum())
    seg_begin = np.cumsum(lengths) - lengths  # where each segment begins in the output
    return np.repeat(starts - seg_begin, lengths) + np.arange(total, dtype=np.int64)

def stable_argsort_ids(ids: np.ndarray, bound: int) -> np.ndarray:
    """``np.argsort(ids, kind="stable")`` for ids in ``[0, bound)``.

    When ids and positions both fit in 32 bits, one in-place sort of ``id << 32 | position``
    (numpy's SIMD quicksort; distinct keys, so stability comes from the position): half the
    time of numpy's stable argsort (a timsort) on 25M edges, the loader's biggest sort.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if bound > 2**31 or ids.size > 2**32:
        return np.argsort(ids, kind="stable")
    keys = ids << 32
    keys |= np.arange(ids.size, dtype=np.int64)
    keys.sort()
    keys &= 0xFFFFFFFF
    return keys

def _row_items(a: np.ndarray) -> np.ndarray:
    """A C-contiguous 2-D array as a 1-D array of whole rows (one opaque item per row, no copy)."""
    return a.view(np.dtype((np.void, a.shape[1] * a.itemsize))).reshape(len(a))

def put_rows(out: np.ndarray, at: np.ndarray, rows: np.ndarray) -> None:
    """``out[at] = rows`` for 2-D arrays of one dtype (``out`` C-contiguous), as ONE ``np.put`` of whole rows.

    Why: numpy's 2-D fancy assignment copies through its generic per-row iterator, about 2.5x the
    time of this (measured on 94k of 180k rows of 64 float32, the cache hits of a 1M-graph batch).
    """
    if out.ndim != 2 or rows.shape != (len(at), out.shape[1]) or rows.dtype != out.dtype or not out.flags.c_contiguous:
        out[at] = rows
        return
    if len(at):
        np.put(_row_items(out), at, _row_items(np.ascontiguousarray(rows)))

def take_rows(a: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``a[at]`` for a C-contiguous 2-D array, as one ``np.take`` of whole rows (see :func:`put_rows`)."""
    return np.take(_row_items(a), at).view(a.dtype).reshape(len(at), a.shape[1])
