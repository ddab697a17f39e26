"""Load a :class:`~src.data.datasets.GraphDataset` into Neo4j (storage model: docs/ARCHITECTURE.md).

Two ways in, chosen by :attr:`LoadConfig.method`:

* ``unwind`` (any server, online): fixed, deterministic batches of nodes, then relationships.
  Each batch is one managed transaction that also creates the batch's
  ``(:GnnLoadBatch {dataset, kind, idx})`` marker, so data and marker commit together: a killed
  load resumes exactly where it stopped, and a transaction the driver retries (or a second
  loader racing on the same batch) never writes a batch twice.
* ``import`` (only the project's local server, only into an empty database): flat binary arrays
  (:func:`write_import_arrays`) read by our bulk importer (jobs/neo4j/importer), which drives
  Neo4j's own parallel batch importer, the engine of ``neo4j-admin database import``, without
  CSV text: features and the ``nbrs`` adjacency go in as the nodes' byte arrays, node ids are
  Neo4j's node ids (no id mapping). The server is stopped for it and restarted (bench/loader.py).

Every load ends with a verification against the source before ``complete = true`` is set on
the dataset's ``(:GnnDataset)`` record; a complete record with the same fingerprint makes a
re-run a fast no-op, a record of a different graph makes the loader refuse (unless ``reset``).
"""
from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import neo4j
import numpy as np
import scipy.sparse as sp
from neo4j import exceptions as neo4j_exc
from tqdm import tqdm

from src.neo4jdb.class_archive import ClassArchive
from src.client import Neo4jClient
from src.data.datasets import GraphDataset, synthetic_params_from_name
from src.core.errors import UsageError, UserError
from src.neo4jdb.local import LocalNeo4j
from src.core.schema import DATASET_LABEL, SPLITS, GraphSchema
from src.core.codecs import (
    DENSE,
    choose_feature_encoding,
    decode_features,
    encode_adjacency,
    encode_rows,
    feature_density,
    row_bytes,
    split_rows,
)
from src.core.csr import in_adjacency

log = logging.getLogger(__name__)

BATCH_LABEL = "GnnLoadBatch"  # one marker node per committed batch of an unwind load
METHODS = ("auto", "unwind", "import")
EDGE_SHAPES = ("groups", "pairs")
FEATURE_FORMATS = ("auto", "dense", "sparse")
NODE_BATCH = 10_000  # nodes per transaction
EDGE_BATCH = 50_000  # relationships per transaction
NODE_BATCH_BYTES = 16 << 20  # cap on feature bytes per node transaction (wide features, small heap)
# auto picks the offline import from this many relationships on. Measured here (bench/loader.py,
# 1M nodes / 25M relationships, 2 cores at load average ~20): import ~100 s fixed (server restart,
# importer start, index) + ~12 us per relationship, unwind ~110 us per relationship: break-even near 1M.
IMPORT_MIN_EDGES = 1_000_000
IMPORT_HEAP_MIB = 1024  # the bulk importer's heap besides the in-adjacency it sorts there (its caches are off-heap)
IMPORT_DATABASE = "gnn-import"  # the side database the bulk importer writes while the server stops
# Relationship count from which the bulk importer stores a node "dense" (its relationships grouped
# by type and direction). Neo4j's default, kept: storing none dense (1000000) cut the importer's
# CPU time by ~10% on the 1M-node / 25M-relationship graph (22% of its nodes are dense at 50), but
# a hub's incoming relationships would then be read through its whole chain. Only the layout: the
# server still groups a node once a transaction grows it past the server's own threshold.
DENSE_NODE_THRESHOLD = 50
IMPORTER_CLASS = "local.gnn.importer.BinaryImport"  # jobs/neo4j/importer
RESET_TX_ROWS = 10_000
VERIFY_SAMPLE = 16  # feature rows compared bit for bit after a load
ADJ_BATCH_NODES = 10_000  # nodes per adjacency transaction
ADJ_BATCH_BYTES = 8 << 20  # cap on adjacency bytes per transaction (hubs)
_SPLIT_NAMES = np.array([*SPLITS, None], dtype=object)  # split code -1 indexes the None


