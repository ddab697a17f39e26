"""``FeatureStats``: a dataset's feature column statistics, computed once, stored with its record.

Why numpy only: the loaders and the partitioner compute and store them (src/core/normalize.py
uses them on every batch), and must not import torch for it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from src.core.errors import UserError

_CHUNK_BYTES = 64 << 20  # rows are summed as dense float64 blocks of about this size
_HEADER = struct.Struct("<4sIdB")  # magic, num_features, global minimum, integer counts


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Column statistics of a dataset's feature matrix (float64), and what they recommend."""

    minimum: float
    mean: np.ndarray
    std: np.ndarray  # population std; 0 for constant columns (the normaliser divides by 1 there)
    raw_counts: bool  # every value a non-negative integer and some above 1: counts, not 0/1 indicators

    @property
    def recommended(self) -> str:
        """The mode ``auto`` picks: ``row_l1`` for raw counts (coauthor_phy's 1..105: +3 points), else none
        (0/1 bag-of-words such as amazon_cs lost 4-10 points with it; bench/RESULTS.md)."""
        return "row_l1" if self.raw_counts else "none"

    @classmethod
    def compute(cls, x: Any) -> FeatureStats:
        """Statistics of ``x`` ([N, F] ndarray, memmap or scipy sparse), summed over dense float64 blocks of
        rows whose size depends on F only: the same numbers whichever way the rows are held."""
        n, f = x.shape
        sums = FeatureSums(f)
        step = max(1, _CHUNK_BYTES // (8 * max(f, 1)))
        for lo in range(0, n, step):
            block = x[lo:lo + step]
            sums.add(block.toarray() if sp.issparse(block) else block)
        return sums.result()

    def to_bytes(self) -> bytes:
        """One bytes value for a database record: header, then mean and std as float64 LE."""
        header = _HEADER.pack(b"GFS1", len(self.mean), self.minimum, int(self.raw_counts))
        return header + np.asarray(self.mean, "<f8").tobytes() + np.asarray(self.std, "<f8").tobytes()

    @classmethod
    def from_bytes(cls, raw: bytes) -> FeatureStats:
        magic, f, minimum, counts = _HEADER.unpack_from(raw) if len(raw) >= _HEADER.size else (b"", 0, 0.0, 0)
        if magic != b"GFS1" or len(raw) != _HEADER.size + 16 * f:
            raise UserError("the dataset record's feature statistics are unreadable; reload the dataset")
        body = np.frombuffer(raw, dtype="<f8", offset=_HEADER.size)
        return cls(minimum=minimum, mean=body[:f].astype(np.float64), std=body[f:].astype(np.float64),
                   raw_counts=bool(counts))


class FeatureSums:
    """Running sums behind :class:`FeatureStats`, for rows that arrive in blocks (a registration
    reads them batch by batch from the database and never holds the whole matrix)."""

    def __init__(self, num_features: int) -> None:
        self.n = 0
        self.total, self.squares = np.zeros(num_features), np.zeros(num_features)
        self.minimum, self.maximum, self.counts = np.inf, -np.inf, True

    def add(self, block: Any) -> None:
        values = np.asarray(block, dtype=np.float64)
        self.n += values.shape[0]
        self.total += values.sum(axis=0)
        self.squares += np.square(values).sum(axis=0)
        self.minimum = min(self.minimum, float(values.min(initial=np.inf)))
        self.maximum = max(self.maximum, float(values.max(initial=-np.inf)))
        self.counts = self.counts and bool(np.all(values >= 0) and np.all(values == np.round(values)))

    def result(self) -> FeatureStats:
        n = self.n
        mean = self.total / max(n, 1)
        std = np.sqrt(np.maximum(self.squares / max(n, 1) - mean * mean, 0.0))
        return FeatureStats(minimum=0.0 if n == 0 else self.minimum, mean=mean, std=std,
                            raw_counts=self.counts and self.maximum > 1)
