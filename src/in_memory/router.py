"""How a rank of the partitioned backend reaches every node: its own partition, or the owner's, per request.

Per hop, :class:`PartitionRouter` splits the frontier by owner (``node_map``): the local part is
sampled here, every other owner gets one request, and results are put back in frontier order.
Each owner's share is sampled with a generator seeded by a number drawn from the batch's
generator (one draw per rank, every hop), so a batch's sample depends only on the sampler seed,
the epoch, the seed ids and the partitioning, never on which rank or thread runs it. Features
and labels: local rows from the partition, one request per other owner per batch.
:class:`PartitionedSampler` and :class:`PartitionedFeatureStore` are the PyG pieces over it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from src.core.arrays import segment_arange
from src.core.pyg_stores import NodeRowStore
from src.core.sampling import HopSampler
from src.core.sparse_features import rows_to_torch
from src.in_memory.partition_format import LocalPartition
from src.in_memory.rpc_service import SLAB_BYTES, PeerService

# --------------------------------------------------------------------------------------------
# routing requests to owners
# --------------------------------------------------------------------------------------------
@dataclass
class RouterStats:
    """Rows and frontier nodes served here vs by peers (how much the partitioning saves)."""

    local_rows: int = 0
    remote_rows: int = 0
    local_frontier: int = 0
    remote_frontier: int = 0

Hop = tuple[np.ndarray, np.ndarray]  # (counts per frontier node, neighbours)


def by_owner(owners: np.ndarray, world_size: int) -> list[tuple[int, np.ndarray]]:
    """``(owner, positions)`` for every owner of at least one node (``owners``: the owner of each)."""
    order = np.argsort(owners, kind="stable")
    bounds = np.searchsorted(owners[order], np.arange(world_size + 1))
    return [(r, order[bounds[r]:bounds[r + 1]]) for r in range(world_size) if bounds[r + 1] > bounds[r]]


def in_frontier_order(n: int, groups: list[tuple[int, np.ndarray]],
                      results: dict[int, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The owners' ``(counts, neighbours)`` of their frontier positions, put back in frontier order."""
    if len(groups) == 1:
        return results[groups[0][0]]
    positions = np.concatenate([pos for _, pos in groups])
    counts_cat = np.concatenate([results[r][0] for r, _ in groups])
    neighbours_cat = np.concatenate([results[r][1] for r, _ in groups])
    counts = np.empty(n, dtype=np.int64)
    counts[positions] = counts_cat
    start = np.empty(n, dtype=np.int64)
    start[positions] = np.cumsum(counts_cat) - counts_cat
    return counts, neighbours_cat[segment_arange(start, counts)]


