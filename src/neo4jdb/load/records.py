"""The Neo4j loader's bookkeeping: ``(:GnnDataset)`` records, constraints, conflicts, reset.

Why it exists: every way in (unwind, bulk import) and every reader (the backend, benchmarks)
goes through the same record: claimed before a load (refusing a different graph under the
same names), created with the batch layout a resume must keep, marked complete after the
verification, deleted with its data on ``--reset``.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from neo4j import exceptions as neo4j_exc

from src.client import Neo4jClient
from src.core.errors import UserError
from src.core.feature_stats import FeatureStats
from src.core.record import default_metric
from src.core.record import DatasetRecord
from src.core.schema import DATASET_LABEL, GraphSchema
from src.data.graph import GraphDataset
from src.data.loading import FeatureLayout, LoadConfig, LoadReport, check_complete, dataset_flags
from src.neo4jdb.edge_split import SPLIT_LABEL

log = logging.getLogger(__name__)

BATCH_LABEL = "GnnLoadBatch"  # one marker node per committed batch of an unwind load
RESET_TX_ROWS = 10_000


# --------------------------------------------------------------------------------------------
# reading the dataset records (used by the Neo4j backend)
# --------------------------------------------------------------------------------------------
def dataset_record(client: Neo4jClient, name_or_label: str) -> DatasetRecord | None:
    """The ``(:GnnDataset)`` record named ``name_or_label`` (else the one with that label)."""
    recs = client.read(
        f"MATCH (d:`{DATASET_LABEL}`) WHERE d.name = $key OR d.label = $key "
        "RETURN properties(d) AS p ORDER BY d.name = $key DESC LIMIT 1",
        key=name_or_label,
    )
    return DatasetRecord.from_properties(recs[0]["p"]) if recs else None


def changed_since(client: Neo4jClient, record: DatasetRecord) -> str | None:
    """How the dataset of ``record`` changed since it was read (deleted, being reloaded, reloaded), or None.

    A load's identity is its record's ``started_at``: ``--reset`` marks the record incomplete, deletes
    the graph, then the record, and a reload writes a new one, even of the same graph (same fingerprint).
    """
    now = dataset_record(client, record.name)
    if now is None or now.name != record.name:
        return "its record is gone (deleted, or `loader --reset` is reloading it)"
    if now.properties.get("started_at") != record.properties.get("started_at") or now.fingerprint != record.fingerprint:
        return "it was loaded again" + ("" if now.complete else " (the load is still running)")
    if now.num_nodes != record.num_nodes:  # register_graph.py --refresh added nodes (src/neo4jdb/register/refresh.py)
        return f"`register_graph.py --refresh` added {now.num_nodes - record.num_nodes} nodes to it"
    if record.complete and not now.complete:  # delete_dataset marks the record first and removes it last
        return "it is being deleted (`loader --reset` or a delete is under way)"
    return None


def require_loaded(client: Neo4jClient, name: str) -> DatasetRecord:
    """The complete record of ``name``, or a :class:`UserError` that says how to load it."""
    record = dataset_record(client, name)
    registered = record is not None and record.properties.get("register_command")  # loaders/register_graph.py
    return check_complete(record, name, f"Neo4j database {client.database!r} at {client.settings.uri}",
                          registered or f"python loaders/load_into_neo4j.py {dataset_flags(name)}")


# --------------------------------------------------------------------------------------------
# constraints
# --------------------------------------------------------------------------------------------
def create_bookkeeping_constraints(client: Neo4jClient) -> None:
    """Unique dataset names and batch markers; the marker constraint makes batches exactly-once."""
    _create_constraint(client, f"{DATASET_LABEL}_name_unique", DATASET_LABEL, ("name",))
    _create_constraint(client, f"{BATCH_LABEL}_unique", BATCH_LABEL, ("dataset", "kind", "idx"))


def create_id_constraint(client: Neo4jClient, schema: GraphSchema) -> None:
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


# --------------------------------------------------------------------------------------------
# claiming, creating and completing a record
# --------------------------------------------------------------------------------------------
def claim(client: Neo4jClient, ds: GraphDataset, schema: GraphSchema, fingerprint: str, reset: bool
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


def create_record(client: Neo4jClient, ds: GraphDataset, schema: GraphSchema, fingerprint: str,
                  config: LoadConfig, layout: FeatureLayout, method: str) -> dict[str, Any]:
    """The record of a new load (complete = false); batch layout and feature encoding are fixed here for resumes."""
    props = {
        "label": schema.label, "rel_type": schema.rel_type, "source": ds.name,
        "num_nodes": ds.num_nodes, "num_edges": ds.num_edges, "num_features": ds.num_features,
        "num_classes": ds.num_classes, "metric": default_metric(ds.num_classes), "fingerprint": fingerprint,
        "feature_encoding": layout.encoding, "feature_density": layout.density,
        "feature_quant": None if layout.quant is None else layout.quant.to_bytes(), "feature_error": layout.error,
        "complete": False, "method": method, "node_batch": config.node_batch(layout.row_bytes(ds.num_features)),
        "edge_batch": config.edge_batch(),
        "started_at": time.time(),
    }
    recs = client.write(
        f"MERGE (d:`{DATASET_LABEL}` {{name: $name}}) ON CREATE SET d += $props RETURN properties(d) AS p",
        name=schema.dataset, props=props,
    )
    return dict(recs[0]["p"])


def mark_complete(client: Neo4jClient, schema: GraphSchema, report: LoadReport) -> None:
    """The verified load's record: ``complete = true``, the adjacency property, method and time."""
    client.write(
        f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) SET d.complete = true, d.adjacency = $adj, "
        "d.method = $method, d.load_seconds = $seconds, d.loaded_at = $now",
        name=schema.dataset, adj=schema.adj_prop, method=report.method, seconds=report.seconds, now=time.time(),
    )


def write_feature_stats(client: Neo4jClient, schema: GraphSchema, ds: GraphDataset) -> None:
    """Store the column statistics ``--normalize_features`` needs with the record (computed from the source)."""
    client.write(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) SET d.feature_stats = $stats",
                 name=schema.dataset, stats=FeatureStats.compute(ds.x).to_bytes())


def mark_adjacency(client: Neo4jClient, schema: GraphSchema) -> None:
    """Record that the adjacency property of a complete load was written and verified."""
    client.write(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) SET d.adjacency = $prop",
                 name=schema.dataset, prop=schema.adj_prop)


# --------------------------------------------------------------------------------------------
# deleting
# --------------------------------------------------------------------------------------------
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
    client.write(f"MATCH (s:`{SPLIT_LABEL}` {{dataset: $name}}) DELETE s", name=name)  # its edge split went with the graph
    client.write(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) DELETE d", name=name)
