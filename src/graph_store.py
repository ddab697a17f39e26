"""PyG GraphStore over one dataset in a graph database: metadata and sizes, never the whole edge list.

Sampling does not go through this store (the in-database sampler queries the database itself); PyG's
``NodeLoader``/``filter_custom_store`` only needs the edge-type metadata. ``edge_index`` can be
materialised explicitly for small graphs (tests, debugging) behind a size guard.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch_geometric.data import GraphStore
from torch_geometric.data.graph_store import EdgeAttr, EdgeLayout

from src.core.errors import UserError
from src.core.schema import GraphSchema

log = logging.getLogger(__name__)

MAX_MATERIALISED_EDGES = 5_000_000


class CypherGraphStore(GraphStore):
    """Edge-type metadata of one dataset; sizes come from the database's counts.

    ``client`` is a :class:`~src.client.Neo4jClient` or a :class:`~src.ladybugdb.client.LadybugClient`:
    only ``read``, ``count_nodes`` and ``count_relationships`` are used, with Cypher both speak.
    """

    def __init__(self, client: Any, schema: GraphSchema, num_nodes: int | None = None) -> None:
        super().__init__()
        self.client = client
        self.schema = schema
        self.num_nodes = num_nodes if num_nodes is not None else client.count_nodes(schema.label)
        self.num_edges = client.count_relationships(schema.rel_type)
        self.edge_attr = EdgeAttr(edge_type=None, layout=EdgeLayout.COO, is_sorted=False,
                                  size=(self.num_nodes, self.num_nodes))

    def get_all_edge_attrs(self) -> list[EdgeAttr]:
        return [self.edge_attr]

    def materialise_edge_index(self, max_edges: int = MAX_MATERIALISED_EDGES) -> torch.Tensor:
        """The full ``[2, E]`` edge list (source row 0, target row 1); refused above ``max_edges``."""
        if self.num_edges > max_edges:
            raise UserError(
                f"dataset {self.schema.dataset!r} has {self.num_edges:,} relationships, more than the "
                f"{max_edges:,} allowed in memory; sample with the in-database sampler instead"
            )
        s = self.schema
        query = (f"MATCH (a:`{s.label}`)-[:`{s.rel_type}`]->(b:`{s.label}`) "
                 f"RETURN a.`{s.id_prop}` AS src, b.`{s.id_prop}` AS dst")
        rows = self.client.read(query)
        arr = np.asarray([(r["src"], r["dst"]) for r in rows], dtype=np.int64).reshape(-1, 2).T
        order = np.lexsort((arr[1], arr[0]))
        return torch.from_numpy(np.ascontiguousarray(arr[:, order]))

    def _get_edge_index(self, edge_attr: EdgeAttr) -> tuple[torch.Tensor, torch.Tensor]:
        if edge_attr.layout != EdgeLayout.COO:
            raise ValueError(f"{type(self).__name__} serves COO only")
        ei = self.materialise_edge_index()
        return ei[0], ei[1]

    def _put_edge_index(self, edge_index: object, edge_attr: EdgeAttr) -> bool:
        raise NotImplementedError(f"{type(self).__name__} is read-only; load data with loaders/load_into_neo4j.py")

    def _remove_edge_index(self, edge_attr: EdgeAttr) -> bool:
        raise NotImplementedError(f"{type(self).__name__} is read-only")


Neo4jGraphStore = CypherGraphStore  # the name the Neo4j backend and its tests use
