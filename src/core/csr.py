"""In-memory CSR graph and its uniform neighbour sampler: the reference every other path is tested against.

* :class:`CSRGraph`: CSC by destination, ``indices[indptr[v]:indptr[v + 1]]`` are the sources
  ``u`` of the edges ``u -> v`` (PyG ``flow="source_to_target"``).
* :func:`sample_hop_csr`: one hop, a uniform sample without replacement per frontier node.
(:class:`~src.core.sampling.CSRNeighborSampler` is the sampler over it.) Numpy only: the loaders
and the partitioner build adjacency with it without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.core.arrays import segment_arange, stable_argsort_ids

# Floyd's subset sampling costs O(fanout**2) time and O(fanout) memory per node; the random-key
# sort O(degree log degree) time and O(degree) memory.  Floyd is used for small fanouts and for
# nodes whose degree dwarfs the fanout (hubs), the sort for the rest, so memory per sampled node
# stays below _FLOYD_MIN_DEGREE_RATIO * fanout whatever the degree.
_FLOYD_MAX_FANOUT = 32
_FLOYD_MIN_DEGREE_RATIO = 16


def in_adjacency(edge_index: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr, indices)`` by destination: ``indices[indptr[v]:indptr[v + 1]]`` are v's sources.

    Sources keep their edge order (stable sort), which is what the ``nbrs`` property stores and
    :class:`~src.core.csr.CSRGraph` samples from. Here, without torch, so the loader need not
    import it (tens of seconds on a busy machine). O(E log E).
    """
    edge_index = np.asarray(edge_index)
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {edge_index.shape}")
    src = edge_index[0].astype(np.int64, copy=False)
    dst = edge_index[1].astype(np.int64, copy=False)
    if src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= num_nodes):
        raise ValueError(f"edge_index has node ids outside [0, {num_nodes})")
    order = stable_argsort_ids(dst, num_nodes)
    indptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(dst, minlength=num_nodes), out=indptr[1:])
    return indptr, src[order]

@dataclass(frozen=True, eq=False)
class CSRGraph:
    """CSC by destination: ``indices[indptr[v]:indptr[v + 1]]`` are the sources of ``v``."""

    indptr: np.ndarray  # int64 [N + 1]
    indices: np.ndarray  # int64 [E]

    @classmethod
    def from_edge_index(cls, edge_index: np.ndarray, num_nodes: int) -> CSRGraph:
        """Build from ``edge_index`` [2, E] (row 0 source, row 1 destination) in O(E log E).

        Each node's sources keep their input order (:func:`in_adjacency`, shared with the loader).
        """
        indptr, indices = in_adjacency(edge_index, num_nodes)
        return cls(indptr=indptr, indices=indices)

    @property
    def num_nodes(self) -> int:
        return len(self.indptr) - 1

    @property
    def num_edges(self) -> int:
        return len(self.indices)

    def degree(self, nodes: np.ndarray) -> np.ndarray:
        """In-degree (number of sampleable neighbours) of ``nodes``."""
        nodes = np.asarray(nodes, dtype=np.int64)
        return self.indptr[nodes + 1] - self.indptr[nodes]

def _floyd_offsets(deg: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """[M, k] offsets, row i a uniform k-subset of ``range(deg[i])`` (Floyd's algorithm).

    Step j draws t uniform in [0, deg - k + j]; if t was already taken, take deg - k + j (never
    taken before).  Every k-subset has probability 1 / C(deg, k); the loop is over k, not nodes.
    Built as [k, M] so the membership test reduces over contiguous rows.
    """
    out = np.empty((k, len(deg)), dtype=np.int64)
    for j in range(k):
        top = deg - k + j
        t = rng.integers(0, top + 1)
        out[j] = np.where((out[:j] == t).any(axis=0), top, t)
    return out.T

def _sort_offsets(deg: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """[M, k] offsets, row i the first k of a uniform random order of ``range(deg[i])``.

    Keys are a random permutation of all candidate edges, so they are distinct (no tie bias).
    ``seg * total + key`` fits int64: total <= _FLOYD_MIN_DEGREE_RATIO * k * len(deg).
    """
    total = int(deg.sum())
    seg = np.repeat(np.arange(len(deg), dtype=np.int64), deg)
    order = np.argsort(seg * total + rng.permutation(total))
    seg_begin = np.cumsum(deg) - deg
    first_k = seg_begin[:, None] + np.arange(k, dtype=np.int64)
    return order[first_k] - seg_begin[:, None]

def _subset_offsets(deg: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """[M, k] uniform k-subsets of ``range(deg[i])`` for nodes with ``deg > k``."""
    if k <= _FLOYD_MAX_FANOUT:
        return _floyd_offsets(deg, k, rng)
    hub = deg >= _FLOYD_MIN_DEGREE_RATIO * k
    out = np.empty((len(deg), k), dtype=np.int64)
    out[hub] = _floyd_offsets(deg[hub], k, rng)
    out[~hub] = _sort_offsets(deg[~hub], k, rng)
    return out

def sample_hop_csr(
    csr: CSRGraph, frontier: np.ndarray, fanout: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``min(fanout, degree)`` distinct neighbours of EVERY frontier node.

    ``fanout == -1`` takes all neighbours.  Returns ``(counts, neighbours)`` with neighbours
    grouped by frontier node in frontier order; each group is a uniform random subset.
    """
    if fanout < -1:
        raise ValueError(f"fanout must be >= 0 or -1 (all), got {fanout}")
    frontier = np.asarray(frontier, dtype=np.int64)
    start = csr.indptr[frontier]
    deg = csr.indptr[frontier + 1] - start
    counts = deg if fanout == -1 else np.minimum(deg, fanout)
    # Nodes with deg <= fanout keep their whole range; the others are overwritten below.
    pos = segment_arange(start, counts)
    if fanout > 0:
        over = np.flatnonzero(deg > fanout)
        if len(over):
            out_begin = (np.cumsum(counts) - counts)[over]
            slots = out_begin[:, None] + np.arange(fanout, dtype=np.int64)
            pos[slots] = start[over][:, None] + _subset_offsets(deg[over], fanout, rng)
    return counts, csr.indices[pos]
