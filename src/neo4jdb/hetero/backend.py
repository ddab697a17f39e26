"""``Neo4jHeteroBackend``: a heterogeneous dataset trained from Neo4j (samples and rows per batch)."""
from __future__ import annotations

from typing import Any

import numpy as np

from src.backends.hetero import HeteroBackend
from src.client import Neo4jClient
from src.neo4jdb.local import local_server_pid
from src.neo4jdb.hetero.rows import Neo4jHeteroRows
from src.neo4jdb.hetero.sampler import Neo4jHeteroSampler
from src.neo4jdb.hetero.schema import HeteroSchema


class Neo4jHeteroBackend(HeteroBackend):
    name = "neo4j"

    def __init__(self, client: Neo4jClient, schema: HeteroSchema, *, target_type: str, fanouts: str,
                 batch_size: int, num_loader_threads: int, use_procedures: bool | None = None,
                 featureless: str = "embedding", cache_mb: float = 0.0, projection_mb: float = 0.0,
                 add_reverse: bool = False) -> None:
        """``cache_mb``: the rank's feature cache over all featured types; ``projection_mb``: the server heap its
        per-type projections (rows per label, CSR per relationship type) may use (0: the store);
        ``add_reverse``: also sample every relationship type backwards (``rev_<rel>``, :meth:`HeteroSchema.with_reverse`)."""
        schema = schema.with_reverse() if add_reverse else schema
        super().__init__(dataset=schema.dataset, node_types={t.name: (t.num_nodes, t.num_features, t.labelled)
                                                             for t in schema.node_types},
                         edge_types={r.edge_type: r.num_edges for r in schema.rel_types}, target_type=target_type,
                         num_classes=schema.num_classes, fanouts=fanouts, batch_size=batch_size,
                         num_loader_threads=num_loader_threads, featureless=featureless)
        self.client = client
        self.schema = schema
        self.use_procedures = use_procedures
        self.projection_mb = projection_mb
        self.rows = Neo4jHeteroRows(client, schema, use_procedures=use_procedures, degrees=featureless == "degree",
                                    cache_mb=cache_mb, projection_mb=projection_mb)
        self._server_pid = local_server_pid(client.settings.uri)

    def _split_ids(self, split: str) -> np.ndarray:
        s, label = self.schema, self.schema.node(self.input_type).label
        recs = self.client.read(f"MATCH (n:`{label}`) WHERE n.`{s.split_prop}` = $split "
                                f"RETURN n.`{s.id_prop}` AS id ORDER BY id", split=split)
        return np.asarray([r["id"] for r in recs], dtype=np.int64)

    def _make_sampler(self, seed: int) -> Neo4jHeteroSampler:
        return Neo4jHeteroSampler(self.client, self.schema, self.type_fanouts, seed=seed,
                                  use_procedures=self.use_procedures, projection_mb=self.projection_mb)

    def _loader_data(self):  # noqa: ANN202
        return self.rows, self.edge_metadata

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "projection_mb": self.projection_mb, "feature_cache": self.rows.cache_stats()}

    def server_pid(self) -> int | None:
        return self._server_pid

    def close(self) -> None:
        self.client.close()
