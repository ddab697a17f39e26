"""Partitioned in-memory backend over a heterogeneous graph: every node type split over the ranks.

Each rank loads its ``part_<rank>`` (src/in_memory/hetero_partition_format.py) and asks the owners
for the rest, as the homogeneous partitioned backend does (src/in_memory/router.py), per type:

* a hop of one relationship type splits the frontier (nodes of its destination type) by owner; each
  owner samples its share with the minstd states of those frontier positions
  (:func:`~src.core.hetero_sampling.sample_typed_hop`), and the answers are put back in frontier
  order. States are per position and the owners hold the whole graph's sorted in-lists, so a batch's
  sample is exactly the full graph's (:class:`~src.core.hetero_sampling.HeteroCSRSampler`) and that
  of the Neo4j samplers, whatever the partitioning;
* rows of one type: those this rank holds (owned or halo) locally, the others from their owners
  (one request per owner and type per batch).

Seeds: the whole split of the target type on every rank, sorted (as the homogeneous partitioned
and the Neo4j backends), sharded by the loop, so runs of every backend train on the same seeds.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor

from src.backends.hetero import HeteroBackend
from src.core.errors import UsageError
from src.core.hetero_fanouts import EdgeType, Fanouts
from src.core.hetero_sampling import HeteroHopSampler
from src.core.hetero_stores import HeteroRowStore
from src.in_memory.hetero_partition_format import LocalHeteroPartition
from src.in_memory.partitioned import PartitionedBackend
from src.in_memory.router import PartitionRouter, by_owner
from src.in_memory.rpc_service import PeerService

log = logging.getLogger(__name__)


class HeteroPartitionRouter(PartitionRouter):
    """Typed hops and rows for ANY nodes: from this partition or from their owners."""

    part: LocalHeteroPartition

    def typed_sample(self, edge_type: EdgeType, frontier: np.ndarray, fanout: int, states: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        e = self.part.edge_types.index(edge_type)
        return self.sample_by_owner(
            frontier, by_owner(self.part.node_map[edge_type[2]][frontier], self.world_size),
            lambda r, pos: ("typed_sample", e, torch.from_numpy(frontier[pos]), fanout,
                            torch.from_numpy(np.ascontiguousarray(states[pos]))),
            lambda r, pos: self.part.typed_sample(e, frontier[pos], fanout, states[pos]))

    def typed_rows(self, node_type: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x [len(ids), F], y [len(ids)])`` in ``ids`` order: held rows here, the rest from their owners."""
        t = self.part.node_types.index(node_type)
        pos = self.part.rows[node_type].positions(ids)
        here = np.flatnonzero(pos >= 0)
        x_here, y_here = self.part.typed_rows(t, ids[here])
        x = np.empty((len(ids), x_here.shape[1]), dtype=np.float32)
        y = np.empty(len(ids), dtype=np.int64)
        x[here], y[here] = x_here, y_here
        away = np.flatnonzero(pos < 0)
        groups = [(r, away[p]) for r, p in by_owner(self.part.node_map[node_type][ids[away]], self.world_size)]
        pending = [(p, self.service.submit(r, "typed_rows", t, torch.from_numpy(ids[p]))) for r, p in groups]
        for p, req in pending:
            rows, labels = self.service.result(req)
            x[p], y[p] = rows.numpy(), labels.numpy()
        self._count(local_rows=len(here), remote_rows=len(away))
        return x, y


