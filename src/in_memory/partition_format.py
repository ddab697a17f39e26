"""The on-disk layout of a partitioned graph, and reading one partition of it into RAM.

Written by src/in_memory/partition.py, read by every rank of the partitioned backend.

Layout of ``<output_dir>/<dataset>/<k>-parts/``:

* ``part_<i>/nodes.npy``   int64 [n_i]: global ids of the nodes partition ``i`` owns, sorted;
  a node's local id is its position here (``searchsorted`` maps global -> local).
* ``part_<i>/indptr.npy``  int64 [n_i + 1] and ``indices.npy`` int64 [E_i]: CSC by destination
  like :class:`~src.core.csr.CSRGraph`: ``indices[indptr[l]:indptr[l + 1]]`` are the GLOBAL
  ids of the in-neighbours (edge sources) of local node ``l``.  Every edge is stored exactly once,
  in the partition owning its destination, so sampling a node needs only its owner.
* ``part_<i>/halo.npy``    int64: sorted global ids of non-owned in-neighbours (who to ask).
* ``part_<i>/x.npy`` float32 [n_i, F], ``y.npy`` int64 [n_i]: owned rows, in local order.  Sparse
  features (the loader's rule, src/core/sparse_features.py; ``meta.json`` ``features: "csr"``) are
  ``x_indptr.npy`` int64 [n_i + 1], ``x_indices.npy`` int32 and ``x_data.npy`` float32 instead
  of ``x.npy``: scipy CSR of the same rows (coauthor_phy: 9 MB instead of 1.1 GB).
* ``part_<i>/{train,val,test}_idx.npy`` int64: sorted global ids of owned nodes in each split.
* ``node_map.npy``: partition of every node (smallest unsigned dtype that holds ``k - 1``).
* ``meta.json``: identity (dataset, fingerprint, k, method, seed), sizes, feature statistics, edge cut, balance,
  timing.  Written last, and the folder is built under a temporary name and renamed into
  place, so a folder without ``meta.json`` is always an interrupted or foreign copy.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from src.core.csr import CSRGraph, sample_hop_csr
from src.core.errors import UserError
from src.core.schema import SPLITS

FORMAT_VERSION = 3  # 2: sparse features as CSR; 3: feature statistics in meta.json; older folders are partitioned again

META_FILE = "meta.json"

NODE_MAP_FILE = "node_map.npy"


def partition_dir(output_dir: str | os.PathLike, dataset: str, num_partitions: int, reverse: bool = False) -> Path:
    """``<output_dir>/<dataset>/<k>-parts``; ``<k>-parts-rev`` for a heterogeneous graph with its reverse types."""
    return Path(output_dir) / dataset / (f"{num_partitions}-parts" + ("-rev" if reverse else ""))

def part_dir(root: Path, index: int) -> Path:
    return root / f"part_{index}"

def read_meta(root: Path) -> dict[str, Any] | None:
    """``meta.json`` of a complete partition folder, None if there is none (missing or partial)."""
    path = root / META_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is unreadable ({exc}): delete {root} and partition again") from None

# --------------------------------------------------------------------------------------------
# one partition in RAM
# --------------------------------------------------------------------------------------------
@dataclass(eq=False)
class LocalPartition:
    """What a rank owns (CSC with GLOBAL neighbour ids, features, labels, split ids) plus the
    global node map that says whom to ask for everything else."""

    index: int
    meta: dict[str, Any]
    node_map: np.ndarray  # [N] owner of every node (small unsigned dtype)
    nodes: np.ndarray  # [n] sorted global ids; local id = position
    csr: CSRGraph  # local indptr, global indices
    halo: np.ndarray
    x: np.ndarray | sp.csr_matrix  # float32 [n, F]; CSR for sparse features
    y: np.ndarray  # int64 [n]
    splits: dict[str, np.ndarray] = field(repr=False)  # sorted global ids of owned split nodes

    def to_local(self, ids: np.ndarray) -> np.ndarray:
        """Local ids of owned global ``ids``; ValueError for a node this partition does not own."""
        local = np.searchsorted(self.nodes, ids)
        ok = local < len(self.nodes)
        ok[ok] = self.nodes[local[ok]] == ids[ok]
        if not ok.all():
            bad = ids[~ok][:5].tolist()
            raise ValueError(f"partition {self.index} does not own nodes {bad}: "
                             "the ranks use different partitionings")
        return local

    def sample(self, frontier: np.ndarray, fanout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """One hop (:func:`~src.core.csr.sample_hop_csr`) for owned nodes, generator from ``seed``."""
        return sample_hop_csr(self.csr, self.to_local(frontier), fanout, np.random.default_rng(seed))

    def identity(self) -> dict[str, Any]:
        """What every rank must agree on: same graph, same assignment of nodes."""
        h = hashlib.blake2b(str(self.node_map.dtype).encode(), digest_size=8)
        h.update(np.ascontiguousarray(self.node_map).tobytes())
        keys = ("dataset", "fingerprint", "num_partitions", "method", "seed")
        return {**{k: self.meta.get(k) for k in keys}, "node_map": h.hexdigest()}

def load_partition(root: Path, index: int) -> LocalPartition:
    """Read ``part_<index>`` of a complete partition folder fully into RAM."""
    meta = read_meta(root)
    if meta is None:
        raise UserError(f"no complete partitioning at {root} (no meta.json)")
    if meta.get("hetero"):
        raise UserError(f"dataset {meta.get('dataset')!r} is heterogeneous: pass --target_type "
                        f"{meta.get('target_type')} (and per-type --fanouts)")
    folder = part_dir(root, index)
    try:
        names = ("nodes", "indptr", "indices", "halo", "y")
        arrays = {name: np.load(folder / f"{name}.npy") for name in names}
        splits = {split: np.load(folder / f"{split}_idx.npy") for split in SPLITS}
        node_map = np.load(root / meta["node_map"])
        x = _load_rows(folder, len(arrays["nodes"]), int(meta["num_features"]), meta.get("features") == "csr")
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"partition {folder} is incomplete or corrupt ({exc}): "
                        "partition again with partition_graph.py --overwrite") from None
    return LocalPartition(
        index=index, meta=meta, node_map=node_map, nodes=arrays["nodes"],
        csr=CSRGraph(indptr=arrays["indptr"], indices=arrays["indices"]), halo=arrays["halo"],
        x=x, y=arrays["y"], splits=splits,
    )

def _load_rows(folder: Path, num_rows: int, num_features: int, csr: bool) -> np.ndarray | sp.csr_matrix:
    """The partition's feature rows: the dense ``x.npy`` or the CSR triple (see src/in_memory/partition.py)."""
    if not csr:
        return np.load(folder / "x.npy")
    data, indices, indptr = (np.load(folder / f"x_{name}.npy") for name in ("data", "indices", "indptr"))
    x = sp.csr_matrix((data, indices, indptr), shape=(num_rows, num_features))
    x.has_canonical_format = True  # written from canonical CSR (sorted, unique columns)
    return x
