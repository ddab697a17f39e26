"""``DatabaseFeatureStore``: features and labels read from a graph database per batch, with an optional cache.

Shared by the database backends (``Neo4jFeatureStore`` in src/feature_store.py,
``LadybugFeatureStore`` in src/ladybugdb/backend.py); they differ only in how rows are read
(:meth:`DatabaseFeatureStore._read_rows`, or a faster override of ``_read_into``).

One round trip per batch (chunked when large) fetches both ``x`` and ``y`` for the distinct ids
of the batch; rows come back as stored (src/core/codecs.py) and are decoded straight into their
places in the batch. An optional cache (src/core/feature_cache.py, budget in MiB, off by
default) is pre-filled at start with the rows of the nodes of highest out-degree (the ones
neighbour sampling draws most often, src/core/hot_nodes.py; ``cache_warm="degree"``), or else
fills with the first rows fetched (``"none"``). It holds dense rows, so a dataset stored sparse
gets none (a warning says so): densifying its rows would cost F floats per node.
"""
from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from tqdm import tqdm

from src.core.arrays import put_rows, stable_argsort_ids, take_rows
from src.core.codecs import (DENSE, SPARSE, ColumnAffine, decode_rows_csr, decode_stored, place_rows, row_bytes,
                              stored_rows_errors, stored_width)
from src.core.errors import UsageError, UserError
from src.core.feature_cache import FeatureCache
from src.core.hot_nodes import WARM_POLICIES
from src.core.lossy_codecs import LOSSY_ENCODINGS
from src.core.pyg_stores import NodeRowStore
from src.core.schema import GraphSchema
from src.core.sparse_features import rows_to_torch

log = logging.getLogger(__name__)


@dataclass
class FetchStats:
    rows_fetched: int = 0
    round_trips: int = 0

@dataclass
class WarmStats:
    """What a cache warm-up did (logged, and in the backend's ``stats()``)."""

    policy: str
    rows: int
    mb: float  # feature + label bytes of the warmed rows
    rank_s: float  # finding the hot nodes
    fetch_s: float  # reading their rows into the cache

    @property
    def seconds(self) -> float:
        return self.rank_s + self.fetch_s

WARM_CHUNK_ROWS = 65_536  # rows per warm-up read (one progress step; the fetch path chunks its calls itself)