# --------------------------------------------------------------------------------------------
# configuration and result
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadConfig:
    """How to load. ``batch_size`` None means NODE_BATCH nodes / EDGE_BATCH relationships."""

    method: str = "auto"
    batch_size: int | None = None
    workers: int = 2
    reset: bool = False
    progress: bool = True
    edge_shape: str = "groups"  # "groups": one row per source node; "pairs": one row per edge
    import_min_edges: int = IMPORT_MIN_EDGES
    import_memory: str = "2g"  # off-heap memory of the bulk importer
    dense_node_threshold: int = DENSE_NODE_THRESHOLD  # bulk importer: relationships from which a node is dense
    feature_format: str = "auto"  # auto: sparse rows below SPARSE_MAX_DENSITY non-zeros (src/core/schema.py)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"invalid --method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"invalid --batch_size {self.batch_size}: use a positive number of rows")
        if self.workers < 1:
            raise UsageError(f"invalid --workers {self.workers}: use at least 1")
        if self.edge_shape not in EDGE_SHAPES:
            raise UsageError(f"invalid edge shape {self.edge_shape!r}: use one of {', '.join(EDGE_SHAPES)}")
        if self.feature_format not in FEATURE_FORMATS:
            raise UsageError(f"invalid --feature_format {self.feature_format!r}: use one of {', '.join(FEATURE_FORMATS)}")

    def node_batch(self, bytes_per_node: int) -> int:
        """Nodes per transaction, capped so wide feature rows do not exhaust the server's heap."""
        cap = max(1, NODE_BATCH_BYTES // max(bytes_per_node, 1))
        return min(self.batch_size or NODE_BATCH, cap)

    def edge_batch(self) -> int:
        return self.batch_size or EDGE_BATCH


@dataclass(frozen=True)
class FeatureLayout:
    """How a load stores ``x``: the encoding (src/core/schema.py) and the density that chose it."""

    encoding: str
    density: float

    @classmethod
    def choose(cls, ds: GraphDataset, requested: str) -> "FeatureLayout":
        density = feature_density(ds.x)
        return cls(choose_feature_encoding(density, requested), density)

    def row_bytes(self, num_features: int) -> int:
        return row_bytes(self.encoding, num_features, self.density)


@dataclass
class LoadReport:
    """What :func:`ensure_loaded` did; rates count rows written by this run only."""

    dataset: str
    label: str
    rel_type: str
    status: str  # "loaded", "resumed" or "already loaded"
    method: str  # "unwind", "import" or "none"
    nodes: int
    relationships: int
    nodes_written: int = 0
    relationships_written: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds per step
    tool_stages: dict[str, float] = field(default_factory=dict)  # the bulk importer's own stage report (s)

    @property
    def nodes_per_s(self) -> float:
        return _rate(self.nodes_written, self.phases.get("nodes", self.seconds))

    @property
    def rels_per_s(self) -> float:
        return _rate(self.relationships_written, self.phases.get("relationships", self.seconds))

    def summary(self) -> str:
        if self.status == "adjacency added":
            return (f"{self.dataset}: already loaded; added the adjacency property to its {self.nodes} nodes "
                    f"in {self.seconds:.1f} s")
        if self.status == "already loaded":
            return (f"{self.dataset}: already loaded ({self.nodes} nodes, {self.relationships} relationships, "
                    f"label {self.label}, type {self.rel_type}); nothing to do ({self.seconds:.1f} s)")
        return (f"{self.dataset}: {self.status} {self.nodes} nodes, {self.relationships} relationships "
                f"(label {self.label}, type {self.rel_type}) in {self.seconds:.1f} s, "
                f"{_rate(self.relationships_written, self.seconds):,.0f} rels/s end to end (writing: "
                f"{self.nodes_per_s:,.0f} nodes/s, {self.rels_per_s:,.0f} rels/s), method {self.method}")


def _rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else 0.0


# --------------------------------------------------------------------------------------------
# reading the dataset records (used by the Neo4j backend)
# --------------------------------------------------------------------------------------------
def dataset_record(client: Neo4jClient, name_or_label: str) -> dict[str, Any] | None:
    """Properties of the ``(:GnnDataset)`` record named ``name_or_label`` (else with that label)."""
    recs = client.read(
        f"MATCH (d:`{DATASET_LABEL}`) WHERE d.name = $key OR d.label = $key "
        "RETURN properties(d) AS p ORDER BY d.name = $key DESC LIMIT 1",
        key=name_or_label,
    )
    return dict(recs[0]["p"]) if recs else None


def require_loaded(client: Neo4jClient, name: str) -> dict[str, Any]:
    """The complete record of ``name``, or a :class:`UserError` that says how to load it."""
    return check_complete(dataset_record(client, name), name,
                          f"Neo4j database {client.database!r} at {client.settings.uri}",
                          f"python loaders/load_into_neo4j.py {dataset_flags(name)}")


def check_complete(record: dict[str, Any] | None, name: str, where: str, command: str) -> dict[str, Any]:
    """``record`` if it is a complete load, else a :class:`UserError` saying how to (finish the) load."""
    if record is None:
        raise UserError(f"dataset {name!r} is not loaded in {where}; load it with `{command}`")
    if not record.get("complete"):
        raise UserError(f"dataset {name!r} is only partly loaded in {where} (an interrupted load); "
                        f"finish it with `{command}`")
    return record


def dataset_flags(name: str) -> str:
    """Loader flags that recreate ``name`` (synthetic names encode their parameters)."""
    params = synthetic_params_from_name(name)
    if params is None:
        return f"--dataset {name}"
    return ("--dataset synthetic " + " ".join(f"--{k} {v}" for k, v in params.items()))


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def ensure_loaded(
    client: Neo4jClient,
    dataset: GraphDataset,
    schema: GraphSchema | None = None,
    config: LoadConfig | None = None,
    *,
    server: LocalNeo4j | None = None,
) -> LoadReport:
    """Make ``dataset`` present and complete in Neo4j under ``schema`` (default names from it).

    A no-op when it is already there; resumes an interrupted load; refuses (``UserError``) when
    the name, label or relationship type already holds a different graph, unless
    ``config.reset``. ``server`` is the local server the offline import may stop and restart
    (default: the project's ``LocalNeo4j()``, used only if ``client`` points at it).
    """
    t0 = time.perf_counter()
    config = config or LoadConfig()
    schema = schema or GraphSchema.for_dataset(dataset.name)
    if schema.label in (DATASET_LABEL, BATCH_LABEL):
        raise UsageError(f"label {schema.label!r} is reserved for the loader's bookkeeping; pick another --node_label")
    _create_bookkeeping_constraints(client)
    fingerprint = dataset.fingerprint()
    record = _claim(client, dataset, schema, fingerprint, config.reset)
    if record is not None and record.get("complete"):
        _check_counts(client, dataset, schema)
        report = LoadReport(schema.dataset, schema.label, schema.rel_type, "already loaded", "none",
                            dataset.num_nodes, dataset.num_edges)
        if record.get("adjacency") != schema.adj_prop:  # loaded before the adjacency property existed
            t = time.perf_counter()
            add_adjacency(client, dataset, schema, config)
            report.status, report.phases["adjacency"] = "adjacency added", time.perf_counter() - t
        report.seconds = time.perf_counter() - t0
        return report
    if record is not None and record.get("method") == "import":
        # the bulk importer wrote the whole graph at once; only the index build or verification was interrupted
        report = LoadReport(schema.dataset, schema.label, schema.rel_type, "resumed", "import",
                            dataset.num_nodes, dataset.num_edges)
    elif _choose_method(client, dataset, config, server) == "import":  # a resumed load is not empty: unwind
        layout = FeatureLayout.choose(dataset, config.feature_format)
        report = _load_offline(client, dataset, schema, fingerprint, config, layout, server or LocalNeo4j())
    else:
        if record is None:
            record = _create_record(client, dataset, schema, fingerprint, config,
                                    FeatureLayout.choose(dataset, config.feature_format), "unwind")
        report = _load_unwind(client, dataset, schema, record, config)
    if report.method != "import":  # the bulk importer wrote the adjacency with the nodes
        t = time.perf_counter()
        _write_adjacency(client, dataset, schema, *in_adjacency(dataset.edge_index, dataset.num_nodes), config)
        report.phases["adjacency"] = time.perf_counter() - t
    t = time.perf_counter()
    if report.method == "import":  # the id index is built while the verification scans the nodes
        verify_loaded(client, dataset, schema, adjacency=True, alongside=lambda: _create_id_constraint(client, schema))
        report.phases["index + verify"] = time.perf_counter() - t
    else:
        verify_loaded(client, dataset, schema, adjacency=True)  # one node scan checks the adjacency too
        report.phases["verify"] = time.perf_counter() - t
    report.seconds = time.perf_counter() - t0
    client.write(
        f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) SET d.complete = true, d.adjacency = $adj, "
        "d.method = $method, d.load_seconds = $seconds, d.loaded_at = $now",
        name=schema.dataset, adj=schema.adj_prop, method=report.method, seconds=report.seconds, now=time.time(),
    )
    return report


