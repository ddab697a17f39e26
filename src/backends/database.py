"""``DatabaseBackend``: what the Neo4j and Ladybug backends share on top of :class:`~src.backends.base.Backend`.

The trainer process holds only the current batches: seeds are read once per split (ids
only), neighbourhoods are sampled inside the database by the backend's sampler, rows come from
its :class:`~src.core.row_fetch.DatabaseFeatureStore`. A subclass provides the client, the
stores, the sampler and how a query's ``id`` column is read; the flags every database backend
takes (the feature cache) are here too.
"""
from __future__ import annotations

import argparse
from abc import abstractmethod
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np
from torch import Tensor
from torch_geometric.data import FeatureStore, GraphStore

from src.backends.base import Backend
from src.core.errors import UsageError, UserError
from src.core.hot_nodes import WARM_POLICIES
from src.core.feature_stats import FeatureStats
from src.core.pyg_stores import CypherGraphStore
from src.core.record import DatasetRecord
from src.core.row_fetch import DatabaseFeatureStore

B = TypeVar("B", bound=Backend)
SPLIT_IDS_PER_QUERY = 1 << 20


class DatabaseBackend(Backend):
    """Backend over one dataset in a graph database, described by its loader's ``record``."""

    client: Any  # a Neo4j or Ladybug client: closed with the backend
    feature_store: DatabaseFeatureStore
    graph_store: CypherGraphStore

    def __init__(self, record: DatasetRecord, *, fanouts: Sequence[int], batch_size: int,
                 num_loader_threads: int) -> None:
        super().__init__(dataset=record.name, num_nodes=record.num_nodes, num_features=record.num_features,
                         num_classes=record.num_classes, fanouts=fanouts, batch_size=batch_size,
                         num_loader_threads=num_loader_threads)
        self.record = record
        self.schema = record.schema

    @property
    def num_edges(self) -> int:
        return self.graph_store.num_edges

    @property
    def stats_fix(self) -> str:  # type: ignore[override]
        return f"add them by running `{self.feature_store.reload_hint} --dataset {self.schema.dataset}` again"

    def recorded_metric(self) -> str | None:
        metric = self.record.properties.get("metric")
        return None if metric is None else str(metric)

    def feature_stats(self) -> FeatureStats | None:
        return None if self.record.feature_stats is None else FeatureStats.from_bytes(self.record.feature_stats)

    @abstractmethod
    def _query_ids(self, query: str, **params: Any) -> list[int]:
        """Run ``query`` (one row, one list ``ids``) with ``params`` and return that list (any order: sorted here).

        One list, not a row per node: 2.2M test ids of the products-shaped graph take 1.7 s in one list and 62 s
        as rows through the Neo4j driver."""

    def _split_ids(self, split: str) -> np.ndarray:
        """The split's ids, one range of :data:`SPLIT_IDS_PER_QUERY` ids at a time (the range index of the id
        constraint seeks each). Why not one list: the driver makes a Python int of each (~36 bytes), so the 4.5M
        test ids of a 5M-node products-shaped graph would hold ~240 MiB at once; a range holds ~40."""
        s = self.schema
        query = (f"MATCH (n:`{s.label}`) WHERE n.`{s.split_prop}` = $split AND n.`{s.id_prop}` >= $lo "
                 f"AND n.`{s.id_prop}` <= $hi RETURN collect(n.`{s.id_prop}`) AS ids")
        starts = [-2**63, *range(SPLIT_IDS_PER_QUERY, max(self.num_nodes, 1), SPLIT_IDS_PER_QUERY)]
        ends = [start - 1 for start in starts[1:]] + [2**63 - 1]  # every int64 id in exactly one range
        parts = []
        for lo, hi in zip(starts, ends):
            part = np.asarray(self._query_ids(query, split=split, lo=lo, hi=hi), dtype=np.int64)
            part.sort()  # in place; the ranges ascend, so the concatenation is sorted: no third copy
            parts.append(part)
        ids = np.concatenate(parts)
        del parts
        if not ids.size and split == "train":
            raise UserError(f"dataset {s.dataset!r} has no training nodes in {self.feature_store.where} "
                            f"(property {s.split_prop!r}); reload it with "
                            f"`{self.feature_store.reload_hint} --dataset {s.dataset} --reset`")
        return ids

    def close(self) -> None:
        """Release the database client (its ``close``)."""
        self.client.close()

    def _loader_data(self) -> tuple[FeatureStore, GraphStore]:
        return self.feature_store, self.graph_store

    def _deferred_decode(self) -> Callable[[Tensor], Tensor] | None:
        return self.feature_store.decode_batch_x if self.feature_store.defers_decode else None

    def stats(self) -> dict[str, Any]:
        cache = self.feature_store.cache
        return {
            **super().stats(),
            "feature_rows_fetched": self.feature_store.stats.rows_fetched,
            "feature_round_trips": self.feature_store.stats.round_trips,
            "sampling_queries": self.sampling_queries(),
            "cache_hit_rate": cache.hit_rate if cache is not None else None,
            # cached rows dropped because the database reported them changed (edits during the run)
            "cache_rows_dropped": getattr(self.feature_store.freshness, "dropped", None),
            "cache_warm": self.feature_store.warm_summary(),
        }


def add_cache_args(parser: argparse.ArgumentParser, title: str) -> argparse._ArgumentGroup:
    """The flag group every database backend's entry script starts from: the per-rank feature cache."""
    group = parser.add_argument_group(title)
    group.add_argument("--cache_mb", type=float, default=0.0,
                       help="per-rank cache of feature rows of hot nodes in MiB; 0 disables it; datasets with features "
                            "stored sparse never use it (it holds dense rows) (default: %(default)s)")
    group.add_argument("--cache_warm", choices=WARM_POLICIES, default="degree",
                       help="how the --cache_mb cache starts: 'degree' fills it at start with the rows of the nodes "
                            "of highest out-degree (those neighbour sampling draws most often; one bulk read, its "
                            "time logged), 'none' lets it fill with the first rows fetched; kept until the end "
                            "either way (default: %(default)s)")
    return group


def check_cache_args(args: argparse.Namespace) -> None:
    """Usage errors of :func:`add_cache_args`' flags, before anything is opened."""
    if args.cache_mb < 0:
        raise UsageError(f"--cache_mb must be >= 0 (got {args.cache_mb})")


@contextmanager
def opened_over(client: Any, build: Callable[[], B]) -> Iterator[B]:
    """``build()`` a backend over ``client``: the client is closed if building fails, the backend on every exit."""
    try:
        backend = build()
    except BaseException:
        client.close()
        raise
    with backend:
        yield backend
