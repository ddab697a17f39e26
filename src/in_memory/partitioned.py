"""Partitioned in-memory backend: each rank holds one partition and asks its peers for the rest.

A rank loads only ``part_<rank>`` of ``<partition_dir>/<dataset>/<world>-parts`` (made by
``partition_graph.py``; rank 0 makes it if it is missing, see :func:`open_partitioned_backend`).
Sampling and features go through the same PyG pieces as every other backend: a
:class:`PartitionedSampler` (a :class:`~src.core.sampling.HopSampler`, so output semantics are
the shared driver's) and a :class:`PartitionedFeatureStore` / :class:`~src.core.pyg_stores.EdgeMetadataStore`
pair behind an unchanged ``NodeLoader`` and the shared :class:`~src.core.prefetch.PrefetchLoader`.

How requests reach the owners: src/in_memory/router.py.

Seeds: ``split_nodes`` returns the global ids of the whole split on every rank (sorted, like the
Neo4j backend), and the trainer shards them as for any backend, so runs of all backends train
on the same seeds per step.  Seeds owned by other ranks cost requests; training each rank on
its own partition's seeds would save them but change the per-step seeds, so it is not done.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from src.backends.base import Backend
from src.core.csr import CSRGraph
from src.core.edge_split import EdgeSplit, EdgeSplitSpec, split_pairs, unique_pairs
from src.core.errors import UsageError, UserError
from src.core.feature_stats import FeatureStats
from src.core.paths import REPO_DIR
from src.core.pyg_stores import EdgeMetadataStore
from src.core.schema import SPLITS
from src.core.sparse_features import feature_nbytes
from src.core.memory_limit import MemoryWall
from src.in_memory import preflight
from src.in_memory.hetero_partition_format import LocalHeteroPartition, load_hetero_partition
from src.in_memory.partition import PartitionConfig
from src.in_memory.partition_format import LocalPartition, load_partition, partition_dir
from src.in_memory.router import PartitionedFeatureStore, PartitionedSampler, PartitionRouter
from src.in_memory.rpc_service import PeerService, ServiceConfig
from src.train import distributed
from src.train.config import TrainConfig

log = logging.getLogger(__name__)

PARTITION_TIMEOUT = timedelta(hours=2)
"""How long other ranks wait for rank 0 to partition a missing graph (a dead rank 0 is seen at once)."""


# --------------------------------------------------------------------------------------------
# the backend
# --------------------------------------------------------------------------------------------
class PartitionedBackend(Backend):
    """Backend contract (src/backends/base.py) over one partition per rank.

    A context manager: leaving it after an exception shuts the RPC service down without waiting
    for the peers (one of them may be dead); ``close()`` waits for all ranks to finish.
    """

    name = "in_memory"

    def __init__(self, part: LocalPartition, service: PeerService | None, splits: dict[str, Tensor], *,
                 world_size: int, fanouts: Sequence[int], batch_size: int, num_loader_threads: int) -> None:
        meta = part.meta
        super().__init__(dataset=meta["dataset"], num_nodes=meta["num_nodes"], num_features=meta["num_features"],
                         num_classes=meta["num_classes"], fanouts=fanouts, batch_size=batch_size,
                         num_loader_threads=num_loader_threads)
        self.part = part
        self.service = service
        self._num_edges = int(meta["num_edges"])
        self.router = PartitionRouter(part, service, world_size)
        self.feature_store = PartitionedFeatureStore(self.router, self.num_nodes, self.num_features)
        self.graph_store = EdgeMetadataStore(self.num_nodes, self._num_edges)
        self._splits = dict(splits)
        log.info("partitioned backend: %s partition %d/%d (%s), %d of %d nodes, %d in-edges, %d halo, "
                 "features %.1f MiB", meta["dataset"], part.index, world_size, meta["method"], len(part.nodes),
                 self.num_nodes, part.csr.num_edges, len(part.halo), feature_nbytes(part.x) / 2**20)

    @property
    def num_edges(self) -> int:
        return self._num_edges

    def feature_stats(self) -> FeatureStats:
        """Written with the partitioning (meta.json), from the whole source graph."""
        s = self.part.meta["feature_stats"]
        return FeatureStats(minimum=s["minimum"], mean=np.asarray(s["mean"]), std=np.asarray(s["std"]),
                            raw_counts=s["raw_counts"])

    def _split_ids(self, split: str) -> np.ndarray:
        raise AssertionError("the partitioned backend's splits are gathered from every rank at start")

    def _make_sampler(self, seed: int) -> PartitionedSampler:
        return PartitionedSampler(self.router, self.fanouts, seed=seed)

    def use_edge_split(self, spec: EdgeSplitSpec) -> EdgeSplit:
        """The split of the whole graph's pairs (every rank's in-edges gathered, so every rank computes the same
        split, equal to the in-memory and Neo4j ones); then each partition keeps only its training edges, and
        no rank samples before every partition has (a barrier: peers answer hops from their partitions)."""
        part, n = self.part, self.num_nodes
        local_dst = np.repeat(np.arange(len(part.nodes)), np.diff(part.csr.indptr))
        src, dst = part.csr.indices, part.nodes[local_dst]
        every = distributed.all_gather_objects(unique_pairs(np.stack([src, dst]), n))
        split = split_pairs(np.unique(np.concatenate(every), axis=0), n, spec)
        keep = ~split.is_held_out(src, dst)
        indptr = np.zeros(len(part.nodes) + 1, dtype=np.int64)
        np.cumsum(np.bincount(local_dst[keep], minlength=len(part.nodes)), out=indptr[1:])
        part.csr = CSRGraph(indptr=indptr, indices=src[keep])
        distributed.barrier()
        log.info("partitioned backend: edge split %s (seed %d): %s pairs; %d local message-passing edges",
                 spec.text, spec.seed, split.counts(), part.csr.num_edges)
        return split

    def training_degrees(self) -> Tensor:
        return distributed.all_reduce_sum(torch.from_numpy(np.bincount(self.part.csr.indices, minlength=self.num_nodes)))

    def _loader_data(self) -> tuple[PartitionedFeatureStore, EdgeMetadataStore]:
        return self.feature_store, self.graph_store

    def stats(self) -> dict[str, Any]:
        r = self.router.stats
        requests = self.service.stats if self.service is not None else None
        return {
            **super().stats(),
            "partition": self.part.index,
            "local_nodes": len(self.part.nodes),
            "local_edges": self.part.csr.num_edges,
            "halo_nodes": len(self.part.halo),
            "feature_mb": feature_nbytes(self.part.x) / 2**20,
            "local_feature_rows": r.local_rows,
            "remote_feature_rows": r.remote_rows,
            "local_sampled_frontier": r.local_frontier,
            "remote_sampled_frontier": r.remote_frontier,
            "remote_requests": requests.requests if requests else 0,
            "remote_mb_received": requests.bytes_received / 2**20 if requests else 0.0,
            "remote_wait_s": requests.wait_s if requests else 0.0,
        }

    def close(self, graceful: bool = True) -> None:
        if self.service is not None:
            self.service.shutdown(graceful=graceful)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(graceful=exc_type is None)


# --------------------------------------------------------------------------------------------
# start-up: partition if needed, load, agree, connect
# --------------------------------------------------------------------------------------------
def open_partitioned_backend(cfg: TrainConfig, partition_root: str) -> PartitionedBackend:
    """Join the job, make sure partition ``<world>-parts`` exists, load ours, start the service.

    Missing partitions: rank 0 partitions the graph with METIS (in a child process, so its
    memory does not count as the trainer's), the other ranks wait for it over gloo (a crash of
    rank 0 ends the wait at once).  Every rank then needs the folder under its own
    ``partition_root``: on one machine or a shared filesystem that is automatic; otherwise run
    ``partition_graph.py`` with the same settings on every machine (it is deterministic) or copy
    the folder.  Ranks check that they all loaded the same partitioning before training.
    """
    rank, world = cfg.node_rank, cfg.num_nodes
    from src.in_memory.hetero_partitioned import PartitionedHeteroBackend, check_hetero_partition

    if cfg.target_type:
        check_hetero_partition(cfg)
    distributed.init(cfg)  # train() reuses this group and destroys it at the end
    try:
        slow = dist.new_group(backend="gloo", timeout=PARTITION_TIMEOUT) if world > 1 else None
        name = _partition_on_rank0(cfg, partition_root) if rank == 0 else None
        name = _broadcast(name, slow)
        if isinstance(name, UserError):
            raise name
        root = partition_dir(partition_root, name, world, reverse=cfg.add_reverse)
        part: LocalPartition | LocalHeteroPartition | None = None
        try:
            preflight.check_partition(root, rank, cfg)
            part = _load_local(root, rank, cfg)
            mine: tuple[str | None, Any] = (None, (part.identity(), part.splits))
        except (MemoryWall, UsageError) as exc:
            mine = (f"rank {rank}: {exc}", None)
        except UserError as exc:
            mine = (f"rank {rank}: {exc}; on several machines run `python partition_graph.py --dataset "
                    f"{cfg.dataset} --num_partitions {world} --output_dir {partition_root}` on each "
                    "(deterministic) or put --partition_dir on a shared filesystem", None)
        everyone = _all_gather(mine, slow)
        _check_agreement(everyone)
        assert part is not None
        splits = {split: torch.from_numpy(np.sort(np.concatenate([s[1][1][split] for s in everyone])))
                  for split in SPLITS}
        service = None
        if world > 1:
            service = PeerService(ServiceConfig(rank=rank, world_size=world, master_addr=cfg.master_addr,
                                                port=cfg.master_port + 1, concurrency=cfg.concurrency,
                                                timeout_s=distributed.timeout_s()), part)
    except BaseException:
        distributed.destroy()
        raise
    if isinstance(part, LocalHeteroPartition):
        return PartitionedHeteroBackend(part, service, splits, world_size=world, target_type=str(cfg.target_type),
                                        fanouts=str(cfg.flags.get("fanouts")), batch_size=cfg.batch_size,
                                        num_loader_threads=cfg.num_loader_threads, featureless=cfg.featureless)
    return PartitionedBackend(part, service, splits, world_size=world, fanouts=cfg.fanouts,
                              batch_size=cfg.batch_size, num_loader_threads=cfg.num_loader_threads)


def _load_local(root: Path, rank: int, cfg: TrainConfig) -> LocalPartition | LocalHeteroPartition:
    """This rank's partition: heterogeneous with ``--target_type`` (src/in_memory/hetero_partitioned.py)."""
    if not cfg.target_type:
        return load_partition(root, rank)
    from src.in_memory.hetero_partitioned import check_hetero_partition

    part = load_hetero_partition(root, rank)
    check_hetero_partition(cfg, part)
    return part


