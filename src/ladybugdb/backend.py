"""``LadybugBackend``: the graph, features and labels stay in an embedded Ladybug database file.

Ladybug is Kuzu's maintained fork: a graph database that speaks Cypher and runs inside the
process, with no server. Each rank opens the database read-only (many processes may), samples
with :class:`~src.ladybugdb.sampler.LadybugNeighborSampler` (one query per hop per batch) and
fetches rows with :class:`LadybugFeatureStore`; the rest is the shared
:class:`~src.backends.database.DatabaseBackend`, so batches are built exactly as with Neo4j.
Ladybug's memory (its buffer pool, ``--ladybug_buffer_mb``) is part of the trainer's RSS.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from src.core import hot_nodes
from src.backends.database import DatabaseBackend
from src.feature_store import DatabaseFeatureStore
from src.graph_store import CypherGraphStore
from src.ladybugdb.client import LOAD_HINT, LadybugClient
from src.ladybugdb.sampler import LadybugNeighborSampler
from src.core.schema import GraphSchema

log = logging.getLogger(__name__)


class LadybugFeatureStore(DatabaseFeatureStore):
    """``x``/``y`` rows from Ladybug: one ``UNWIND $ids ... MATCH`` (primary-key lookups) per chunk."""

    reload_hint = LOAD_HINT
    where = "Ladybug"

    def __init__(self, client: LadybugClient, schema: GraphSchema, num_nodes: int, num_features: int,
                 *, cache_mb: float = 0.0, chunk_size: int = 20_000) -> None:
        super().__init__(schema, num_nodes, num_features, cache_mb=cache_mb, chunk_size=chunk_size)
        self.client = client

    def _read_rows(self, ids: list[int]) -> list[tuple[int, bytes, int | None]]:
        return [tuple(row) for row in self.client.execute(self._query, ids=ids)]

    def _hot_ids(self, k: int) -> np.ndarray:
        rows = self.client.execute(hot_nodes.cypher_query(self.schema, count_subquery=False), k=k)
        return np.asarray([row[0] for row in rows], dtype=np.int64)


class LadybugBackend(DatabaseBackend):
    """Backend contract (docs/ARCHITECTURE.md) over one dataset in a Ladybug database file."""

    name = "ladybug"

    def __init__(self, client: LadybugClient, schema: GraphSchema, record: dict[str, Any], *,
                 fanouts: Sequence[int], batch_size: int, num_loader_threads: int, cache_mb: float = 0.0,
                 cache_warm: str = "degree") -> None:
        super().__init__(schema, record, fanouts=fanouts, batch_size=batch_size,
                         num_loader_threads=num_loader_threads)
        self.client = client
        self.feature_store = LadybugFeatureStore(client, schema, self.num_nodes, self.num_features,
                                                 cache_mb=cache_mb)
        self.feature_store.warm_cache(cache_warm)
        self.graph_store = CypherGraphStore(client, schema, self.num_nodes)

    def _split_ids(self, query: str, split: str) -> list[int]:
        return [row[0] for row in self.client.execute(query, split=split)]

    def _make_sampler(self, seed: int) -> LadybugNeighborSampler:
        return LadybugNeighborSampler(self.client, self.schema, self.num_nodes, self.fanouts, seed=seed)

    def server_pid(self) -> None:
        """Embedded: no server process; the database's memory is in this process's RSS."""
        return None

    def close(self) -> None:
        self.client.close()
