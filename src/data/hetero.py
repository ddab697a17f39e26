""":class:`HeteroGraphDataset`: a graph of several node types and relationship types, in memory.

Why a record of its own: a heterogeneous graph is described by its types (node types with a
label, optional features and a count; relationship types with their source and destination node
types), and the loaders, samplers and stores must agree on those names and their order. Node ids
are dense per node type (0..count-1), as PyG's ``HeteroData`` numbers them. An edge type is
PyG's ``(source type, relationship, destination type)``; a node's neighbours through it are the
sources of its incoming edges of that type (``source_to_target``, as the homogeneous graphs).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from src.core.errors import UserError
from src.core.hetero_fanouts import reverse_edge_type
from src.core.schema import validate_identifier

EdgeType = tuple[str, str, str]


@dataclass(eq=False)
class NodeTypeData:
    """One node type: ``x`` float32 [n, F] or None (featureless), ``y`` int64 [n] or None (-1 unlabelled)."""

    num_nodes: int
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    train_idx: np.ndarray | None = None
    val_idx: np.ndarray | None = None
    test_idx: np.ndarray | None = None

    @property
    def num_features(self) -> int:
        return 0 if self.x is None else int(self.x.shape[1])

    def split_codes(self) -> np.ndarray:
        """int8 [n]: 0 train, 1 val, 2 test, -1 in no split."""
        codes = np.full(self.num_nodes, -1, dtype=np.int8)
        for code, idx in enumerate((self.train_idx, self.val_idx, self.test_idx)):
            if idx is not None:
                codes[np.asarray(idx)] = code
        return codes


@dataclass(eq=False)
class HeteroGraphDataset:
    """Node types by name, edge index [2, E] (rows: source ids, destination ids) per edge type."""

    name: str
    node_types: dict[str, NodeTypeData]
    edges: dict[EdgeType, np.ndarray]
    target_type: str
    num_classes: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for t in self.node_types:
            validate_identifier(t, "node type")
        rels = [e[1] for e in self.edges]
        if len(set(rels)) != len(rels):
            raise UserError(f"dataset {self.name!r}: relationship names must be unique, got {rels}")
        for (src, rel, dst), ei in self.edges.items():
            validate_identifier(rel, "relationship type")
            check_endpoints(self.name, (src, rel, dst), self.node_types)
            if ei.ndim != 2 or ei.shape[0] != 2:
                raise ValueError(f"edge index of {rel} must have shape [2, E], got {ei.shape}")
            for row, t in ((0, src), (1, dst)):
                if ei.shape[1] and (ei[row].min() < 0 or ei[row].max() >= self.node_types[t].num_nodes):
                    raise UserError(f"dataset {self.name!r}: relationship {rel} has {t} ids outside "
                                    f"[0, {self.node_types[t].num_nodes}); fix the source's edge list")
        require_target(self.name, self.target_type, self.node_types)

    @property
    def edge_types(self) -> list[EdgeType]:
        return list(self.edges)

    @property
    def num_nodes(self) -> int:
        return sum(t.num_nodes for t in self.node_types.values())

    @property
    def num_edges(self) -> int:
        return sum(int(e.shape[1]) for e in self.edges.values())

    def describe(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The node types and relationship types as the dataset record stores them."""
        nodes = [{"name": t, "num_nodes": d.num_nodes, "num_features": d.num_features,
                  "labelled": d.y is not None} for t, d in self.node_types.items()]
        rels = [{"src": s, "rel": r, "dst": d, "num_edges": int(e.shape[1])} for (s, r, d), e in self.edges.items()]
        return nodes, rels

    def fingerprint(self) -> str:
        """Digest of the types, every edge, labels, splits and the first feature rows of each type."""
        h = hashlib.blake2b(digest_size=8, person=b"HeteroDataset.v1")
        h.update(json.dumps([self.describe(), self.target_type, self.num_classes]).encode())
        for ei in self.edges.values():
            h.update(np.ascontiguousarray(ei, dtype="<i8").tobytes())
        for d in self.node_types.values():
            if d.y is not None:
                h.update(np.ascontiguousarray(d.y, dtype="<i8").tobytes())
                h.update(d.split_codes().tobytes())
            if d.x is not None:
                h.update(np.ascontiguousarray(d.x[:1024], dtype="<f4").tobytes())
        return h.hexdigest()

    def with_reverse(self) -> HeteroGraphDataset:
        """The same graph with a reverse type ``(dst, rev_<rel>, src)`` (edges flipped) after the stored types,
        so every node type an edge type touches receives messages (PyG's ``ToUndirected``, which folds a
        same-type relationship into itself instead; here ``rev_cites`` stays a type of its own)."""
        rev = {reverse_edge_type(e): np.ascontiguousarray(ei[::-1]) for e, ei in self.edges.items()}
        return HeteroGraphDataset(self.name, self.node_types, {**self.edges, **rev}, self.target_type, self.num_classes,
                                  {**self.meta, "reverse": True})

    def flatten(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
        """The same graph as one node type: ``(edge_index, x, y, offsets)``.

        Node types are numbered one after the other (``offsets[type]``); featureless types get zero
        rows of the target type's width, non-target nodes label -1. The homogeneous baseline
        (GraphSAGE on the flattened graph) trains on this."""
        offsets, total = {}, 0
        for t, d in self.node_types.items():
            offsets[t], total = total, total + d.num_nodes
        width = max(d.num_features for d in self.node_types.values())
        x = np.zeros((total, width), dtype=np.float32)
        y = np.full(total, -1, dtype=np.int64)
        for t, d in self.node_types.items():
            if d.x is not None:
                x[offsets[t]:offsets[t] + d.num_nodes, :d.num_features] = d.x
            if d.y is not None:
                y[offsets[t]:offsets[t] + d.num_nodes] = d.y
        ei = np.concatenate([e + np.array([[offsets[s]], [offsets[t]]]) for (s, _, t), e in self.edges.items()], axis=1)
        return ei.astype(np.int64), x, y, offsets


def check_endpoints(dataset: str, edge_type: EdgeType, node_types: dict[str, Any]) -> None:
    """A relationship type whose endpoints are not declared node types is one line."""
    src, rel, dst = edge_type
    bad = [t for t in (src, dst) if t not in node_types]
    if bad:
        raise UserError(f"dataset {dataset!r}: relationship type {rel} connects {src} -> {dst}, but "
                        f"{', '.join(bad)} is not a declared node type ({', '.join(node_types)}); declare it "
                        "or fix the relationship's endpoints")


def require_target(dataset: str, target: str, node_types: dict[str, Any]) -> None:
    """The target type must exist and carry labels."""
    if target not in node_types:
        raise UserError(f"dataset {dataset!r} has no node type {target!r} (--target_type); "
                        f"node types: {', '.join(node_types)}")
    d = node_types[target]
    labelled = d.y is not None if isinstance(d, NodeTypeData) else bool(d.get("labelled"))
    if not labelled:
        with_labels = [t for t, v in node_types.items()
                       if (v.y is not None if isinstance(v, NodeTypeData) else v.get("labelled"))]
        raise UserError(f"dataset {dataset!r}: node type {target!r} has no labels, so it cannot be the "
                        f"--target_type; labelled types: {', '.join(with_labels) or 'none'}")


def write_flattened_npz(ds: HeteroGraphDataset, path: str) -> str:
    """The graph flattened to one node type (:meth:`HeteroGraphDataset.flatten`) as a shipped-layout
    ``.npz`` (the target type's split shifted by its offset), for the homogeneous baseline."""
    edge_index, x, y, offsets = ds.flatten()
    target = ds.node_types[ds.target_type]
    shift = offsets[ds.target_type]
    splits = {f"{s}_idx": np.asarray(getattr(target, f"{s}_idx"), dtype=np.int64) + shift
              for s in ("train", "val", "test")}
    meta = {"source": f"flattened {ds.name}", "num_classes": ds.num_classes, "offsets": offsets, "directed": True}
    np.savez(path, x=x, y=y, edge_index=edge_index, meta=np.array(json.dumps(meta)), **splits)
    return path