def _partition_on_rank0(cfg: TrainConfig, partition_root: str) -> str | UserError:
    """Dataset folder name after making sure the partitioning exists, or the error to share.

    Runs :func:`src.in_memory.partition.ensure_main` in a child process: partitioning loads the whole
    graph, which must not count towards the trainer's memory peak (nor import torch twice).
    """
    pcfg = PartitionConfig(dataset=cfg.dataset, num_partitions=cfg.num_nodes, output_dir=partition_root,
                           dataset_root_dir=cfg.dataset_root_dir, add_reverse=cfg.add_reverse)
    code = "from src.in_memory.partition import ensure_main; ensure_main()"
    path = os.pathsep.join(filter(None, [str(REPO_DIR), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    # stderr is inherited: the child's logs and progress bar show live
    child = subprocess.run([sys.executable, "-c", code, json.dumps(dataclasses.asdict(pcfg))],
                           stdout=subprocess.PIPE, text=True, env=env)
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        return UserError(f"rank 0: the partitioning process for {cfg.dataset!r} crashed (exit code "
                         f"{child.returncode}); see its output above")
    outcome = json.loads(lines[-1])
    if "error" in outcome:
        kind = UsageError if outcome["exit_code"] == UsageError.exit_code else UserError
        return kind(f"rank 0: preparing partitions of {cfg.dataset!r} failed: {outcome['error']}")
    return str(outcome["dataset"])


def _broadcast(obj: Any, group: Any) -> Any:
    if group is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def _all_gather(obj: Any, group: Any) -> list[Any]:
    if group is None:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj, group=group)
    return out


def _check_agreement(everyone: list[tuple[str | None, Any]]) -> None:
    """Same one-line error on every rank if any rank failed or holds another partitioning."""
    errors = [err for err, _ in everyone if err is not None]
    if errors:
        raise UserError(errors[0])
    ref = everyone[0][1][0]
    for r, (_, (identity, _)) in enumerate(everyone):
        if identity != ref:
            diff = ", ".join(f"{k}: {identity.get(k)} vs {ref.get(k)}"
                             for k in ref if identity.get(k) != ref.get(k))
            raise UserError(f"rank {r} loaded a different partitioning than rank 0 ({diff}): give every "
                            "machine the same partition folder (copy rank 0's, or partition with the "
                            "same settings)")
