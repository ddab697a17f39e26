"""Hot nodes for the trainer's feature cache: the nodes a neighbour sampler draws most often.

Why: the cache (src/feature_store.py ``FeatureCache``) never evicts, so what it holds is what it
was filled with. Filled by first use it holds whatever the first batches touched; pre-filled with
the nodes of highest degree in the sampling direction it holds the rows later batches need most
(the degree policy of PaGraph and GNNLab; hit rates in docs/ARCHITECTURE.md). A node is sampled
as an in-neighbour of the nodes it points to, so the degree that counts is its **out-degree**: how
often its id occurs in the in-neighbour lists the sampler reads (``nbrs``, or the incoming
relationships). Order: degree descending, ties by id ascending (deterministic).

- Neo4j with the gnn.* plugin: ``gnn.hotNodes`` (jobs/neo4j/plugin HotNodeProcedures.java) counts
  over the dataset's topology projection (the one sampling shares) or one scan of the store and
  answers packed int64 bytes.
- Without it (or ``--cypher_only``), and in Ladybug: one Cypher aggregation (:func:`cypher_query`).
"""
from __future__ import annotations

import logging

import numpy as np

from src import procedures
from src.client import Neo4jClient
from src.schema import GraphSchema

log = logging.getLogger(__name__)

WARM_POLICIES = ("degree", "none")
PROCEDURE = "gnn.hotNodes"

def cypher_query(schema: GraphSchema, *, count_subquery: bool = True) -> str:
    """Ids (column ``id``) of the ``$k`` nodes with most outgoing ``rel_type`` edges, ties by id.

    ``count_subquery``: Neo4j's ``COUNT {}`` (a degree lookup per node); False: ``OPTIONAL MATCH`` +
    ``count`` (Ladybug has no ``COUNT {}``).
    """
    s = schema
    if count_subquery:
        return (f"MATCH (n:`{s.label}`) WITH n.`{s.id_prop}` AS id, COUNT {{ (n)-[:`{s.rel_type}`]->() }} AS d "
                "RETURN id ORDER BY d DESC, id ASC LIMIT $k")
    return (f"MATCH (n:`{s.label}`) OPTIONAL MATCH (n)-[:`{s.rel_type}`]->(m:`{s.label}`) "
            f"WITH n.`{s.id_prop}` AS id, count(m) AS d RETURN id ORDER BY d DESC, id ASC LIMIT $k")


def has_hot_nodes(client: Neo4jClient) -> bool:
    """Whether the server's plugin has ``gnn.hotNodes`` (an older plugin may not); asked once per client."""
    return PROCEDURE in procedures.installed(client)


def hot_nodes(client: Neo4jClient, schema: GraphSchema, k: int, *, adj_prop: str | None = None,
              projection_mb: float = 0.0) -> tuple[np.ndarray, np.ndarray, bool]:
    """``gnn.hotNodes``: ``(ids int64 [min(k, N)], degrees int64, projected)``, degree descending, ties by id.

    ``adj_prop``: count over the packed adjacency property (as the sampler reads it), else over the
    incoming relationships; ``projected``: whether the server counted over its in-heap projection.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0 (got {k})")
    query = ("CALL gnn.hotNodes($label, $rel_type, $id_prop, $adj_prop, $k, $projection_mb) "
             "YIELD ids, degrees, projected RETURN ids, degrees, projected")
    params = {"label": schema.label, "rel_type": schema.rel_type, "id_prop": schema.id_prop,
              "adj_prop": adj_prop or "", "k": int(k), "projection_mb": float(projection_mb)}
    rec = client.read_tx(lambda tx: tx.run(query, params).single(strict=True))
    return procedures.decode_int64(rec["ids"]), procedures.decode_int64(rec["degrees"]), bool(rec["projected"])
