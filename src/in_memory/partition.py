"""Split a graph into ``k`` partitions on disk (layout: src/in_memory/partition_format.py).

METIS (``pymetis.part_graph`` on the symmetrised adjacency without self loops) balances node
counts, i.e. per-rank memory.  pymetis 2025.2.2 cannot balance train nodes as a second
constraint: its wrapper hard-codes ``ncon = 1`` (checked: a 2-column ``vweights`` gives the same
partition as its first ``nvtxs`` entries), and single-constraint weights that favour train nodes
cost up to 1.5x node imbalance for these graphs.  The trainer shards seeds over ranks itself,
so where train nodes live does not change per-rank work; node balance is what matters here.
``random`` is a seeded uniform assignment with equal part sizes (a shuffled round robin).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from src.data.graph import GraphDataset, to_undirected
from src.data.hetero import HeteroGraphDataset
from src.data.sources import load_dataset
from src.core.arrays import segment_arange
from src.core.csr import in_adjacency
from src.core.errors import UsageError, UserError, check_writable_dir
from src.core.feature_stats import FeatureStats
from src.core.schema import SPLITS
from src.in_memory.partition_format import (
    FORMAT_VERSION,
    META_FILE,
    NODE_MAP_FILE,
    part_dir,
    partition_dir,
    read_meta,
)
from src.data.hetero_sources import is_hetero_name, load_hetero_dataset
from src.train.run_log import max_rss_mb
from src.core.sparse_features import dataset_rows_csr, holds_sparse

log = logging.getLogger(__name__)

METHODS = ("metis", "random")
DEFAULT_OUTPUT_DIR = "data/partitions"
_FEATURE_CHUNK_BYTES = 64 << 20  # feature rows are densified and written in ~64 MB slabs
_IDENTITY = ("fingerprint", "num_partitions", "method", "seed")


@dataclass(frozen=True)
class PartitionConfig:
    """What to partition and where (the flags of ``partition_graph.py``)."""

    dataset: str
    num_partitions: int
    method: str = "metis"
    output_dir: str = DEFAULT_OUTPUT_DIR
    dataset_root_dir: str | None = None
    overwrite: bool = False
    seed: int = 0
    add_reverse: bool = False  # heterogeneous: partition the graph with its rev_<rel> types (HeteroGraphDataset.with_reverse)


@dataclass(frozen=True)
class PartitionResult:
    """A complete partition folder, its meta.json, and whether this call wrote it."""

    root: Path
    meta: dict[str, Any]
    created: bool


def check_config(cfg: PartitionConfig) -> None:
    """Flag checks that need no data (UsageError, exit 2)."""
    if cfg.num_partitions < 1:
        raise UsageError(f"--num_partitions must be >= 1 (got {cfg.num_partitions})")
    if cfg.method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)} (got {cfg.method!r})")
    if cfg.seed < 0:
        raise UsageError(f"--seed must be >= 0 (got {cfg.seed})")


def partition_dataset(cfg: PartitionConfig, *, any_method: bool = False) -> PartitionResult:
    """Make (or find) the partition folder of ``cfg``.

    An identical complete folder is reused ("already partitioned").  ``any_method`` accepts an
    existing folder of the same graph and ``k`` whatever its method and seed (what training
    needs).  A folder of another graph (or method/seed) is replaced only with ``overwrite``.
    """
    check_config(cfg)
    check_writable_dir(cfg.output_dir, "--output_dir")
    ds = _load(cfg)
    write, fmt = _partition, FORMAT_VERSION
    if isinstance(ds, HeteroGraphDataset):  # imported here: its sampler module loads torch
        from src.in_memory.hetero_partition import partition_hetero
        from src.in_memory.hetero_partition_format import HETERO_FORMAT

        write, fmt = partition_hetero, HETERO_FORMAT
    k = cfg.num_partitions
    if k > ds.num_nodes:
        raise UsageError(f"--num_partitions {k} exceeds the {ds.num_nodes} nodes of {ds.name!r}")
    root = partition_dir(cfg.output_dir, ds.name, k, reverse=cfg.add_reverse)
    wanted = {"fingerprint": ds.fingerprint(), "num_partitions": k, "method": cfg.method, "seed": cfg.seed}
    existing = read_meta(root)
    if existing is not None:
        keys = ("fingerprint", "num_partitions") if any_method else _IDENTITY
        diff = [key for key in keys if existing.get(key) != wanted[key]]
        if not diff and existing.get("format") != fmt:  # a cache of ours: just redo it
            log.warning("%s was written in partition format %s; partitioning again in format %s",
                        root, existing.get("format"), fmt)
            return PartitionResult(root, write(ds, cfg, root, wanted["fingerprint"]), created=True)
        if not diff:
            log.info("already partitioned: %s (%s, k=%d, %s)", root, ds.name, k, existing.get("method"))
            return PartitionResult(root, existing, created=False)
        if not cfg.overwrite:
            was = ", ".join(f"{key}={existing.get(key)}" for key in diff)
            now = ", ".join(f"{key}={wanted[key]}" for key in diff)
            raise UsageError(f"{root} holds a different partitioning ({was}; asked for {now}): "
                             "pass --overwrite to replace it or choose another --output_dir")
    elif root.exists():
        log.warning("%s has no %s (an interrupted run): replacing it", root, META_FILE)
    return PartitionResult(root, write(ds, cfg, root, wanted["fingerprint"]), created=True)


def _load(cfg: PartitionConfig) -> GraphDataset | HeteroGraphDataset:
    """The graph to partition: a heterogeneous one (src/data/hetero_sources.py) by its name, else ``load_dataset``."""
    if is_hetero_name(cfg.dataset):
        ds = load_hetero_dataset(cfg.dataset, cfg.dataset_root_dir)
        return ds.with_reverse() if cfg.add_reverse else ds
    if cfg.add_reverse:
        raise UsageError(f"--add_reverse applies to heterogeneous graphs; {cfg.dataset!r} is homogeneous (its "
                         "edges are stored both ways already): drop --add_reverse")
    return load_dataset(cfg.dataset, root=cfg.dataset_root_dir)


def ensure_main() -> None:
    """Child-process entry of training jobs: ``python -c "from src.in_memory.partition import ensure_main;
    ensure_main()" CONFIG_JSON`` partitions if needed (any existing method accepted) and prints
    one JSON line, ``{"dataset": folder name}`` or ``{"error": message, "exit_code": code}``.
    A separate process keeps the trainer's memory peak and imports clean; stderr carries only
    logs and progress, so the parent can show them live and still report the error once."""
    import sys

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = PartitionConfig(**json.loads(sys.argv[1]))
    try:
        outcome: dict[str, Any] = {"dataset": partition_dataset(cfg, any_method=True).meta["dataset"]}
    except UserError as exc:
        outcome = {"error": str(exc), "exit_code": exc.exit_code}
    print(json.dumps(outcome), flush=True)


def _partition(ds: GraphDataset, cfg: PartitionConfig, root: Path, fingerprint: str) -> dict[str, Any]:
    """Assign, write into a temporary sibling folder, then swap it in (meta.json last)."""
    start = time.perf_counter()
    k = cfg.num_partitions
    edge_index = np.ascontiguousarray(ds.edge_index, dtype=np.int64)
    if cfg.method == "metis":
        node_map = metis_assignment(edge_index, ds.num_nodes, k, cfg.seed)
    else:
        node_map = random_assignment(ds.num_nodes, k, cfg.seed)
    t_assign = time.perf_counter() - start

    def fill(tmp: Path) -> dict[str, Any]:
        np.save(tmp / NODE_MAP_FILE, node_map.astype(np.min_scalar_type(max(k - 1, 0))))
        sparse = holds_sparse(ds.x)
        parts = _write_parts(ds, edge_index, node_map, k, tmp, sparse=sparse)
        cut = int(np.count_nonzero(node_map[edge_index[0]] != node_map[edge_index[1]]))
        sizes = np.array([p["nodes"] for p in parts], dtype=np.float64)
        train = np.array([p["train"] for p in parts], dtype=np.float64)
        return {
            "format": FORMAT_VERSION,
            "dataset": ds.name,
            "fingerprint": fingerprint,
            "num_nodes": ds.num_nodes,
            "num_edges": ds.num_edges,
            "num_features": ds.num_features,
            "num_classes": ds.num_classes,
            "features": "csr" if sparse else "dense",
            "feature_stats": _stats_json(FeatureStats.compute(ds.x)),
            "num_partitions": k,
            "method": cfg.method,
            "seed": cfg.seed,
            "node_map": NODE_MAP_FILE,
            "partitions": parts,
            "edge_cut": cut,
            "edge_cut_fraction": cut / max(ds.num_edges, 1),
            "balance": float(sizes.max() / sizes.mean()),
            "train_balance": float(train.max() / train.mean()) if train.sum() else None,
            "assign_time_s": t_assign,
            "time_s": time.perf_counter() - start,
            "peak_rss_mb": max_rss_mb(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    meta = write_atomically(root, fill)
    cut = meta["edge_cut"]
    log.info("partitioned %s into %d (%s) in %.1f s: edge cut %d (%.2f%%), balance %.3f",
             ds.name, k, cfg.method, meta["time_s"], cut, 100 * meta["edge_cut_fraction"], meta["balance"])
    return meta


def write_atomically(root: Path, fill: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """``fill(tmp)`` writes the partitions into a temporary sibling folder and returns their meta, written last as
    meta.json; then the folder is swapped in. Nothing half-written stays behind (a full disk is one line)."""
    tmp = root.with_name(f".{root.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        meta = fill(tmp)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        _swap_in(tmp, root)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"cannot write partitions to {root} ({exc.strerror or exc}): free space or pick "
                        "another --output_dir") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _swap_in(tmp: Path, root: Path) -> None:
    """Replace ``root`` by ``tmp`` so readers never see a half-written final folder."""
    old = root.with_name(f".{root.name}.old{os.getpid()}")
    if root.exists():
        os.replace(root, old)
    os.replace(tmp, root)
    shutil.rmtree(old, ignore_errors=True)


def _stats_json(stats: FeatureStats) -> dict[str, Any]:
    """The dataset's column statistics in meta.json (float64 round-trips through JSON exactly)."""
    return {"minimum": stats.minimum, "mean": stats.mean.tolist(), "std": stats.std.tolist(),
            "raw_counts": stats.raw_counts}


