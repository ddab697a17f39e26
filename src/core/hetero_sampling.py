"""Heterogeneous neighbour sampling: the contract, the multi-hop driver and the in-memory sampler.

Semantics (every backend; tests compare them sample for sample):

* per edge type ``(src, rel, dst)`` and hop, each frontier node of type ``dst`` draws a uniform
  sample without replacement of ``min(fanout, degree)`` of its ``rel`` in-neighbours (of type
  ``src``); fanout 0 draws none, -1 all;
* a node's neighbours through one type are ordered by their dense id (parallel edges kept), the
  order every path can produce (the Cypher fallback sorts them; :class:`HeteroCSR` stores them so);
* the draw is Floyd's algorithm over the minstd stream of ``src.core.minstd`` (as the homogeneous
  procedures): the batch's generator (seeded by ``(seed, epoch, seed ids)``) gives one state per
  (hop, edge type), position i of that frontier draws from ``hop_states(state, len(frontier))[i]``;
* hop k samples from the nodes of each type that were new in hop k-1 (hop 0: the seeds, of the
  input type); edge types are visited in the dataset's order, new nodes are appended per node type
  in order of first appearance; output is PyG's ``HeteroSamplerOutput`` (``row`` local source in
  its type, ``col`` local destination), usable by ``NodeLoader(input_nodes=(type, ids))``.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch_geometric.sampler import BaseSampler, HeteroSamplerOutput, NodeSamplerInput

from src.core.csr import CSRGraph
from src.core.arrays import segment_arange
from src.core.hetero_fanouts import EdgeType, Fanouts, num_hops
from src.core.minstd import MINSTD_MODULUS, hop_states
from src.core.sampling import HopSampler, _relabel

MINSTD_MULTIPLIER = 48271


def minstd_floyd(deg: np.ndarray, k: int, states: np.ndarray) -> np.ndarray:
    """[M, k] positions, row i a uniform k-subset of ``range(deg[i])`` (deg > k), in draw order.

    Step j: ``state <- 48271 * state mod (2^31 - 1)``, ``t = state mod (deg - k + j + 1)``, taken
    unless already picked (then ``deg - k + j``): the Cypher query's and the procedures' arithmetic."""
    s = np.asarray(states, dtype=np.int64).copy()
    out = np.empty((k, len(deg)), dtype=np.int64)
    for j in range(k):
        top = deg - k + j
        s = (s * MINSTD_MULTIPLIER) % MINSTD_MODULUS
        t = s % (top + 1)
        out[j] = np.where((out[:j] == t).any(axis=0), top, t)
    return out.T


def sample_typed_hop(csr: CSRGraph, frontier: np.ndarray, fanout: int, states: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, neighbours)`` of one edge type's hop with one minstd state per frontier node."""
    frontier = np.asarray(frontier, dtype=np.int64)
    start = csr.indptr[frontier]
    deg = csr.indptr[frontier + 1] - start
    counts = deg if fanout < 0 else np.minimum(deg, fanout)
    pos = segment_arange(start, counts)
    over = np.flatnonzero(deg > fanout) if fanout > 0 else np.zeros(0, np.int64)
    if len(over):
        out_begin = (np.cumsum(counts) - counts)[over]
        slots = out_begin[:, None] + np.arange(fanout, dtype=np.int64)
        pos[slots] = start[over][:, None] + minstd_floyd(deg[over], fanout, states[over])
    return counts, csr.indices[pos]


@dataclass(frozen=True, eq=False)
class HeteroCSR:
    """Per edge type a CSC by destination whose neighbour lists are sorted by source id."""

    num_nodes: dict[str, int]
    csr: dict[EdgeType, CSRGraph]

    @classmethod
    def from_edges(cls, edges: dict[EdgeType, np.ndarray], num_nodes: dict[str, int]) -> HeteroCSR:
        out = {}
        for (src, rel, dst), ei in edges.items():
            order = np.lexsort((ei[0], ei[1]))
            indptr = np.zeros(num_nodes[dst] + 1, dtype=np.int64)
            np.cumsum(np.bincount(ei[1], minlength=num_nodes[dst]), out=indptr[1:])
            out[(src, rel, dst)] = CSRGraph(indptr=indptr, indices=np.ascontiguousarray(ei[0][order], dtype=np.int64))
        return cls(dict(num_nodes), out)


class TypedHop(NamedTuple):
    """One hop of a batch: per edge type (dataset order) the counts per frontier node of its destination type
    (empty when the type was not sampled) and the local source indices; per node type its new node ids."""

    counts: list[np.ndarray]
    locals: list[np.ndarray]
    new_nodes: list[np.ndarray]


