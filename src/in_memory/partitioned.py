"""Partitioned in-memory backend: each rank holds one partition and asks its peers for the rest.

A rank loads only ``part_<rank>`` of ``<partition_dir>/<dataset>/<world>-parts`` (made by
``partition_graph.py``; rank 0 makes it if it is missing, see :func:`open_partitioned_backend`).
Sampling and features go through the same PyG pieces as every other backend: a
:class:`PartitionedSampler` (a :class:`~src.core.sampling.HopSampler`, so output semantics are
the shared driver's) and a :class:`PartitionedFeatureStore` / :class:`PartitionedGraphStore`
pair behind an unchanged ``NodeLoader`` and the shared :class:`~src.core.prefetch.PrefetchLoader`.

Per hop, :class:`PartitionRouter` splits the frontier by owner (``node_map``): the local part is
sampled here, every other owner gets one request, and results are put back in frontier order.
Each owner's share is sampled with a generator seeded by a number drawn from the batch's
generator (one draw per rank, every hop), so a batch's sample depends only on the sampler seed,
the epoch, the seed ids and the partitioning, never on which rank or thread runs it.  Features
and labels: local rows from the partition, one request per other owner per batch.

Seeds: ``split_nodes`` returns the global ids of the whole split on every rank (sorted, like the
Neo4j backend), and the trainer shards them as for any backend, so runs of all backends train
on the same seeds per step.  Seeds owned by other ranks cost requests; training each rank on
its own partition's seeds would save them but change the per-step seeds, so it is not done.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist
from torch import Tensor
from torch_geometric.data import FeatureStore, GraphStore
from torch_geometric.data.feature_store import TensorAttr
from torch_geometric.data.graph_store import EdgeAttr, EdgeLayout
from torch_geometric.loader import NodeLoader

from src.train import distributed
from src.core.csr import CSRGraph, sample_hop_csr
from src.core.sampling import HopSampler
from src.core.paths import REPO_DIR
from src.core.errors import UsageError, UserError
from src.in_memory.partition import SPLITS, PartitionConfig, part_dir, partition_dir, read_meta
from src.core.prefetch import PrefetchLoader
from src.in_memory.rpc_service import SLAB_BYTES, PeerService, ServiceConfig
from src.core.sparse_features import feature_nbytes, rows_to_torch
from src.train.loop import TrainConfig

log = logging.getLogger(__name__)

PARTITION_TIMEOUT = timedelta(hours=2)
"""How long other ranks wait for rank 0 to partition a missing graph (a dead rank 0 is seen at once)."""
_ATTRS = ("x", "y")


# --------------------------------------------------------------------------------------------
# one partition in RAM
# --------------------------------------------------------------------------------------------
@dataclass(eq=False)
class LocalPartition:
    """What a rank owns (CSC with GLOBAL neighbour ids, features, labels, split ids) plus the
    global node map that says whom to ask for everything else."""

    index: int
    meta: dict[str, Any]
    node_map: np.ndarray  # [N] owner of every node (small unsigned dtype)
    nodes: np.ndarray  # [n] sorted global ids; local id = position
    csr: CSRGraph  # local indptr, global indices
    halo: np.ndarray
    x: np.ndarray | sp.csr_matrix  # float32 [n, F]; CSR for sparse features
    y: np.ndarray  # int64 [n]
    splits: dict[str, np.ndarray] = field(repr=False)  # sorted global ids of owned split nodes

    def to_local(self, ids: np.ndarray) -> np.ndarray:
        """Local ids of owned global ``ids``; ValueError for a node this partition does not own."""
        local = np.searchsorted(self.nodes, ids)
        ok = local < len(self.nodes)
        ok[ok] = self.nodes[local[ok]] == ids[ok]
        if not ok.all():
            bad = ids[~ok][:5].tolist()
            raise ValueError(f"partition {self.index} does not own nodes {bad}: "
                             "the ranks use different partitionings")
        return local

    def sample(self, frontier: np.ndarray, fanout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """One hop (:func:`~src.core.csr.sample_hop_csr`) for owned nodes, generator from ``seed``."""
        return sample_hop_csr(self.csr, self.to_local(frontier), fanout, np.random.default_rng(seed))

    def identity(self) -> dict[str, Any]:
        """What every rank must agree on: same graph, same assignment of nodes."""
        h = hashlib.blake2b(str(self.node_map.dtype).encode(), digest_size=8)
        h.update(np.ascontiguousarray(self.node_map).tobytes())
        keys = ("dataset", "fingerprint", "num_partitions", "method", "seed")
        return {**{k: self.meta.get(k) for k in keys}, "node_map": h.hexdigest()}


def load_partition(root: Path, index: int) -> LocalPartition:
    """Read ``part_<index>`` of a complete partition folder fully into RAM."""
    meta = read_meta(root)
    if meta is None:
        raise UserError(f"no complete partitioning at {root} (no meta.json)")
    folder = part_dir(root, index)
    try:
        names = ("nodes", "indptr", "indices", "halo", "y")
        arrays = {name: np.load(folder / f"{name}.npy") for name in names}
        splits = {split: np.load(folder / f"{split}_idx.npy") for split in SPLITS}
        node_map = np.load(root / meta["node_map"])
        x = _load_rows(folder, len(arrays["nodes"]), int(meta["num_features"]), meta.get("features") == "csr")
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"partition {folder} is incomplete or corrupt ({exc}): "
                        "partition again with partition_graph.py --overwrite") from None
    return LocalPartition(
        index=index, meta=meta, node_map=node_map, nodes=arrays["nodes"],
        csr=CSRGraph(indptr=arrays["indptr"], indices=arrays["indices"]), halo=arrays["halo"],
        x=x, y=arrays["y"], splits=splits,
    )


def _load_rows(folder: Path, num_rows: int, num_features: int, csr: bool) -> np.ndarray | sp.csr_matrix:
    """The partition's feature rows: the dense ``x.npy`` or the CSR triple (see src/in_memory/partition.py)."""
    if not csr:
        return np.load(folder / "x.npy")
    data, indices, indptr = (np.load(folder / f"x_{name}.npy") for name in ("data", "indices", "indptr"))
    x = sp.csr_matrix((data, indices, indptr), shape=(num_rows, num_features))
    x.has_canonical_format = True  # written from canonical CSR (sorted, unique columns)
    return x


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
        """``(owner, positions in ids)`` for every owner with at least one of ``ids``."""
        owners = self.part.node_map[ids]
        order = np.argsort(owners, kind="stable")
        bounds = np.searchsorted(owners[order], np.arange(self.world_size + 1))
        return [(r, order[bounds[r]:bounds[r + 1]]) for r in range(self.world_size)
                if bounds[r + 1] > bounds[r]]

    def sample(self, frontier: np.ndarray, fanout: int, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One hop for every frontier node; owner ``r`` samples its share with ``seeds[r]``."""
        if len(frontier) == 0:  # the previous hop found no new nodes
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        groups = self._by_owner(frontier)
        pending = {r: self.service.submit(r, "sample", torch.from_numpy(frontier[pos]), fanout, int(seeds[r]))
                   for r, pos in groups if r != self.part.index}
        results = {}
        for r, pos in groups:
            if r == self.part.index:
                results[r] = self.part.sample(frontier[pos], fanout, int(seeds[r]))
                self._count(local_frontier=len(pos))
        for r, req in pending.items():
            counts, neighbours = self.service.result(req)
            results[r] = counts.numpy(), neighbours.numpy()
            self._count(remote_frontier=len(counts))
        if len(groups) == 1:
            return results[groups[0][0]]
        positions = np.concatenate([pos for _, pos in groups])
        counts_cat = np.concatenate([results[r][0] for r, _ in groups])
        neighbours_cat = np.concatenate([results[r][1] for r, _ in groups])
        counts = np.empty(len(frontier), dtype=np.int64)
        counts[positions] = counts_cat
        start = np.empty(len(frontier), dtype=np.int64)
        start[positions] = np.cumsum(counts_cat) - counts_cat
        return counts, neighbours_cat[_segment_arange(start, counts)]

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


def _segment_arange(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for every (s, n), without a Python loop."""
    seg_begin = np.cumsum(lengths) - lengths
    return np.repeat(starts - seg_begin, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


# --------------------------------------------------------------------------------------------
# PyG pieces
# --------------------------------------------------------------------------------------------
class PartitionedSampler(HopSampler):
    """Uniform neighbour sampling across partitions (see the module docstring for determinism)."""

    def __init__(self, router: PartitionRouter, fanouts: list[int], seed: int | None = None) -> None:
        super().__init__(fanouts, seed)
        self.router = router

    def hop(self, frontier: np.ndarray, fanout: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        seeds = rng.integers(0, np.iinfo(np.int64).max, size=self.router.world_size)
        return self.router.sample(frontier, fanout, seeds)


class PartitionedFeatureStore(FeatureStore):
    """Read-only ``x``/``y`` of all nodes: local rows here, the others from their owners."""

    def __init__(self, router: PartitionRouter, num_nodes: int, num_features: int) -> None:
        super().__init__()
        self.router = router
        self.num_nodes = num_nodes
        self.num_features = num_features

    def _multi_get_tensor(self, attrs: list[TensorAttr]) -> list[Tensor]:
        """x and y of the same index come from one request per owner instead of two."""
        if any(a.index is not attrs[0].index for a in attrs):
            return [self._get_tensor(a) for a in attrs]
        x, y = self.router.features(_ids(attrs[0].index))
        by_name = {"x": rows_to_torch(x), "y": torch.from_numpy(y)}
        return [by_name[_attr_name(a)] for a in attrs]

    def _get_tensor(self, attr: TensorAttr) -> Tensor:
        x, y = self.router.features(_ids(attr.index))
        return rows_to_torch(x) if _attr_name(attr) == "x" else torch.from_numpy(y)

    def _get_tensor_size(self, attr: TensorAttr) -> tuple[int, ...]:
        return (self.num_nodes, self.num_features) if _attr_name(attr) == "x" else (self.num_nodes,)

    def get_all_tensor_attrs(self) -> list[TensorAttr]:
        return [TensorAttr(group_name=None, attr_name=name) for name in _ATTRS]

    def _put_tensor(self, tensor: Tensor, attr: TensorAttr) -> bool:
        raise NotImplementedError("PartitionedFeatureStore is read-only; partition with partition_graph.py")

    def _remove_tensor(self, attr: TensorAttr) -> bool:
        raise NotImplementedError("PartitionedFeatureStore is read-only")


def _attr_name(attr: TensorAttr) -> str:
    if attr.attr_name not in _ATTRS:
        raise KeyError(f"unknown attribute {attr.attr_name!r}; this store holds {_ATTRS}")
    return attr.attr_name


def _ids(index: object) -> np.ndarray:
    if index is None or isinstance(index, slice):
        raise ValueError("PartitionedFeatureStore needs explicit node ids (no full-tensor reads)")
    ids = index.numpy() if isinstance(index, Tensor) else np.asarray(index)
    return ids.astype(np.int64, copy=False)


class PartitionedGraphStore(GraphStore):
    """Edge-type metadata only: sampling goes through :class:`PartitionedSampler`, and no rank
    holds the whole edge list to hand out."""

    def __init__(self, num_nodes: int) -> None:
        super().__init__()
        self.edge_attr = EdgeAttr(edge_type=None, layout=EdgeLayout.COO, is_sorted=False,
                                  size=(num_nodes, num_nodes))

    def get_all_edge_attrs(self) -> list[EdgeAttr]:
        return [self.edge_attr]

    def _get_edge_index(self, edge_attr: EdgeAttr) -> tuple[Tensor, Tensor]:
        raise NotImplementedError("the partitioned backend has no global edge list; "
                                  "sample with PartitionedSampler")

    def _put_edge_index(self, edge_index: object, edge_attr: EdgeAttr) -> bool:
        raise NotImplementedError("PartitionedGraphStore is read-only")

    def _remove_edge_index(self, edge_attr: EdgeAttr) -> bool:
        raise NotImplementedError("PartitionedGraphStore is read-only")


# --------------------------------------------------------------------------------------------
# the backend
# --------------------------------------------------------------------------------------------
class PartitionedBackend:
    """Backend contract (docs/ARCHITECTURE.md) over one partition per rank.

    A context manager: leaving it after an exception shuts the RPC service down without waiting
    for the peers (one of them may be dead); ``close()`` waits for all ranks to finish.
    """

    name = "in_memory"

    def __init__(self, part: LocalPartition, service: PeerService | None, splits: dict[str, Tensor], *,
                 world_size: int, fanouts: Sequence[int], batch_size: int, num_loader_threads: int) -> None:
        meta = part.meta
        self.part = part
        self.service = service
        self.num_nodes = int(meta["num_nodes"])
        self.num_edges = int(meta["num_edges"])
        self.num_features = int(meta["num_features"])
        self.num_classes = int(meta["num_classes"])
        self.fanouts = [int(k) for k in fanouts]
        self.batch_size = batch_size
        self.num_loader_threads = num_loader_threads
        self.router = PartitionRouter(part, service, world_size)
        self.feature_store = PartitionedFeatureStore(self.router, self.num_nodes, self.num_features)
        self.graph_store = PartitionedGraphStore(self.num_nodes)
        self._splits = splits
        log.info("partitioned backend: %s partition %d/%d (%s), %d of %d nodes, %d in-edges, %d halo, "
                 "features %.1f MiB", meta["dataset"], part.index, world_size, meta["method"], len(part.nodes),
                 self.num_nodes, part.csr.num_edges, len(part.halo), feature_nbytes(part.x) / 2**20)

    def split_nodes(self, split: str) -> Tensor:
        """Sorted global ids of every node of ``split`` (the same full list on every rank)."""
        if split not in self._splits:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self._splits[split]

    def make_loader(self, seeds: Tensor, *, shuffle: bool, seed: int) -> PrefetchLoader:
        """Batches of ``seeds`` (any owner); ``seed`` fixes order and samples."""
        sampler = PartitionedSampler(self.router, self.fanouts, seed=seed)
        loader = NodeLoader(
            (self.feature_store, self.graph_store), node_sampler=sampler, input_nodes=seeds,
            batch_size=self.batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed),
        )
        return PrefetchLoader(loader, self.num_loader_threads)

    def server_pid(self) -> None:
        """No separate graph server: the partition lives in this process."""
        return None

    def stats(self) -> dict[str, Any]:
        r = self.router.stats
        requests = self.service.stats if self.service is not None else None
        return {
            "num_nodes": self.num_nodes,
            "num_edges": self.num_edges,
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

    def __enter__(self) -> PartitionedBackend:
        return self

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
    distributed.init(cfg)  # train() reuses this group and destroys it at the end
    try:
        slow = dist.new_group(backend="gloo", timeout=PARTITION_TIMEOUT) if world > 1 else None
        name = _partition_on_rank0(cfg, partition_root) if rank == 0 else None
        name = _broadcast(name, slow)
        if isinstance(name, UserError):
            raise name
        root = partition_dir(partition_root, name, world)
        part: LocalPartition | None = None
        try:
            part = load_partition(root, rank)
            mine: tuple[str | None, Any] = (None, (part.identity(), part.splits))
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
    return PartitionedBackend(part, service, splits, world_size=world, fanouts=cfg.fanouts,
                              batch_size=cfg.batch_size, num_loader_threads=cfg.num_loader_threads)


def _partition_on_rank0(cfg: TrainConfig, partition_root: str) -> str | UserError:
    """Dataset folder name after making sure the partitioning exists, or the error to share.

    Runs :func:`src.in_memory.partition.ensure_main` in a child process: partitioning loads the whole
    graph, which must not count towards the trainer's memory peak (nor import torch twice).
    """
    pcfg = PartitionConfig(dataset=cfg.dataset, num_partitions=cfg.num_nodes, output_dir=partition_root,
                           dataset_root_dir=cfg.dataset_root_dir)
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
