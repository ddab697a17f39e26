"""The on-disk layout of a partitioned heterogeneous graph, and one partition of it in RAM.

Written by src/in_memory/hetero_partition.py; read by every rank of the partitioned hetero backend.
Layout of ``<output_dir>/<dataset>/<k>-parts/`` (``meta.json`` with ``"hetero": true``):

* ``node_map/<type>.npy``: owner of every node of that type (smallest unsigned dtype holding ``k - 1``);
* ``part_<i>/nodes/<type>/nodes.npy`` int64: sorted ids of the owned nodes of that type (local id =
  position); ``halo.npy``: sorted ids of non-owned in-neighbours of owned nodes (any relationship
  type); ``x.npy``/``y.npy`` and ``halo_x.npy``/``halo_y.npy``: their rows (featured / labelled
  types only), in that order;
* ``part_<i>/rels/<rel>/indptr.npy`` int64 [n_dst + 1] and ``indices.npy`` int64: for each owned node
  of the destination type, its in-neighbours' ids (source type) through ``rel``, sorted by id;
* ``part_<i>/{train,val,test}_idx.npy``: sorted owned ids of the target type in each split.

In RAM, owned and halo rows form one table per type sorted by id (``held``), so a row is local when
this rank holds it either way; everything else comes from its owner.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from src.core.csr import CSRGraph
from src.core.errors import UserError
from src.core.hetero_fanouts import EdgeType
from src.core.hetero_sampling import sample_typed_hop
from src.core.schema import SPLITS
from src.in_memory.partition_format import META_FILE, part_dir, read_meta

HETERO_FORMAT = "hetero-1"
NODE_MAP_DIR = "node_map"


def node_dir(root: Path, index: int, node_type: str) -> Path:
    return part_dir(root, index) / "nodes" / node_type


def rel_dir(root: Path, index: int, rel: str) -> Path:
    return part_dir(root, index) / "rels" / rel


@dataclass(eq=False)
class HeldRows:
    """One node type's owned nodes, and the rows this rank holds (owned and halo) sorted by id."""

    nodes: np.ndarray  # owned, sorted
    halo: np.ndarray  # sorted
    held: np.ndarray  # owned ∪ halo, sorted
    x: np.ndarray | None  # float32 [len(held), F]
    y: np.ndarray | None  # int64 [len(held)]

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Position in ``held`` of each id, -1 where this rank holds no row of it."""
        pos = np.searchsorted(self.held, ids)
        ok = pos < len(self.held)
        ok[ok] = self.held[pos[ok]] == ids[ok]
        return np.where(ok, pos, -1)


@dataclass(eq=False)
class LocalHeteroPartition:
    """What a rank owns per node and relationship type, plus every type's node map (whom to ask)."""

    index: int
    meta: dict[str, Any]
    node_types: list[str]
    edge_types: list[EdgeType]
    node_map: dict[str, np.ndarray]
    rows: dict[str, HeldRows]
    csr: dict[EdgeType, CSRGraph]  # local destination index, global source ids
    splits: dict[str, np.ndarray] = field(repr=False)

    def to_local(self, node_type: str, ids: np.ndarray) -> np.ndarray:
        """Local ids of owned ``ids``; ValueError for a node this partition does not own."""
        nodes = self.rows[node_type].nodes
        local = np.searchsorted(nodes, ids)
        ok = local < len(nodes)
        ok[ok] = nodes[local[ok]] == ids[ok]
        if not ok.all():
            raise ValueError(f"partition {self.index} does not own {node_type} nodes {ids[~ok][:5].tolist()}: "
                             "the ranks use different partitionings")
        return local

    def typed_sample(self, edge_type: int, frontier: np.ndarray, fanout: int, states: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """One hop of relationship type ``edge_types[edge_type]`` for owned frontier nodes, one minstd state each."""
        e = self.edge_types[edge_type]
        return sample_typed_hop(self.csr[e], self.to_local(e[2], frontier), fanout, states)

    def typed_rows(self, node_type: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x float32 [n, F] (F may be 0), y int64 [n] (-1 for an unlabelled type))`` of held ``ids``."""
        rows = self.rows[self.node_types[node_type]]
        pos = rows.positions(ids)
        if (pos < 0).any():
            raise ValueError(f"partition {self.index} holds no row of {self.node_types[node_type]} nodes "
                             f"{ids[pos < 0][:5].tolist()}: the ranks use different partitionings")
        x = rows.x[pos] if rows.x is not None else np.zeros((len(ids), 0), np.float32)
        y = rows.y[pos] if rows.y is not None else np.full(len(ids), -1, np.int64)
        return np.ascontiguousarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)

    def identity(self) -> dict[str, Any]:
        """What every rank must agree on: same graph, same assignment of every type's nodes."""
        h = hashlib.blake2b(digest_size=8)
        for t in self.node_types:
            h.update(t.encode() + str(self.node_map[t].dtype).encode())
            h.update(np.ascontiguousarray(self.node_map[t]).tobytes())
        keys = ("dataset", "fingerprint", "num_partitions", "method", "seed")
        return {**{k: self.meta.get(k) for k in keys}, "node_map": h.hexdigest()}


def load_hetero_partition(root: Path, index: int) -> LocalHeteroPartition:
    """Read ``part_<index>`` of a complete heterogeneous partition folder fully into RAM."""
    meta = read_meta(root)
    if meta is None:
        raise UserError(f"no complete partitioning at {root} (no {META_FILE})")
    if not meta.get("hetero"):
        raise UserError(f"dataset {meta.get('dataset')!r} is not heterogeneous: drop --target_type")
    node_types = [n["name"] for n in meta["node_types"]]
    edge_types = [(r["src"], r["rel"], r["dst"]) for r in meta["rel_types"]]
    try:
        node_map = {t: np.load(root / NODE_MAP_DIR / f"{t}.npy") for t in node_types}
        rows = {t: _held_rows(node_dir(root, index, t)) for t in node_types}
        csr = {e: CSRGraph(indptr=np.load(rel_dir(root, index, e[1]) / "indptr.npy"),
                           indices=np.load(rel_dir(root, index, e[1]) / "indices.npy")) for e in edge_types}
        splits = {s: np.load(part_dir(root, index) / f"{s}_idx.npy") for s in SPLITS}
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"partition {part_dir(root, index)} is incomplete or corrupt ({exc}): "
                        "partition again with partition_graph.py --overwrite") from None
    return LocalHeteroPartition(index, meta, node_types, edge_types, node_map, rows, csr, splits)


def _held_rows(folder: Path) -> HeldRows:
    nodes, halo = np.load(folder / "nodes.npy"), np.load(folder / "halo.npy")
    held = np.concatenate([nodes, halo])
    order = np.argsort(held, kind="stable")
    tables = {}
    for name in ("x", "y"):
        if (folder / f"{name}.npy").exists():
            tables[name] = np.concatenate([np.load(folder / f"{name}.npy"), np.load(folder / f"halo_{name}.npy")])[order]
    return HeldRows(nodes, halo, held[order], tables.get("x"), tables.get("y"))
