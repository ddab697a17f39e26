"""``Neo4jBackend``: the trainer's backend whose graph, features and labels stay in Neo4j, and its flags.

Neighbourhoods are sampled by :class:`~src.graph_sampler.Neo4jNeighborSampler` inside the server,
rows come from :class:`~src.feature_store.Neo4jFeatureStore`; both follow one
:class:`~src.neo4jdb.access.Neo4jAccess`, decided here once. The rest is the shared
:class:`~src.backends.database.DatabaseBackend`. ``add_args``/``check_args``/``open_backend``
are this backend's entry in src/backends/registry.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from neo4j import exceptions as neo4j_exc

from src.backends.database import DatabaseBackend, add_cache_args, check_cache_args, opened_over
from src.client import Neo4jClient, add_connection_args, connect, settings_from_args
from src.core.edge_split import HELD_OUT, EdgeSplit, EdgeSplitSpec
from src.core.errors import Neo4jUnavailable, UsageError, UserError
from src.core.lossy_codecs import BYTES_PER_VALUE
from src.core.codecs import SPARSE
from src.core.memory_limit import batch_bytes, check_fits, sampled_batch_bytes, step_bytes
from src.core.record import DatasetRecord, recorded_load_seconds
from src.core.row_fetch import keeps_rows_encoded
from src.core.schema import GraphSchema, validate_dataset_name
from src.feature_store import Neo4jFeatureStore
from src.graph_sampler import Neo4jNeighborSampler
from src.graph_store import Neo4jGraphStore
from src.neo4jdb import live_edits, procedures
from src.neo4jdb.access import Neo4jAccess
from src.neo4jdb.edge_split import read_edge_split
from src.neo4jdb.load.records import changed_since, require_loaded
from src.neo4jdb.local import local_server_pid
from src.neo4jdb.procedures import DEFAULT_PROJECTION_MB
from src.train.chunked_layer import CHUNK_EDGES
from src.train.config import TrainConfig

log = logging.getLogger(__name__)

DEFERRED = ("step", "layer")  # --decode_rows modes that keep compressed rows as stored past the fetch


class Neo4jBackend(DatabaseBackend):
    """Backend contract (src/backends/base.py) over one dataset loaded into Neo4j."""

    name = "neo4j"

    def __init__(self, client: Neo4jClient, record: DatasetRecord, *, fanouts: Sequence[int], batch_size: int,
                 num_loader_threads: int, cache_mb: float = 0.0, cache_warm: str = "degree",
                 access: Neo4jAccess | None = None, decode_rows: str = "fetch") -> None:
        """``access`` None: the fastest path the server and the record allow, no projection
        (:meth:`Neo4jAccess.resolve`). ``cache_warm``: how the feature cache (``cache_mb > 0``) starts.
        ``decode_rows``: ``step`` keeps compressed rows as stored until the training step takes the batch, ``layer``
        until the model's first layer gathers them (src/train/chunked_layer.py)."""
        super().__init__(record, fanouts=fanouts, batch_size=batch_size, num_loader_threads=num_loader_threads)
        self.client = client
        self.access = access if access is not None else Neo4jAccess.resolve(client, self.schema, record)
        self.feature_store = Neo4jFeatureStore.from_record(client, record, cache_mb=cache_mb, access=self.access)
        self.feature_store.defer_decode = decode_rows in DEFERRED
        self.rows_to_layer = decode_rows == "layer" and self.feature_store.defers_decode
        if self.feature_store.defer_decode and not self.feature_store.defers_decode:
            why = ("the feature cache holds decoded rows (--cache_mb)" if self.feature_store.cache is not None else
                   f"its rows are stored {record.feature_encoding}, not compressed (load it with --feature_format int8, "
                   "float16 or bfloat16)")
            log.warning("%s: --decode_rows %s has nothing to defer: %s; rows are decoded as fetched", record.name,
                        decode_rows, why)
        self.feature_store.warm_cache(cache_warm)
        self.graph_store = Neo4jGraphStore(client, self.schema, self.num_nodes)
        self._split_watch = live_edits.SplitWatch(client, self.schema)  # before any split is read
        self._server_pid = local_server_pid(client.settings.uri)
        self._held_out_prop: str | None = None  # set by use_edge_split (--task link)

    def _query_ids(self, query: str, **params: Any) -> list[int]:
        return self.client.read_tx(lambda tx: tx.run(query, **params).single()["ids"])

    def splits_changed(self) -> bool:
        return self._split_watch.changed({split: self.split_nodes(split).numpy() for split in self._splits})

    def _make_sampler(self, seed: int) -> Neo4jNeighborSampler:
        return Neo4jNeighborSampler(self.client, self.schema, self.fanouts, seed=seed, access=self.access,
                                    held_out_prop=self._held_out_prop, num_nodes=self.num_nodes)

    def use_edge_split(self, spec: EdgeSplitSpec) -> EdgeSplit:
        """The stored split (src/neo4jdb/edge_split.py): the procedures read its training adjacency copy (store
        or projection), the Cypher path skips the relationships it marks held out."""
        split, names = read_edge_split(self.client, self.record, spec)
        self._held_out_prop = names.rel_prop
        if self.access.use_procedures:
            self.access = dataclasses.replace(self.access, adj_prop=names.train_adj_prop)
        log.info("neo4j backend: edge split %s (seed %d): %s pairs; sampling %s", spec.text, spec.seed,
                 split.counts(), f"{names.train_adj_prop!r} with gnn.*" if self.access.use_procedures
                 else f"relationships without held-out {names.rel_prop!r}")
        return split

    def training_degrees(self) -> torch.Tensor:
        s = self.schema
        if self._held_out_prop is None:
            raise ValueError("training_degrees needs use_edge_split first")
        rows = self.client.read(f"MATCH {s.neighbours_of(f'n:`{s.label}`', f'm:`{s.label}`', 'r')} "
                                f"WHERE NOT coalesce(r.`{self._held_out_prop}`, '') IN {list(HELD_OUT)!r} "
                                f"AND n.`{s.id_prop}` IS NOT NULL RETURN m.`{s.id_prop}` AS id, count(*) AS d")
        degrees = torch.zeros(self.num_nodes, dtype=torch.long)
        if rows:
            degrees[torch.tensor([r["id"] for r in rows])] = torch.tensor([r["d"] for r in rows])
        return degrees

    def linked_nodes(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nodes of the dataset that ``ids`` share a relationship with (either direction), read now with Cypher."""
        s = self.schema
        rows = self.client.read(f"UNWIND range(0, size($ids) - 1) AS i MATCH (n:`{s.label}` {{`{s.id_prop}`: $ids[i]}})"
                                f"-[:`{s.rel_type}`]-(m:`{s.label}`) WHERE m.`{s.id_prop}` IS NOT NULL "
                                f"RETURN i, m.`{s.id_prop}` AS m", ids=[int(i) for i in ids])
        return (np.asarray([r["i"] for r in rows], dtype=np.int64), np.asarray([r["m"] for r in rows], dtype=np.int64))

    def server_pid(self) -> int | None:
        """Pid of the local Neo4j server (to log its RSS), None for a remote server."""
        return self._server_pid

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "procedures": self.access.use_procedures, "adjacency": self.access.use_adjacency,
                "projection_mb": self.access.projection_mb}


# -- registry entry (src/backends/registry.py) ------------------------------------------------
def add_args(parser: argparse.ArgumentParser) -> None:
    add_connection_args(parser)
    g = add_cache_args(parser, "Neo4j backend")
    g.add_argument("--projection_mb", type=float, default=DEFAULT_PROJECTION_MB,
                   help="server heap (MiB) the gnn.* procedures may spend on an in-memory projection of the "
                        "dataset (neighbour lists, feature rows, labels), built on first use and shared by "
                        "all ranks; it is dropped on any write to the database, and a dataset that does not "
                        "fit is read from the store as with 0 (default: %(default)s; keep it well below the "
                        "server's heap, NEO4J_HEAP)")
    g.add_argument("--decode_rows", choices=("fetch", *DEFERRED), default="fetch",
                   help="when rows stored compressed (--feature_format int8/float16/bfloat16 at load) become float32: "
                        "'fetch' in the prefetch thread as they arrive (hidden behind the step), 'step' when the "
                        "training step takes the batch, so a batch waiting in the prefetch queue holds 1-2 bytes "
                        "per value instead of 4, 'layer' a chunk of edges at a time inside GraphSAGE's first layer, "
                        "so no batch is ever whole in float32 (other models decode at the step); the least memory, "
                        "the decode on the step's time; bench/RESULTS.md (default: %(default)s)")
    g.add_argument("--cypher_only", action="store_true",
                   help="sample and fetch with plain Cypher even if the server has the gnn.* procedures "
                        "(jobs/neo4j/plugin; same samples, slower)")


def check_args(args: argparse.Namespace) -> None:
    check_cache_args(args)
    if args.projection_mb < 0:
        raise UsageError(f"--projection_mb must be >= 0 (got {args.projection_mb}); 0 disables the projection")


@contextmanager
def open_backend(args: argparse.Namespace, cfg: TrainConfig) -> Iterator[Neo4jBackend]:
    """Connect, find the dataset's record and open the backend; the client is closed on every exit."""
    validate_dataset_name(cfg.dataset, "--dataset")  # before anything talks to Neo4j
    logging.getLogger("neo4j").setLevel(logging.CRITICAL)  # src.client reports outages in one line
    client = connect(settings_from_args(args), max_pool_size=cfg.concurrency + cfg.num_loader_threads,
                     max_retry_time=args.neo4j_retry_s)

    def build() -> Neo4jBackend:
        if cfg.target_type:  # a heterogeneous dataset (src/neo4jdb/hetero/)
            from src.neo4jdb.hetero.backend import Neo4jHeteroBackend
            from src.neo4jdb.hetero.schema import require_hetero

            schema = require_hetero(client, cfg.dataset)
            projection_mb = 0.0 if args.cypher_only or not procedures.has_procedures(client) else args.projection_mb
            if projection_mb > 0:
                check_projection_cap(client, schema.type_schema(schema.target_type), projection_mb)
            return Neo4jHeteroBackend(client, schema, target_type=cfg.target_type,
                                      fanouts=str(cfg.flags.get("fanouts")), batch_size=cfg.batch_size,
                                      num_loader_threads=cfg.num_loader_threads,
                                      use_procedures=False if args.cypher_only else None,
                                      featureless=cfg.featureless, cache_mb=args.cache_mb,
                                      projection_mb=projection_mb, add_reverse=cfg.add_reverse)
        record = require_loaded(client, cfg.dataset)
        access = Neo4jAccess.resolve(client, record.schema, record, use_procedures=False if args.cypher_only else None,
                                     projection_mb=args.projection_mb)
        decode_rows = args.decode_rows
        if decode_rows == "layer" and cfg.model != "sage":
            log.info("--decode_rows layer: only GraphSAGE's first layer reads rows as stored; --model %s decodes them "
                     "as the step takes the batch (--decode_rows step)", cfg.model)
            decode_rows = "step"
        deferred = keeps_rows_encoded(decode_rows in DEFERRED, record.feature_encoding, cached=args.cache_mb > 0)
        chunked = cfg.model == "sage" and record.feature_encoding != SPARSE  # src/train/chunked_layer.py
        check_fits(f"the Neo4j trainer of {record.name} (batch {cfg.batch_size}, fanouts {cfg.fanouts})",
                   {"batches": _batches_bytes(cfg, record, access, deferred, deferred and decode_rows == "layer"),
                    "training step": step_bytes(cfg.batch_size, cfg.fanouts, record.num_nodes, record.num_features,
                                                cfg.hidden_channels, CHUNK_EDGES if chunked else 0),
                    "feature cache": int(args.cache_mb * 2**20)},
                   "raise the limit to at least that, or lower --batch_size, --fanouts or --cache_mb")
        if access.projection_mb > 0:
            check_projection_cap(client, record.schema, access.projection_mb)
        return Neo4jBackend(client, record, fanouts=cfg.fanouts, batch_size=cfg.batch_size,
                            num_loader_threads=cfg.num_loader_threads, cache_mb=args.cache_mb,
                            cache_warm=args.cache_warm, access=access, decode_rows=decode_rows)

    with opened_over(client, build) as backend:
        try:
            yield backend
        except Exception as exc:
            _raise_if_dataset_changed(client, backend, exc)
            raise


def _batches_bytes(cfg: TrainConfig, record: DatasetRecord, access: Neo4jAccess, deferred: bool,
                   in_layer: bool = False) -> int:
    """The batches in flight (the prefetch threads' and the step's) for the preflight.

    gnn.fetchRows decodes each call's ~16 MiB of rows straight into the batch; the Cypher path holds the batch's
    stored bytes until they are decoded. With ``deferred`` (``--decode_rows step``, rows stored compressed) only the
    step's batch is float32 (with its stored bytes while it is decoded), the queued ones hold the stored bytes
    (``deferred``: :func:`~src.core.row_fetch.keeps_rows_encoded`); ``in_layer`` (``--decode_rows layer``, GraphSAGE):
    no batch is ever whole in float32 (the first layer's float inputs are the step's, :func:`step_bytes`)."""
    size = (cfg.batch_size, cfg.fanouts, record.num_nodes, record.num_features)
    waiting = sampled_batch_bytes(cfg.batch_size, cfg.fanouts, record.num_nodes, cfg.batches_without_rows())
    copies = 1 if access.use_procedures else 2
    if not deferred:
        return batch_bytes(*size, cfg.batches_in_flight(), copies=copies) + waiting
    width = BYTES_PER_VALUE[record.feature_encoding]
    if in_layer:
        return batch_bytes(*size, cfg.batches_in_flight(), feature_itemsize=width) + waiting
    return (batch_bytes(*size, 1, copies=copies, feature_itemsize=4 + width)
            + batch_bytes(*size, cfg.batches_in_flight() - 1, feature_itemsize=width) + waiting)


def _raise_if_dataset_changed(client: Neo4jClient, backend: Neo4jBackend, exc: Exception) -> None:
    """Whatever a read of a dataset that changed under the run raised (a procedure's "node ...
    vanished", missing rows, unknown ids), the user gets one line saying so, not its traceback."""
    if isinstance(exc, Neo4jUnavailable):
        return  # the server is away: its own message says so
    try:
        how = changed_since(client, backend.record)
    except Exception:  # the check is best effort: the original error stands
        return
    if how:
        raise UserError(f"dataset {backend.record.name!r} changed under the run: {how}; rerun with --resume once "
                        f"it is complete (the checkpoint keeps the finished epochs)") from None


def check_projection_cap(client: Neo4jClient, schema: GraphSchema, projection_mb: float) -> None:
    """``--projection_mb`` within the server's cap (``server.gnn.projection_max_mb``, default half its heap).

    The plugin refuses larger budgets on every call (a budget beyond the heap would let a build
    exhaust it); one call with no ids asks before training starts, so the answer is one line.
    """
    try:
        client.read("CALL gnn.fetchRows($label, $id, $x, $y, $ids, $mb) YIELD missing RETURN 0 AS ok",
                    label=schema.label, id=schema.id_prop, x=schema.x_prop, y=schema.y_prop, ids=b"", mb=projection_mb)
    except neo4j_exc.ClientError as exc:
        message = exc.message or ""
        if "projection cap" not in message:
            raise
        gist = message.split("IllegalArgumentException: ")[-1].strip()
        raise UsageError(f"the server refuses --projection_mb {projection_mb:g}: {gist}") from None


def load_seconds(dataset: str, flags: Sequence[str], env: dict[str, str]) -> float | None:
    """Seconds the loader took for ``dataset`` (homogeneous or heterogeneous) by its record in the server a job with
    ``flags``/``env`` used (benchmarks report it).

    A ``GNN_NEO4J_DIR`` in ``env`` (the scale sweep's server per size) names the local server to ask.
    """
    from pathlib import Path

    from src.client import Neo4jSettings
    from src.neo4jdb.hetero.schema import hetero_record
    from src.neo4jdb.load.records import dataset_record
    from src.neo4jdb.local import LocalNeo4j

    settings = None
    if env.get("GNN_NEO4J_DIR"):
        info = LocalNeo4j(root=Path(env["GNN_NEO4J_DIR"])).connection_info() or {}
        settings = Neo4jSettings(uri=info.get("uri", ""), password=info.get("password", ""), local=True)
    with connect(settings) as client:
        return recorded_load_seconds(hetero_record(client, dataset), lambda: dataset_record(client, dataset))