class PartitionedHeteroSampler(HeteroHopSampler):
    """The typed sampling contract over the partitions (samples equal the whole graph's)."""

    def __init__(self, router: HeteroPartitionRouter, fanouts: Fanouts, seed: int | None = None) -> None:
        super().__init__(router.part.node_types, fanouts, seed)
        self.router = router

    def typed_hop(self, edge_type: EdgeType, frontier: np.ndarray, fanout: int, states: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        return self.router.typed_sample(edge_type, np.asarray(frontier, np.int64), fanout, states)


class PartitionedHeteroRows(HeteroRowStore):
    """``x``/``y`` per node type across the partitions."""

    def __init__(self, router: HeteroPartitionRouter, meta: dict[str, Any]) -> None:
        super().__init__({n["name"]: n["num_nodes"] for n in meta["node_types"]},
                         {n["name"]: n["num_features"] for n in meta["node_types"]},
                         {n["name"] for n in meta["node_types"] if n["labelled"]})
        self.router = router

    def fetch_type(self, node_type: str, ids: np.ndarray, want_x: bool, want_y: bool
                   ) -> tuple[Tensor | None, Tensor | None]:
        x, y = self.router.typed_rows(node_type, ids)
        return (torch.from_numpy(x) if want_x else None), (torch.from_numpy(y) if want_y else None)


def check_hetero_partition(cfg: Any, part: LocalHeteroPartition | None = None) -> None:
    """Flags the partitioned hetero backend cannot take, one line each (before any service starts)."""
    if cfg.featureless == "degree":
        raise UsageError("--featureless degree needs every relationship of a node, which no partition holds: "
                         "use --full_graph, or --featureless embedding / constant")
    if part is not None and cfg.target_type != part.meta["target_type"]:
        raise UsageError(f"--target_type {cfg.target_type} is not the partitioned dataset's target type "
                         f"{part.meta['target_type']!r} (its splits): pass --target_type {part.meta['target_type']}")


class PartitionedHeteroBackend(HeteroBackend):
    """The :class:`HeteroBackend` contract over one heterogeneous partition per rank."""

    name = "in_memory"
    close = PartitionedBackend.close  # the same RPC service, left the same way
    __exit__ = PartitionedBackend.__exit__

    def __init__(self, part: LocalHeteroPartition, service: PeerService | None, splits: dict[str, Tensor], *,
                 world_size: int, target_type: str, fanouts: str, batch_size: int, num_loader_threads: int,
                 featureless: str = "embedding") -> None:
        meta = part.meta
        super().__init__(dataset=meta["dataset"],
                         node_types={n["name"]: (n["num_nodes"], n["num_features"], n["labelled"])
                                     for n in meta["node_types"]},
                         edge_types={(r["src"], r["rel"], r["dst"]): r["num_edges"] for r in meta["rel_types"]},
                         target_type=target_type, num_classes=meta["num_classes"], fanouts=fanouts,
                         batch_size=batch_size, num_loader_threads=num_loader_threads, featureless=featureless)
        self.part = part
        self.service = service
        self._splits = dict(splits)
        self.router = HeteroPartitionRouter(part, service, world_size)
        self.rows = PartitionedHeteroRows(self.router, meta)
        log.info("partitioned hetero backend: %s partition %d/%d (%s), owned %s, halo %s", meta["dataset"],
                 part.index, world_size, meta["method"], {t: len(r.nodes) for t, r in part.rows.items()},
                 {t: len(r.halo) for t, r in part.rows.items()})

    def _split_ids(self, split: str) -> np.ndarray:
        raise AssertionError("the partitioned backend's splits are gathered from every rank at start")

    def _make_sampler(self, seed: int) -> PartitionedHeteroSampler:
        return PartitionedHeteroSampler(self.router, self.type_fanouts, seed=seed)

    def _loader_data(self):  # noqa: ANN202
        return self.rows, self.edge_metadata

    def stats(self) -> dict[str, Any]:
        r, requests = self.router.stats, self.service.stats if self.service else None
        return {**super().stats(), "partition": self.part.index,
                "local_nodes": {t: len(v.nodes) for t, v in self.part.rows.items()},
                "halo_nodes": {t: len(v.halo) for t, v in self.part.rows.items()},
                "local_feature_rows": r.local_rows, "remote_feature_rows": r.remote_rows,
                "local_sampled_frontier": r.local_frontier, "remote_sampled_frontier": r.remote_frontier,
                "remote_requests": requests.requests if requests else 0,
                "remote_mb_received": requests.bytes_received / 2**20 if requests else 0.0}
