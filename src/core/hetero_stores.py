"""PyG remote-backend stores of a heterogeneous graph: rows per node type, edge-type metadata.

Why: ``NodeLoader`` over ``(FeatureStore, GraphStore)`` with a ``HeteroSamplerOutput`` asks for
``TensorAttr(group_name=<node type>, attr_name='x'|'y')`` of each type's sampled ids and for the
edge types (``EdgeAttr(edge_type=(src, rel, dst))``); the in-memory and the Neo4j backends answer
the same way and differ only in :meth:`HeteroRowStore.fetch_type`. Featureless types expose no
``x`` (the model embeds them by ``n_id``); only labelled types expose ``y``.

``--featureless degree`` gives featureless types an ``x`` of their own: ``log1p`` of the node's
degree per relationship type touching the type (:func:`degree_columns`: in-degree over each type
pointing to it, then out-degree over each type leaving it, in the dataset's order), counting only
neighbours of the declared types, as the samplers do. Each wing counts from its own storage
(:meth:`HeteroRowStore.fetch_degrees`: the in-memory edge lists, or the relationships Neo4j holds at
fetch time), and the float32 ``log1p`` of the same integers is the same on every backend.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import FeatureStore
from torch_geometric.data.feature_store import TensorAttr
from torch_geometric.data.graph_store import EdgeAttr, EdgeLayout

from src.core.hetero_fanouts import EdgeType
from src.core.pyg_stores import ReadOnlyEdgeTypes


FEATURELESS = ("embedding", "constant", "degree")
Degree = tuple[EdgeType, str]  # (edge type, "in" | "out")


def degree_columns(num_features: dict[str, int], edge_types: list[EdgeType]) -> dict[str, list[Degree]]:
    """The degree columns of every featureless type: in-degree per edge type ending at it, then out-degree
    per edge type starting at it (a type that no edge type touches gets none, and one zero column)."""
    return {t: [(e, "in") for e in edge_types if e[2] == t] + [(e, "out") for e in edge_types if e[0] == t]
            for t, f in num_features.items() if not f}


class HeteroRowStore(FeatureStore):
    """Read-only ``x``/``y`` per node type; ``num_nodes``/``num_features`` per type (0 features: none).

    ``degree_edges``: the dataset's edge types when featureless types get degree features
    (``--featureless degree``), else None."""

    def __init__(self, num_nodes: dict[str, int], num_features: dict[str, int], labelled: set[str],
                 degree_edges: list[EdgeType] | None = None) -> None:
        super().__init__()
        self.num_nodes = dict(num_nodes)
        self.stored_features = dict(num_features)
        self.degrees = {} if degree_edges is None else degree_columns(num_features, degree_edges)
        self.num_features = {t: max(1, len(self.degrees[t])) if t in self.degrees else f
                             for t, f in num_features.items()}
        self.labelled = set(labelled)

    def fetch_degrees(self, node_type: str, ids: np.ndarray) -> np.ndarray:
        """int64 [len(ids), len(self.degrees[node_type])]: the degrees of :func:`degree_columns`."""
        raise NotImplementedError(f"{type(self).__name__} has no degree features")

    def fetch(self, node_type: str, ids: np.ndarray, want_x: bool, want_y: bool
              ) -> tuple[Tensor | None, Tensor | None]:
        """:meth:`fetch_type`, with the degree features of a featureless type as its ``x``."""
        if node_type not in self.degrees or not want_x:
            return self.fetch_type(node_type, ids, want_x, want_y)
        x = np.zeros((len(ids), self.num_features[node_type]), dtype=np.float32)
        if self.degrees[node_type] and len(ids):
            x[:] = np.log1p(self.fetch_degrees(node_type, ids).astype(np.float32))
        y = self.fetch_type(node_type, ids, False, True)[1] if want_y else None
        return torch.from_numpy(x), y

    @abstractmethod
    def fetch_type(self, node_type: str, ids: np.ndarray, want_x: bool, want_y: bool
                   ) -> tuple[Tensor | None, Tensor | None]:
        """``x`` float32 [len(ids), F] and/or ``y`` int64 [len(ids)] of ``ids`` of ``node_type``, in order."""

    def _ids(self, attr: TensorAttr) -> np.ndarray:
        index = attr.index
        if index is None:
            return np.arange(self.num_nodes[attr.group_name], dtype=np.int64)
        ids = index.numpy() if isinstance(index, Tensor) else np.asarray(index)
        return ids.astype(np.int64, copy=False)

    def _multi_get_tensor(self, attrs: list[TensorAttr]) -> list[Tensor]:
        """x and y of one node type come from one read."""
        out: dict[int, Tensor] = {}
        by_type: dict[str, list[int]] = {}
        for i, a in enumerate(attrs):
            by_type.setdefault(a.group_name, []).append(i)
        for node_type, idx in by_type.items():
            names = {attrs[i].attr_name for i in idx}
            x, y = self.fetch(node_type, self._ids(attrs[idx[0]]), "x" in names, "y" in names)
            for i in idx:
                out[i] = x if attrs[i].attr_name == "x" else y
        return [out[i] for i in range(len(attrs))]

    def _get_tensor(self, attr: TensorAttr) -> Tensor:
        self._check(attr)
        x, y = self.fetch(attr.group_name, self._ids(attr), attr.attr_name == "x", attr.attr_name == "y")
        return x if attr.attr_name == "x" else y

    def _check(self, attr: TensorAttr) -> None:
        if attr.group_name not in self.num_nodes:
            raise KeyError(f"unknown node type {attr.group_name!r}; the store holds {', '.join(self.num_nodes)}")
        if attr.attr_name == "x" and not self.num_features[attr.group_name]:
            raise KeyError(f"node type {attr.group_name!r} has no features")
        if attr.attr_name == "y" and attr.group_name not in self.labelled:
            raise KeyError(f"node type {attr.group_name!r} has no labels")
        if attr.attr_name not in ("x", "y"):
            raise KeyError(f"unknown attribute {attr.attr_name!r}; this store holds x and y")

    def _get_tensor_size(self, attr: TensorAttr) -> tuple[int, ...]:
        self._check(attr)
        n = self.num_nodes[attr.group_name]
        return (n, self.num_features[attr.group_name]) if attr.attr_name == "x" else (n,)

    def get_all_tensor_attrs(self) -> list[TensorAttr]:
        attrs = [TensorAttr(group_name=t, attr_name="x") for t, f in self.num_features.items() if f]
        return attrs + [TensorAttr(group_name=t, attr_name="y") for t in self.num_nodes if t in self.labelled]

    def _put_tensor(self, tensor: torch.Tensor, attr: TensorAttr) -> bool:
        raise NotImplementedError(f"{type(self).__name__} is read-only")

    def _remove_tensor(self, attr: TensorAttr) -> bool:
        raise NotImplementedError(f"{type(self).__name__} is read-only")


class InMemoryHeteroRows(HeteroRowStore):
    """Rows of a :class:`~src.data.hetero.HeteroGraphDataset` held in RAM (the oracle)."""

    def __init__(self, ds: Any, degrees: bool = False) -> None:
        super().__init__({t: d.num_nodes for t, d in ds.node_types.items()},
                         {t: d.num_features for t, d in ds.node_types.items()},
                         {t for t, d in ds.node_types.items() if d.y is not None},
                         degree_edges=list(ds.edges) if degrees else None)
        self.ds = ds
        self._degree_table = {t: np.stack([np.bincount(ds.edges[e][1 if way == "in" else 0],
                                                       minlength=self.num_nodes[t]) for e, way in cols], axis=1)
                              for t, cols in self.degrees.items() if cols}

    def fetch_degrees(self, node_type: str, ids: np.ndarray) -> np.ndarray:
        return self._degree_table[node_type][ids].astype(np.int64, copy=False)

    def fetch_type(self, node_type: str, ids: np.ndarray, want_x: bool, want_y: bool
                   ) -> tuple[Tensor | None, Tensor | None]:
        d = self.ds.node_types[node_type]
        x = torch.from_numpy(np.ascontiguousarray(d.x[ids], dtype=np.float32)) if want_x else None
        y = torch.from_numpy(np.asarray(d.y[ids], dtype=np.int64)) if want_y else None
        return x, y


class HeteroEdgeMetadata(ReadOnlyEdgeTypes):
    """The edge types and their sizes."""

    def __init__(self, num_nodes: dict[str, int], num_edges: dict[EdgeType, int]) -> None:
        super().__init__()
        self.attrs = [EdgeAttr(edge_type=e, layout=EdgeLayout.COO, is_sorted=False,
                               size=(num_nodes[e[0]], num_nodes[e[2]])) for e in num_edges]
        self.num_edges = dict(num_edges)

