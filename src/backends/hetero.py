"""``HeteroBackend``: the :class:`~src.backends.base.Backend` contract over a heterogeneous dataset.

Why one base for the in-memory and the Neo4j wing: the loop sees a heterogeneous backend as a
homogeneous one whose seeds are the target type's nodes (``input_type``), whose model is the typed
GraphSAGE (:meth:`make_model`), and whose batches (PyG ``HeteroData``) carry the target type's
``y`` and ``batch_size`` at the top level, where the loop and the evaluation read them. Only the
sampler, the row store and the split ids differ per wing.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn
from torch_geometric.data import HeteroData

from src.backends.base import Backend
from src.core.errors import UsageError
from src.core.hetero_fanouts import EdgeType, Fanouts, check_node_type, parse_fanouts
from src.core.hetero_stores import FEATURELESS, HeteroEdgeMetadata
from src.data.hetero import require_target


class HeteroBackend(Backend):
    """``node_types``: ``{type: (num_nodes, num_features, labelled)}`` in the dataset's order."""

    def __init__(self, *, dataset: str, node_types: dict[str, tuple[int, int, bool]],
                 edge_types: dict[EdgeType, int], target_type: str, num_classes: int, fanouts: str,
                 batch_size: int, num_loader_threads: int, featureless: str = "embedding") -> None:
        if featureless not in FEATURELESS:
            raise UsageError(f"--featureless must be one of {', '.join(FEATURELESS)} (got {featureless!r})")
        self.featureless = featureless
        check_node_type(target_type, list(node_types))
        require_target(dataset, target_type, {t: {"labelled": v[2]} for t, v in node_types.items()})
        self.type_fanouts: Fanouts = parse_fanouts(fanouts, list(edge_types))
        n, f, _ = node_types[target_type]
        super().__init__(dataset=dataset, num_nodes=n, num_features=f, num_classes=num_classes,
                         fanouts=[max(h) for h in zip(*self.type_fanouts.values())], batch_size=batch_size,
                         num_loader_threads=num_loader_threads)
        self.input_type = target_type
        self.node_types = dict(node_types)
        self.edge_counts = dict(edge_types)
        self.edge_metadata = HeteroEdgeMetadata({t: v[0] for t, v in node_types.items()}, self.edge_counts)

    @property
    def num_edges(self) -> int:
        return sum(self.edge_counts.values())

    def make_model(self, cfg: Any) -> nn.Module:
        from src.train.hetero_model import HeteroGNN

        if len(next(iter(self.type_fanouts.values()))) != cfg.num_layers:
            raise UsageError(f"--fanouts has {len(next(iter(self.type_fanouts.values())))} hops per relationship "
                             f"type but --num_layers is {cfg.num_layers}: give one fanout per layer")
        rows = self._loader_data()[0]  # widths as the batches carry them (degree features included)
        return HeteroGNN({t: (v[0], rows.num_features[t]) for t, v in self.node_types.items()},
                         list(self.type_fanouts), self.input_type, cfg.hidden_channels, self.num_classes,
                         cfg.num_layers, cfg.dropout, "embedding" if self.featureless == "degree" else self.featureless,
                         model=cfg.model, heads=cfg.heads)

    def _batch_transform(self) -> Callable[[HeteroData], HeteroData]:
        target = self.input_type

        def lift(batch: HeteroData) -> HeteroData:
            batch.batch_size = batch[target].batch_size
            batch.y = batch[target].y
            return batch

        return lift

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "node_types": {t: v[0] for t, v in self.node_types.items()},
                "relationship_types": {e[1]: c for e, c in self.edge_counts.items()}}
