"""PyG FeatureStore that reads node features ``x`` and labels ``y`` from a graph database on demand.

:class:`DatabaseFeatureStore` is shared by the database backends (:class:`Neo4jFeatureStore`
here, ``LadybugFeatureStore`` in src/ladybugdb/backend.py); they differ only in how rows are read.

One round trip per batch (chunked when large) fetches both ``x`` and ``y`` for the unique ids
of the batch; rows come back as stored (dense float32 or sparse (column, value) pairs, see
src/core/schema.py) and are decoded to dense rows with one ``np.frombuffer`` (and one scatter).
An optional hot-node cache (budget in MB, off by default) is pre-filled at start with the rows of
the nodes of highest out-degree (the ones neighbour sampling draws most often, src/core/hot_nodes.py;
``cache_warm="degree"``, the default), or else fills with the first rows fetched (``"none"``).
The cache holds dense rows, so a dataset stored sparse gets none (a warning says so): its rows
are a few hundred bytes, and densifying them would cost F floats per node.
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
from torch_geometric.data import FeatureStore
from torch_geometric.data.feature_store import TensorAttr
from tqdm import tqdm

from src.core import hot_nodes
from src.neo4jdb import procedures
from src.client import Neo4jClient
from src.core.errors import UsageError, UserError
from src.core.codecs import DENSE, SPARSE, decode_rows, decode_rows_csr, row_bytes, stored_rows_errors
from src.core.schema import GraphSchema
from src.core.arrays import put_rows, stable_argsort_ids, take_rows
from src.core.sparse_features import rows_to_torch

log = logging.getLogger(__name__)

ATTRS = ("x", "y")


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
    fetched, within a batch in increasing id order (hit rates in docs/ARCHITECTURE.md, "Feature
    fetch and cache"). No eviction, so warmed rows stay pinned: per-id bookkeeping would be a
    Python loop per batch.
    """

    def __init__(self, budget_mb: float, num_features: int) -> None:
        per_row = num_features * 4 + 8 + 8 + 4  # x row, y, sorted id, slot
        self.capacity = int(budget_mb * 2**20) // per_row
        self._x = np.empty((self.capacity, num_features), dtype=np.float32)
        self._y = np.empty(self.capacity, dtype=np.int64)
        self._index: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.int64), np.empty(0, np.int32))
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
            room = self.capacity - len(keys)
            if room <= 0 or len(ids) == 0:
                return
            pos = np.searchsorted(keys, ids)
            new = keys[np.minimum(pos, len(keys) - 1)] != ids if len(keys) else np.ones(len(ids), bool)
            take = np.flatnonzero(new)[:room]  # another thread may have cached some meanwhile
            if len(take) == 0:
                return
            take = take[np.argsort(ids[take], kind="stable")]  # np.insert keeps equal positions in this order
            first = len(keys)
            self._x[first:first + len(take)] = x[take]
            self._y[first:first + len(take)] = y[take]
            new_slots = np.arange(first, first + len(take), dtype=np.int32)
            self._index = (np.insert(keys, pos[take], ids[take]), np.insert(slots, pos[take], new_slots))

    @property
    def full(self) -> bool:
        return len(self._index[0]) >= self.capacity

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.lookups if self.lookups else None


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