def metis_assignment(edge_index: np.ndarray, num_nodes: int, k: int, seed: int) -> np.ndarray:
    """METIS k-way partition of the symmetrised graph (int64 [N] of part ids)."""
    import pymetis

    if k == 1:
        return np.zeros(num_nodes, dtype=np.int64)
    sym = to_undirected(edge_index, num_nodes)  # sorted by (src, dst), no loops or duplicates
    xadj = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(sym[0], minlength=num_nodes), out=xadj[1:])
    adjacency = pymetis.CSRAdjacency(adj_starts=xadj, adjacent=np.ascontiguousarray(sym[1]))
    del sym
    _, parts = pymetis.part_graph(k, adjacency, options=pymetis.Options(seed=seed))
    return np.asarray(parts, dtype=np.int64)


def random_assignment(num_nodes: int, k: int, seed: int) -> np.ndarray:
    """Uniformly random, equal-size parts: a seeded permutation dealt round robin."""
    node_map = np.empty(num_nodes, dtype=np.int64)
    node_map[np.random.default_rng(seed).permutation(num_nodes)] = np.arange(num_nodes) % k
    return node_map


def _write_parts(ds: GraphDataset, edge_index: np.ndarray, node_map: np.ndarray, k: int,
                 out: Path, *, sparse: bool) -> list[dict[str, int]]:
    """Write every ``part_<i>`` folder; returns per-partition sizes for meta.json."""
    global_indptr, global_indices = in_adjacency(edge_index, ds.num_nodes)  # CSRGraph's CSC, numpy only
    codes = ds.split_codes()
    y = np.asarray(ds.y, dtype=np.int64)
    rows_per_chunk = max(1, _FEATURE_CHUNK_BYTES // max(4 * ds.num_features, 1))
    parts = []
    with tqdm(total=ds.num_nodes, unit="node", desc="writing partitions", dynamic_ncols=True) as bar:
        for p in range(k):
            folder = part_dir(out, p)
            folder.mkdir()
            owned = np.flatnonzero(node_map == p).astype(np.int64)
            starts = global_indptr[owned]
            degree = global_indptr[owned + 1] - starts
            indptr = np.zeros(len(owned) + 1, dtype=np.int64)
            np.cumsum(degree, out=indptr[1:])
            indices = global_indices[segment_arange(starts, degree)]
            halo = np.unique(indices[node_map[indices] != p])
            for name, arr in (("nodes", owned), ("indptr", indptr), ("indices", indices),
                              ("halo", halo), ("y", y[owned])):
                np.save(folder / f"{name}.npy", arr)
            split_sizes = {}
            for code, split in enumerate(SPLITS):
                ids = owned[codes[owned] == code]
                np.save(folder / f"{split}_idx.npy", ids)
                split_sizes[split] = len(ids)
            if sparse:
                x = dataset_rows_csr(ds, owned)
                for name, arr in (("x_indptr", x.indptr.astype(np.int64)), ("x_indices", x.indices.astype(np.int32)),
                                  ("x_data", x.data)):
                    np.save(folder / f"{name}.npy", arr)
                bar.update(len(owned))
            else:
                _write_rows(folder / "x.npy", ds, owned, rows_per_chunk, bar)
            parts.append({"nodes": len(owned), "edges": int(indptr[-1]), "halo": len(halo), **split_sizes})
    return parts


def _write_rows(path: Path, ds: GraphDataset, rows: np.ndarray, rows_per_chunk: int, bar: tqdm) -> None:
    """``ds.features(rows)`` as a float32 ``.npy``, streamed in slabs.

    Why not ``open_memmap``: dirty pages of a mapped file count as this process's RSS until the
    mapping closes, so partitioning a large graph would hold all its features in memory.
    """
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": np.dtype("<f4").str, "fortran_order": False, "shape": (len(rows), ds.num_features)})
        for begin in range(0, len(rows), rows_per_chunk):
            chunk = rows[begin:begin + rows_per_chunk]
            fh.write(np.ascontiguousarray(ds.features(chunk), dtype="<f4").tobytes())
            bar.update(len(chunk))
