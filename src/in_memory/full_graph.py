"""``FullGraphBackend``: the whole graph in this process's RAM, the oracle for other backends.

Why it exists: it is the simplest possible implementation of the trainer's Backend contract
(docs/ARCHITECTURE.md, "Training"), so accuracy and timing of the Neo4j and partitioned
backends can be compared against it.  It uses the same sampler driver (``CSRNeighborSampler``)
and the same prefetching (``PrefetchLoader`` around an unchanged ``NodeLoader``) as the others.
Sparse features (the loader's rule, src/core/sparse_features.py) are held as CSR and reach the model
as a sparse COO ``x``, exactly as the database backends deliver sparse-stored rows.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.loader import NodeLoader

from src.core.csr import CSRGraph, CSRNeighborSampler
from src.core.malloc_tuning import retain_freed_memory
from src.core.prefetch import PrefetchLoader
from src.core.sparse_features import csr_to_torch, dataset_rows_csr, feature_nbytes, holds_sparse

if TYPE_CHECKING:
    from src.data.datasets import GraphDataset

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class FullGraphBackend:
    """Every rank holds the full graph: features (dense float32, or CSR when sparse), labels and a
    CSC adjacency. ``feature_format`` (auto, dense, sparse) overrides the density rule, as the
    loader's ``--feature_format`` does."""

    name = "in_memory"

    def __init__(self, dataset: GraphDataset, *, fanouts: Sequence[int], batch_size: int,
                 num_loader_threads: int, feature_format: str = "auto"):
        retain_freed_memory()  # per-batch feature buffers are tens of MB: reuse, do not re-fault
        self.dataset_name = dataset.name
        self.num_features = int(dataset.num_features)
        self.num_classes = int(dataset.num_classes)
        self.fanouts = [int(k) for k in fanouts]
        self.batch_size = batch_size
        self.num_loader_threads = num_loader_threads
        n = int(dataset.num_nodes)
        edge_index = np.ascontiguousarray(dataset.edge_index, dtype=np.int64)
        y = torch.as_tensor(np.asarray(dataset.y), dtype=torch.long)
        self.x_csr = dataset_rows_csr(dataset, np.arange(n)) if holds_sparse(dataset.x, feature_format) else None
        if self.x_csr is None:
            # Densified once: CSR features would otherwise be gathered row by row.
            x = torch.from_numpy(np.ascontiguousarray(dataset.features(np.arange(n)), dtype=np.float32))
            self.data = Data(x=x, y=y, edge_index=torch.from_numpy(edge_index), num_nodes=n)
        else:  # x joins each batch in _attach_sparse_x
            self.data = Data(y=y, edge_index=torch.from_numpy(edge_index), num_nodes=n)
        self.csr = CSRGraph.from_edge_index(edge_index, n)
        self._splits = {
            split: torch.as_tensor(np.asarray(getattr(dataset, f"{split}_idx")), dtype=torch.long)
            for split in SPLITS
        }
        log.info("in-memory backend: %s, %d nodes, %d edges, features %.1f MiB (%s)", dataset.name, n,
                 self.csr.num_edges, self.feature_mb, "dense" if self.x_csr is None else "CSR")

    @property
    def feature_mb(self) -> float:
        return feature_nbytes(self.data.x.numpy() if self.x_csr is None else self.x_csr) / 2**20

    @property
    def num_nodes(self) -> int:
        return self.csr.num_nodes

    @property
    def num_edges(self) -> int:
        return self.csr.num_edges

    def split_nodes(self, split: str) -> Tensor:
        """Node ids of ``split`` (train/val/test) as a LongTensor."""
        if split not in self._splits:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self._splits[split]

    def make_loader(self, seeds: Tensor, *, shuffle: bool, seed: int) -> PrefetchLoader:
        """Batches of ``seeds`` with sampled neighbourhoods; ``seed`` fixes order and samples."""
        sampler = CSRNeighborSampler(self.csr, self.fanouts, seed=seed)
        loader = NodeLoader(
            self.data, node_sampler=sampler, input_nodes=seeds, batch_size=self.batch_size,
            shuffle=shuffle, generator=torch.Generator().manual_seed(seed),
            transform=None if self.x_csr is None else self._attach_sparse_x,
        )
        return PrefetchLoader(loader, self.num_loader_threads)

    def _attach_sparse_x(self, batch: Data) -> Data:
        """The batch's rows gathered as CSR, handed on as sparse COO (runs in the fetch step)."""
        batch.x = csr_to_torch(self.x_csr[batch.n_id.numpy()])
        return batch

    def server_pid(self) -> None:
        """No graph server: everything lives in this process."""
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "num_nodes": self.num_nodes,
            "num_edges": self.num_edges,
            "feature_mb": self.feature_mb,
        }

    def close(self) -> None:
        """Nothing to release; present for the Backend contract."""