class DatabaseFeatureStore(FeatureStore):
    """Read-only feature store over one dataset in a graph database (attributes ``x`` and ``y``).

    Subclasses say how to read rows (:meth:`_read_rows`); fetching, the cache, decoding and the
    PyG interface are shared, so every database backend returns bit-identical tensors.
    """

    reload_hint = "python loaders/load_into_neo4j.py"  # the command that (re)loads a dataset
    where = "Neo4j"

    def __init__(self, schema: GraphSchema, num_nodes: int, num_features: int, *, encoding: str = DENSE,
                 density: float | None = None, cache_mb: float = 0.0, chunk_size: int = 20_000) -> None:
        """``encoding``/``density``: the dataset record's ``feature_encoding``/``feature_density``."""
        super().__init__()
        self.schema = schema
        self.num_nodes = num_nodes
        self.num_features = num_features
        self.encoding = encoding
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
        """Features ``[len(index), F]`` and labels ``[len(index)]`` in ``index`` order (repeats allowed).

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
            return self._read_into(index)
        n = len(index)
        order = stable_argsort_ids(index, self.num_nodes)  # a SIMD sort, a fifth of np.argsort's time
        sorted_ids = index[order]
        first = np.ones(n, dtype=bool)  # first occurrence of each id in sorted order
        np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=first[1:])
        repeats = not first.all()
        uniq, at = (sorted_ids[first], order[first]) if repeats else (sorted_ids, order)
        x = np.empty((n, self.num_features), dtype=np.float32)
        y = np.empty(n, dtype=np.int64)
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
        hit, slots = self.cache.lookup(uniq)
        if len(slots) < len(uniq):
            miss = ~hit
            at_miss = at[miss]  # in increasing id order
            miss_at = _increasing(at_miss, len(x))
            self._read_into(index[miss_at], x, y, miss_at)
            if not self.cache.full:  # admitted smallest ids first, whatever the batch order
                self.cache.insert(uniq[miss], take_rows(x, at_miss), y[at_miss])
        if len(slots):
            slot_at = np.full(len(x), -1, dtype=slots.dtype)  # cache slot per batch position, -1: none
            slot_at[at[hit]] = slots
            hit_at = np.flatnonzero(slot_at >= 0)  # increasing batch positions of the hits
            hx, y[hit_at] = self.cache.rows(slot_at[hit_at])
            put_rows(x, hit_at, hx)

    # -- cache warm-up -------------------------------------------------------------------------
    def warm_cache(self, policy: str = "degree") -> WarmStats | None:
        """Pre-fill the cache (if any) with the rows of as many highest-degree nodes as it holds.

        One bulk read through the normal fetch path, in steps of :data:`WARM_CHUNK_ROWS` rows behind
        a progress bar; ``"none"`` leaves the cache to fill by first use. Call once, before batches.
        """
        if policy not in hot_nodes.WARM_POLICIES:
            raise UsageError(f"unknown cache warm-up policy {policy!r}; use one of {hot_nodes.WARM_POLICIES}")
        if self.cache is None or policy == "none":
            return None
        t0 = time.perf_counter()
        ids = np.sort(self._hot_ids(min(self.cache.capacity - len(self.cache), self.num_nodes)))  # forward reads
        t1 = time.perf_counter()
        with tqdm(total=len(ids), unit="row", unit_scale=True, desc=f"{self.schema.dataset} cache warm-up",
                  leave=False) as bar:
            for start in range(0, len(ids), WARM_CHUNK_ROWS):
                chunk = ids[start:start + WARM_CHUNK_ROWS]
                x, y = self._read_into(chunk)
                self.cache.insert(chunk, x, y)
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
        """Dense rows and labels of ``ids`` (unique unless :attr:`_reads_repeats`) read from the database,
        into ``x[at]``, ``y[at]`` (``at`` None: rows ``0..len(ids)-1``; new arrays when ``x`` is None)."""
        rows, labels = self._stored_rows(ids)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        if x is None:
            x, y = np.empty((len(ids), self.num_features), dtype=np.float32), np.empty(len(ids), dtype=np.int64)
        at = slice(0, len(ids)) if at is None else at
        with stored_rows_errors(self.schema, self.encoding, self.num_features):
            decode_rows(b"".join(rows), lengths, self.num_features, self.encoding, out=x, at=at)
        y[at] = labels
        return x, y

    def _fetch_unique_csr(self, ids: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        """Sparse-stored rows (CSR) and labels of unique ``ids``, in ``ids`` order."""
        rows, y = self._stored_rows(ids)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        with stored_rows_errors(self.schema, self.encoding, self.num_features):
            return decode_rows_csr(b"".join(rows), lengths, self.num_features), y

    # -- PyG FeatureStore interface ------------------------------------------------------------
    def _multi_get_tensor(self, attrs: list[TensorAttr]) -> list[torch.Tensor]:
        """x and y of the same index come from one query instead of two."""
        index = attrs[0].index
        if all(a.attr_name in ATTRS for a in attrs) and all(a.index is index for a in attrs):
            x, y = self._fetch_tensors(_as_numpy(index))
            by_name = {"x": x, "y": y}
            return [by_name[a.attr_name] for a in attrs]
        return [self._get_tensor(a) for a in attrs]

    def _get_tensor(self, attr: TensorAttr) -> torch.Tensor:
        if attr.attr_name not in ATTRS:
            raise KeyError(f"unknown attribute {attr.attr_name!r}; this store holds {ATTRS}")
        index = _as_numpy(attr.index) if attr.index is not None else np.arange(self.num_nodes)
        x, y = self._fetch_tensors(index)
        return x if attr.attr_name == "x" else y

    def _fetch_tensors(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (sparse COO when :attr:`sparse_rows`, else dense) and ``y`` as tensors."""
        x, y = self.fetch_sparse(index) if self.sparse_rows else self.fetch(index)
        return rows_to_torch(x), torch.from_numpy(y)

    def _get_tensor_size(self, attr: TensorAttr) -> tuple[int, ...]:
        return (self.num_nodes, self.num_features) if attr.attr_name == "x" else (self.num_nodes,)

    def get_all_tensor_attrs(self) -> list[TensorAttr]:
        return [TensorAttr(group_name=None, attr_name=name) for name in ATTRS]

    def _put_tensor(self, tensor: torch.Tensor, attr: TensorAttr) -> bool:
        raise NotImplementedError(f"{type(self).__name__} is read-only; load data with {self.reload_hint}")

    def _remove_tensor(self, attr: TensorAttr) -> bool:
        raise NotImplementedError(f"{type(self).__name__} is read-only")


