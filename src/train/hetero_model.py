"""A typed GraphSAGE for heterogeneous batches: ``HeteroConv`` of one ``SAGEConv`` per edge type.

Why HeteroConv rather than ``to_hetero`` of the zoo's trimmed model: the zoo's ``forward`` trims
by the homogeneous hop layout, and ``to_hetero`` traces it with torch.fx, which its narrow/size
arithmetic does not survive; one SAGEConv per relationship type, summed per destination type, is
what ``to_hetero(GraphSAGE, aggr="sum")`` builds. Inputs per node type: a linear projection of
``x`` where the type has features, else a learnable embedding row per node (``--featureless
embedding``, looked up by the batch's ``n_id``) or one learnable row for the type (``constant``);
with ``--featureless degree`` the backend's row store gives those types degree features
(src/core/hetero_stores.py), so they arrive here as featured types.
Node types that no relationship points to keep their own linear update. The last layer computes
only the target type (what the loss reads), so DDP sees every parameter used in every step.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv, SAGEConv

EdgeType = tuple[str, str, str]


class HeteroSAGE(nn.Module):
    def __init__(self, node_types: dict[str, tuple[int, int]], edge_types: Sequence[EdgeType], target: str,
                 hidden_channels: int, out_channels: int, num_layers: int, dropout: float,
                 featureless: str = "embedding") -> None:
        """``node_types``: ``{type: (num_nodes, num_features)}`` (0 features: featureless)."""
        super().__init__()
        if featureless not in ("embedding", "constant"):  # degree: the row store's x (src/core/hetero_stores.py)
            raise ValueError(f"featureless must be embedding or constant, got {featureless!r}")
        self.target, self.num_layers, self.featureless = target, num_layers, featureless
        self.inputs = nn.ModuleDict({
            t: nn.Linear(f, hidden_channels) if f else nn.Embedding(n if featureless == "embedding" else 1,
                                                                     hidden_channels)
            for t, (n, f) in node_types.items()})
        self.convs = nn.ModuleList()
        self.skips = nn.ModuleList()
        self.layer_types: list[list[EdgeType]] = []
        for i in range(num_layers):
            last = i == num_layers - 1
            dim = out_channels if last else hidden_channels
            types = [e for e in edge_types if e[2] == target] if last else list(edge_types)
            self.layer_types.append(types)
            self.convs.append(HeteroConv({e: SAGEConv(hidden_channels, dim) for e in types}, aggr="sum"))
            dsts = {e[2] for e in types}
            self.skips.append(nn.ModuleDict({} if last else {t: nn.Linear(hidden_channels, dim)
                                                              for t in node_types if t not in dsts}))
        self.dropout = nn.Dropout(dropout)
        self.keep_last_hidden, self.last_hidden = False, None  # predict.py's embeddings (as the zoo's models)

    def _input(self, batch: HeteroData, node_type: str) -> Tensor:
        layer = self.inputs[node_type]
        if isinstance(layer, nn.Linear):
            return layer(batch[node_type].x)
        ids = batch[node_type].n_id
        return layer(ids if self.featureless == "embedding" else torch.zeros_like(ids))

    def forward(self, batch: HeteroData) -> Tensor:
        """Logits of every target-type node of the batch (the seeds first)."""
        h = {t: self._input(batch, t) for t in self.inputs}
        edges = {e: batch[e].edge_index for e in batch.edge_types}
        for i, (conv, skips, types) in enumerate(zip(self.convs, self.skips, self.layer_types)):
            if self.keep_last_hidden and i == self.num_layers - 1:
                self.last_hidden = h[self.target].detach()
            out = conv(h, {e: edges[e] for e in types})
            for t, skip in skips.items():
                out[t] = skip(h[t])
            if i < self.num_layers - 1:
                out = {t: self.dropout(torch.relu(v)) for t, v in out.items()}
            h = out
        return h[self.target]