# --------------------------------------------------------------------------------------------
# records, conflicts, reset
# --------------------------------------------------------------------------------------------
def _create_bookkeeping_constraints(client: Neo4jClient) -> None:
    """Unique dataset names and batch markers; the marker constraint makes batches exactly-once."""
    _create_constraint(client, f"{DATASET_LABEL}_name_unique", DATASET_LABEL, ("name",))
    _create_constraint(client, f"{BATCH_LABEL}_unique", BATCH_LABEL, ("dataset", "kind", "idx"))


def _create_id_constraint(client: Neo4jClient, schema: GraphSchema) -> None:
    _create_constraint(client, schema.constraint_name, schema.label, (schema.id_prop,))
    client.write("CALL db.awaitIndexes(3600)")  # fast when the label is empty; builds it after an import


def _create_constraint(client: Neo4jClient, name: str, label: str, props: tuple[str, ...]) -> None:
    """Uniqueness on ``label(props)`` unless one exists already (under any name)."""
    existing = client.read(
        "SHOW CONSTRAINTS YIELD type, labelsOrTypes, properties "
        "WHERE type = 'UNIQUENESS' AND labelsOrTypes = [$label] AND properties = $props RETURN count(*) AS c",
        label=label, props=list(props),
    )
    if existing[0]["c"]:
        return
    keys = ", ".join(f"n.`{p}`" for p in props)
    try:
        client.write(f"CREATE CONSTRAINT `{name}` IF NOT EXISTS FOR (n:`{label}`) REQUIRE ({keys}) IS UNIQUE")
    except neo4j_exc.ClientError as exc:
        raise UserError(f"cannot create the uniqueness constraint on :{label}({', '.join(props)}): "
                        f"{exc.message}; drop the conflicting index or constraint, or pick another --node_label") from None


def _claim(client: Neo4jClient, ds: GraphDataset, schema: GraphSchema, fingerprint: str, reset: bool
           ) -> dict[str, Any] | None:
    """The record to resume or skip, or None for a fresh load (after ``reset`` deleted conflicts).

    Refuses when the name, label or relationship type already holds anything else.
    """
    records = [dict(r["p"]) for r in client.read(
        f"MATCH (d:`{DATASET_LABEL}`) WHERE d.name = $name OR d.label = $label OR d.rel_type = $rel_type "
        "RETURN properties(d) AS p",
        name=schema.dataset, label=schema.label, rel_type=schema.rel_type,
    )]
    same = [r for r in records if _same_load(r, schema, fingerprint)]
    if same and len(records) == 1 and not reset:
        return same[0]
    where = f"Neo4j database {client.database!r}"
    if records and not reset:
        other = next(r for r in records if not _same_load(r, schema, fingerprint))
        raise UserError(f"{where} already holds {_conflict(other, schema, fingerprint)}; refusing to load "
                        f"{ds.name} (fingerprint {fingerprint}) as {schema.dataset!r} over it: choose another "
                        "--name/--node_label/--rel_type, or pass --reset to delete the old data first")
    for r in records:
        log.warning("--reset: deleting dataset %r (label %s, type %s)", r["name"], r["label"], r["rel_type"])
        delete_dataset(client, r["name"], r["label"], r["rel_type"])
    nodes, rels = client.count_nodes(schema.label), client.count_relationships(schema.rel_type)
    if nodes or rels:
        if not reset:
            raise UserError(f"{where} has {nodes} :{schema.label} nodes and {rels} :{schema.rel_type} relationships "
                            "that no loaded dataset owns; choose another --node_label/--rel_type, or pass --reset "
                            "to delete them")
        log.warning("--reset: deleting %d unowned :%s nodes and %d :%s relationships",
                    nodes, schema.label, rels, schema.rel_type)
        delete_dataset(client, schema.dataset, schema.label, schema.rel_type)
    return None


def _same_load(record: dict[str, Any], schema: GraphSchema, fingerprint: str) -> bool:
    return (record.get("name"), record.get("label"), record.get("rel_type"), record.get("fingerprint")) == (
        schema.dataset, schema.label, schema.rel_type, fingerprint)


def _conflict(record: dict[str, Any], schema: GraphSchema, fingerprint: str) -> str:
    """Why ``record`` blocks this load, in words."""
    what = (f"dataset {record['name']!r} (source {record.get('source')}, label {record['label']}, "
            f"type {record['rel_type']}, fingerprint {record.get('fingerprint')})")
    if record["name"] == schema.dataset and record.get("fingerprint") != fingerprint:
        return f"a different graph under the name {schema.dataset!r}: {what}"
    if record["label"] == schema.label:
        return f"label {schema.label} in use by {what}"
    if record["rel_type"] == schema.rel_type:
        return f"relationship type {schema.rel_type} in use by {what}"
    return f"{what} with other names than requested"