class DatabaseFeatureStore(NodeRowStore):
    """Read-only feature store over one dataset in a graph database (attributes ``x`` and ``y``).

    Subclasses say how to read rows (:meth:`_read_rows`); fetching, the cache, decoding and the
    PyG interface are shared, so every database backend returns bit-identical tensors.
    """

    where = "Neo4j"

    def __init__(self, schema: GraphSchema, num_nodes: int, num_features: int, *, encoding: str = DENSE,
                 density: float | None = None, quant: ColumnAffine | None = None, cache_mb: float = 0.0,
                 chunk_size: int = 20_000) -> None:
        """``encoding``/``density``/``quant``: the dataset record's ``feature_encoding``/``feature_density``/
        :meth:`~src.core.record.DatasetRecord.quant` (compressed rows are decoded to float32 before the cache)."""
        super().__init__(num_nodes, num_features)
        self.schema = schema
        self.encoding = encoding
        self.quant = quant
        self.row_bytes = row_bytes(encoding, num_features, density)
        self.chunk_size = chunk_size
        if cache_mb > 0 and encoding == SPARSE:
            # The cache holds dense rows: every batch would be densified (coauthor_phy: 30k rows of 8,415
            # floats, 1 GB per batch; measured 17x slower and 4 GB RSS), so sparse rows are read as they are.
            log.warning("%s: features are stored sparse (%d features), and the feature cache holds dense rows, "
                        "which would densify every batch; the cache (--cache_mb %g) is off for this dataset",
                        schema.dataset, num_features, cache_mb)
            cache_mb = 0.0
        self.cache = FeatureCache(cache_mb, num_features) if cache_mb > 0 else None
        # Compressed rows kept as stored in each batch until the training step takes it (--decode_rows step,
        # :attr:`defers_decode`): a batch waiting in the prefetch queue then holds a quarter of the bytes (int8)
        self.defer_decode = False
        # Drops cached rows the database changed (sync before a fetch, admissible on insert); None:
        # nothing changes the data while this store lives (a subclass sets it, or turns the cache off)
        self.freshness: Any = None
        self.stats = FetchStats()
        self.warm_stats: WarmStats | None = None
        self._stats_lock = threading.Lock()  # prefetch (and fetch) threads count concurrently
        s = schema
        self._query = (
            f"UNWIND $ids AS i MATCH (n:`{s.label}` {{`{s.id_prop}`: i}}) "
            f"RETURN n.`{s.id_prop}` AS id, n.`{s.x_prop}` AS x, n.`{s.y_prop}` AS y"
        )

    # -- batched fetch -----------------------------------------------------------------------
    def fetch(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features ``[len(index), F]`` (the stored bytes when :attr:`defers_decode`) and labels ``[len(index)]``
        in ``index`` order (repeats allowed).

        Rows are decoded straight into their places in the output, with no gather of the whole
        batch (180k rows of 1M-node graph batches are 46 MB). Each distinct id is read once: the
        cached path walks the ids sorted (one argsort), which also finds repeats (a batch repeats
        its repeated seeds) and gives the cache increasing ids; a repeat's row is then copied from
        its first occurrence. Without a cache, a reader that takes repeats
        (:attr:`_reads_repeats`) reads the ids in batch order, unsorted.
        """
        index = np.asarray(index, dtype=np.int64)
        self._check_known(index)
        if self.cache is None and self._reads_repeats:
            return self._read_into(index, *self._new_batch(len(index)))
        n = len(index)
        order = stable_argsort_ids(index, self.num_nodes)  # a SIMD sort, a fifth of np.argsort's time
        sorted_ids = index[order]
        first = np.ones(n, dtype=bool)  # first occurrence of each id in sorted order
        np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=first[1:])
        repeats = not first.all()
        uniq, at = (sorted_ids[first], order[first]) if repeats else (sorted_ids, order)
        x, y = self._new_batch(n)
        if self.cache is None:
            self._read_into(uniq, x, y, at)
        else:
            self._fetch_cached(index, uniq, x, y, at)
        if repeats:  # each later occurrence copies the row of its id's first one
            again = ~first
            to, source = order[again], at[(np.cumsum(first) - 1)[again]]
            put_rows(x, to, take_rows(x, source))
            y[to] = y[source]
        return x, y

    @property
    def defers_decode(self) -> bool:
        """Whether :meth:`fetch` hands out ``x`` as the stored bytes (uint8 ``[n, stored width]``, decoded by
        :meth:`decode_batch_x`): asked for (:attr:`defer_decode`), rows stored compressed, and no cache (which
        holds decoded rows)."""
        return keeps_rows_encoded(self.defer_decode, self.encoding, self.cache is not None)

    def _new_batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Empty ``x`` (float32 rows, or stored bytes when :attr:`defers_decode`) and ``y`` of a batch of ``n``."""
        x = (np.empty((n, stored_width(self.encoding, self.num_features)), dtype=np.uint8) if self.defers_decode
             else np.empty((n, self.num_features), dtype=np.float32))
        return x, np.empty(n, dtype=np.int64)

    def decode_batch_x(self, x: torch.Tensor) -> torch.Tensor:
        """A batch's ``x`` as :meth:`fetch` kept it (:attr:`defers_decode`) -> float32 rows, bit for bit those
        an immediate decode gives; float rows pass through."""
        if x.dtype != torch.uint8:
            return x
        with stored_rows_errors(self.schema, self.encoding, self.num_features):
            return torch.from_numpy(decode_stored(x.numpy(), self.num_features, self.encoding, self.quant))

    def fetch_sparse(self, index: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        """As :meth:`fetch` for sparse-stored rows, with ``x`` kept sparse (CSR, never densified).

        A sparse-stored dataset has no hot-node cache (it holds dense rows): sparse rows are a few
        hundred bytes, so reading them again is cheap, and the first layer multiplies them as they are.
        """
        if self.encoding != SPARSE:
            raise ValueError(f"fetch_sparse needs sparse-stored rows; {self.schema.dataset!r} stores {self.encoding}")
        index, uniq, inverse = self._unique_known(index)
        if len(uniq) == len(index):  # NodeLoader batches: no repeats, read in batch order
            return self._fetch_unique_csr(index)
        x, y = self._fetch_unique_csr(uniq)
        return x[inverse], y[inverse]

    @property
    def sparse_rows(self) -> bool:
        """Whether the PyG interface hands out ``x`` as a sparse COO tensor: rows stored sparse (such a
        store has no cache)."""
        return self.encoding == SPARSE

    def _check_known(self, index: np.ndarray) -> None:
        """Ids outside the graph are a UserError (one min/max pass, no sort)."""
        if len(index) and (index.min() < 0 or index.max() >= self.num_nodes):
            bad = index[(index < 0) | (index >= self.num_nodes)][:5].tolist()
            raise UserError(f"unknown node ids {bad} for dataset {self.schema.dataset!r} (valid: 0..{self.num_nodes - 1})")

    def _unique_known(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``index`` as int64, its sorted unique ids and the inverse map; ids outside the graph are a UserError."""
        index = np.asarray(index, dtype=np.int64)
        self._check_known(index)
        uniq, inverse = np.unique(index, return_inverse=True)
        return index, uniq, inverse

    def _fetch_cached(self, index: np.ndarray, uniq: np.ndarray, x: np.ndarray, y: np.ndarray, at: np.ndarray
                      ) -> None:
        """Rows of the sorted unique ids ``uniq`` (of the batch ``index``) into ``x[at]``, ``y[at]``: hits from the cache, the rest
        read (and admitted while there is room). Sorted ids keep the cache's binary searches in
        cache. Hits and misses are then each placed in increasing batch position: rows written
        forward through the batch cost a third less than the same rows scattered."""
        token = self.freshness.sync(self.cache) if self.freshness is not None else 0
        hit, slots = self.cache.lookup(uniq)
        if len(slots) < len(uniq):
            miss = ~hit
            at_miss = at[miss]  # in increasing id order
            miss_at = _increasing(at_miss, len(x))
            self._read_into(index[miss_at], x, y, miss_at)
            if not self.cache.full:  # admitted smallest ids first, whatever the batch order
                self._admit(uniq[miss], take_rows(x, at_miss), y[at_miss], token)
        if len(slots):
            slot_at = np.full(len(x), -1, dtype=slots.dtype)  # cache slot per batch position, -1: none
            slot_at[at[hit]] = slots
            hit_at = np.flatnonzero(slot_at >= 0)  # increasing batch positions of the hits
            hx, y[hit_at] = self.cache.rows(slot_at[hit_at])
            put_rows(x, hit_at, hx)

    def _admit(self, ids: np.ndarray, x: np.ndarray, y: np.ndarray, token: int) -> None:
        """Cache rows read after the freshness sync that returned ``token``, except rows changed since."""
        if self.freshness is not None:
            ok = self.freshness.admissible(ids, token)
            if not ok.all():
                ids, x, y = ids[ok], x[ok], y[ok]
        self.cache.insert(ids, x, y)

    # -- cache warm-up -------------------------------------------------------------------------
    def warm_cache(self, policy: str = "degree") -> WarmStats | None:
        """Pre-fill the cache (if any) with the rows of as many highest-degree nodes as it holds.

        One bulk read through the normal fetch path, in steps of :data:`WARM_CHUNK_ROWS` rows behind
        a progress bar; ``"none"`` leaves the cache to fill by first use. Call once, before batches.
        """
        if policy not in WARM_POLICIES:
            raise UsageError(f"unknown cache warm-up policy {policy!r}; use one of {WARM_POLICIES}")
        if self.cache is None or policy == "none":
            return None
        t0 = time.perf_counter()
        token = self.freshness.sync(self.cache) if self.freshness is not None else 0
        ids = np.sort(self._hot_ids(min(self.cache.capacity - len(self.cache), self.num_nodes)))  # forward reads
        t1 = time.perf_counter()
        with tqdm(total=len(ids), unit="row", unit_scale=True, desc=f"{self.schema.dataset} cache warm-up",
                  leave=False) as bar:
            for start in range(0, len(ids), WARM_CHUNK_ROWS):
                chunk = ids[start:start + WARM_CHUNK_ROWS]
                x, y = self._read_into(chunk)
                self._admit(chunk, x, y, token)
                bar.update(len(chunk))
        t2 = time.perf_counter()
        self.warm_stats = WarmStats(policy, len(ids), len(ids) * (4 * self.num_features + 8) / 2**20, t1 - t0, t2 - t1)
        log.info("%s: feature cache warmed by %s: %d rows (%.1f MB, %.0f%% of the nodes) in %.1f s "
                 "(ranking %.1f s, rows %.1f s)", self.schema.dataset, policy, len(ids), self.warm_stats.mb,
                 100 * len(ids) / max(1, self.num_nodes), self.warm_stats.seconds, t1 - t0, t2 - t1)
        return self.warm_stats

    @abstractmethod
    def _hot_ids(self, k: int) -> np.ndarray:
        """The ``k`` node ids of highest out-degree, degree descending, ties by id (src/core/hot_nodes.py)."""

    def warm_summary(self) -> dict[str, Any] | None:
        """:attr:`warm_stats` as a dict (for ``stats()``), None without a warm-up."""
        return None if self.warm_stats is None else {**asdict(self.warm_stats), "seconds": self.warm_stats.seconds}

    def _count(self, rows: int, round_trips: int) -> None:
        with self._stats_lock:
            self.stats.rows_fetched += rows
            self.stats.round_trips += round_trips

    @abstractmethod
    def _read_rows(self, ids: list[int]) -> list[tuple[int, bytes, int | None]]:
        """``(id, packed x, y)`` of these nodes in any order (one round trip)."""

    def _stored_rows(self, ids: np.ndarray) -> tuple[list[bytes], np.ndarray]:
        """Stored ``x`` bytes and labels of unique ``ids`` via :meth:`_read_rows`, chunked, checked, in ``ids`` order."""
        xs, ys, got = [], [], []
        for start in range(0, len(ids), self.chunk_size):
            recs = self._read_rows(ids[start:start + self.chunk_size].tolist())
            got.extend(r[0] for r in recs)
            xs.extend(r[1] for r in recs)
            ys.extend(r[2] for r in recs)
        got_a = np.asarray(got, dtype=np.int64)
        if len(got_a) != len(ids):
            missing = np.setdiff1d(ids, got_a)[:5].tolist()
            raise UserError(f"nodes {missing} of dataset {self.schema.dataset!r} are missing in {self.where}; "
                            f"reload it with `{self.reload_hint} --dataset {self.schema.dataset}`")
        y = np.asarray([-1 if v is None else v for v in ys], dtype=np.int64)
        # Rows may come back in any order: put them in the order asked for.
        order = np.argsort(got_a)
        order = order[np.searchsorted(got_a, ids, sorter=order)]
        self._count(len(ids), -(-len(ids) // self.chunk_size))
        return [xs[i] for i in order], y[order]

    #: Whether :meth:`_read_into` takes repeated ids (then an uncached fetch needs no dedup sort).
    _reads_repeats = False

    def _read_into(self, ids: np.ndarray, x: np.ndarray | None = None, y: np.ndarray | None = None,
                   at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows (dense float32, or the stored bytes when :attr:`defers_decode`) and labels of ``ids`` (unique unless
        :attr:`_reads_repeats`) read from the database, into ``x[at]``, ``y[at]`` (``at`` None: rows
        ``0..len(ids)-1``; new arrays when ``x`` is None)."""
        rows, labels = self._stored_rows(ids)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        if x is None:
            x, y = self._new_batch(len(ids))
        at = slice(0, len(ids)) if at is None else at
        with stored_rows_errors(self.schema, self.encoding, self.num_features):
            place_rows(b"".join(rows), lengths, self.num_features, self.encoding, out=x, at=at, quant=self.quant)
        y[at] = labels
        return x, y

    def _fetch_unique_csr(self, ids: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        """Sparse-stored rows (CSR) and labels of unique ``ids``, in ``ids`` order."""
        rows, y = self._stored_rows(ids)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        with stored_rows_errors(self.schema, self.encoding, self.num_features):
            return decode_rows_csr(b"".join(rows), lengths, self.num_features), y

    def fetch_tensors(self, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (sparse COO when :attr:`sparse_rows`, else dense) and ``y`` as tensors (the PyG path)."""
        x, y = self.fetch_sparse(ids) if self.sparse_rows else self.fetch(ids)
        return rows_to_torch(x), torch.from_numpy(y)

def keeps_rows_encoded(requested: bool, encoding: str, cached: bool) -> bool:
    """Whether a batch's rows stay as stored until the step: asked for (``--decode_rows step``), stored compressed,
    and no feature cache (which holds decoded rows). The store and the preflight both ask this."""
    return requested and encoding in LOSSY_ENCODINGS and not cached

def _increasing(positions: np.ndarray, n: int) -> np.ndarray:
    """``np.sort(positions)`` for distinct positions in ``[0, n)``: a mask and one scan instead of a sort."""
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    return np.flatnonzero(mask)
