"""Link prediction's model: an encoder from the model zoo (src/train/model.py) and a pair decoder.

The encoder maps a sampled batch to embeddings of its seeds (the endpoints of the batch's
positive and negative pairs, trimmed per layer as in node classification); the decoder scores a
pair ``(u, v)`` from ``h_u`` and ``h_v``: ``dot`` = ``<h_u, h_v>`` (GAE's inner product), ``mlp`` =
an MLP over ``h_u * h_v`` (PyG's link examples, OGB's baselines). Scores are logits (BCE with logits).
"""
from __future__ import annotations

from torch import Tensor, nn
from torch_geometric.data import Data

from src.train.model import batch_logits, build_model

DECODERS = ("dot", "mlp")


class MLPDecoder(nn.Module):
    """``Linear(H, H) -> ReLU -> Linear(H, 1)`` over the Hadamard product of the two embeddings."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, 1))

    def forward(self, h_src: Tensor, h_dst: Tensor) -> Tensor:
        return self.mlp(h_src * h_dst).squeeze(-1)


class DotDecoder(nn.Module):
    def forward(self, h_src: Tensor, h_dst: Tensor) -> Tensor:
        return (h_src * h_dst).sum(dim=-1)


class LinkPredictor(nn.Module):
    """``forward(batch)``: logits of ``batch.edge_label_index``; :meth:`embed`: the seeds' embeddings."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, trim: bool = True) -> None:
        super().__init__()
        self.encoder, self.decoder, self.trim = encoder, decoder, trim

    def embed(self, batch: Data) -> Tensor:
        """Embeddings of the batch's seeds (its first ``num_sampled_nodes[0]`` nodes, or ``batch_size``)."""
        if getattr(batch, "batch_size", None) is None:
            batch.batch_size = int(batch.num_sampled_nodes[0])
        return batch_logits(self.encoder, batch, self.trim)

    def forward(self, batch: Data) -> Tensor:
        h = self.embed(batch)
        return self.decoder(h[batch.edge_label_index[0]], h[batch.edge_label_index[1]])


def build_link_model(name: str, in_channels: int, hidden_channels: int, num_layers: int, dropout: float,
                     heads: int, decoder: str, trim: bool = True) -> LinkPredictor:
    """Encoder ``name`` (its output is a ``hidden_channels`` embedding) with decoder ``decoder``."""
    encoder = build_model(name, in_channels, hidden_channels, hidden_channels, num_layers, dropout, heads)
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; expected one of {DECODERS}")
    return LinkPredictor(encoder, DotDecoder() if decoder == "dot" else MLPDecoder(hidden_channels), trim)
