"""``DatabaseBackend``: what the Neo4j and Ladybug backends share (the trainer's Backend contract).

The trainer process holds only the current batches: seeds are fetched once per split (ids
only), neighbourhoods are sampled inside the database by the backend's :class:`HopSampler`,
features come from its :class:`~src.feature_store.DatabaseFeatureStore`, all behind an unchanged
PyG ``NodeLoader`` and the shared :class:`PrefetchLoader`. A subclass provides the client, the
stores, the sampler and the query for a split's ids.
"""
from __future__ import annotations

import argparse
import logging
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.loader import NodeLoader

from src.core.sampling import HopSampler
from src.core.errors import UsageError, UserError
from src.feature_store import DatabaseFeatureStore
from src.graph_store import CypherGraphStore
from src.core.prefetch import PrefetchLoader
from src.core.hot_nodes import WARM_POLICIES
from src.neo4jdb.procedures import DEFAULT_PROJECTION_MB
from src.core.schema import SPLITS, GraphSchema
from src.train.loop import TrainConfig, train

log = logging.getLogger(__name__)


class DatabaseBackend(ABC):
    """Backend contract (docs/ARCHITECTURE.md) over one dataset in a graph database."""

    name = "database"
    feature_store: DatabaseFeatureStore
    graph_store: CypherGraphStore

    def __init__(self, schema: GraphSchema, record: dict[str, Any], *, fanouts: Sequence[int], batch_size: int,
                 num_loader_threads: int) -> None:
        self.schema = schema
        self.num_nodes = int(record["num_nodes"])
        self.num_features = int(record["num_features"])
        self.num_classes = int(record["num_classes"])
        self.fanouts = [int(k) for k in fanouts]
        self.batch_size = batch_size
        self.num_loader_threads = num_loader_threads
        self._splits: dict[str, Tensor] = {}
        self._samplers: list[Any] = []

    def __enter__(self) -> "DatabaseBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Release the database client."""

    @property
    def num_edges(self) -> int:
        return self.graph_store.num_edges

    @abstractmethod
    def _split_ids(self, query: str, split: str) -> list[int]:
        """Run ``query`` (parameter ``$split``) and return its ``id`` column."""

    @abstractmethod
    def _make_sampler(self, seed: int) -> HopSampler:
        """A fresh in-database sampler (it counts its queries in ``.queries``)."""

    def split_nodes(self, split: str) -> Tensor:
        """Ids of the nodes whose ``split`` property is ``split`` (sorted; fetched once)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if split not in self._splits:
            s = self.schema
            query = f"MATCH (n:`{s.label}`) WHERE n.`{s.split_prop}` = $split RETURN n.`{s.id_prop}` AS id"
            ids = self._split_ids(query, split)
            if not ids and split == "train":
                raise UserError(f"dataset {s.dataset!r} has no training nodes in {self.feature_store.where} "
                                f"(property {s.split_prop!r}); reload it with "
                                f"`{self.feature_store.reload_hint} --dataset {s.dataset} --reset`")
            self._splits[split] = torch.from_numpy(np.sort(np.asarray(ids, dtype=np.int64)))
        return self._splits[split]

    def make_loader(self, seeds: Tensor, *, shuffle: bool, seed: int) -> PrefetchLoader:
        """Batches of ``seeds``; sampling and feature fetch of later batches run in threads."""
        sampler = self._make_sampler(seed)
        self._samplers.append(sampler)
        loader = NodeLoader(
            (self.feature_store, self.graph_store), node_sampler=sampler, input_nodes=seeds,
            batch_size=self.batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed),
        )
        return PrefetchLoader(loader, self.num_loader_threads)

    def stats(self) -> dict[str, Any]:
        cache = self.feature_store.cache
        return {
            "num_nodes": self.num_nodes,
            "num_edges": self.num_edges,
            "feature_rows_fetched": self.feature_store.stats.rows_fetched,
            "feature_round_trips": self.feature_store.stats.round_trips,
            "sampling_queries": sum(s.queries for s in self._samplers),
            "cache_hit_rate": cache.hit_rate if cache is not None else None,
            "cache_warm": self.feature_store.warm_summary(),
        }


def train_on_database(client: Any, make_backend: Callable[[], DatabaseBackend], cfg: TrainConfig) -> None:
    """What the entry scripts do: build the backend (``client`` is closed if that fails), train, close."""
    try:
        backend = make_backend()
    except BaseException:
        client.close()
        raise
    with backend:
        train(backend, cfg)


def add_database_backend_args(parser: argparse.ArgumentParser, title: str, *, server_projection: bool = False
                              ) -> argparse._ArgumentGroup:
    """The flag group every database backend's entry script starts from (``--cache_mb``; with
    ``server_projection`` also ``--projection_mb``, for a server running the gnn.* procedures)."""
    group = parser.add_argument_group(title)
    group.add_argument("--cache_mb", type=float, default=0.0,
                       help="per-rank cache of feature rows of hot nodes in MiB; 0 disables it; datasets with features "
                            "stored sparse never use it (it holds dense rows) (default: %(default)s)")
    group.add_argument("--cache_warm", choices=WARM_POLICIES, default="degree",
                       help="how the --cache_mb cache starts: 'degree' fills it at start with the rows of the nodes "
                            "of highest out-degree (those neighbour sampling draws most often; one bulk read, its "
                            "time logged), 'none' lets it fill with the first rows fetched; kept until the end "
                            "either way (default: %(default)s)")
    if server_projection:
        group.add_argument("--projection_mb", type=float, default=DEFAULT_PROJECTION_MB,
                           help="server heap (MiB) the gnn.* procedures may spend on an in-memory projection of the "
                                "dataset (neighbour lists, feature rows, labels), built on first use and shared by "
                                "all ranks; it is dropped on any write to the database, and a dataset that does not "
                                "fit is read from the store as with 0 (default: %(default)s; keep it well below the "
                                "server's heap, NEO4J_HEAP)")
    return group


def check_database_backend_args(args: argparse.Namespace) -> None:
    """Usage errors of :func:`add_database_backend_args`' flags, before anything is opened."""
    if args.cache_mb < 0:
        raise UsageError(f"--cache_mb must be >= 0 (got {args.cache_mb})")
    if getattr(args, "projection_mb", 0.0) < 0:
        raise UsageError(f"--projection_mb must be >= 0 (got {args.projection_mb}); 0 disables the projection")