def _create_record(client: Neo4jClient, ds: GraphDataset, schema: GraphSchema, fingerprint: str,
                   config: LoadConfig, layout: FeatureLayout, method: str) -> dict[str, Any]:
    """The record of a new load (complete = false); batch layout and feature encoding are fixed here for resumes."""
    props = {
        "label": schema.label, "rel_type": schema.rel_type, "source": ds.name,
        "num_nodes": ds.num_nodes, "num_edges": ds.num_edges, "num_features": ds.num_features,
        "num_classes": ds.num_classes, "fingerprint": fingerprint,
        "feature_encoding": layout.encoding, "feature_density": layout.density,
        "complete": False, "method": method, "node_batch": config.node_batch(layout.row_bytes(ds.num_features)),
        "edge_batch": config.edge_batch(),
        "started_at": time.time(),
    }
    recs = client.write(
        f"MERGE (d:`{DATASET_LABEL}` {{name: $name}}) ON CREATE SET d += $props RETURN properties(d) AS p",
        name=schema.dataset, props=props,
    )
    return dict(recs[0]["p"])


def delete_dataset(client: Neo4jClient, name: str, label: str, rel_type: str) -> None:
    """Delete one dataset (its relationships, nodes, batch markers, record) in bounded transactions."""
    client.write(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) SET d.complete = false", name=name)
    for query, params in (
        (f"MATCH ()-[r:`{rel_type}`]->() CALL (r) {{ DELETE r }} IN TRANSACTIONS OF {RESET_TX_ROWS} ROWS", {}),
        (f"MATCH (n:`{label}`) CALL (n) {{ DETACH DELETE n }} IN TRANSACTIONS OF {RESET_TX_ROWS} ROWS", {}),
        (f"MATCH (b:`{BATCH_LABEL}` {{dataset: $name}}) CALL (b) {{ DELETE b }} "
         f"IN TRANSACTIONS OF {RESET_TX_ROWS} ROWS", {"name": name}),
    ):
        client.run_autocommit(query, **params)
    client.write(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) DELETE d", name=name)


def _check_counts(client: Neo4jClient, ds: GraphDataset, schema: GraphSchema) -> None:
    """O(1) sanity check of a complete load (count store), so a damaged one is not silently used."""
    nodes, rels = client.count_nodes(schema.label), client.count_relationships(schema.rel_type)
    if (nodes, rels) != (ds.num_nodes, ds.num_edges):
        raise UserError(f"dataset {schema.dataset!r} is marked complete but Neo4j has {nodes} nodes / {rels} "
                        f"relationships instead of {ds.num_nodes} / {ds.num_edges}; reload it with --reset")


# --------------------------------------------------------------------------------------------
# verification
# --------------------------------------------------------------------------------------------
def verify_loaded(client: Neo4jClient, ds: GraphDataset, schema: GraphSchema, *, where: str = "Neo4j",
                  adjacency: bool = False, alongside: Callable[[], None] | None = None) -> None:
    """Compare the database with the source: counts, label and split histograms, sampled feature rows.

    Only ``read``/``count_nodes``/``count_relationships`` and Cypher both databases speak are used,
    so ``client`` may also be a :class:`~src.ladybugdb.client.LadybugClient` (``where="Ladybug"``).
    ``adjacency``: also check the ``nbrs`` property (:func:`_check_adjacency`); the nodes without
    it are counted by the same scan as the histograms (one pass over the nodes, not two).
    ``alongside``: work run in another thread during that scan (after an import: the id
    constraint's index build, which the sampled rows are then read through).
    """
    s = schema
    problems = []
    nodes, rels = client.count_nodes(s.label), client.count_relationships(s.rel_type)
    if nodes != ds.num_nodes:
        problems.append(f"{nodes} nodes instead of {ds.num_nodes}")
    if rels != ds.num_edges:
        problems.append(f"{rels} relationships instead of {ds.num_edges}")
    no_adj = f"n.`{s.adj_prop}` IS NULL AS no_adj, " if adjacency else ""
    with ThreadPoolExecutor(1) as pool:
        side = pool.submit(alongside or (lambda: None))
        hist = client.read(f"MATCH (n:`{s.label}`) RETURN n.`{s.y_prop}` AS y, n.`{s.split_prop}` AS split, "
                           f"{no_adj}count(*) AS c")
        side.result()
    got_y: dict[int, int] = {}
    got_split: dict[str | None, int] = {}
    for r in hist:
        got_y[r["y"]] = got_y.get(r["y"], 0) + r["c"]
        got_split[r["split"]] = got_split.get(r["split"], 0) + r["c"]
    y = np.asarray(ds.y)
    values, counts = np.unique(y, return_counts=True)
    if got_y != dict(zip(values.tolist(), counts.tolist())):
        problems.append("label histogram differs from the source")
    codes = ds.split_codes()
    want_split = {_SPLIT_NAMES[c]: int(n) for c, n in zip(*np.unique(codes, return_counts=True))}
    if got_split != want_split:
        problems.append(f"split counts {got_split} instead of {want_split}")
    record = dataset_record(client, s.dataset) or {}
    problems += _check_feature_sample(client, ds, s, record.get("feature_encoding", DENSE))
    if adjacency:
        missing = sum(r["c"] for r in hist if r["no_adj"])
        problems += [f"{missing} nodes have no {s.adj_prop!r}"] if missing else _check_adjacency(client, ds, s)
    if problems:
        raise UserError(f"dataset {s.dataset!r} in {where} does not match {ds.name}: {'; '.join(problems)}; "
                        "reload it with --reset")


def _check_feature_sample(client: Neo4jClient, ds: GraphDataset, s: GraphSchema, encoding: str) -> list[str]:
    """A few rows, stored bytes and decoded values, bit for bit (catches encoding bugs)."""
    if ds.num_nodes == 0:
        return []
    ids = np.unique(np.random.default_rng().integers(0, ds.num_nodes, VERIFY_SAMPLE))
    recs = client.read(f"UNWIND $ids AS i MATCH (n:`{s.label}` {{`{s.id_prop}`: i}}) "
                       f"RETURN n.`{s.id_prop}` AS id, n.`{s.x_prop}` AS x ORDER BY id", ids=ids.tolist())
    if [r["id"] for r in recs] != ids.tolist():
        return ["sampled node ids are missing"]
    stored = [bytes(r["x"] or b"") for r in recs]
    if stored != split_rows(*encode_rows(feature_rows(ds, ids), encoding)):
        return [f"sampled feature rows differ from the source (encoding {encoding})"]
    try:
        got = decode_features(stored, ds.num_features, encoding)
    except ValueError as exc:
        return [f"sampled feature rows do not decode: {exc}"]
    if got.tobytes() != np.ascontiguousarray(ds.features(ids), dtype="<f4").tobytes():
        return ["sampled feature rows decode to other values than the source"]
    return []


