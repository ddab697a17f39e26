"""``Neo4jHeteroRows``: ``x``/``y`` per node type of a heterogeneous dataset in Neo4j, with a cache per type.

Why one :class:`~src.feature_store.Neo4jFeatureStore` per featured node type: a node type is one label
with dense ids, exactly what the homogeneous store reads, so each type gets its fetch planning (each
distinct id read once, rows decoded into place), ``gnn.fetchRows`` or the Cypher fallback, the
server's in-heap row projection of that label (``--projection_mb``) and its own
:class:`~src.core.feature_cache.FeatureCache` kept current by its own
:class:`~src.neo4jdb.live_edits.RowChangeTracker` (the plugin reports changed rows per label, hetero
labels included), all unchanged. ``--cache_mb`` is one budget for the rank, split across the types by
:func:`~src.core.feature_cache.split_budget`. Featureless labelled types read ``y`` with Cypher (no cache:
a label is 8 bytes); ``--featureless degree`` counts the relationships Neo4j holds at fetch time (never
cached: a relationship edit changes them and reports no row).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor

from src.client import Neo4jClient
from src.core.errors import UserError
from src.core.feature_cache import split_budget
from src.core.hetero_stores import HeteroRowStore
from src.core.schema import rel_arrow
from src.feature_store import Neo4jFeatureStore
from src.neo4jdb import procedures
from src.neo4jdb.access import Neo4jAccess
from src.neo4jdb.hetero.schema import HeteroSchema

log = logging.getLogger(__name__)


class Neo4jHeteroRows(HeteroRowStore):
    """``x``/``y`` per node type from Neo4j (``gnn.fetchRows`` per label, else Cypher); thread-safe.

    ``cache_mb``: the rank's feature cache, split across the featured types; ``projection_mb``: the
    server heap its row projections (one per label) may use, as the homogeneous ``--projection_mb``."""

    def __init__(self, client: Neo4jClient, schema: HeteroSchema, use_procedures: bool | None = None,
                 degrees: bool = False, cache_mb: float = 0.0, projection_mb: float = 0.0) -> None:
        super().__init__({t.name: t.num_nodes for t in schema.node_types},
                         {t.name: t.num_features for t in schema.node_types},
                         {t.name for t in schema.node_types if t.labelled},
                         degree_edges=schema.edge_types if degrees else None)
        self.client = client
        self.schema = schema
        self.use_procedures = procedures.has_procedures(client) if use_procedures is None else use_procedures
        access = Neo4jAccess(use_procedures=self.use_procedures, projection_mb=projection_mb)
        featured = [t for t in schema.node_types if t.num_features]
        budgets = split_budget(cache_mb, {t.name: (t.num_nodes, t.num_features) for t in featured})
        self.stores = {t.name: Neo4jFeatureStore(client, schema.type_schema(t.name), t.num_nodes, t.num_features,
                                                 cache_mb=budgets[t.name], access=access) for t in featured}

    def fetch_type(self, node_type: str, ids: np.ndarray, want_x: bool, want_y: bool
                   ) -> tuple[Tensor | None, Tensor | None]:
        store = self.stores.get(node_type)
        if len(ids) == 0:
            f = store.num_features if store is not None else 0
            return torch.zeros((0, f)), torch.zeros(0, dtype=torch.long)
        if store is not None:
            x, y = store.fetch(ids)
            return (torch.from_numpy(x) if want_x else None), (torch.from_numpy(y) if want_y else None)
        y = self._labels(node_type, ids) if want_y else None
        return (torch.zeros((len(ids), 0)) if want_x else None), y

    def cache_stats(self) -> dict[str, Any]:
        """Per featured type: cached rows, capacity, hit rate and rows dropped because they changed."""
        return {t: None if s.cache is None else
                {"rows": len(s.cache), "capacity": s.cache.capacity, "hit_rate": s.cache.hit_rate,
                 "dropped": getattr(s.freshness, "dropped", None)} for t, s in self.stores.items()}

    def fetch_degrees(self, node_type: str, ids: np.ndarray) -> np.ndarray:
        """The degrees Neo4j holds now: one COUNT subquery per column over the relationships themselves."""
        s = self.schema
        counts = []
        for e, way in self.degrees[node_type]:
            r = s.rel(e)
            other = s.node(r.src if way == "in" else r.dst).label
            inward = (way == "in") != r.reverse  # a rev_ type's in-degree is its relationships' out-degree
            arrow = rel_arrow(r.rel_type, inward)
            counts.append(f"COUNT {{ (n){arrow}(m:`{other}`) WHERE m.`{s.id_prop}` IS NOT NULL }}")
        found = self._per_id(node_type, ids, f"[{', '.join(counts)}]")
        return np.asarray(found, dtype=np.int64).reshape(len(ids), len(counts))

    def _labels(self, node_type: str, ids: np.ndarray) -> Tensor:
        found = self._per_id(node_type, ids, f"coalesce(n.`{self.schema.y_prop}`, -1)")
        return torch.as_tensor(np.asarray(found, dtype=np.int64))

    def _per_id(self, node_type: str, ids: np.ndarray, value: str) -> list:
        """``value`` (a Cypher expression of ``n``) of every node of ``ids``, in order; a missing node is one line."""
        s = self.schema
        query = (f"UNWIND $ids AS i MATCH (n:`{s.node(node_type).label}` {{`{s.id_prop}`: i}}) "
                 f"RETURN collect({value}) AS v")
        found = self.client.read_tx(lambda tx: tx.run(query, ids=ids.tolist()).single(strict=True))["v"]
        if len(found) != len(ids):
            raise UserError(f"{len(ids) - len(found)} of the requested {node_type} nodes of dataset "
                            f"{s.dataset!r} are not in Neo4j; reload it")
        return found
