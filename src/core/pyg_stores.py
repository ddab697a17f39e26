"""The PyG remote-backend adapters every backend shares: ``x``/``y`` rows and edge-type metadata.

Why here: PyG's ``NodeLoader`` asks a :class:`~torch_geometric.data.FeatureStore` for the rows of
a batch and a :class:`~torch_geometric.data.GraphStore` for the edge types; the database and the
partitioned backends answer the same six methods the same way, differing only in where the rows
come from (:meth:`NodeRowStore.fetch_tensors`).
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import FeatureStore, GraphStore
from torch_geometric.data.feature_store import TensorAttr
from torch_geometric.data.graph_store import EdgeAttr, EdgeLayout

from src.core.errors import UserError

ATTRS = ("x", "y")
MAX_MATERIALISED_EDGES = 5_000_000


class NodeRowStore(FeatureStore):
    """Read-only ``x`` (features) and ``y`` (labels) of ``num_nodes`` nodes, fetched together per batch."""

    reload_hint = "python loaders/load_into_neo4j.py"  # the command that (re)writes the rows
    full_reads = True  # whether ``index=None`` (every node) may be asked for

    def __init__(self, num_nodes: int, num_features: int) -> None:
        super().__init__()
        self.num_nodes = num_nodes
        self.num_features = num_features

    @abstractmethod
    def fetch_tensors(self, ids: np.ndarray) -> tuple[Tensor, Tensor]:
        """``x`` (dense, or sparse COO for sparse rows) and ``y`` of ``ids`` (int64), in ``ids`` order."""

    def _ids(self, index: Any) -> np.ndarray:
        if index is None:
            if not self.full_reads:
                raise ValueError(f"{type(self).__name__} needs explicit node ids (no full-tensor reads)")
            return np.arange(self.num_nodes)
        if isinstance(index, slice):
            raise ValueError("slice indices are not supported; pass node ids")
        ids = index.numpy() if isinstance(index, Tensor) else np.asarray(index)
        return ids.astype(np.int64, copy=False)

    def _multi_get_tensor(self, attrs: list[TensorAttr]) -> list[Tensor]:
        """x and y of the same index come from one read instead of two."""
        index = attrs[0].index
        if all(a.attr_name in ATTRS for a in attrs) and all(a.index is index for a in attrs):
            x, y = self.fetch_tensors(self._ids(index))
            by_name = {"x": x, "y": y}
            return [by_name[a.attr_name] for a in attrs]
        return [self._get_tensor(a) for a in attrs]

    def _get_tensor(self, attr: TensorAttr) -> Tensor:
        if attr.attr_name not in ATTRS:
            raise KeyError(f"unknown attribute {attr.attr_name!r}; this store holds {ATTRS}")
        x, y = self.fetch_tensors(self._ids(attr.index))
        return x if attr.attr_name == "x" else y

    def _get_tensor_size(self, attr: TensorAttr) -> tuple[int, ...]:
        return (self.num_nodes, self.num_features) if attr.attr_name == "x" else (self.num_nodes,)

    def get_all_tensor_attrs(self) -> list[TensorAttr]:
        return [TensorAttr(group_name=None, attr_name=name) for name in ATTRS]

    def _put_tensor(self, tensor: torch.Tensor, attr: TensorAttr) -> bool:
        raise NotImplementedError(f"{type(self).__name__} is read-only; load data with {self.reload_hint}")

    def _remove_tensor(self, attr: TensorAttr) -> bool:
        raise NotImplementedError(f"{type(self).__name__} is read-only")


class ReadOnlyEdgeTypes(GraphStore):
    """A ``GraphStore`` of edge attributes only, never an edge list: the in-database and
    partitioned samplers read neighbourhoods themselves, ``NodeLoader`` only needs the types."""

    attrs: list[EdgeAttr]

    def get_all_edge_attrs(self) -> list[EdgeAttr]:
        return list(self.attrs)

    def _get_edge_index(self, edge_attr: EdgeAttr) -> tuple[Tensor, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} holds no edge list; sample with the backend's sampler")

    def _put_edge_index(self, edge_index: object, edge_attr: EdgeAttr) -> bool:
        raise NotImplementedError(f"{type(self).__name__} is read-only")

    def _remove_edge_index(self, edge_attr: EdgeAttr) -> bool:
        raise NotImplementedError(f"{type(self).__name__} is read-only")


class EdgeMetadataStore(ReadOnlyEdgeTypes):
    """Edge-type metadata of one homogeneous graph."""

    def __init__(self, num_nodes: int, num_edges: int) -> None:
        super().__init__()
        self.num_nodes = num_nodes
        self.num_edges = num_edges
        self.edge_attr = EdgeAttr(edge_type=None, layout=EdgeLayout.COO, is_sorted=False,
                                  size=(num_nodes, num_nodes))
        self.attrs = [self.edge_attr]


class CypherGraphStore(EdgeMetadataStore):
    """Edge-type metadata of one dataset in a Cypher database; sizes from the database's counts.

    ``client`` is a Neo4j or a Ladybug client: only ``read``, ``count_nodes`` and
    ``count_relationships`` are used, with Cypher both speak. ``edge_index`` can be materialised
    for small graphs (tests, debugging) behind a size guard.
    """

    def __init__(self, client: Any, schema: Any, num_nodes: int | None = None) -> None:
        num_nodes = num_nodes if num_nodes is not None else client.count_nodes(schema.label)
        super().__init__(num_nodes, client.count_relationships(schema.rel_type))
        self.client = client
        self.schema = schema

    def materialise_edge_index(self, max_edges: int = MAX_MATERIALISED_EDGES) -> torch.Tensor:
        """The full ``[2, E]`` edge list (source row 0, target row 1); refused above ``max_edges``."""
        if self.num_edges > max_edges:
            raise UserError(
                f"dataset {self.schema.dataset!r} has {self.num_edges:,} relationships, more than the "
                f"{max_edges:,} allowed in memory; sample with the in-database sampler instead"
            )
        s = self.schema
        query = (f"MATCH {s.neighbour_of(f'a:`{s.label}`', f'b:`{s.label}`')} "
                 f"RETURN a.`{s.id_prop}` AS src, b.`{s.id_prop}` AS dst")
        rows = self.client.read(query)
        arr = np.asarray([(r["src"], r["dst"]) for r in rows], dtype=np.int64).reshape(-1, 2).T
        order = np.lexsort((arr[1], arr[0]))
        return torch.from_numpy(np.ascontiguousarray(arr[:, order]))

    def _get_edge_index(self, edge_attr: EdgeAttr) -> tuple[Tensor, Tensor]:
        if edge_attr.layout != EdgeLayout.COO:
            raise ValueError(f"{type(self).__name__} serves COO only")
        ei = self.materialise_edge_index()
        return ei[0], ei[1]

    def _put_edge_index(self, edge_index: object, edge_attr: EdgeAttr) -> bool:
        raise NotImplementedError(f"{type(self).__name__} is read-only; load data with loaders/load_into_neo4j.py")
