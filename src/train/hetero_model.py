"""A typed GNN for heterogeneous batches: ``HeteroConv`` of one convolution per edge type, trimmed per layer.

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

``--model``: sage (SAGEConv), gat (GATConv over (source, destination) pairs, without self-loops,
which do not exist between two node types; heads concatenated in hidden layers, averaged in the
last), gin (GINConv of a Linear-ReLU-Linear MLP); gcn is refused (its symmetric normalisation
needs one node set). Trimming: the typed samplers lay out every node type seeds first, then hop
by hop, and every edge type hop by hop, so before layer k PyG's ``trim_to_layer`` (dicts per
type) drops the nodes and edges the remaining layers no longer reach, as the zoo's models do.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import GATConv, GINConv, HeteroConv, SAGEConv
from torch_geometric.utils import trim_to_layer

from src.core.errors import UsageError

EdgeType = tuple[str, str, str]


HETERO_MODELS = ("sage", "gat", "gin")


def typed_conv(model: str, hidden: int, out: int, last: bool, heads: int) -> nn.Module:
    """One relationship type's convolution from ``hidden`` source/destination rows to ``out``."""
    if model == "sage":
        return SAGEConv(hidden, out)
    if model == "gat":
        return GATConv((hidden, hidden), out if last else out // heads, heads=heads, concat=not last,
                       add_self_loops=False)
    if model == "gin":
        return GINConv(nn.Sequential(nn.Linear(hidden, out), nn.ReLU(), nn.Linear(out, out)))
    raise UsageError(f"--model {model} does not apply to heterogeneous datasets (GCN's normalisation needs one "
                     f"node set; relationship types between two node types have two): use one of "
                     f"{', '.join(HETERO_MODELS)}")


class HeteroGNN(nn.Module):
    def __init__(self, node_types: dict[str, tuple[int, int]], edge_types: Sequence[EdgeType], target: str,
                 hidden_channels: int, out_channels: int, num_layers: int, dropout: float,
                 featureless: str = "embedding", model: str = "sage", heads: int = 1) -> None:
        """``node_types``: ``{type: (num_nodes, num_features)}`` (0 features: featureless)."""
        super().__init__()
        if featureless not in ("embedding", "constant"):  # degree: the row store's x (src/core/hetero_stores.py)
            raise ValueError(f"featureless must be embedding or constant, got {featureless!r}")
        if model == "gat" and hidden_channels % heads:
            raise UsageError(f"--hidden_channels {hidden_channels} must be a multiple of --heads {heads}")
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
            self.convs.append(HeteroConv({e: typed_conv(model, hidden_channels, dim, last, heads) for e in types},
                                         aggr="sum"))
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

    def forward(self, batch: HeteroData, trim: bool = True) -> Tensor:
        """Logits of the batch's target-type nodes (the seeds first; with ``trim`` only those the last layer
        still reaches, which include every seed)."""
        h = {t: self._input(batch, t) for t in self.inputs}
        edges = {e: batch[e].edge_index for e in batch.edge_types}
        nodes_per_hop = batch.collect("num_sampled_nodes") if trim else {}
        edges_per_hop = batch.collect("num_sampled_edges") if trim else {}
        trim = trim and set(nodes_per_hop) >= set(h) and set(edges_per_hop) >= set(edges) and all(
            len(v) == self.num_layers + 1 for v in nodes_per_hop.values())
        for i, (conv, skips, types) in enumerate(zip(self.convs, self.skips, self.layer_types)):
            if trim:
                h, edges, _ = trim_to_layer(i, nodes_per_hop, edges_per_hop, h, edges)
            if self.keep_last_hidden and i == self.num_layers - 1:
                self.last_hidden = h[self.target].detach()
            out = conv(h, {e: edges[e] for e in types})
            for t, skip in skips.items():
                out[t] = skip(h[t])
            if i < self.num_layers - 1:
                out = {t: self.dropout(torch.relu(v)) for t, v in out.items()}
            h = out
        return h[self.target]
