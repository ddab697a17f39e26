"""``Neo4jFeatureStore``: node features ``x`` and labels ``y`` read from Neo4j per batch (PyG ``FeatureStore``).

Rows come from the ``gnn.fetchRows`` procedure when the server has it (one call per ~16 MiB of
rows, answered from the server's projection when it has one), else from one Cypher
``UNWIND ... MATCH`` per chunk; fetch planning, the cache and decoding are the shared
:class:`~src.core.row_fetch.DatabaseFeatureStore`. The cache drops the rows the database reports
changed before each fetch (:class:`~src.neo4jdb.live_edits.RowChangeTracker`), and is off on a
server that cannot report them.
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from src.client import Neo4jClient
from src.core.codecs import DENSE, ColumnAffine
from src.core.hot_nodes import cypher_query
from src.core.record import DatasetRecord
from src.core.row_fetch import DatabaseFeatureStore
from src.core.schema import GraphSchema
from src.neo4jdb import live_edits, procedures
from src.neo4jdb.access import Neo4jAccess

log = logging.getLogger(__name__)


class Neo4jFeatureStore(DatabaseFeatureStore):
    """Rows from Neo4j along ``access`` (procedures or Cypher; projection budget; the adjacency the
    sampler reads, which the cache warm-up counts degrees over).

    One session per batch: splitting a batch over parallel sessions was measured slower on a
    2-core server (bench/RESULTS.md).
    """

    def __init__(self, client: Neo4jClient, schema: GraphSchema, num_nodes: int, num_features: int,
                 *, encoding: str = DENSE, density: float | None = None, quant: ColumnAffine | None = None,
                 cache_mb: float = 0.0,
                 chunk_size: int = 20_000, access: Neo4jAccess | None = None) -> None:
        """``access`` None: the procedures when the server has them, relationships, no projection."""
        super().__init__(schema, num_nodes, num_features, encoding=encoding, density=density, quant=quant,
                         cache_mb=cache_mb,
                         chunk_size=chunk_size)
        self.client = client
        self.access = access if access is not None else Neo4jAccess.resolve(client, schema)
        self.chunk_size = min(chunk_size, procedures.rows_per_call(self.row_bytes))
        if self.cache is not None:
            if live_edits.watches_writes(client, schema):
                self.freshness = live_edits.RowChangeTracker(client, schema)
            else:
                log.warning("%s: the server's gnn.* plugin does not report changed rows (not installed, too old, or "
                            "not loaded at start), so cached rows could go stale when the data is edited; the "
                            "feature cache (--cache_mb %g) is off", schema.dataset, cache_mb)
                self.cache = None

    @classmethod
    def from_record(cls, client: Neo4jClient, record: DatasetRecord, **kwargs: object) -> Neo4jFeatureStore:
        """The store of the dataset ``record`` describes (names, sizes, encoding)."""
        return cls(client, record.schema, record.num_nodes, record.num_features,
                   encoding=record.feature_encoding, density=record.feature_density, quant=record.quant(), **kwargs)

    @property
    def use_procedures(self) -> bool:
        return self.access.use_procedures

    def _read_rows(self, ids: list[int]) -> list[tuple[int, bytes, int | None]]:
        return self.client.read_tx(lambda tx: tx.run(self._query, ids=ids).values("id", "x", "y"))

    def _hot_ids(self, k: int) -> np.ndarray:
        a = self.access
        if a.use_procedures and procedures.has_hot_nodes(self.client):
            return procedures.hot_nodes(self.client, self.schema, k, adj_prop=a.adj_prop,
                                        projection_mb=a.projection_mb)[0]
        query = cypher_query(self.schema)
        return np.asarray(self.client.read_tx(lambda tx: tx.run(query, k=k).value("id")), dtype=np.int64)

    @property
    def _reads_repeats(self) -> bool:  # gnn.fetchRows answers repeated ids; the Cypher query does not
        return self.use_procedures

    def _read_into(self, ids: np.ndarray, x: np.ndarray | None = None, y: np.ndarray | None = None,
                   at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if not self.use_procedures:
            return super()._read_into(ids, x, y, at)
        x, y = procedures.fetch_rows(self.client, self.schema, ids, num_features=self.num_features,
                                     encoding=self.encoding, quant=self.quant, row_bytes=self.row_bytes,
                                     projection_mb=self.access.projection_mb,
                                     out=None if x is None else (x, y), at=at)
        self._count(len(ids), -(-len(ids) // procedures.rows_per_call(self.row_bytes)))
        return x, y

    def _fetch_unique_csr(self, ids: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        if not self.use_procedures:
            return super()._fetch_unique_csr(ids)
        x, y = procedures.fetch_rows_csr(self.client, self.schema, ids, num_features=self.num_features,
                                         row_bytes=self.row_bytes, projection_mb=self.access.projection_mb)
        self._count(len(ids), -(-len(ids) // procedures.rows_per_call(self.row_bytes)))
        return x, y
