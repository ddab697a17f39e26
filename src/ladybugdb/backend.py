"""``LadybugBackend``: the graph, features and labels stay in an embedded Ladybug database file; its flags.

Ladybug is Kuzu's maintained fork: a graph database that speaks Cypher and runs inside the
process, with no server. Each rank opens the database read-only (many processes may), samples
with :class:`~src.ladybugdb.sampler.LadybugNeighborSampler` (one query per hop per batch) and
fetches rows with :class:`LadybugFeatureStore`; the rest is the shared
:class:`~src.backends.database.DatabaseBackend`, so batches are built exactly as with Neo4j. A
heterogeneous dataset (``--target_type``) is src/ladybugdb/hetero_backend.py.
Ladybug's memory (its buffer pool, ``--ladybug_buffer_mb``) is part of the trainer's RSS.
"""
from __future__ import annotations

import argparse
import logging
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from src.backends.database import DatabaseBackend, add_cache_args, check_cache_args, opened_over
from src.core.edge_split import EdgeSplit, EdgeSplitSpec, split_pairs, unique_pairs
from src.core.errors import UsageError
from src.core.hot_nodes import cypher_query
from src.core.pyg_stores import CypherGraphStore
from src.core.record import DatasetRecord, recorded_load_seconds
from src.core.row_fetch import DatabaseFeatureStore
from src.core.schema import GraphSchema, validate_dataset_name
from src.ladybugdb.client import LOAD_HINT, LadybugClient, add_ladybug_args, default_path, path_from_args
from src.ladybugdb.hetero_backend import LadybugHeteroBackend
from src.ladybugdb.hetero_loader import hetero_record, require_hetero
from src.ladybugdb.loader import dataset_record, require_loaded
from src.ladybugdb.sampler import HeldOutIndex, LadybugNeighborSampler
from src.train.config import TrainConfig

log = logging.getLogger(__name__)


class LadybugFeatureStore(DatabaseFeatureStore):
    """``x``/``y`` rows from Ladybug: one ``UNWIND $ids ... MATCH`` (primary-key lookups) per chunk."""

    reload_hint = LOAD_HINT
    where = "Ladybug"

    def __init__(self, client: LadybugClient, schema: GraphSchema, num_nodes: int, num_features: int,
                 *, cache_mb: float = 0.0, chunk_size: int = 20_000) -> None:
        super().__init__(schema, num_nodes, num_features, cache_mb=cache_mb, chunk_size=chunk_size)
        self.client = client

    def _read_rows(self, ids: list[int]) -> list[tuple[int, bytes, int | None]]:
        return [tuple(row) for row in self.client.execute(self._query, ids=ids)]

    def _hot_ids(self, k: int) -> np.ndarray:
        rows = self.client.execute(cypher_query(self.schema, count_subquery=False), k=k)
        return np.asarray([row[0] for row in rows], dtype=np.int64)