def feature_rows(ds: GraphDataset, ids: np.ndarray) -> Any:
    """Rows ``ids`` of ``x`` to encode: a CSR slice for sparse sources (never densified), else dense."""
    return ds.x[ids] if sp.issparse(ds.x) else ds.features(ids)


# --------------------------------------------------------------------------------------------
# adjacency property (read by gnn.sampleHop(s) instead of the relationship chains)
# --------------------------------------------------------------------------------------------
def add_adjacency(client: Neo4jClient, ds: GraphDataset, schema: GraphSchema, config: LoadConfig) -> None:
    """Write every node's in-neighbour ids as one packed int64 bytes property ``schema.adj_prop``.

    For datasets loaded before the property existed (a new load writes it before its
    verification: :func:`ensure_loaded`; the bulk importer stores it with the nodes). Idempotent
    (a re-run writes the same values), so an interrupted run is simply repeated. The order is
    the source's edge order per destination (:func:`~src.core.csr.in_adjacency`, as in
    :class:`~src.core.csr.CSRGraph`), so the procedures' samples can be replayed
    against the in-memory graph. Checked bit for bit on a sample, then recorded on the dataset
    record (``adjacency``), which is what tells the backend it may use it.
    """
    s = schema
    _write_adjacency(client, ds, s, *in_adjacency(ds.edge_index, ds.num_nodes), config)
    missing = client.read(f"MATCH (n:`{s.label}`) WHERE n.`{s.adj_prop}` IS NULL RETURN count(n) AS c")[0]["c"]
    problems = [f"{missing} nodes have no {s.adj_prop!r}"] if missing else _check_adjacency(client, ds, s)
    if problems:
        raise UserError(f"adjacency property {s.adj_prop!r} of dataset {s.dataset!r} does not match the source: "
                        f"{'; '.join(problems)}; reload it with --reset")
    client.write(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) SET d.adjacency = $prop", name=s.dataset, prop=s.adj_prop)


