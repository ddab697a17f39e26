"""The models every backend trains: PyG's GraphSAGE, GCN, GAT and GIN, trimmed per layer.

Why trim: a sampled batch holds the seeds, then hop 1's new nodes, hop 2's, ...; layer k of an
L-layer model only needs outputs for the nodes within L - k hops of the seeds. PyG's
``trim_to_layer`` drops the last hop's nodes and edges before each layer (the batch's
``num_sampled_nodes``/``num_sampled_edges``, which every sampler here fills), as DGL's message-flow
graphs do. With fanouts 15,10,5 that is most of the work and most of the activation memory.

The classes are PyG's ``BasicGNN`` models (same parameters and state-dict keys) with one
``forward`` that trims, takes sparse COO ``x`` in the first layer (src/train/sparse_input.py) and,
for GCN, normalises by the degrees of the whole sampled subgraph once, so the trimmed model
computes exactly what the untrimmed one does (tests/test_models.py checks both against PyG's own
forward).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch_geometric.data import Data, HeteroData
from torch_geometric.nn import GCNConv, GINConv
from torch_geometric.nn import models as pyg_models
from torch_geometric.nn.norm import BatchNorm

from src.train.chunked_layer import EncodedRows, chunkable, sage_layer
from src.train.inplace_act import DeferredReluDropout, packable, relu_dropout_
from src.train.sparse_input import gin_first_layer, sage_first_layer

MODELS = ("sage", "gcn", "gat", "gin")
Context = tuple[Tensor, Tensor]  # (per-edge, per-node) values of a batch, see TrimmedForward._batch_context


class TrimmedForward:
    """``forward`` shared by the model zoo (a mixin placed before a PyG ``BasicGNN`` class)."""

    convs: nn.ModuleList
    norms: nn.ModuleList
    num_layers: int
    act: Any
    dropout: nn.Module
    first_layer: Callable[[nn.Module, Tensor, Tensor, int], Tensor] | None = None  # sparse-x first layer, if needed
    reads_encoded_rows = False  # the first layer takes EncodedRows x (src/train/chunked_layer.py)
    keep_last_hidden = False  # set by predict.py: keep the last layer's input (the node embedding) in last_hidden
    last_hidden: Tensor | None = None

    def forward(self, x: Tensor, edge_index: Tensor, num_sampled_nodes_per_hop: list[int] | None = None,
                num_sampled_edges_per_hop: list[int] | None = None) -> Tensor:
        """Logits for every node of the batch, or, trimmed, for the first ``num_sampled_nodes_per_hop[0]`` rows
        upward (the seeds first: the rows callers read)."""
        trim = num_sampled_nodes_per_hop is not None and num_sampled_edges_per_hop is not None
        decode_first = not self.reads_encoded_rows or (self.keep_last_hidden and self.num_layers == 1)
        if isinstance(x, EncodedRows) and decode_first:
            x = x.decoded()  # rows kept as stored for a first layer that reads them (--decode_rows layer)
        context = self._batch_context(x, edge_index)
        hops = list(num_sampled_nodes_per_hop or [])
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            if trim and i > 0:  # PyG's trim_to_layer for the edges; x already holds only the rows left
                keep = edge_index.size(1) - num_sampled_edges_per_hop[-i]
                edge_index = edge_index.narrow(1, 0, keep)
                context = None if context is None else (context[0].narrow(0, 0, keep), context[1])
            if self.keep_last_hidden and i == self.num_layers - 1:
                self.last_hidden = x
            # trimmed, layer i computes outputs only for the nodes layer i + 1 reads (the hops but the
            # outermost one left): they are the first rows, and every kept edge points into them
            num_dst = sum(hops[:len(hops) - 1 - i]) if trim else x.size(0)
            x = self._layer(i, conv, x, edge_index, context, num_dst)
            if i < self.num_layers - 1:
                x = self._between_layers(norm(x), self.convs[i + 1])
        return x

    def _between_layers(self, h: Tensor, next_conv: nn.Module) -> Tensor | DeferredReluDropout:
        """``dropout(act(h))``; for ReLU in place, holding only the output for backward (src/train/inplace_act.py)."""
        if isinstance(self.act, nn.ReLU) and isinstance(self.dropout, nn.Dropout):
            return relu_dropout_(h, self.dropout.p, self.training)
        return self.dropout(self.act(h))

    def _batch_context(self, x: Tensor, edge_index: Tensor) -> Context | None:
        """(per-edge, per-node) values computed once on the whole sampled subgraph; the per-edge ones are
        trimmed with the edges, the per-node ones are read for the first rows."""
        return None

    def _layer(self, i: int, conv: nn.Module, x: Tensor, edge_index: Tensor, context: Context | None,
               num_dst: int) -> Tensor:
        """Layer ``i`` for the first ``num_dst`` nodes (sources: all rows of ``x``)."""
        if i == 0 and self.first_layer is not None:
            return self.first_layer(conv, x, edge_index, num_dst)
        return conv((x, first_rows(x, num_dst)), edge_index, size=(x.size(0), num_dst))


class SAGE(TrimmedForward, pyg_models.GraphSAGE):
    """PyG's ``GraphSAGE`` (mean aggregation); the first layer projects before aggregating sparse x, and
    aggregates dense or still-encoded x a chunk of edges at a time, as every hidden layer does."""

    first_layer = staticmethod(sage_first_layer)
    reads_encoded_rows = True

    def _between_layers(self, h: Tensor, next_conv: nn.Module) -> Tensor | DeferredReluDropout:
        """In training, ReLU + dropout before a chunked hidden layer is left to that layer, whose backward then
        masks its own gradient in place (src/train/chunked_layer.py)."""
        p = self.dropout.p if isinstance(self.dropout, nn.Dropout) else 0.0
        if (isinstance(self.act, nn.ReLU) and self.training and p > 0.0 and torch.is_grad_enabled()
                and h.requires_grad and packable(h, p, True) and chunkable(next_conv) and not self.keep_last_hidden):
            return DeferredReluDropout(h, p)
        return super()._between_layers(h, next_conv)

    def _layer(self, i: int, conv: nn.Module, x: Tensor, edge_index: Tensor, context: Context | None,
               num_dst: int) -> Tensor:
        if i > 0 and chunkable(conv):  # hidden layers: the mean a chunk of edges at a time, backward too
            return sage_layer(conv, x, edge_index, num_dst)
        return super()._layer(i, conv, x, edge_index, context, num_dst)


class GIN(TrimmedForward, pyg_models.GIN):
    """PyG's ``GIN`` as in Xu et al. 2019: a ``Linear, BatchNorm, ReLU, Linear`` MLP per layer and batch norm
    between layers (``norm="batch_norm"``; without a norm the MLP is ``Linear, ReLU, Linear``).

    Without batch norm, sum aggregation made some seeds stall or diverge (bench/RESULTS.md). Trimmed, a
    layer's batch statistics in training mode are over the rows it computes (the nodes the next layer
    reads, as DGL's message-flow graphs), not over the whole sampled subgraph; in eval mode the
    running statistics make trimmed and untrimmed equal.
    """

    def init_conv(self, in_channels: int, out_channels: int, **kwargs: Any) -> GINConv:
        norm = [BatchNorm(out_channels, allow_single_element=True)] if self.norm == "batch_norm" else []
        mlp = nn.Sequential(nn.Linear(in_channels, out_channels), *norm, nn.ReLU(),
                            nn.Linear(out_channels, out_channels))
        return GINConv(mlp, **kwargs)

    first_layer = staticmethod(gin_first_layer)


class GAT(TrimmedForward, pyg_models.GAT):
    """PyG's ``GAT`` (``--heads`` heads, concatenated in hidden layers, averaged in the last)."""


