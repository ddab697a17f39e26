"""First layers that take bag-of-words ``x`` (sparse COO, or dense and mostly zeros) without densifying.

PyG's ``SAGEConv`` and ``GINConv`` aggregate ``x`` before their linear maps, and the scatter of a
sparse COO tensor fails (``aten::fill_ ... SparseCPU``); aggregating 8415 dense columns
(coauthor_phy) is also ~100x the FLOPs of aggregating the projected ones. Since the first linear
map commutes with the mean/sum over neighbours, both layers are computed project-then-aggregate
here: same parameters, same function, only the float rounding order differs. ``GCNConv`` and
``GATConv`` project first by themselves (``F.linear`` takes sparse COO input).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn import GINConv, SAGEConv

from src.train.chunked_layer import EncodedRows, chunkable, sage_layer

# Below this fraction of non-zero inputs a dense x is multiplied as a sparse copy.
SPARSE_INPUT_DENSITY = 0.05


def _as_sparse_input(x: Tensor, out_channels: int) -> Tensor | None:
    """``x`` as sparse COO when projecting first pays (sparse, or dense with few non-zeros); else None."""
    if x.is_sparse:
        return x
    if x.dim() != 2 or x.numel() == 0 or x.size(1) <= out_channels:
        return None
    if int(torch.count_nonzero(x)) >= SPARSE_INPUT_DENSITY * x.numel():
        return None
    return x.to_sparse()


def sage_first_layer(conv: SAGEConv, x: Tensor, edge_index: Tensor, num_dst: int) -> Tensor:
    """``conv(x, edge_index)``, as ``mean_j(x_j W_l) + b_l + x_i W_r`` when ``x`` is sparse or mostly zeros.

    ``lin_l(mean_j x_j) = mean_j (x_j W_l) + b_l`` (also for nodes without neighbours, whose mean
    is 0), so both weight matrices are applied with one sparse x dense product. Dense ``x``, and rows still
    encoded as stored, aggregate a chunk of edges at a time (src/train/chunked_layer.py).
    """
    if isinstance(x, EncodedRows):
        return sage_layer(conv, x, edge_index, num_dst) if chunkable(conv) else sage_first_layer(
            conv, x.decoded(), edge_index, num_dst)
    xs = _as_sparse_input(x, conv.out_channels)
    size = (x.size(0), num_dst)
    if xs is None:
        if chunkable(conv):
            return sage_layer(conv, x, edge_index, num_dst)
        return conv((x, x[:num_dst]), edge_index, size=size)
    weight = torch.cat([conv.lin_l.weight, conv.lin_r.weight]).t().contiguous()  # [in, 2 * out]; strided: 40x slower
    h = torch.sparse.mm(xs, weight)
    h_l, h_r = h.split(conv.out_channels, dim=1)
    out = conv.propagate(edge_index, x=(h_l, h_l[:num_dst]), size=size)
    return out + conv.lin_l.bias + h_r[:num_dst]


def gin_first_layer(conv: GINConv, x: Tensor, edge_index: Tensor, num_dst: int) -> Tensor:
    """``conv(x, edge_index)`` with the MLP's first ``Linear`` applied before the sum over neighbours.

    ``W((1 + eps) x_i + sum_j x_j) + b = (1 + eps) x_i W + sum_j x_j W + b``; the rest of the MLP
    (``conv.nn[1:]``) runs on the result as usual.
    """
    first = conv.nn[0]
    xs = _as_sparse_input(x, first.out_features)
    size = (x.size(0), num_dst)
    if xs is None:
        return conv((x, x[:num_dst]), edge_index, size=size)
    h = torch.sparse.mm(xs, first.weight.t().contiguous())
    out = conv.propagate(edge_index, x=(h, h[:num_dst]), size=size) + (1 + conv.eps) * h[:num_dst]
    if first.bias is not None:
        out = out + first.bias
    return conv.nn[1:](out)