def _write_adjacency(client: Neo4jClient, ds: GraphDataset, s: GraphSchema, indptr: np.ndarray, indices: np.ndarray,
                     config: LoadConfig) -> None:
    """The UNWIND writes of :func:`add_adjacency`, in node ranges bounded in count and bytes."""
    bounds = [0]
    while bounds[-1] < ds.num_nodes:  # node ranges of at most ADJ_BATCH_NODES nodes / ADJ_BATCH_BYTES bytes
        lo = bounds[-1]
        hi = min(lo + ADJ_BATCH_NODES, ds.num_nodes)
        over = np.searchsorted(indptr[lo + 1:hi + 1], indptr[lo] + ADJ_BATCH_BYTES // 8, side="right")
        bounds.append(lo + max(1, int(over)) if over < hi - lo else hi)
    query = (f"UNWIND $rows AS r MATCH (n:`{s.label}` {{`{s.id_prop}`: r.id}}) SET n.`{s.adj_prop}` = r.nbrs "
             "RETURN count(n) AS c")

    def write(lo: int, hi: int) -> int:
        nbrs = encode_adjacency(indptr[lo:hi + 1] - indptr[lo], indices[indptr[lo]:indptr[hi]])
        rows = [{"id": i, "nbrs": b} for i, b in zip(range(lo, hi), nbrs)]
        return client.write_tx(lambda tx: tx.run(query, rows=rows).single()["c"])

    written = 0
    with tqdm(total=ds.num_nodes, unit="node", unit_scale=True, desc=f"{s.dataset} adjacency",
              disable=not config.progress) as bar, ThreadPoolExecutor(config.workers) as pool:
        for (lo, hi), n in zip(zip(bounds[:-1], bounds[1:]), pool.map(lambda r: write(*r), zip(bounds[:-1], bounds[1:]))):
            written += n
            bar.update(hi - lo)
    if written != ds.num_nodes:
        raise UserError(f"adjacency of dataset {s.dataset!r}: {written} of {ds.num_nodes} nodes found in Neo4j; "
                        "reload it with --reset")


def _check_adjacency(client: Neo4jClient, ds: GraphDataset, s: GraphSchema) -> list[str]:
    """Random nodes and the biggest hub match the source bit for bit (the caller counts missing rows).

    The expected rows come from linear passes over the edge list, not the O(E log E) sort that
    builds the whole adjacency.
    """
    if ds.num_nodes == 0:
        return []
    src, dst = np.asarray(ds.edge_index[0]), np.asarray(ds.edge_index[1])
    hub = int(np.argmax(np.bincount(dst, minlength=ds.num_nodes)))
    ids = np.unique(np.r_[np.random.default_rng().integers(0, ds.num_nodes, VERIFY_SAMPLE), hub])
    recs = client.read(f"UNWIND $ids AS i MATCH (n:`{s.label}` {{`{s.id_prop}`: i}}) "
                       f"RETURN n.`{s.id_prop}` AS id, n.`{s.adj_prop}` AS nbrs ORDER BY id", ids=ids.tolist())
    near = np.flatnonzero(np.isin(dst, ids))  # edges into a sampled node, in edge order
    want = [src[near[dst[near] == i]].astype("<i8").tobytes() for i in ids]
    if [r["id"] for r in recs] != ids.tolist() or [bytes(r["nbrs"]) for r in recs] != want:
        return [f"{s.adj_prop!r} of sampled nodes {ids[:5].tolist()}... differs from the source"]
    return []


# --------------------------------------------------------------------------------------------
# unwind: resumable batches in managed transactions
# --------------------------------------------------------------------------------------------
def _load_unwind(client: Neo4jClient, ds: GraphDataset, schema: GraphSchema, record: dict[str, Any],
                 config: LoadConfig) -> LoadReport:
    _create_id_constraint(client, schema)  # before the first node: CREATE then checks uniqueness
    done = _done_batches(client, schema.dataset)
    resumed = any(done.values())
    node_batch, edge_batch = int(record["node_batch"]), int(record["edge_batch"])
    encoding = record.get("feature_encoding", DENSE)
    if resumed:
        log.info("resuming %s: %d node and %d relationship batches already committed (batches of %d nodes / "
                 "%d relationships, as when the load started)", schema.dataset, len(done["nodes"]),
                 len(done["relationships"]), node_batch, edge_batch)
    report = LoadReport(schema.dataset, schema.label, schema.rel_type, "resumed" if resumed else "loaded",
                        "unwind", ds.num_nodes, ds.num_edges)
    s = schema
    node_query = (f"UNWIND $rows AS r CREATE (n:`{s.label}` {{`{s.id_prop}`: r.id}}) "
                  f"SET n.`{s.x_prop}` = r.x, n.`{s.y_prop}` = r.y, n.`{s.split_prop}` = r.split")
    codes = ds.split_codes()

    def node_params(lo: int, hi: int) -> dict[str, Any]:
        xs = split_rows(*encode_rows(feature_rows(ds, np.arange(lo, hi)), encoding))
        ys = np.asarray(ds.y[lo:hi]).tolist()
        splits = _SPLIT_NAMES[codes[lo:hi]].tolist()
        return {"rows": [{"id": i, "x": x, "y": y, "split": sp}
                         for i, x, y, sp in zip(range(lo, hi), xs, ys, splits)]}

    t = time.perf_counter()
    report.nodes_written = _run_batches(client, s.dataset, "nodes", ds.num_nodes, node_batch, done["nodes"],
                                        node_query, node_params, config)
    report.phases["nodes"] = time.perf_counter() - t
    edge_query, edge_params = _edge_writer(ds, s, config.edge_shape)
    t = time.perf_counter()
    report.relationships_written = _run_batches(client, s.dataset, "relationships", ds.num_edges, edge_batch,
                                                done["relationships"], edge_query, edge_params, config)
    report.phases["relationships"] = time.perf_counter() - t
    return report


def _edge_writer(ds: GraphDataset, s: GraphSchema, shape: str
                 ) -> tuple[str, Callable[[int, int], dict[str, Any]]]:
    """Query and parameter builder for relationship batches.

    ``groups`` sends each source id once with its destination list (less to encode and one
    source lookup per group); ``pairs`` is the plain one-row-per-edge form, kept to measure.
    """
    match_b = f"MATCH (b:`{s.label}` {{`{s.id_prop}`: d}}) CREATE (a)-[:`{s.rel_type}`]->(b)"
    if shape == "pairs":
        def pairs(lo: int, hi: int) -> dict[str, Any]:
            return {"rows": np.asarray(ds.edge_index[:, lo:hi]).T.tolist()}

        return (f"UNWIND $rows AS r MATCH (a:`{s.label}` {{`{s.id_prop}`: r[0]}}) WITH a, r[1] AS d {match_b}",
                pairs)

    def groups(lo: int, hi: int) -> dict[str, Any]:
        src, dst = np.asarray(ds.edge_index[0, lo:hi]), np.asarray(ds.edge_index[1, lo:hi])
        order = np.argsort(src, kind="stable")
        src, dst = src[order], dst[order]
        starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
        return {"groups": [{"s": a, "d": d.tolist()}
                           for a, d in zip(src[starts].tolist(), np.split(dst, starts[1:]))]}

    return (f"UNWIND $groups AS g MATCH (a:`{s.label}` {{`{s.id_prop}`: g.s}}) UNWIND g.d AS d {match_b}",
            groups)


def _done_batches(client: Neo4jClient, name: str) -> dict[str, set[int]]:
    recs = client.read(f"MATCH (b:`{BATCH_LABEL}` {{dataset: $name}}) RETURN b.kind AS kind, b.idx AS idx", name=name)
    done: dict[str, set[int]] = {"nodes": set(), "relationships": set()}
    for r in recs:
        done.setdefault(r["kind"], set()).add(int(r["idx"]))
    return done


def _run_batches(client: Neo4jClient, name: str, kind: str, total: int, batch: int, done: set[int], query: str,
                 params: Callable[[int, int], dict[str, Any]], config: LoadConfig) -> int:
    """Write the batches of ``kind`` not in ``done`` with ``config.workers`` threads; rows written."""
    ranges = [(lo, min(lo + batch, total)) for lo in range(0, total, batch)]
    todo = [i for i in range(len(ranges)) if i not in done]
    initial = total - sum(ranges[i][1] - ranges[i][0] for i in todo)
    unit = "node" if kind == "nodes" else "rel"

    def write(idx: int) -> int:
        lo, hi = ranges[idx]
        p = params(lo, hi)
        marker = {"dataset": name, "kind": kind, "idx": idx, "rows": hi - lo}
        try:
            wrote = client.write_tx(lambda tx: _write_batch(tx, query, p, marker))
        except neo4j_exc.ConstraintError:
            # another loader committed this batch (or its nodes) first; the final check verifies
            log.debug("%s batch %d of %s was written concurrently by another loader", kind, idx, name)
            wrote = False
        return hi - lo if wrote else 0

    written = 0
    with tqdm(total=total, initial=initial, unit=unit, unit_scale=True, desc=f"{name} {kind}", smoothing=0.05,
              disable=not config.progress) as bar, ThreadPoolExecutor(config.workers) as pool:
        futures = {pool.submit(write, i): ranges[i][1] - ranges[i][0] for i in todo}
        try:
            for fut in as_completed(futures):
                written += fut.result()
                bar.update(futures[fut])
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return written


def _write_batch(tx: neo4j.ManagedTransaction, query: str, params: dict[str, Any], marker: dict[str, Any]) -> bool:
    """One batch and its marker in one transaction; False when the marker says it is done."""
    if tx.run(f"MATCH (b:`{BATCH_LABEL}` {{dataset: $dataset, kind: $kind, idx: $idx}}) RETURN count(b) AS c",
              marker).single()["c"]:
        return False
    tx.run(query, params).consume()
    tx.run(f"CREATE (:`{BATCH_LABEL}` {{dataset: $dataset, kind: $kind, idx: $idx, rows: $rows}})", marker).consume()
    return True


# --------------------------------------------------------------------------------------------
# offline import with neo4j-admin
# --------------------------------------------------------------------------------------------
def _choose_method(client: Neo4jClient, ds: GraphDataset, config: LoadConfig, server: LocalNeo4j | None) -> str:
    if config.method == "unwind":
        return "unwind"
    blockers = import_blockers(client, ds, server or LocalNeo4j())
    if config.method == "import":
        if blockers:
            raise UsageError(f"--method import is not possible here: {'; '.join(blockers)}. The offline import "
                             "writes a new database with the server stopped; use --method unwind (online)")
        return "import"
    if not blockers and ds.num_edges >= config.import_min_edges:
        log.info("auto: offline import (empty local database, %d relationships)", ds.num_edges)
        return "import"
    return "unwind"


def import_blockers(client: Neo4jClient, ds: GraphDataset, server: LocalNeo4j) -> list[str]:
    """Why the offline import cannot be used with this client/server/dataset ([] if it can)."""
    blockers = []
    st = server.state()
    if st is None or not _points_at(client.settings.uri, int(st["port"])):
        blockers.append(f"{client.settings.uri} is not the project's local server (jobs/neo4j.sh), "
                        "the only one the loader may stop and restart")
    if client.database != "neo4j":
        blockers.append(f"it imports into the default database 'neo4j', not {client.database!r}")
    nodes = int(client.read("MATCH (n) RETURN count(n) AS c")[0]["c"])
    if nodes:
        blockers.append(f"database {client.database!r} is not empty ({nodes} nodes)")
    busy = client.read("SHOW TRANSACTIONS YIELD currentQuery WHERE NOT currentQuery STARTS WITH 'SHOW TRANSACTIONS' "
                       "RETURN count(*) AS c")[0]["c"]
    if busy:
        blockers.append(f"other clients are running {busy} transaction(s) on it and would lose the server")
    if server.importer_jar() is None:
        blockers.append("the bulk importer needs Maven and a JDK (`apt-get install -y maven openjdk-17-jdk-headless`)")
    return blockers


def _points_at(uri: str, port: int) -> bool:
    m = re.fullmatch(r"(?:bolt|neo4j)://(127\.0\.0\.1|localhost)(?::(\d+))?/?", uri)
    return bool(m) and int(m.group(2) or 7687) == port


def _load_offline(client: Neo4jClient, ds: GraphDataset, schema: GraphSchema, fingerprint: str,
                  config: LoadConfig, layout: FeatureLayout, server: LocalNeo4j) -> LoadReport:
    """Binary arrays, bulk import (nodes with features and adjacency, relationships), restart and
    record (the id constraint is built during the verification: :func:`ensure_loaded`).

    Overlapped, because the server restart and the import are the bulk of the time: the server
    shuts down while the importer's JVM starts (it waits for the arrays) and while the arrays are
    written; the importer writes a side database (:data:`IMPORT_DATABASE`), so it need not wait
    for the server to be gone, and that store replaces the (empty) target once both are done.
    Not resumable: an interrupted import leaves the empty database behind (or, if this process
    is killed while the server is down, a stopped server; see the warning logged then).
    """
    report = LoadReport(schema.dataset, schema.label, schema.rel_type, "loaded", "import",
                        ds.num_nodes, ds.num_edges, ds.num_nodes, ds.num_edges)
    t0 = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="import-", dir=server.root))
    st = server.state()
    assert st is not None  # checked by import_blockers
    log.warning("stopping the local Neo4j server (pid %s, %s) for the offline import; should this process die "
                "before the server is back, its half-written database is unusable: start afresh with "
                "`bash jobs/neo4j.sh reset && bash jobs/neo4j.sh start` (it was empty)", st["pid"], server.home)
    try:
        try:
            with ThreadPoolExecutor(1) as pool:
                stopped = pool.submit(server.stop)
                try:
                    _drop_store(server, IMPORT_DATABASE)  # left over by a killed load
                    t = time.perf_counter()
                    importer = BulkImporter.start(server, schema, ds, workdir, config, IMPORT_DATABASE)
                    try:
                        write_import_arrays(ds, workdir, encoding=layout.encoding, progress=config.progress)
                        report.phases["arrays"] = time.perf_counter() - t
                        t = time.perf_counter()
                        report.tool_stages = importer.run()
                    finally:
                        importer.abort()  # a no-op once it has finished
                    report.phases["import"] = time.perf_counter() - t
                finally:
                    t = time.perf_counter()
                    stopped.result()
                    report.phases["stop wait"] = time.perf_counter() - t
            _replace_store(server, IMPORT_DATABASE, client.database)
        except BaseException:
            _drop_store(server, IMPORT_DATABASE)
            _drop_store(server, client.database)  # the database was empty before: this loses nothing
            raise
        finally:
            t = time.perf_counter()
            server.start(heap=st["heap"], pagecache=st["pagecache"], port=int(st["port"]))
            report.phases["restart"] = time.perf_counter() - t
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _create_bookkeeping_constraints(client)
    _create_record(client, ds, schema, fingerprint, config, layout, "import")  # the id constraint: ensure_loaded
    report.phases["nodes"] = report.phases["relationships"] = time.perf_counter() - t0
    return report