class LadybugBackend(DatabaseBackend):
    """Backend contract (src/backends/base.py) over one dataset in a Ladybug database file."""

    name = "ladybug"

    def __init__(self, client: LadybugClient, record: DatasetRecord, *, fanouts: Sequence[int], batch_size: int,
                 num_loader_threads: int, cache_mb: float = 0.0, cache_warm: str = "degree") -> None:
        super().__init__(record, fanouts=fanouts, batch_size=batch_size, num_loader_threads=num_loader_threads)
        self.client = client
        self.feature_store = LadybugFeatureStore(client, self.schema, self.num_nodes, self.num_features,
                                                 cache_mb=cache_mb)
        self.feature_store.warm_cache(cache_warm)
        self.graph_store = CypherGraphStore(client, self.schema, self.num_nodes)
        self._held_out: HeldOutIndex | None = None  # set by use_edge_split (--task link)

    def _query_ids(self, query: str, **params: Any) -> list[int]:
        return self.client.execute(query, **params)[0][0]

    def _make_sampler(self, seed: int) -> LadybugNeighborSampler:
        return LadybugNeighborSampler(self.client, self.schema, self.num_nodes, self.fanouts, seed=seed,
                                      held_out=self._held_out)

    def linked_nodes(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nodes ``ids`` share a relationship with (either direction), as (positions in ``ids``, ids)."""
        s = self.schema
        rows = self.client.execute(f"MATCH (n:`{s.label}`)-[:`{s.rel_type}`]-(m:`{s.label}`) WHERE n.`{s.id_prop}` IN $ids "
                                   f"RETURN n.`{s.id_prop}`, m.`{s.id_prop}`", ids=[int(i) for i in ids])
        got = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        return np.searchsorted(ids, got[:, 0]), got[:, 1]

    def use_edge_split(self, spec: EdgeSplitSpec) -> EdgeSplit:
        """The split of the stored graph's pairs, computed here (the file is read-only; the same function of the
        pair set as Neo4j's stored split and the in-memory one); samplers skip its held-out pairs from now on."""
        s = self.schema
        rows = self.client.execute(f"MATCH (u:`{s.label}`)-[:`{s.rel_type}`]->(v:`{s.label}`) "
                                   f"RETURN u.`{s.id_prop}`, v.`{s.id_prop}`")
        edges = np.asarray(rows, dtype=np.int64).reshape(-1, 2).T
        split = split_pairs(unique_pairs(edges, self.num_nodes), self.num_nodes, spec)
        self._held_out = HeldOutIndex(split)
        log.info("ladybug backend: edge split %s (seed %d): %s pairs; hops skip the held-out ones", spec.text,
                 spec.seed, split.counts())
        return split


# -- registry entry (src/backends/registry.py) ------------------------------------------------
def add_args(parser: argparse.ArgumentParser) -> None:
    add_ladybug_args(parser)
    g = add_cache_args(parser, "Ladybug backend")
    g.add_argument("--ladybug_threads", type=int, default=1,
                   help="threads Ladybug may use per query (default: %(default)s; the prefetch threads "
                        "already run queries in parallel)")


def check_args(args: argparse.Namespace) -> None:
    check_cache_args(args)
    if args.ladybug_threads < 1:
        raise UsageError(f"--ladybug_threads must be >= 1 (got {args.ladybug_threads})")


@contextmanager
def open_backend(args: argparse.Namespace, cfg: TrainConfig) -> Iterator[LadybugBackend | LadybugHeteroBackend]:
    """Open the dataset's file read-only and the backend over it; the client is closed on every exit."""
    validate_dataset_name(cfg.dataset, "--dataset")
    client = LadybugClient(path_from_args(args, cfg.dataset), read_only=True, buffer_mb=args.ladybug_buffer_mb,
                           max_threads=args.ladybug_threads, dataset=cfg.dataset)

    def build() -> LadybugBackend | LadybugHeteroBackend:
        if cfg.target_type:  # a heterogeneous dataset (src/ladybugdb/hetero_backend.py)
            if args.cache_mb:
                raise UsageError("--cache_mb applies to homogeneous datasets only; drop it with --target_type")
            return LadybugHeteroBackend(client, require_hetero(client, cfg.dataset), target_type=cfg.target_type,
                                        fanouts=str(cfg.flags.get("fanouts")), batch_size=cfg.batch_size,
                                        num_loader_threads=cfg.num_loader_threads, featureless=cfg.featureless,
                                        add_reverse=cfg.add_reverse)
        hetero = hetero_record(client, cfg.dataset)
        if hetero is not None:
            raise UsageError(f"dataset {cfg.dataset!r} is heterogeneous: pass --target_type {hetero['target_type']} "
                             "(and per-type --fanouts)")
        return LadybugBackend(client, require_loaded(client, cfg.dataset), fanouts=cfg.fanouts,
                              batch_size=cfg.batch_size, num_loader_threads=cfg.num_loader_threads,
                              cache_mb=args.cache_mb, cache_warm=args.cache_warm)

    with opened_over(client, build) as backend:
        yield backend


def load_seconds(dataset: str, flags: Sequence[str], env: dict[str, str]) -> float | None:
    """Seconds the loader took for ``dataset`` by its record in the file a job with ``flags`` used."""
    flags = list(flags)
    path = flags[flags.index("--ladybug_path") + 1] if "--ladybug_path" in flags else default_path(dataset)
    with LadybugClient(path, buffer_mb=64) as client:
        return recorded_load_seconds(hetero_record(client, dataset), lambda: dataset_record(client, dataset))
