"""The sampling contract every backend implements, and the one multi-hop driver they share.

* :class:`HopSampler`: the :class:`torch_geometric.sampler.BaseSampler` (for
  :class:`torch_geometric.loader.NodeLoader`) every backend subclasses with its own ``hop``.
* :func:`sample_multi_hop`: the driver every ``hop_fn`` plugs into, so relabelling and output
  layout are defined once; :func:`sampler_output` assembles hops relabelled elsewhere (the
  server's ``gnn.sampleHops``) the same way.
* :class:`CSRNeighborSampler`: the in-memory one, over :class:`~src.core.csr.CSRGraph`.
"""
from __future__ import annotations

import hashlib
from abc import abstractmethod
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch_geometric.sampler import (
    BaseSampler,
    EdgeSamplerInput,
    NegativeSampling,
    NodeSamplerInput,
    SamplerOutput,
)

from src.core.csr import CSRGraph, sample_hop_csr
from src.core.link_sampling import edge_sample

HopFn = Callable[[np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]
"""``hop_fn(frontier, fanout, hop) -> (counts [len(frontier)], neighbours [sum(counts)])``."""


def _unique_first(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(ids, return_index=True, return_inverse=True)`` for ids >= 0, ~3x faster.

    Sorts the packed values ``id << bits | position`` (a plain value sort, much cheaper than the
    stable argsort ``np.unique`` does), so equal ids come out ordered by first position.
    """
    n = len(ids)
    bits = max(n - 1, 1).bit_length()
    if n == 0 or int(ids.max()) >= 1 << (62 - bits):
        return np.unique(ids, return_index=True, return_inverse=True)
    packed = np.sort((ids << bits) | np.arange(n, dtype=np.int64))
    sorted_ids = packed >> bits
    position = packed & ((1 << bits) - 1)
    head = np.empty(n, dtype=bool)
    head[0] = True
    np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=head[1:])
    inverse = np.empty(n, dtype=np.int64)
    inverse[position] = np.cumsum(head) - 1
    return sorted_ids[head], position[head], inverse

def _relabel(nodes: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local ids of ``ids`` in a batch whose node list is ``nodes``; unseen ids get new ones.

    One sort over the batch's ids (O(batch), not O(N)): a known id's local id is its first
    position in ``nodes``; new ids are numbered after ``nodes`` in order of first appearance.
    Returns ``(local ids [len(ids)], new global ids in local-id order)``.
    """
    known = len(nodes)
    candidates = np.concatenate([nodes, ids])
    _, local, inverse = _unique_first(candidates)  # local: first position of each distinct id
    new = np.flatnonzero(local >= known)
    appearance = new[np.argsort(local[new])]  # first positions are distinct: no ties
    new_ids = candidates[local[appearance]]
    local[appearance] = np.arange(known, known + len(appearance), dtype=np.int64)
    return local[inverse[known:]], new_ids

def sample_multi_hop(hop_fn: HopFn, seeds: np.ndarray, fanouts: list[int]) -> SamplerOutput:
    """Multi-hop neighbour sampling with the semantics of PyG's ``NeighborSampler``.

    Non-disjoint, directed: the node list starts with ``seeds`` in order (a duplicated seed is
    kept at every position and sampled from at every position, as pyg-lib does; NodeLoader
    batches of a duplicate-free ``input_nodes`` never contain duplicates).  Hop k samples
    neighbours of the nodes that were new in hop k - 1 (hop 0: the seeds); new nodes are appended
    in order of first appearance.  ``row`` = local source (the sampled neighbour), ``col`` =
    local destination (the frontier node).  ``metadata`` is left for the sampler to set.
    """
    seeds = np.asarray(seeds, dtype=np.int64)
    nodes = seeds
    frontier = seeds
    hops: list[RelabelledHop] = []
    for hop, fanout in enumerate(fanouts):
        counts, neighbours = hop_fn(frontier, fanout, hop)
        counts = np.asarray(counts, dtype=np.int64)
        neighbours = np.asarray(neighbours, dtype=np.int64)
        if counts.shape != frontier.shape or int(counts.sum()) != len(neighbours):
            raise ValueError(
                f"hop_fn returned {counts.shape} counts summing to {int(counts.sum())} for "
                f"{len(frontier)} frontier nodes and {len(neighbours)} neighbours (hop {hop})"
            )
        if len(neighbours) and neighbours.min() < 0:
            raise ValueError(f"hop_fn returned negative node ids (hop {hop})")
        row, new_nodes = _relabel(nodes, neighbours)
        hops.append(RelabelledHop(counts, row, new_nodes))
        frontier = new_nodes
        nodes = np.concatenate([nodes, new_nodes])
    return sampler_output(seeds, hops)

class RelabelledHop(NamedTuple):
    """One hop of a batch in local indices: ``counts`` sampled per frontier node (the nodes new in
    the previous hop, in order), ``locals`` = position in the batch's node list of each sampled
    neighbour, ``new_nodes`` = global ids of the nodes this hop added, in order of first appearance."""

    counts: np.ndarray
    locals: np.ndarray
    new_nodes: np.ndarray

def sampler_output(seeds: np.ndarray, hops: list[RelabelledHop]) -> SamplerOutput:
    """The ``SamplerOutput`` of relabelled hops (see :func:`sample_multi_hop` for the layout).

    Shared by the client-side relabelling and ``gnn.sampleHops``, which relabels on the server.
    """
    nodes = [np.asarray(seeds, dtype=np.int64)]
    frontier_local = np.arange(len(seeds), dtype=np.int64)
    size = len(seeds)
    rows, cols = [], []
    num_sampled_nodes, num_sampled_edges = [len(seeds)], []
    for counts, locals_, new_nodes in hops:
        if counts.shape != frontier_local.shape or int(counts.sum()) != len(locals_):
            raise ValueError(f"a hop has {counts.shape} counts summing to {int(counts.sum())} for "
                             f"{len(frontier_local)} frontier nodes and {len(locals_)} sampled neighbours")
        rows.append(np.asarray(locals_, dtype=np.int64))
        cols.append(np.repeat(frontier_local, counts))
        num_sampled_nodes.append(len(new_nodes))
        num_sampled_edges.append(len(locals_))
        nodes.append(new_nodes)
        frontier_local = np.arange(size, size + len(new_nodes), dtype=np.int64)
        size += len(new_nodes)
    return SamplerOutput(
        node=torch.from_numpy(np.concatenate(nodes)),
        row=torch.from_numpy(np.concatenate(rows) if rows else np.empty(0, np.int64)),
        col=torch.from_numpy(np.concatenate(cols) if cols else np.empty(0, np.int64)),
        edge=None,
        num_sampled_nodes=num_sampled_nodes,
        num_sampled_edges=num_sampled_edges,
    )

class HopSampler(BaseSampler):
    """``BaseSampler`` on top of :func:`sample_multi_hop`; each backend implements :meth:`hop`.

    Reproducible and thread-safe without a lock: every batch draws from its own generator,
    seeded from ``(seed, epoch, hash of the batch's seed ids)``.  So the sample of a batch does
    not depend on which thread runs it or on the order batches are sampled in (prefetching gives
    the same result as a sequential run).  Call :meth:`set_epoch` to get fresh samples for a
    repeated batch (e.g. ``shuffle=False``) in a new epoch.  ``seed=None`` draws a random seed.
    Homogeneous, non-temporal graphs; :attr:`num_nodes` (set by the backend) is what link
    sampling draws negative endpoints from.
    """

    num_nodes: int | None = None
    exclude_targets = False  # link batches: drop message-passing edges between positive target pairs

    def __init__(self, fanouts: list[int], seed: int | None = None):
        if not fanouts or any(int(k) < -1 for k in fanouts):
            raise ValueError(f"fanouts must be a non-empty list of ints >= -1, got {fanouts}")
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.fanouts = [int(k) for k in fanouts]
        self.seed = int(np.random.SeedSequence().entropy if seed is None else seed)
        self.epoch = 0

    @abstractmethod
    def hop(
        self, frontier: np.ndarray, fanout: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """One hop with the :data:`HopFn` contract, drawing randomness only from ``rng``."""

    def set_epoch(self, epoch: int) -> None:
        """Mix ``epoch`` into every batch's random stream (call between epochs, not during)."""
        self.epoch = int(epoch)

    def batch_rng(self, seeds: np.ndarray) -> np.random.Generator:
        """The generator of the batch with these seed ids (same ids, seed, epoch: same stream)."""
        digest = hashlib.blake2b(seeds.tobytes(), digest_size=16).digest()
        words = np.frombuffer(digest, dtype=np.uint32).tolist()
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, *words]))

    def sample_from_nodes(self, inputs: NodeSamplerInput, **kwargs) -> SamplerOutput:
        if inputs.input_type is not None or inputs.time is not None:
            raise NotImplementedError(
                f"{type(self).__name__} supports homogeneous, non-temporal graphs only"
            )
        seeds = inputs.node.numpy().astype(np.int64, copy=False)
        rng = self.batch_rng(seeds)
        out = sample_multi_hop(lambda frontier, fanout, hop: self.hop(frontier, fanout, rng),
                               seeds, self.fanouts)
        out.metadata = (inputs.input_id, inputs.time)
        return out

    def sample_from_edges(
        self, inputs: EdgeSamplerInput, neg_sampling: NegativeSampling | None = None
    ) -> SamplerOutput:
        """Link batches for PyG's ``LinkLoader`` (src/core/link_sampling.py): the seed edges' endpoints and
        negatives drawn from :attr:`num_nodes` nodes are the seeds of :meth:`sample_from_nodes`."""
        if self.num_nodes is None:
            raise ValueError(f"{type(self).__name__} needs num_nodes to sample from edges")
        return edge_sample(self, inputs, neg_sampling, self.num_nodes)

    @property
    def edge_permutation(self) -> None:
        """No edge ids are returned (``edge=None``), so there is no permutation to report."""
        return None


class CSRNeighborSampler(HopSampler):
    """Uniform neighbour sampler over an in-memory :class:`CSRGraph` (see :class:`HopSampler`)."""

    def __init__(self, csr: CSRGraph, fanouts: list[int], seed: int | None = None):
        super().__init__(fanouts, seed)
        self.csr = csr
        self.num_nodes = csr.num_nodes

    def hop(
        self, frontier: np.ndarray, fanout: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        return sample_hop_csr(self.csr, frontier, fanout, rng)