class GCN(TrimmedForward, pyg_models.GCN):
    """PyG's ``GCN``: ``D^-1/2 (A + I) D^-1/2 X W``, with D the in-degree (+1) in the whole sampled subgraph.

    ``GCNConv`` would recompute degrees on each trimmed layer's edges, so a node of the hop being
    dropped next would lose the edges into it and change its weight; the degrees are taken once
    per batch instead (the edge weights are trimmed along with the edges).
    """

    def _batch_context(self, x: Tensor, edge_index: Tensor) -> Context:
        """(edge weights ``d_u^-1/2 d_v^-1/2``, self-loop weights ``1 / d_v``)."""
        src, dst = edge_index
        deg_inv_sqrt = (torch.bincount(dst, minlength=x.size(0)).to(torch.float32) + 1.0).rsqrt()
        return deg_inv_sqrt[src] * deg_inv_sqrt[dst], deg_inv_sqrt.square()

    def _layer(self, i: int, conv: nn.Module, x: Tensor, edge_index: Tensor, context: Context | None,
               num_dst: int) -> Tensor:
        assert isinstance(conv, GCNConv) and context is not None
        edge_weight, loop_weight = context
        h = conv.lin(x)
        loop = loop_weight[:num_dst].unsqueeze(1)
        out = conv.propagate(edge_index, x=(h, h[:num_dst]), edge_weight=edge_weight, size=(h.size(0), num_dst))
        out = out + loop * h[:num_dst]
        return out if conv.bias is None else out + conv.bias


