"""GraphSAGE's layers with their mean over neighbours gathered a chunk of edges at a time: the first from float
rows or from rows still encoded as stored (``--decode_rows layer``), the hidden ones backward too.

Why: PyG's ``SAGEConv`` gathers one input row per sampled edge before it averages them. With fanouts 15,10,5
that message tensor is ~940k rows of F floats at every graph size (375 MB at F=100). The batch's own float32 ``x``
(4 bytes per value) is the one term of the trainer's memory that grows with the graph: a bigger graph has more
distinct nodes in each batch. Gathering per chunk bounds the first to :data:`CHUNK_EDGES` rows. Handing the model
:class:`EncodedRows` (the stored int8 / float16 / bfloat16 codes and their decoder) shrinks the second to the
stored width, 1 byte per value for int8: a chunk's rows are decoded when it is gathered, and the layer's own
outputs only need the destination rows decoded. A hidden layer's input needs a gradient, which autograd would
build from one hidden-wide row per edge (~170k rows of 1 KiB at the second layer) and two input-sized parts;
:class:`_NeighbourMeanAndRoot` scatters it a chunk at a time into one (and, in training, applies the ReLU + dropout
before it and masks that gradient in place: :class:`_ReluDropoutMeanAndRoot`). The first layer's root term reads
its rows a block at a time, again in backward (:class:`_AddRowsTimesWeight`): no float32 copy of the roots is kept.

Float rows and encoded ones take the same chunks in the same order, and a decoded row is bit for bit the row
a decode at fetch gives, so the three ``--decode_rows`` modes train the same model. Float rows that are mostly
zeros take src/train/sparse_input.py's sparse product instead (the same function, rounded in another order);
encoded rows always take the chunks, so ``layer`` suits dense rows (int8 of bag-of-words trains, but rounds as
the dense path does and spends its FLOPs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import SAGEConv

from src.train.inplace_act import DeferredReluDropout, relu_dropout_backward_, relu_dropout_packed_

CHUNK_EDGES = 65_536  # edges gathered at once: 26 MB of float32 rows at F=100


@dataclass(frozen=True)
class EncodedRows:
    """A batch's feature rows as stored (``codes``, uint8 ``[n, stored width]``) and how to make them float32.

    ``decode`` maps any subset of the codes' rows to float32 ``[k, num_features]``, the feature normaliser
    included. It must be row-wise (each output row depends only on its own codes), so chunks may be decoded
    apart. Only a model that reads it (GraphSAGE's first layer here) keeps it; others decode it whole first.
    """

    codes: Tensor
    decode: Callable[[Tensor], Tensor]
    num_features: int

    def size(self, dim: int | None = None) -> torch.Size | int:
        shape = torch.Size((self.codes.size(0), self.num_features))
        return shape if dim is None else shape[dim]

    def __len__(self) -> int:
        return self.codes.size(0)

    def rows(self, index: Tensor) -> Tensor:
        """Float32 rows ``index`` (repeats allowed)."""
        return self.decode(self.codes.index_select(0, index))

    def head(self, n: int) -> Tensor:
        """Float32 rows ``0..n-1`` (a trimmed layer's destination nodes)."""
        return self.decode(self.codes[:n])

    def decoded(self) -> Tensor:
        return self.decode(self.codes)


Rows = Tensor | EncodedRows


def gather(x: Rows, index: Tensor) -> Tensor:
    return x.rows(index) if isinstance(x, EncodedRows) else x.index_select(0, index)


def head(x: Rows, n: int) -> Tensor:
    return x.head(n) if isinstance(x, EncodedRows) else x[:n]


def neighbour_mean(x: Rows, edge_index: Tensor, num_dst: int, chunk_edges: int | None = None) -> Tensor:
    """``mean_{j -> i} x_j`` for destinations ``0..num_dst-1`` (0 where a node has no in-edges), summing
    ``chunk_edges`` (default :data:`CHUNK_EDGES`) gathered rows at a time in edge order."""
    src, dst = edge_index[0], edge_index[1]
    dtype = torch.float32 if isinstance(x, EncodedRows) else x.dtype
    total = torch.zeros(num_dst, int(x.size(1)), dtype=dtype, device=edge_index.device)
    for chunk in _edge_chunks(src.numel(), chunk_edges or CHUNK_EDGES):
        total.index_add_(0, dst[chunk], gather(x, src[chunk]))
    return total.div_(_in_degrees(dst, num_dst, total.dtype))


def _edge_chunks(num_edges: int, chunk_edges: int) -> Iterator[slice]:
    """Consecutive slices of ``chunk_edges`` edges (the last one shorter), in edge order."""
    return (slice(lo, min(lo + chunk_edges, num_edges)) for lo in range(0, num_edges, chunk_edges))


def _in_degrees(dst: Tensor, num_dst: int, dtype: torch.dtype) -> Tensor:
    """``[num_dst, 1]`` in-degrees, 1 where a node has none (its mean stays 0)."""
    return torch.bincount(dst, minlength=num_dst).clamp_(min=1).to(dtype).unsqueeze(1)


def chunkable(conv: SAGEConv) -> bool:
    """Whether ``conv`` computes ``lin_l(mean_j x_j) + lin_r(x_i)`` (GraphSAGE's default), which this layer does."""
    return str(conv.aggr) == "mean" and not conv.project


def _grad_of_sources(edge_index: Tensor, shape: torch.Size, dtype: torch.dtype, chunk_edges: int,
                     grad_mean: Tensor | None, grad_root: Tensor | None) -> Tensor:
    """The gradient for every source row (``x``'s ``shape`` and ``dtype``) of :func:`neighbour_mean` plus the roots'
    ``x[:num_dst]``, a chunk of edges at a time into one tensor (``None`` stands for a gradient of zeros)."""
    grad_x = torch.zeros(shape, dtype=dtype, device=edge_index.device)
    if grad_mean is not None:
        src, dst = edge_index[0], edge_index[1]
        per_dst = grad_mean / _in_degrees(dst, grad_mean.size(0), grad_mean.dtype)
        for chunk in _edge_chunks(src.numel(), chunk_edges):
            grad_x.index_add_(0, src[chunk], per_dst.index_select(0, dst[chunk]))
    if grad_root is not None:
        grad_x[:grad_root.size(0)].add_(grad_root)
    return grad_x


class _NeighbourMeanAndRoot(torch.autograd.Function):
    """``(mean_{j -> i} x_j, x[:num_dst])`` of a hidden layer's ``x``, with one gradient for ``x``.

    Autograd through ``index_select`` and a slice would hold a gradient row per edge and two ``x``-sized gradients
    (one per path) while it sums them; here backward scatters a chunk of edges at a time into a single one and adds
    the root's rows to it. Nothing of ``x`` is kept: the layer's weights keep the (small) mean and root."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, edge_index: Tensor, num_dst: int,  # noqa: ANN401
                chunk_edges: int) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(edge_index)
        ctx.shape, ctx.dtype, ctx.chunk_edges = x.shape, x.dtype, chunk_edges
        return neighbour_mean(x, edge_index, num_dst, chunk_edges), x[:num_dst].clone()

    @staticmethod
    def backward(ctx: Any, grad_mean: Tensor, grad_root: Tensor) -> tuple[Tensor, None, None, None]:  # noqa: ANN401
        (edge_index,) = ctx.saved_tensors
        grad_x = _grad_of_sources(edge_index, ctx.shape, ctx.dtype, ctx.chunk_edges, grad_mean, grad_root)
        return grad_x, None, None, None


class _ReluDropoutMeanAndRoot(torch.autograd.Function):
    """:class:`_NeighbourMeanAndRoot` of ``dropout(relu(h))``, ``h`` overwritten (src/train/inplace_act.py).

    The gradient for ``h`` is built here, so ReLU + dropout's backward masks it in place: the backward peak
    holds one hidden-wide gradient, not that and a masked copy. Also returns ``h`` (autograd wants an overwritten
    input among the outputs); callers drop it."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, p: float, edge_index: Tensor, num_dst: int,  # noqa: ANN401
                chunk_edges: int) -> tuple[Tensor, Tensor, Tensor]:
        packed, scale = relu_dropout_packed_(h, p)
        ctx.mark_dirty(h)
        ctx.set_materialize_grads(False)  # no h-sized zeros for the unused third output
        ctx.save_for_backward(edge_index, packed, scale)
        ctx.shape, ctx.dtype, ctx.chunk_edges = h.shape, h.dtype, chunk_edges
        return neighbour_mean(h, edge_index, num_dst, chunk_edges), h[:num_dst].clone(), h

    @staticmethod
    def backward(ctx: Any, grad_mean: Tensor | None, grad_root: Tensor | None,  # noqa: ANN401
                 grad_h: Tensor | None) -> tuple[Tensor, None, None, None, None]:
        edge_index, packed, scale = ctx.saved_tensors
        grad = _grad_of_sources(edge_index, ctx.shape, ctx.dtype, ctx.chunk_edges, grad_mean, grad_root)
        if grad_h is not None:
            grad.add_(grad_h)
        return relu_dropout_backward_(grad, packed, scale), None, None, None, None


class _AddRowsTimesWeight(torch.autograd.Function):
    """``out += x[:n] @ weight.T`` in place, ``ROOT_ROWS`` rows of ``x`` at a time, for a first layer's root term.

    ``x`` (rows still encoded, or float rows that need no gradient) is read again in backward for the weight's
    gradient instead of keeping a float32 copy of its first rows: for rows still encoded that copy is 4x their
    stored bytes (~60 MB for ~150k rows of 100 features). Float and encoded rows take the same blocks, so they
    give the same bits."""

    @staticmethod
    def forward(ctx: Any, out: Tensor, weight: Tensor, x: Rows) -> Tensor:  # noqa: ANN401
        for rows in _row_blocks(out.size(0)):
            out[rows].addmm_(_rows(x, rows), weight.t())
        ctx.mark_dirty(out)
        ctx.x = x  # no gradient flows to x; a saved copy of its rows is what this avoids
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:  # noqa: ANN401
        grad_weight = None
        for rows in _row_blocks(grad.size(0)):
            part = grad[rows].t().mm(_rows(ctx.x, rows))
            grad_weight = part if grad_weight is None else grad_weight.add_(part)
        assert grad_weight is not None
        # backward frees saved tensors, not ctx attributes: the graph lives on as long as the loss does (the
        # training loop keeps it until the next step's), and with it this batch's rows beside the next batch's
        ctx.x = None
        return grad, grad_weight, None


ROOT_ROWS = 16_384  # root rows decoded at once: 6.5 MB of float32 at F=100


def _row_blocks(n: int) -> Iterator[slice]:
    return _edge_chunks(n, ROOT_ROWS) if n else iter([slice(0, 0)])


def _rows(x: Rows, rows: slice) -> Tensor:
    return x.decode(x.codes[rows]) if isinstance(x, EncodedRows) else x[rows]


def sage_layer(conv: SAGEConv, x: Rows | DeferredReluDropout, edge_index: Tensor, num_dst: int) -> Tensor:
    """``conv((x, x[:num_dst]), edge_index)`` for a :func:`chunkable` conv, without the per-edge message tensor
    (nor, for a hidden layer's ``x``, the per-edge gradient: :class:`_NeighbourMeanAndRoot`)."""
    if isinstance(x, DeferredReluDropout):
        mean, root, _ = _ReluDropoutMeanAndRoot.apply(x.h, x.p, edge_index, num_dst, CHUNK_EDGES)
    elif isinstance(x, Tensor) and x.requires_grad and torch.is_grad_enabled():
        mean, root = _NeighbourMeanAndRoot.apply(x, edge_index, num_dst, CHUNK_EDGES)
    else:  # x needs no gradient: its root term by blocks of rows (_AddRowsTimesWeight)
        mean, root = neighbour_mean(x, edge_index, num_dst), None
    out = conv.lin_l(mean)
    if conv.root_weight:  # lin_r (no bias) added in place: no hidden-wide temporary beside the output
        if conv.lin_r.bias is not None:
            out = out.add_(conv.lin_r(head(x, num_dst) if root is None else root))
        elif root is None:
            out = _AddRowsTimesWeight.apply(out, conv.lin_r.weight, x)
        else:
            out = out.addmm_(root, conv.lin_r.weight.t())
    return F.normalize(out, p=2.0, dim=-1) if conv.normalize else out
