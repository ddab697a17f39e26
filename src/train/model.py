"""The model every backend trains: GraphSAGE, with a sparse-input first layer for bag-of-words features."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import SAGEConv

# Below this fraction of non-zero inputs the first layer multiplies a sparse copy of x: on
# bag-of-words features (coauthor_phy: 8415 columns, 0.4% non-zero) that is ~100x fewer FLOPs.
SPARSE_INPUT_DENSITY = 0.05


class GraphSAGE(nn.Module):
    """``num_layers`` SAGEConv layers with ReLU + dropout between them; returns logits."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int, dropout: float):
        super().__init__()
        dims = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.convs = nn.ModuleList(SAGEConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = sparse_input_conv(conv, x, edge_index) if i == 0 else conv(x, edge_index)
            if i < len(self.convs) - 1:
                x = F.dropout(F.relu(x), p=self.dropout, training=self.training)
        return x

def sparse_input_conv(conv: SAGEConv, x: Tensor, edge_index: Tensor) -> Tensor:
    """``conv(x, edge_index)``, computed as project-then-aggregate when ``x`` is mostly zeros (or sparse COO).

    ``lin_l(mean_j x_j) = mean_j (x_j W_l) + b_l`` (also for nodes without neighbours, whose
    mean is 0), so both weight matrices are applied first with one sparse x dense product and
    the mean runs over ``out_channels`` columns instead of ``in_channels``. Same parameters and
    the same function as SAGEConv; only the float rounding order differs.
    """
    if not x.is_sparse:
        if x.dim() != 2 or x.numel() == 0 or x.size(1) <= conv.out_channels:
            return conv(x, edge_index)
        if int(torch.count_nonzero(x)) >= SPARSE_INPUT_DENSITY * x.numel():
            return conv(x, edge_index)
        x = x.to_sparse()
    weight = torch.cat([conv.lin_l.weight, conv.lin_r.weight]).t().contiguous()  # [in, 2 * out]; strided: 40x slower
    h = torch.sparse.mm(x, weight)
    h_l, h_r = h.split(conv.out_channels, dim=1)
    out = conv.propagate(edge_index, x=(h_l, h_l), size=None)
    return out + conv.lin_l.bias + h_r
