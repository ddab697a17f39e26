""":class:`GraphDataset`, the one record of a node-classification graph for every source, and
:func:`to_undirected`.

Why a module of its own: every source (shipped ``.npz``, OGB, synthetic), every loader and every
backend hands graphs around as this record; its fingerprint (the content digest the loaders
record) must be computed the same way everywhere.
"""
from __future__ import annotations

import hashlib
import json
import mmap
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp

from src.data import synthetic

_HASH_CHUNK = 1 << 22  # elements per hashed chunk (32 MB of int64)
_FINGERPRINT_FEATURE_ROWS = 1024


@dataclass(eq=False, repr=False)
class GraphDataset:
    """A node-classification graph; arrays may be memmaps so graphs larger than RAM work.

    ``edge_index`` int64 [2, E] (row 0 = source, row 1 = target; undirected graphs hold both
    directions), ``x`` float32 [N, F] (ndarray, memmap or scipy CSR), ``y`` int64 [N]
    (-1 = unlabelled), split index arrays int64, ``meta`` a JSON-serialisable dict.
    """

    name: str
    num_nodes: int
    num_features: int
    num_classes: int
    edge_index: np.ndarray
    x: Any  # np.ndarray | np.memmap | sp.csr_matrix
    y: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    _fingerprint: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # cheap shape checks only: catches malformed sources early with a clear message
        if sp.issparse(self.x) and self.x.format != "csr":
            self.x = sp.csr_matrix(self.x)
        n, f = int(self.num_nodes), int(self.num_features)
        self.num_nodes, self.num_features, self.num_classes = n, f, int(self.num_classes)
        if self.edge_index.ndim != 2 or self.edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {tuple(self.edge_index.shape)}")
        if tuple(self.x.shape) != (n, f):
            raise ValueError(f"x must have shape [{n}, {f}], got {tuple(self.x.shape)}")
        if tuple(self.y.shape) != (n,):
            raise ValueError(f"y must have shape [{n}], got {tuple(self.y.shape)}")
        for split in ("train_idx", "val_idx", "test_idx"):
            if getattr(self, split).ndim != 1:
                raise ValueError(f"{split} must be one-dimensional")

    def __repr__(self) -> str:
        kind = "csr" if sp.issparse(self.x) else type(self.x).__name__
        return (
            f"GraphDataset(name={self.name!r}, num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
            f"num_features={self.num_features}, num_classes={self.num_classes}, x={kind}, "
            f"split={len(self.train_idx)}/{len(self.val_idx)}/{len(self.test_idx)})"
        )

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def features(self, ids: Any) -> np.ndarray:
        """Dense float32 rows ``x[ids]`` (shape [len(ids), F]) for dense, memmapped or CSR x.

        Memmaps are read in sorted order (sequential disk access), CSR rows are densified only
        for the requested ids.
        """
        ids = np.asarray(ids).reshape(-1)
        if ids.size == 0:
            return np.empty((0, self.num_features), dtype=np.float32)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"node ids must be integers, got dtype {ids.dtype}")
        ids = ids.astype(np.int64, copy=False)
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.num_nodes:
            raise IndexError(f"node id out of range [0, {self.num_nodes}): {lo if lo < 0 else hi}")
        x = self.x
        if sp.issparse(x):
            return np.asarray(x[ids].toarray(), dtype=np.float32)
        if isinstance(x, np.memmap) and ids.size > 1:
            order = np.argsort(ids, kind="stable")
            out = np.empty((ids.size, self.num_features), dtype=np.float32)
            out[order] = x[ids[order]]
            return out
        return np.asarray(x[ids], dtype=np.float32)

    def split_codes(self) -> np.ndarray:
        """int8 [N]: 0 train, 1 val, 2 test, -1 in no split (the Neo4j ``split`` property)."""
        codes = np.full(self.num_nodes, -1, dtype=np.int8)
        for code, idx in enumerate((self.train_idx, self.val_idx, self.test_idx)):
            codes[np.asarray(idx)] = code
        return codes

    def iter_node_chunks(self, chunk_size: int) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` node ranges covering 0..N-1, to stream x / y in bounded memory."""
        return _ranges(self.num_nodes, chunk_size)

    def iter_edge_chunks(self, chunk_size: int) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` edge ranges covering 0..E-1; read ``edge_index[:, start:stop]``."""
        return _ranges(self.num_edges, chunk_size)

    def fingerprint(self) -> str:
        """Stable 16-hex-digit digest of the graph's content (cached on the instance).

        Covers N, E, F, C, all of ``edge_index``, ``y`` and the split, and a fixed sample of
        ``_FINGERPRINT_FEATURE_ROWS`` feature rows.  Arrays are hashed in chunks (memmapped pages
        are released after each), so a 10M-node graph never has to be in RAM at once.
        """
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=8, person=b"GraphDataset.v1")
            h.update(json.dumps([self.num_nodes, self.num_edges, self.num_features, self.num_classes]).encode())
            for row in (0, 1):
                for start, stop in self.iter_edge_chunks(_HASH_CHUNK):
                    h.update(_le_bytes(self.edge_index[row, start:stop], "<i8"))
                    _release_pages(self.edge_index)
            for start, stop in self.iter_node_chunks(_HASH_CHUNK):
                h.update(_le_bytes(self.y[start:stop], "<i8"))
            _release_pages(self.y)
            h.update(_le_bytes(self.split_codes(), "i1"))
            for idx in (self.train_idx, self.val_idx, self.test_idx):
                _release_pages(idx)
            ids = _sample_ids(self.num_nodes, _FINGERPRINT_FEATURE_ROWS)
            for start in range(0, ids.size, 64):
                h.update(_le_bytes(self.features(ids[start:start + 64]), "<f4"))
                _release_pages(self.x)  # mmap read-around maps far more than the sampled rows
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def _ranges(total: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    if int(chunk_size) <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    for start in range(0, total, int(chunk_size)):
        yield start, min(start + int(chunk_size), total)


def _le_bytes(arr: np.ndarray, dtype: str) -> memoryview:
    """Platform-independent bytes of ``arr`` (little endian), without copying when possible."""
    return memoryview(np.ascontiguousarray(arr, dtype=np.dtype(dtype))).cast("B")


def _release_pages(arr: Any) -> None:
    """Drop a read-only/shared memmap's pages from this process (they stay in the page cache).

    Why: streaming over a multi-GB memmap otherwise leaves it all counted in our RSS.
    Best effort; private (copy-on-write) mappings are left alone since that would lose writes.
    """
    mm = getattr(arr, "_mmap", None)
    if mm is None or getattr(arr, "mode", None) not in ("r", "r+", "readonly", "readwrite"):
        return
    try:
        mm.madvise(mmap.MADV_DONTNEED)
    except (AttributeError, OSError, ValueError):
        pass


def _sample_ids(n: int, k: int) -> np.ndarray:
    if n <= k:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def to_undirected(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """Add reverse edges, drop self loops and duplicates; sorted by (src, dst) like PyG.

    Same result as ``shared/datasets/load_npz.py:to_undirected``.  Needs ~4 int64 copies of the
    edges in RAM (fine for arxiv; papers100M needs a machine sized for ogb's own loader anyway).
    """
    src = np.asarray(edge_index[0], dtype=np.int64)
    dst = np.asarray(edge_index[1], dtype=np.int64)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    n = np.int64(num_nodes)
    key = synthetic.sorted_unique(np.concatenate([src * n + dst, dst * n + src]))
    return np.stack([key // n, key % n]).astype(np.int64)
