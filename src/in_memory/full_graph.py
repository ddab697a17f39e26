"""``FullGraphBackend``: the whole graph in this process's RAM, the oracle for other backends.

Why it exists: it is the simplest possible implementation of the trainer's Backend contract
(src/backends/base.py), so accuracy and timing of the Neo4j and partitioned
backends can be compared against it.  It uses the same sampler driver (``CSRNeighborSampler``)
and the same prefetching (``PrefetchLoader`` around an unchanged ``NodeLoader``) as the others.
Sparse features (the loader's rule, src/core/sparse_features.py) are held as CSR and reach the model
as a sparse COO ``x``, exactly as the database backends deliver sparse-stored rows.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch_geometric.data import Data

from src.backends.base import Backend
from src.core.csr import CSRGraph
from src.core.edge_split import EdgeSplit, EdgeSplitSpec, csr_edge_index, split_graph, training_graph
from src.core.sampling import CSRNeighborSampler
from src.core.feature_stats import FeatureStats
from src.core.schema import SPLITS
from src.core.sparse_features import csr_to_torch, dataset_rows_csr, feature_nbytes, holds_sparse

if TYPE_CHECKING:
    from src.data.graph import GraphDataset

log = logging.getLogger(__name__)


class FullGraphBackend(Backend):
    """Every rank holds the full graph: features (dense float32, or CSR when sparse), labels and a
    CSC adjacency. ``feature_format`` (auto, dense, sparse) overrides the density rule, as the
    loader's ``--feature_format`` does."""

    name = "in_memory"

    def __init__(self, dataset: GraphDataset, *, fanouts: Sequence[int], batch_size: int,
                 num_loader_threads: int, feature_format: str = "auto"):
        super().__init__(dataset=dataset.name, num_nodes=dataset.num_nodes, num_features=dataset.num_features,
                         num_classes=dataset.num_classes, fanouts=fanouts, batch_size=batch_size,
                         num_loader_threads=num_loader_threads)
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
        self._split_arrays = {split: np.array(getattr(dataset, f"{split}_idx"), dtype=np.int64) for split in SPLITS}
        log.info("in-memory backend: %s, %d nodes, %d edges, features %.1f MiB (%s)", dataset.name, n,
                 self.csr.num_edges, self.feature_mb, "dense" if self.x_csr is None else "CSR")

    @property
    def feature_mb(self) -> float:
        return feature_nbytes(self.data.x.numpy() if self.x_csr is None else self.x_csr) / 2**20

    @property
    def num_edges(self) -> int:
        return self.csr.num_edges

    def feature_stats(self) -> FeatureStats:
        """Computed from the rows held here, as the loaders compute the statistics they store."""
        return FeatureStats.compute(self.data.x.numpy() if self.x_csr is None else self.x_csr)

    def _split_ids(self, split: str) -> np.ndarray:
        return self._split_arrays[split]

    def use_edge_split(self, spec: EdgeSplitSpec) -> EdgeSplit:
        """The split of the whole graph (as the Neo4j store computes it); then only its training graph stays."""
        split = split_graph(self.csr, spec)
        self.csr = training_graph(self.csr, split)
        self.data.edge_index = torch.from_numpy(csr_edge_index(self.csr))
        log.info("in-memory backend: edge split %s (seed %d): %s pairs; %d message-passing edges", spec.text,
                 spec.seed, split.counts(), self.csr.num_edges)
        return split

    def training_degrees(self) -> torch.Tensor:
        return torch.from_numpy(np.bincount(self.csr.indices, minlength=self.num_nodes))

    def linked_nodes(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """In- and out-neighbours of ``ids`` in the graph as loaded (an edge split's held-out pairs included)."""
        src, dst = np.asarray(self.data.edge_index[0]), np.asarray(self.data.edge_index[1])
        pos = np.full(self.num_nodes, -1, dtype=np.int64)
        pos[ids] = np.arange(len(ids))
        at = np.concatenate([pos[src], pos[dst]])
        other = np.concatenate([dst, src])
        keep = at >= 0
        return at[keep], other[keep]

    def _make_sampler(self, seed: int) -> CSRNeighborSampler:
        return CSRNeighborSampler(self.csr, self.fanouts, seed=seed)

    def _loader_data(self) -> Data:
        return self.data

    def _batch_transform(self) -> Callable[[Data], Data] | None:
        return None if self.x_csr is None else self._attach_sparse_x

    def _attach_sparse_x(self, batch: Data) -> Data:
        """The batch's rows gathered as CSR, handed on as sparse COO (runs in the fetch step)."""
        batch.x = csr_to_torch(self.x_csr[batch.n_id.numpy()])
        return batch

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "feature_mb": self.feature_mb}
