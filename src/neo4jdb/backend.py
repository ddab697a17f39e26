"""``Neo4jBackend``: the trainer's backend whose graph, features and labels stay in Neo4j.

Neighbourhoods are sampled by :class:`Neo4jNeighborSampler` inside the server and features come
from :class:`Neo4jFeatureStore` (both use the gnn.* procedures when the server has them); the
rest is the shared :class:`~src.backends.database.DatabaseBackend`.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

from src.neo4jdb import procedures
from src.backends.database import DatabaseBackend
from src.client import Neo4jClient
from src.core.errors import UserError
from src.feature_store import Neo4jFeatureStore
from src.graph_sampler import Neo4jNeighborSampler
from src.graph_store import Neo4jGraphStore
from src.core.malloc_tuning import retain_freed_memory
from src.neo4jdb.local import local_server_pid
from src.core.schema import GraphSchema

log = logging.getLogger(__name__)


class Neo4jBackend(DatabaseBackend):
    """Backend contract (docs/ARCHITECTURE.md) over one dataset loaded into Neo4j."""

    name = "neo4j"

    def __init__(self, client: Neo4jClient, schema: GraphSchema, record: dict[str, Any], *,
                 fanouts: Sequence[int], batch_size: int, num_loader_threads: int, cache_mb: float = 0.0,
                 use_procedures: bool | None = None, use_adjacency: bool | None = None,
                 projection_mb: float = 0.0, cache_warm: str = "degree") -> None:
        """``use_adjacency`` None: read the packed adjacency property when the procedures are there and
        the dataset record says it was written (``adjacency``); False walks the relationships.
        ``projection_mb``: server heap budget of the dataset's projections (see src/neo4jdb/procedures.py).
        ``cache_warm``: how the feature cache (``cache_mb > 0``) starts (src/core/hot_nodes.py)."""
        retain_freed_memory()  # per-batch feature buffers are tens of MB: reuse, do not re-fault
        super().__init__(schema, record, fanouts=fanouts, batch_size=batch_size,
                         num_loader_threads=num_loader_threads)
        self.client = client
        self.use_procedures = procedures.has_procedures(client) if use_procedures is None else use_procedures
        has_adjacency = self.use_procedures and record.get("adjacency") == schema.adj_prop
        if use_adjacency and not has_adjacency:
            raise UserError(f"dataset {schema.dataset!r} has no adjacency property {schema.adj_prop!r} readable by the "
                            "gnn.* procedures; add it by re-running `python loaders/load_into_neo4j.py "
                            f"--dataset {schema.dataset}` on a server with the procedures")
        self.use_adjacency = has_adjacency if use_adjacency is None else bool(use_adjacency)
        if not self.use_adjacency and self.use_procedures:
            log.info("dataset %s: no adjacency property; the procedures walk the relationships "
                     "(re-run the loader to add it)", schema.dataset)
        self.projection_mb = projection_mb if self.use_procedures else 0.0
        self.feature_store = Neo4jFeatureStore.from_record(client, schema, record, cache_mb=cache_mb,
                                                           use_procedures=self.use_procedures,
                                                           projection_mb=self.projection_mb,
                                                           adj_prop=schema.adj_prop if self.use_adjacency else None)
        self.feature_store.warm_cache(cache_warm)
        self.graph_store = Neo4jGraphStore(client, schema, self.num_nodes)
        self._server_pid = local_server_pid(client.settings.uri)

    def _split_ids(self, query: str, split: str) -> list[int]:
        return self.client.read_tx(lambda tx: tx.run(query, split=split).value("id"))

    def _make_sampler(self, seed: int) -> Neo4jNeighborSampler:
        return Neo4jNeighborSampler(self.client, self.schema, self.fanouts, seed=seed,
                                    use_procedures=self.use_procedures, use_adjacency=self.use_adjacency,
                                    projection_mb=self.projection_mb)

    def server_pid(self) -> int | None:
        """Pid of the local Neo4j server (to log its RSS), None for a remote server."""
        return self._server_pid

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "procedures": self.use_procedures, "adjacency": self.use_adjacency,
                "projection_mb": self.projection_mb}

    def close(self) -> None:
        self.client.close()
