"""``sample_from_edges`` for every :class:`~src.core.sampling.HopSampler`: PyG's binary link sampling.

Semantics of PyG's ``NeighborSampler.edge_sample`` (homogeneous, non-disjoint, binary mode) so
``LinkLoader`` consumes the output unchanged: ``ceil(ratio * P)`` negative pairs are drawn for a
batch of ``P`` positive pairs, sources and destinations independently, uniformly over the nodes
(or proportional to ``NegativeSampling.src_weight``/``dst_weight``, e.g. degrees); the seeds of the
multi-hop sample are the sorted distinct endpoints of positives and negatives; ``metadata`` is
``(input_id, edge_label_index [2, P + neg] in local ids, edge_label (1 then 0), None)``.

Reproducible and backend-independent: the negatives come from the batch's own generator (seeded by
the positive pairs, see :meth:`HopSampler.batch_rng`), the neighbourhood from
:meth:`HopSampler.sample_from_nodes` of the seeds (one ``gnn.sampleHops`` call on Neo4j). Like PyG,
negatives are not checked against the graph (a uniform pair of cora is an edge with probability
0.14%; tests/test_link_sampling.py counts them).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch_geometric.sampler import EdgeSamplerInput, NegativeSampling, NodeSamplerInput, SamplerOutput


if TYPE_CHECKING:
    from src.core.sampling import HopSampler


def draw_endpoints(rng: np.random.Generator, n: int, num_nodes: int, weight: torch.Tensor | None) -> np.ndarray:
    """``n`` node ids, uniform or proportional to a non-negative node-level ``weight``."""
    if weight is None:
        return rng.integers(0, num_nodes, size=n, dtype=np.int64)
    p = np.asarray(weight, dtype=np.float64)
    if p.shape != (num_nodes,) or p.min() < 0 or p.sum() <= 0:
        raise ValueError(f"negative sampling weights must be {num_nodes} non-negative values, not all zero")
    cdf = np.cumsum(p)
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), num_nodes - 1).astype(np.int64)


def edge_sample(sampler: HopSampler, inputs: EdgeSamplerInput, neg_sampling: NegativeSampling | None,
                num_nodes: int) -> SamplerOutput:
    """The ``SamplerOutput`` of one batch of seed edges (see the module docstring)."""
    if inputs.input_type is not None or inputs.time is not None:
        raise NotImplementedError(f"{type(sampler).__name__} supports homogeneous, non-temporal graphs only")
    src = inputs.row.numpy().astype(np.int64, copy=False)
    dst = inputs.col.numpy().astype(np.int64, copy=False)
    label = inputs.label
    if neg_sampling is not None:
        if not neg_sampling.is_binary():
            raise NotImplementedError("only binary negative sampling is supported (NegativeSampling('binary', ratio))")
        rng = sampler.batch_rng(np.concatenate([src, dst]))
        num_neg = math.ceil(len(src) * neg_sampling.amount)
        src = np.concatenate([src, draw_endpoints(rng, num_neg, num_nodes, neg_sampling.src_weight)])
        dst = np.concatenate([dst, draw_endpoints(rng, num_neg, num_nodes, neg_sampling.dst_weight)])
        positive = torch.ones(len(inputs.row)) if label is None else label
        label = torch.cat([positive, positive.new_zeros((num_neg,) + tuple(positive.shape[1:]))])
    elif label is None:
        label = torch.ones(len(src))
    seeds, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    out = sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=torch.from_numpy(seeds)))
    edge_label_index = torch.from_numpy(inverse.reshape(2, -1).astype(np.int64))
    if getattr(sampler, "exclude_targets", False):
        out = drop_target_edges(out, edge_label_index[:, :len(inputs.row)])
    out.metadata = (inputs.input_id, edge_label_index, label, None)
    return out


def drop_target_edges(out: SamplerOutput, targets: torch.Tensor) -> SamplerOutput:
    """``out`` without the message-passing edges between the endpoints of a positive target pair (either
    direction): the model must predict those pairs, not read them off the sampled graph. Hop by hop,
    so the layout (and trimming) stays valid; the nodes stay."""
    n = len(out.node)
    keys = torch.unique(torch.cat([targets[0] * n + targets[1], targets[1] * n + targets[0]]))
    edge_keys = out.row * n + out.col
    keep = ~torch.isin(edge_keys, keys)
    bounds = np.cumsum([0, *out.num_sampled_edges])
    out.num_sampled_edges = [int(keep[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:])]
    out.row, out.col = out.row[keep], out.col[keep]
    return out
