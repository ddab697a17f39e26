"""Split a heterogeneous graph into ``k`` partitions on disk (layout: src/in_memory/hetero_partition_format.py).

Why every node type is partitioned, not only the target type: sampling a node needs its
in-neighbour lists, and rows are fetched per type, so each node of each type needs one owner.
``metis`` partitions the graph flattened to one node type (every relationship type, symmetrised;
``metis_assignment``), so a paper, its authors and its venue tend to share a part; ``random``
deals each type's nodes round robin after a seeded shuffle (equal sizes per type). Every edge is
stored once, with the partition owning its destination, its lists sorted by source id like
:class:`~src.core.hetero_sampling.HeteroCSR`, so an owner's sample equals the whole graph's. Each
partition also keeps the rows of its halo per type (the non-owned in-neighbours of its nodes
through any relationship type), so a batch's first-hop rows are mostly local.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from src.core.arrays import segment_arange
from src.core.errors import UsageError
from src.core.hetero_sampling import HeteroCSR
from src.core.schema import SPLITS
from src.data.hetero import HeteroGraphDataset
from src.in_memory.hetero_partition_format import HETERO_FORMAT, NODE_MAP_DIR, node_dir, part_dir, rel_dir
from src.train.run_log import max_rss_mb

log = logging.getLogger(__name__)


def hetero_assignment(ds: HeteroGraphDataset, k: int, method: str, seed: int) -> dict[str, np.ndarray]:
    """Owner of every node, per node type (int64 [n_type] each)."""
    from src.in_memory.partition import metis_assignment, random_assignment

    if method == "random":
        return {t: random_assignment(d.num_nodes, k, seed + i) for i, (t, d) in enumerate(ds.node_types.items())}
    offsets, total = {}, 0
    for t, d in ds.node_types.items():
        offsets[t], total = total, total + d.num_nodes
    flat = np.concatenate([e + np.array([[offsets[s]], [offsets[d]]]) for (s, _, d), e in ds.edges.items()]
                          + [np.zeros((2, 0), np.int64)], axis=1)
    owners = metis_assignment(flat.astype(np.int64), total, k, seed)
    return {t: owners[offsets[t]:offsets[t] + d.num_nodes] for t, d in ds.node_types.items()}


def partition_hetero(ds: HeteroGraphDataset, cfg: Any, root: Path, fingerprint: str) -> dict[str, Any]:
    """Assign and write (``write_atomically``: a temporary sibling folder swapped in, meta.json last)."""
    from src.in_memory.partition import write_atomically

    start = time.perf_counter()
    k = cfg.num_partitions
    empty = [t for t, d in ds.node_types.items() if d.num_nodes < k]
    if empty:
        raise UsageError(f"--num_partitions {k} exceeds the nodes of type {empty[0]!r} of {ds.name!r} "
                         f"({ds.node_types[empty[0]].num_nodes}); use fewer partitions")
    maps = hetero_assignment(ds, k, cfg.method, cfg.seed)

    def fill(tmp: Path) -> dict[str, Any]:
        (tmp / NODE_MAP_DIR).mkdir()
        for t, owners in maps.items():
            np.save(tmp / NODE_MAP_DIR / f"{t}.npy", owners.astype(np.min_scalar_type(max(k - 1, 0))))
        graph = HeteroCSR.from_edges(ds.edges, {t: d.num_nodes for t, d in ds.node_types.items()})
        parts = [_write_part(ds, graph, maps, p, tmp) for p in range(k)]
        cut = sum(int(np.count_nonzero(maps[s][e[0]] != maps[d][e[1]])) for (s, _, d), e in ds.edges.items())
        nodes, rels = ds.describe()
        return {"format": HETERO_FORMAT, "hetero": True, "dataset": ds.name, "fingerprint": fingerprint,
                "node_types": nodes, "rel_types": rels, "target_type": ds.target_type, "num_classes": ds.num_classes,
                "num_nodes": ds.num_nodes, "num_edges": ds.num_edges, "num_partitions": k, "method": cfg.method,
                "seed": cfg.seed, "partitions": parts, "edge_cut": cut,
                "edge_cut_fraction": cut / max(ds.num_edges, 1),
                "balance": float(max(sum(p["nodes"].values()) for p in parts) / (ds.num_nodes / k)),
                "time_s": time.perf_counter() - start, "peak_rss_mb": max_rss_mb(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    meta = write_atomically(root, fill)
    cut = meta["edge_cut"]
    log.info("partitioned %s into %d (%s, every node type) in %.1f s: edge cut %d (%.2f%%)", ds.name, k,
             cfg.method, meta["time_s"], cut, 100 * meta["edge_cut_fraction"])
    return meta


def _write_part(ds: HeteroGraphDataset, graph: HeteroCSR, maps: dict[str, np.ndarray], p: int, out: Path
                ) -> dict[str, Any]:
    """``part_<p>``: per relationship type the in-lists of owned destinations, per node type owned and halo rows."""
    owned = {t: np.flatnonzero(owners == p).astype(np.int64) for t, owners in maps.items()}
    halo_parts: dict[str, list[np.ndarray]] = {t: [] for t in ds.node_types}
    edges = {}
    for (src, rel, dst), csr in graph.csr.items():
        starts = csr.indptr[owned[dst]]
        degree = csr.indptr[owned[dst] + 1] - starts
        indptr = np.zeros(len(owned[dst]) + 1, dtype=np.int64)
        np.cumsum(degree, out=indptr[1:])
        indices = csr.indices[segment_arange(starts, degree)]
        folder = rel_dir(out, p, rel)
        folder.mkdir(parents=True)
        np.save(folder / "indptr.npy", indptr)
        np.save(folder / "indices.npy", indices)
        halo_parts[src].append(indices[maps[src][indices] != p])
        edges[rel] = int(indptr[-1])
    halo_sizes = {}
    for t, d in ds.node_types.items():
        halo = np.unique(np.concatenate(halo_parts[t] + [np.zeros(0, np.int64)]))
        folder = node_dir(out, p, t)
        folder.mkdir(parents=True)
        np.save(folder / "nodes.npy", owned[t])
        np.save(folder / "halo.npy", halo)
        for name, table in (("x", d.x), ("y", d.y)):
            if table is not None:
                np.save(folder / f"{name}.npy", np.asarray(table[owned[t]]))
                np.save(folder / f"halo_{name}.npy", np.asarray(table[halo]))
        halo_sizes[t] = len(halo)
    target = ds.node_types[ds.target_type]
    codes = target.split_codes()
    mine = owned[ds.target_type]
    for code, split in enumerate(SPLITS):
        np.save(part_dir(out, p) / f"{split}_idx.npy", mine[codes[mine] == code])
    return {"nodes": {t: len(v) for t, v in owned.items()}, "halo": halo_sizes, "edges": edges}
