"""The whole heterogeneous graph in RAM: the oracle the Neo4j hetero backend is compared with."""
from __future__ import annotations

import numpy as np

from src.backends.hetero import HeteroBackend
from src.core.hetero_sampling import HeteroCSR, HeteroCSRSampler
from src.core.hetero_stores import InMemoryHeteroRows
from src.data.hetero import HeteroGraphDataset


class InMemoryHeteroBackend(HeteroBackend):
    name = "in_memory"

    def __init__(self, ds: HeteroGraphDataset, *, target_type: str, fanouts: str, batch_size: int,
                 num_loader_threads: int, featureless: str = "embedding") -> None:
        super().__init__(dataset=ds.name, node_types={t: (d.num_nodes, d.num_features, d.y is not None)
                                                      for t, d in ds.node_types.items()},
                         edge_types={e: int(v.shape[1]) for e, v in ds.edges.items()}, target_type=target_type,
                         num_classes=ds.num_classes, fanouts=fanouts, batch_size=batch_size,
                         num_loader_threads=num_loader_threads, featureless=featureless)
        self.ds = ds
        self.graph = HeteroCSR.from_edges(ds.edges, {t: d.num_nodes for t, d in ds.node_types.items()})
        self.rows = InMemoryHeteroRows(ds, degrees=featureless == "degree")

    def _split_ids(self, split: str) -> np.ndarray:
        idx = getattr(self.ds.node_types[self.input_type], f"{split}_idx")
        return np.zeros(0, np.int64) if idx is None else np.asarray(idx, dtype=np.int64)

    def _make_sampler(self, seed: int) -> HeteroCSRSampler:
        return HeteroCSRSampler(self.graph, self.type_fanouts, seed=seed)

    def _loader_data(self):  # noqa: ANN202
        return self.rows, self.edge_metadata