def hetero_sampler_output(node_types: list[str], edge_types: list[EdgeType], seed_type: str, seeds: np.ndarray,
                          hops: list[TypedHop]) -> HeteroSamplerOutput:
    """PyG's ``HeteroSamplerOutput`` of relabelled hops (client driver and ``gnn.sampleHeteroHops`` alike)."""
    size = {t: 0 for t in node_types}
    size[seed_type] = len(seeds)
    frontier = {t: np.zeros(0, np.int64) for t in node_types}
    frontier[seed_type] = np.arange(len(seeds), dtype=np.int64)
    nodes = {t: [np.zeros(0, np.int64)] for t in node_types}
    nodes[seed_type] = [np.asarray(seeds, np.int64)]
    rows: dict[EdgeType, list[np.ndarray]] = {e: [] for e in edge_types}
    cols: dict[EdgeType, list[np.ndarray]] = {e: [] for e in edge_types}
    sampled_nodes = {t: [size[t]] for t in node_types}
    sampled_edges: dict[EdgeType, list[int]] = {e: [] for e in edge_types}
    for hop in hops:
        for edge_type, counts, local in zip(edge_types, hop.counts, hop.locals):
            if len(counts):
                if len(counts) != len(frontier[edge_type[2]]) or int(counts.sum()) != len(local):
                    raise ValueError(f"{edge_type}: {len(counts)} counts for {len(frontier[edge_type[2]])} frontier "
                                     f"nodes, summing to {int(counts.sum())} for {len(local)} neighbours")
                rows[edge_type].append(local)
                cols[edge_type].append(np.repeat(frontier[edge_type[2]], counts))
            sampled_edges[edge_type].append(len(local))
        for t, new in zip(node_types, hop.new_nodes):
            nodes[t].append(new)
            frontier[t] = np.arange(size[t], size[t] + len(new), dtype=np.int64)
            size[t] += len(new)
            sampled_nodes[t].append(len(new))

    def cat(parts: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(parts).astype(np.int64, copy=False) if parts else np.zeros(0, np.int64))

    return HeteroSamplerOutput(
        node={t: cat(nodes[t]) for t in node_types}, row={e: cat(rows[e]) for e in edge_types},
        col={e: cat(cols[e]) for e in edge_types}, edge=None, num_sampled_nodes=sampled_nodes,
        num_sampled_edges=sampled_edges)


class HeteroHopSampler(BaseSampler):
    """``BaseSampler`` of the semantics above; a backend implements :meth:`typed_hop` (or the whole batch)."""

    batch_rng = HopSampler.batch_rng  # the same per-batch stream as the homogeneous samplers
    set_epoch = HopSampler.set_epoch

    def __init__(self, node_types: list[str], fanouts: Fanouts, seed: int | None = None) -> None:
        self.node_types = list(node_types)
        self.fanouts = {e: [int(k) for k in v] for e, v in fanouts.items()}
        self.edge_types = list(self.fanouts)
        self.num_hops = num_hops(self.fanouts)
        self.seed = int(np.random.SeedSequence().entropy if seed is None else seed)
        self.epoch = 0

    @abstractmethod
    def typed_hop(self, edge_type: EdgeType, frontier: np.ndarray, fanout: int, states: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """``(counts [len(frontier)], neighbours [sum(counts)])`` of one edge type's hop."""

    def hop_bases(self, seeds: np.ndarray) -> np.ndarray:
        """[hops, edge types] client states of the batch with these seeds."""
        return self.batch_rng(seeds).integers(1, MINSTD_MODULUS, size=(self.num_hops, len(self.edge_types)),
                                              dtype=np.int64)

    def sample_from_nodes(self, inputs: NodeSamplerInput, **kwargs) -> HeteroSamplerOutput:
        if inputs.input_type is None or inputs.time is not None:
            raise NotImplementedError(f"{type(self).__name__} samples typed seeds: NodeLoader(input_nodes=(type, ids))")
        seeds = inputs.node.numpy().astype(np.int64, copy=False)
        out = self.sample_multi_hop(inputs.input_type, seeds, self.hop_bases(seeds))
        out.metadata = (inputs.input_id, inputs.time)
        return out

    def sample_multi_hop(self, seed_type: str, seeds: np.ndarray, bases: np.ndarray) -> HeteroSamplerOutput:
        """The client-side driver over :meth:`typed_hop` (relabelling here)."""
        nodes = {t: [np.zeros(0, np.int64)] for t in self.node_types}
        nodes[seed_type] = [seeds]
        frontier = {t: np.zeros(0, np.int64) for t in self.node_types}
        frontier[seed_type] = seeds
        hops: list[TypedHop] = []
        for hop in range(self.num_hops):
            counts, locals_ = [], []
            new: dict[str, list[np.ndarray]] = {t: [] for t in self.node_types}
            for i, edge_type in enumerate(self.edge_types):
                src, _, dst = edge_type
                fanout, ids = self.fanouts[edge_type][hop], frontier[dst]
                if fanout == 0 or len(ids) == 0:
                    counts.append(np.zeros(0, np.int64))
                    locals_.append(np.zeros(0, np.int64))
                    continue
                c, nbrs = self.typed_hop(edge_type, ids, fanout, hop_states(int(bases[hop, i]), len(ids)))
                local, new_ids = _relabel(np.concatenate(nodes[src]), np.asarray(nbrs, np.int64))
                nodes[src].append(new_ids)
                new[src].append(new_ids)
                counts.append(np.asarray(c, np.int64))
                locals_.append(local)
            frontier = {t: np.concatenate(new[t]) if new[t] else np.zeros(0, np.int64) for t in self.node_types}
            hops.append(TypedHop(counts, locals_, [frontier[t] for t in self.node_types]))
        return hetero_sampler_output(self.node_types, self.edge_types, seed_type, seeds, hops)

    def sample_from_edges(self, inputs, neg_sampling=None):  # noqa: ANN001, ANN201
        raise NotImplementedError(f"{type(self).__name__} does node sampling only")

    @property
    def edge_permutation(self) -> None:
        return None


class HeteroCSRSampler(HeteroHopSampler):
    """The in-memory reference over a :class:`HeteroCSR`."""

    def __init__(self, graph: HeteroCSR, fanouts: Fanouts, seed: int | None = None) -> None:
        super().__init__(list(graph.num_nodes), fanouts, seed)
        missing = [e for e in fanouts if e not in graph.csr]
        if missing:
            raise ValueError(f"fanouts name edge types the graph lacks: {missing}")
        self.graph = graph

    def typed_hop(self, edge_type: EdgeType, frontier: np.ndarray, fanout: int, states: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        return sample_typed_hop(self.graph.csr[edge_type], frontier, fanout, states)
