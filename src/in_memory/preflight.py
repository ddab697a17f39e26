"""What the in-memory backends will hold, estimated before they load it, against the memory limit.

Why: the full graph of ogbn-products' shape takes ~5 GiB per rank; under a smaller cgroup limit
the kernel would kill the rank mid-load without a word.  The estimates are the arrays each backend
builds (src/in_memory/full_graph.py, src/in_memory/partition_format.py) plus the mini-batches in
flight; :func:`src.core.memory_limit.check_fits` compares them with the limit and refuses in one line.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import scipy.sparse as sp

from src.core.memory_limit import MemoryLimit, batch_bytes, check_fits, sampled_batch_bytes, step_bytes
from src.core.sparse_features import feature_nbytes
from src.in_memory.partition_format import part_dir, read_meta

if TYPE_CHECKING:
    from src.data.graph import GraphDataset
    from src.train.config import TrainConfig

FIX = "raise the limit, train through Neo4j (main-neo4j-backend.py), or use more partitions/ranks"


def _batches_bytes(cfg: TrainConfig, num_nodes: int, num_features: int) -> int:
    """The training batches in flight: their float32 rows and ids, and one sampled batch waiting for its rows."""
    return (batch_bytes(cfg.batch_size, cfg.fanouts, num_nodes, num_features, cfg.batches_in_flight())
            + sampled_batch_bytes(cfg.batch_size, cfg.fanouts, num_nodes, cfg.batches_without_rows()))


def full_graph_needs(ds: GraphDataset, cfg: TrainConfig) -> dict[str, int]:
    """Bytes FullGraphBackend builds: dense (or CSR) features, labels, the edge list it reads, the
    CSC it sorts into (indices + the sort's order), split ids and the batches in flight."""
    n, e = int(ds.num_nodes), int(ds.num_edges)
    # dense rows are counted dense (an upper bound: the backend may hold them as CSR) without
    # scanning them for their density
    features = feature_nbytes(ds.x) if sp.issparse(ds.x) else 4 * n * int(ds.num_features)
    return {"features": features, "labels": 8 * n, "edge list": 16 * e, "CSC topology": 16 * e + 8 * n,
            "splits": 8 * n,
            "batches": _batches_bytes(cfg, n, int(ds.num_features)),
            "training step": step_bytes(cfg.batch_size, cfg.fanouts, n, int(ds.num_features), cfg.hidden_channels)}


def check_full_graph(ds: GraphDataset, cfg: TrainConfig, limit: MemoryLimit | None = None) -> int:
    return check_fits(f"the in-memory full graph of {ds.name} ({ds.num_nodes:,} nodes, {ds.num_edges:,} edges)",
                      full_graph_needs(ds, cfg), FIX, limit)


def partition_needs(root: Path, rank: int, cfg: TrainConfig) -> dict[str, int]:
    """Bytes ``load_partition`` reads (its files are loaded whole) plus the batches in flight; the
    halo is the ids of the non-owned neighbours, whose rows come from the peers per batch."""
    folder = part_dir(root, rank)
    meta = read_meta(root) or {}

    def size(*names: str) -> int:
        return sum((folder / n).stat().st_size for n in names if (folder / n).exists())

    if meta.get("hetero"):  # src/in_memory/hetero_partition_format.py: every file of the folder is loaded
        files = sum(f.stat().st_size for f in folder.rglob("*.npy"))
        maps = sum(f.stat().st_size for f in (root / "node_map").glob("*.npy"))
        width = max((n["num_features"] for n in meta["node_types"]), default=0)
        return {"partition files": files, "node maps": maps,
                "batches": _batches_bytes(cfg, int(meta["num_nodes"]), width)}
    features = size("x.npy", "x_data.npy", "x_indices.npy", "x_indptr.npy")
    node_map = (root / meta["node_map"]).stat().st_size if meta.get("node_map") else 0
    return {"features": features, "topology": size("indptr.npy", "indices.npy", "nodes.npy"),
            "halo": size("halo.npy"), "labels and splits": size("y.npy", "train_idx.npy", "val_idx.npy", "test_idx.npy"),
            "node map": node_map,
            "batches": _batches_bytes(cfg, int(meta.get("num_nodes", 0)), int(meta.get("num_features", 0))),
            "training step": step_bytes(cfg.batch_size, cfg.fanouts, int(meta.get("num_nodes", 0)),
                                        int(meta.get("num_features", 0)), cfg.hidden_channels)}


def check_partition(root: Path, rank: int, cfg: TrainConfig, limit: MemoryLimit | None = None) -> int:
    return check_fits(f"partition {rank} of {root}", partition_needs(root, rank, cfg), FIX, limit)