def _as_numpy(index: object) -> np.ndarray:
    if isinstance(index, torch.Tensor):
        return index.numpy()
    if isinstance(index, slice):
        raise ValueError("slice indices are not supported; pass node ids")
    return np.asarray(index, dtype=np.int64)


class Neo4jFeatureStore(DatabaseFeatureStore):
    """Rows from Neo4j: the ``gnn.fetchRows`` procedure when the server has it, else Cypher.

    One session per batch: splitting a batch over parallel sessions was measured slower on a
    2-core server (docs/ARCHITECTURE.md, "Feature fetch and cache").
    """

    def __init__(self, client: Neo4jClient, schema: GraphSchema, num_nodes: int, num_features: int,
                 *, encoding: str = DENSE, density: float | None = None, cache_mb: float = 0.0,
                 chunk_size: int = 20_000, use_procedures: bool | None = None, projection_mb: float = 0.0,
                 adj_prop: str | None = None) -> None:
        """``projection_mb``: server heap budget of a projection of the rows (src/neo4jdb/procedures.py);
        ``adj_prop``: the adjacency property the sampler reads (None: relationships), for the warm-up."""
        super().__init__(schema, num_nodes, num_features, encoding=encoding, density=density, cache_mb=cache_mb,
                         chunk_size=chunk_size)
        self.chunk_size = min(chunk_size, procedures.rows_per_call(self.row_bytes))
        self.use_procedures = procedures.has_procedures(client) if use_procedures is None else use_procedures
        self.client = client
        self.projection_mb = projection_mb
        self.adj_prop = adj_prop

    @classmethod
    def from_record(cls, client: Neo4jClient, schema: GraphSchema, record: dict, **kwargs: Any
                    ) -> "Neo4jFeatureStore":
        """The store for the dataset whose ``(:GnnDataset)`` record is ``record`` (sizes, encoding)."""
        return cls(client, schema, int(record["num_nodes"]), int(record["num_features"]),
                   encoding=record.get("feature_encoding", DENSE), density=record.get("feature_density"),
                   **kwargs)

    def _read_rows(self, ids: list[int]) -> list[tuple[int, bytes, int | None]]:
        return self.client.read_tx(lambda tx: tx.run(self._query, ids=ids).values("id", "x", "y"))

    def _hot_ids(self, k: int) -> np.ndarray:
        if self.use_procedures and procedures.has_hot_nodes(self.client):
            return procedures.hot_nodes(self.client, self.schema, k, adj_prop=self.adj_prop,
                                       projection_mb=self.projection_mb)[0]
        query = hot_nodes.cypher_query(self.schema)
        return np.asarray(self.client.read_tx(lambda tx: tx.run(query, k=k).value("id")), dtype=np.int64)

    @property
    def _reads_repeats(self) -> bool:  # gnn.fetchRows answers repeated ids; the Cypher query does not
        return self.use_procedures

    def _read_into(self, ids: np.ndarray, x: np.ndarray | None = None, y: np.ndarray | None = None,
                   at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if not self.use_procedures:
            return super()._read_into(ids, x, y, at)
        x, y = procedures.fetch_rows(self.client, self.schema, ids, num_features=self.num_features,
                                     encoding=self.encoding, row_bytes=self.row_bytes, projection_mb=self.projection_mb,
                                     out=None if x is None else (x, y), at=at)
        self._count(len(ids), -(-len(ids) // procedures.rows_per_call(self.row_bytes)))
        return x, y

    def _fetch_unique_csr(self, ids: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        if not self.use_procedures:
            return super()._fetch_unique_csr(ids)
        x, y = procedures.fetch_rows_csr(self.client, self.schema, ids, num_features=self.num_features,
                                         row_bytes=self.row_bytes, projection_mb=self.projection_mb)
        self._count(len(ids), -(-len(ids) // procedures.rows_per_call(self.row_bytes)))
        return x, y


def _increasing(positions: np.ndarray, n: int) -> np.ndarray:
    """``np.sort(positions)`` for distinct positions in ``[0, n)``: a mask and one scan instead of a sort."""
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    return np.flatnonzero(mask)
