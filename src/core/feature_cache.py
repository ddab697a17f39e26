"""``FeatureCache``: a fill-until-full cache of feature rows and labels, shared by the database backends.

Why no eviction: per-id bookkeeping would be a Python loop per batch; pre-filled with the rows
sampling draws most often (:meth:`~src.core.row_fetch.DatabaseFeatureStore.warm_cache`), the
rows it holds are the ones later batches need most.
"""
from __future__ import annotations

import threading

import numpy as np


class FeatureCache:
    """Fill-until-full cache of feature rows and labels with vectorised, lock-free lookups.

    Rows live in arrays preallocated for ``capacity`` rows (``np.empty``: pages are touched only
    as rows arrive, so RSS grows with the filled part, never past the budget, whatever the graph
    size). A row is written once, into the next free slot, and never moves. The index is a pair
    (sorted ids, their slots) replaced as a whole on insert: the new block is merged in with one
    ``searchsorted`` + ``np.insert`` over 12 bytes per cached row, never over the feature rows.
    Readers take the current pair without the lock (an insert publishes it after the rows are
    written), so prefetch threads look up concurrently; only inserts serialise.

    Admission: the rows inserted first, until full: the warm-up's highest-degree rows
    (:meth:`DatabaseFeatureStore.warm_cache`), then (room left, or no warm-up) the first rows
    fetched, within a batch in increasing id order (hit rates in bench/RESULTS.md). No eviction, so warmed rows stay pinned: per-id bookkeeping would be a
    Python loop per batch.
    """

    def __init__(self, budget_mb: float, num_features: int) -> None:
        per_row = num_features * 4 + 8 + 8 + 4  # x row, y, sorted id, slot
        self.capacity = int(budget_mb * 2**20) // per_row
        self._x = np.empty((self.capacity, num_features), dtype=np.float32)
        self._y = np.empty(self.capacity, dtype=np.int64)
        self._index: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.int64), np.empty(0, np.int32))
        self._used = 0  # slots ever written (a discarded row's slot stays used)
        self._insert_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.hits = 0
        self.lookups = 0

    def __len__(self) -> int:
        return len(self._index[0])

    @property
    def ids(self) -> np.ndarray:
        """The cached node ids, sorted (a snapshot)."""
        return self._index[0]

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hit mask over ``ids``, cache slots of the hits) for unique ``ids``; see :meth:`rows`."""
        keys, slots = self._index  # one snapshot: an insert replaces the pair, never mutates it
        if len(keys):
            pos = np.searchsorted(keys, ids)
            np.minimum(pos, len(keys) - 1, out=pos)
            hit = keys[pos] == ids
            found = slots[pos[hit]]
        else:
            hit, found = np.zeros(len(ids), dtype=bool), np.empty(0, np.int32)
        with self._count_lock:
            self.hits += len(found)
            self.lookups += len(ids)
        return hit, found

    def rows(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x and y rows of ``slots`` (from :meth:`lookup`), as new arrays."""
        return np.take(self._x, slots, axis=0), np.take(self._y, slots)

    def insert(self, ids: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
        """Admit rows of unique ``ids`` (any order) while there is room; ids already cached are skipped."""
        with self._insert_lock:
            keys, slots = self._index
            room = self.capacity - self._used
            if room <= 0 or len(ids) == 0:
                return
            pos = np.searchsorted(keys, ids)
            new = keys[np.minimum(pos, len(keys) - 1)] != ids if len(keys) else np.ones(len(ids), bool)
            take = np.flatnonzero(new)[:room]  # another thread may have cached some meanwhile
            if len(take) == 0:
                return
            take = take[np.argsort(ids[take], kind="stable")]  # np.insert keeps equal positions in this order
            first = self._used
            self._x[first:first + len(take)] = x[take]
            self._y[first:first + len(take)] = y[take]
            self._used += len(take)
            new_slots = np.arange(first, first + len(take), dtype=np.int32)
            self._index = (np.insert(keys, pos[take], ids[take]), np.insert(slots, pos[take], new_slots))

    def discard(self, ids: np.ndarray) -> int:
        """Forget the rows of ``ids`` (changed in the database; any order, unknown ids ignored); returns how many were held.

        Their slots are not reused: a reader that looked them up in the previous index snapshot may
        still be copying them (for a batch that began before the change), so a slot is written once.
        The cache then holds that many rows fewer; :meth:`clear` forgets every row the same way."""
        with self._insert_lock:
            keys, slots = self._index
            gone = np.isin(keys, ids)
            if gone.any():
                self._index = (keys[~gone], slots[~gone])
            return int(gone.sum())

    def clear(self) -> None:
        """Forget every row (the database cannot say which changed); nothing more is admitted."""
        with self._insert_lock:
            self._index = (np.empty(0, np.int64), np.empty(0, np.int32))

    @property
    def full(self) -> bool:
        return self._used >= self.capacity

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.lookups if self.lookups else None



def split_budget(budget_mb: float, tables: dict[str, tuple[int, int]]) -> dict[str, float]:
    """One cache budget in MiB shared by several row tables (``{name: (rows, features)}``): each table gets
    the same fraction of its rows (a share in proportion to rows x row bytes), all of them when the budget
    holds every table.

    Why one budget, not one per table: ``--cache_mb`` is the RAM a rank may spend on rows, the figure
    the memory preflight checks; and an equal fraction of every type is what a batch of uniform samples
    draws when nothing says which type's rows it needs more often.
    """
    need = {t: n * (f * 4 + 8 + 8 + 4) / 2**20 for t, (n, f) in tables.items()}  # FeatureCache's bytes per row
    total = sum(need.values())
    frac = min(1.0, budget_mb / total) if total > 0 else 0.0
    return {t: frac * mb * (1 + 1e-9) for t, mb in need.items()}  # 1e-9: float rounding never costs a whole row