class PartitionRouter:
    """Answers sample/feature requests for ANY nodes: locally or from their owners."""

    def __init__(self, part: LocalPartition, service: PeerService | None, world_size: int) -> None:
        self.part = part
        self.service = service
        self.world_size = world_size
        self.stats = RouterStats()
        self._lock = threading.Lock()  # prefetch threads update the stats concurrently

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for key, value in deltas.items():
                setattr(self.stats, key, getattr(self.stats, key) + value)

    def _by_owner(self, ids: np.ndarray) -> list[tuple[int, np.ndarray]]:
        return by_owner(self.part.node_map[ids], self.world_size)

    def sample(self, frontier: np.ndarray, fanout: int, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One hop for every frontier node; owner ``r`` samples its share with ``seeds[r]``."""
        if len(frontier) == 0:  # the previous hop found no new nodes
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return self.sample_by_owner(
            frontier, self._by_owner(frontier),
            lambda r, pos: ("sample", torch.from_numpy(frontier[pos]), fanout, int(seeds[r])),
            lambda r, pos: self.part.sample(frontier[pos], fanout, int(seeds[r])))

    def sample_by_owner(self, frontier: np.ndarray, groups: list[tuple[int, np.ndarray]],
                        request: Callable[[int, np.ndarray], tuple], local: Callable[[int, np.ndarray], Hop]) -> Hop:
        """A hop of ``frontier``: owner ``r`` of positions ``pos`` gets ``request(r, pos)`` (kind and arguments),
        this rank's share is ``local(r, pos)``; the answers are put back in frontier order."""
        pending = {r: self.service.submit(r, *request(r, pos)) for r, pos in groups if r != self.part.index}
        results = {}
        for r, pos in groups:
            if r == self.part.index:
                results[r] = local(r, pos)
                self._count(local_frontier=len(pos))
        for r, req in pending.items():
            counts, neighbours = self.service.result(req)
            results[r] = counts.numpy(), neighbours.numpy()
            self._count(remote_frontier=len(counts))
        return in_frontier_order(len(frontier), groups, results)

    def features(self, ids: np.ndarray) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray]:
        """``(x [len(ids), F] float32, y [len(ids)] int64)`` in ``ids`` order; ``x`` is CSR when
        this partition holds its rows as CSR (sparse features), else dense."""
        groups = self._by_owner(ids)
        pending = {r: self.service.submit(r, "features", torch.from_numpy(ids[pos]))
                   for r, pos in groups if r != self.part.index}
        sparse = sp.issparse(self.part.x)
        x = None if sparse else np.empty((len(ids), self.part.x.shape[1]), dtype=np.float32)
        blocks: dict[int, sp.csr_matrix] = {}
        y = np.empty(len(ids), dtype=np.int64)
        for r, pos in groups:
            if r == self.part.index:
                local = self.part.to_local(ids[pos])
                if sparse:
                    blocks[r] = self.part.x[local]
                else:
                    step = max(1, SLAB_BYTES // max(4 * x.shape[1], 1))
                    for begin in range(0, len(pos), step):  # no temporary copy of all local rows
                        x[pos[begin:begin + step]] = self.part.x[local[begin:begin + step]]
                y[pos] = self.part.y[local]
                self._count(local_rows=len(pos))
        positions = dict(groups)
        for r, req in pending.items():
            pos = positions[r]
            rows, labels = self.service.result(req)
            if sparse:
                blocks[r] = rows.to_csr()
            else:
                rows.scatter_into(x, pos)
            y[pos] = labels.numpy()
            self._count(remote_rows=len(pos))
        if sparse:
            x = _rows_in_order([blocks[r] for r, _ in groups], [pos for _, pos in groups], self.part.x.shape[1])
        return x, y

def _rows_in_order(blocks: list[sp.csr_matrix], positions: list[np.ndarray], num_features: int) -> sp.csr_matrix:
    """CSR rows of several owners put back in request order (``blocks[i]`` holds rows ``positions[i]``)."""
    if len(blocks) == 1:  # one owner: its rows are already in request order
        return blocks[0]
    if not blocks:
        return sp.csr_matrix((0, num_features), dtype=np.float32)
    stacked = sp.vstack(blocks, format="csr")
    order = np.empty(stacked.shape[0], dtype=np.int64)
    order[np.concatenate(positions)] = np.arange(stacked.shape[0])
    return stacked[order]

# --------------------------------------------------------------------------------------------
# PyG pieces
# --------------------------------------------------------------------------------------------
class PartitionedSampler(HopSampler):
    """Uniform neighbour sampling across partitions (see the module docstring for determinism)."""

    def __init__(self, router: PartitionRouter, fanouts: list[int], seed: int | None = None) -> None:
        super().__init__(fanouts, seed)
        self.router = router
        self.num_nodes = len(router.part.node_map)  # link batches draw negatives from every node

    def hop(self, frontier: np.ndarray, fanout: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        seeds = rng.integers(0, np.iinfo(np.int64).max, size=self.router.world_size)
        return self.router.sample(frontier, fanout, seeds)

class PartitionedFeatureStore(NodeRowStore):
    """Read-only ``x``/``y`` of all nodes: local rows here, the others from their owners (one request
    per owner per batch)."""

    reload_hint = "partition_graph.py"
    full_reads = False  # no rank holds every row

    def __init__(self, router: PartitionRouter, num_nodes: int, num_features: int) -> None:
        super().__init__(num_nodes, num_features)
        self.router = router

    def fetch_tensors(self, ids: np.ndarray) -> tuple[Tensor, Tensor]:
        x, y = self.router.features(ids)
        return rows_to_torch(x), torch.from_numpy(y)
