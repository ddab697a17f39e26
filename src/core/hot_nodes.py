"""Hot nodes for the trainer's feature cache: the nodes a neighbour sampler draws most often.

Why: the cache (src/core/feature_cache.py ``FeatureCache``) never evicts, so what it holds is what it
was filled with. Filled by first use it holds whatever the first batches touched; pre-filled with
the nodes of highest degree in the sampling direction it holds the rows later batches need most
(the degree policy of PaGraph and GNNLab; hit rates in bench/RESULTS.md). A node is sampled
as an in-neighbour of the nodes it points to, so the degree that counts is its **out-degree**: how
often its id occurs in the in-neighbour lists the sampler reads (``nbrs``, or the incoming
relationships). Order: degree descending, ties by id ascending (deterministic).

- Neo4j with the gnn.* plugin: ``gnn.hotNodes`` (jobs/neo4j/plugin HotNodeProcedures.java) counts
  over the dataset's topology projection (the one sampling shares) or one scan of the store and
  answers packed int64 bytes.
- Without it (or ``--cypher_only``), and in Ladybug: one Cypher aggregation (:func:`cypher_query`).
"""
from __future__ import annotations

from src.core.schema import GraphSchema

WARM_POLICIES = ("degree", "none")


def cypher_query(schema: GraphSchema, *, count_subquery: bool = True) -> str:
    """Ids (column ``id``) of the ``$k`` nodes that are a neighbour of most nodes (for "in": out-degree), ties by id.

    ``count_subquery``: Neo4j's ``COUNT {}`` (a degree lookup per node); False: ``OPTIONAL MATCH`` +
    ``count`` (Ladybug has no ``COUNT {}``).
    """
    s = schema
    if count_subquery:
        return (f"MATCH (n:`{s.label}`) WITH n.`{s.id_prop}` AS id, COUNT {{ {s.neighbour_of('n', '')} }} AS d "
                "RETURN id ORDER BY d DESC, id ASC LIMIT $k")
    return (f"MATCH (n:`{s.label}`) OPTIONAL MATCH {s.neighbour_of('n', f'm:`{s.label}`')} "
            f"WITH n.`{s.id_prop}` AS id, count(m) AS d RETURN id ORDER BY d DESC, id ASC LIMIT $k")