def _store_dirs(server: LocalNeo4j, database: str) -> list[Path]:
    """A database's store and transaction log folders."""
    return [server.home / "data" / sub / database for sub in ("databases", "transactions")]


def _drop_store(server: LocalNeo4j, database: str) -> None:
    """Delete ``database``'s store and transaction logs (the importer writes a new database)."""
    for folder in _store_dirs(server, database):
        shutil.rmtree(folder, ignore_errors=True)


def _replace_store(server: LocalNeo4j, source: str, target: str) -> None:
    """Make the imported database ``source`` the server's ``target`` (stopped server; nothing in a store names it)."""
    _drop_store(server, target)
    for src, dst in zip(_store_dirs(server, source), _store_dirs(server, target)):
        src.rename(dst)


@dataclass
class BulkImporter:
    """The binary importer (jobs/neo4j/importer) as a process that starts before its input exists.

    :meth:`start` launches the JVM, which sets up the import and then waits; :meth:`run` tells
    it the arrays are complete and returns seconds per stage from its own report.
    """

    proc: subprocess.Popen
    log_path: Path
    archive: ClassArchive  # its classes, mapped from the second import on (src/neo4jdb/class_archive.py)

    @classmethod
    def start(cls, server: LocalNeo4j, schema: GraphSchema, ds: GraphDataset, workdir: Path, config: LoadConfig,
              database: str) -> "BulkImporter":
        jar = server.importer_jar()
        assert jar is not None  # checked by import_blockers
        s = schema
        classpath = [f"{server.lib}/*", str(jar)]
        archive = server.class_archive("importer", classpath)
        heap_mib = IMPORT_HEAP_MIB + (8 * (ds.num_edges + ds.num_nodes + 1) >> 20)  # + the in-adjacency it builds
        cmd = [
            "java", f"-Xmx{heap_mib}m", *archive.flags(), "-cp", ":".join(classpath), IMPORTER_CLASS,
            f"--home={server.home}", f"--database={database}", f"--dir={workdir}",
            f"--nodes={ds.num_nodes}", f"--relationships={ds.num_edges}",
            f"--threads={config.workers}", f"--max-off-heap-memory={config.import_memory}",
            f"--dense-node-threshold={config.dense_node_threshold}", "--wait-for-input=true", "--verbose=true",
            f"--label={s.label}", f"--rel-type={s.rel_type}", f"--id={s.id_prop}", f"--x={s.x_prop}",
            f"--y={s.y_prop}", f"--split={s.split_prop}", f"--nbrs={s.adj_prop}",
        ]
        log.info("bulk import (%d threads, %s off-heap) into %s", config.workers, config.import_memory,
                 server.home / "data")
        log_path = workdir / "import.log"
        with open(log_path, "w") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True)
        return cls(proc, log_path, archive)

    def run(self) -> dict[str, float]:
        """Let the import begin, wait for it, and return seconds per stage (UserError if it failed)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("go\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # it exited already; its log says why
        code = self.proc.wait()
        self.archive.commit(code == 0)
        text = self.log_path.read_text(errors="replace")
        stages = _importer_stages(text)
        for name, seconds in stages.items():
            log.info("importer: %s %.1f s", name, seconds)
        if code != 0:
            lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
            # the importer's own one-line message, else the first exception of a stack trace, else the tail
            reason = next((ln for ln in lines if ln.startswith("error: ")), None) or next(
                (ln for ln in lines if "Exception" in ln), " | ".join(lines[-6:]))
            raise UserError(f"bulk import failed (exit {code}): {reason}")
        return stages

    def abort(self) -> None:
        """Stop the process if it still runs (the arrays failed); it exits without them on closed input."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.archive.commit(False)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()