def first_rows(x: Tensor, n: int) -> Tensor:
    """``x[:n]``, also for sparse COO ``x`` (which has no strided views)."""
    return x.narrow_copy(0, 0, n) if x.is_sparse else x[:n]


def build_model(name: str, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int,
                dropout: float, heads: int = 1) -> nn.Module:
    """One of :data:`MODELS` with ReLU and dropout between layers; returns logits."""
    common = dict(in_channels=in_channels, hidden_channels=hidden_channels, num_layers=num_layers,
                  out_channels=out_channels, dropout=dropout)
    if name == "sage":
        return SAGE(**common)
    if name == "gcn":
        return GCN(**common, normalize=False, add_self_loops=False)
    if name == "gat":
        return GAT(**common, heads=heads)
    if name == "gin":  # a batch of one seed (a shard's last) keeps working: one row uses the running statistics
        return GIN(**common, norm=model_norm(name), norm_kwargs={"allow_single_element": True})
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")


def model_norm(name: str) -> str | None:
    """The normalisation layer the zoo's model ``name`` has (part of a checkpoint's identity)."""
    return "batch_norm" if name == "gin" else None


def batch_logits(model: nn.Module, batch: Data, trim: bool = True) -> Tensor:
    """The model's logits for the batch's seeds (its first ``batch_size`` nodes)."""
    bs = int(batch.batch_size)
    if isinstance(batch, HeteroData):  # typed models read the whole batch (src/train/hetero_model.py)
        return model(batch, trim)[:bs]
    hops = getattr(batch, "num_sampled_nodes", None) if trim else None
    layers = getattr(getattr(model, "module", model), "num_layers", -1)  # under DDP: the wrapped model's
    if hops is None or len(hops) != layers + 1:  # a sample of another depth cannot be trimmed
        return model(batch.x, batch.edge_index)[:bs]
    return model(batch.x, batch.edge_index, list(hops), list(batch.num_sampled_edges))[:bs]


def model_from_identity(identity: dict[str, Any], dropout: float = 0.0) -> nn.Module:
    """The model a checkpoint's identity describes (checkpoints from before the model zoo are GraphSAGE)."""
    return build_model(str(identity.get("model", "sage")), int(identity["num_features"]),
                       int(identity["hidden_channels"]), int(identity["num_classes"]),
                       int(identity["num_layers"]), dropout, int(identity.get("heads", 1)))
