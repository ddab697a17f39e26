"""``Neo4jGraphStore``: the PyG ``GraphStore`` of one dataset in Neo4j (edge-type metadata and sizes).

Sampling does not go through it (``Neo4jNeighborSampler`` samples inside the server); PyG's
``NodeLoader`` only needs the edge type and sizes, which Neo4j answers from its count store in
O(1). The edge list itself is served only for small graphs (tests, debugging), behind a guard.
"""
from __future__ import annotations

from src.client import Neo4jClient
from src.core.pyg_stores import CypherGraphStore
from src.core.schema import GraphSchema


class Neo4jGraphStore(CypherGraphStore):
    """:class:`~src.core.pyg_stores.CypherGraphStore` over a :class:`~src.client.Neo4jClient`."""

    client: Neo4jClient

    def __init__(self, client: Neo4jClient, schema: GraphSchema, num_nodes: int | None = None) -> None:
        super().__init__(client, schema, num_nodes)