def _run_importer(server: LocalNeo4j, schema: GraphSchema, ds: GraphDataset, workdir: Path, config: LoadConfig,
                  database: str) -> dict[str, float]:
    """Run the binary importer on ``workdir``'s complete arrays; seconds per stage from its own report."""
    importer = BulkImporter.start(server, schema, ds, workdir, config, database)
    try:
        return importer.run()
    finally:
        importer.abort()


def _importer_stages(text: str) -> dict[str, float]:
    """Seconds per stage of the importer's progress output (verbose: "<stage>, started ..." then
    "Done in ..." per stage; otherwise "<stage> COMPLETED in ...")."""
    stages: dict[str, float] = {}
    current = None
    for line in re.split(r"[\r\n]+", text):
        started = re.match(r"(\S.*), started \d{4}-", line)
        if started:
            current = started.group(1).lower()
        done = re.search(r"(?:^|\])Done in (.+)", line)
        if done and current:
            stages[current] = stages.get(current, 0.0) + _duration(done.group(1))
            current = None
        completed = re.match(r"(\S.*) COMPLETED in (.+)", line)
        if completed:
            stages[completed.group(1).lower()] = _duration(completed.group(2))
    return stages


def _duration(text: str) -> float:
    """Seconds of a Neo4j duration such as ``1m 3s 628ms``."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(v) * units[u] for v, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)\b", text))


def write_import_arrays(ds: GraphDataset, out_dir: Path, *, encoding: str = DENSE, progress: bool = True,
                        node_chunk: int = 1 << 16, edge_chunk: int = 1 << 22) -> None:
    """The flat little-endian arrays the binary importer reads (layout: jobs/neo4j/importer, BinaryInput).

    Raw bytes, no text: feature rows exactly as the ``bytes`` property stores them (``encoding``),
    labels, split codes and the relationship end points. Written chunk by chunk, one buffer write
    per chunk. The ``nbrs`` property is not among them: the importer sorts the end points by
    destination itself (a counting sort, O(E)), which took the loader's sort (O(E log E), ~3 s
    CPU for 25M relationships) off the path to the import's start.
    """
    n = ds.num_nodes
    with tqdm(total=n + ds.num_edges, unit="row", unit_scale=True, desc="import arrays",
              disable=not progress) as bar:
        with open(out_dir / "x.bin", "wb") as xf:
            offsets = [np.zeros(1, dtype="<i8")]
            for lo, hi in ds.iter_node_chunks(node_chunk):
                raw, lengths = encode_rows(feature_rows(ds, np.arange(lo, hi)), encoding)
                xf.write(raw)
                offsets.append(offsets[-1][-1] + np.cumsum(lengths, dtype="<i8"))
                bar.update(hi - lo)
        np.concatenate(offsets).astype("<i8").tofile(out_dir / "x.ptr")
        np.asarray(ds.y).astype("<i8").tofile(out_dir / "y.i64")
        ds.split_codes().astype(np.int8).tofile(out_dir / "split.i8")
        with open(out_dir / "src.i64", "wb") as sf, open(out_dir / "dst.i64", "wb") as df:
            for lo, hi in ds.iter_edge_chunks(edge_chunk):
                e = np.asarray(ds.edge_index[:, lo:hi], dtype="<i8")  # no copy when the cache is int64 already
                sf.write(np.ascontiguousarray(e[0]).data)
                df.write(np.ascontiguousarray(e[1]).data)
                bar.update(hi - lo)
