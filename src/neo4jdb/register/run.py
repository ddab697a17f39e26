"""``register``: turn nodes and relationships already in Neo4j into a trainable dataset, in place.

Why a record like the loader's: the trainer, every sampling path and the exporter find a
registered dataset exactly as a loaded one (``(:GnnDataset)`` with ``complete``, the schema's
property names and ``direction``), so nothing downstream needs to know how it got there.
Order: read-only checks (src/neo4jdb/register/inspect.py), the record (complete = false), the
writes (write.py), a verification, then complete = true. A re-run resumes an unfinished
registration and is a no-op on a finished one; a different request under the same name is refused.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from src.client import Neo4jClient
from src.core.codecs import DENSE
from src.core.errors import UserError
from src.core.record import DatasetRecord
from src.core.schema import DATASET_LABEL
from src.data.loading import LoadConfig
from src.neo4jdb.load.records import BATCH_LABEL, RESET_TX_ROWS, create_bookkeeping_constraints, create_id_constraint
from src.neo4jdb.load.unwind import done_batches
from src.neo4jdb.register import write
from src.neo4jdb.register.inspect import GraphFacts, inspect_graph
from src.neo4jdb.register.spec import METHOD, RegisterSpec

log = logging.getLogger(__name__)


@dataclass
class RegisterReport:
    """What :func:`register` did, for the command's summary line."""

    name: str
    label: str
    rel_type: str
    direction: str
    status: str  # "registered", "resumed", "already registered" or "reset"
    nodes: int = 0
    edges: int = 0
    num_features: int = 0
    num_classes: int = 0
    written: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        head = (f"{self.name}: :{self.label} nodes, :{self.rel_type} relationships ({self.direction}); "
                f"{self.nodes} nodes, {self.edges} sampled edges, {self.num_features} features, {self.num_classes} classes")
        if self.status == "already registered":
            return f"{self.name}: already registered ({head.split('; ', 1)[1]}); nothing to do ({self.seconds:.1f} s)"
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items())
        wrote = ", ".join(f"{v} {k}" for k, v in self.written.items())
        return f"{head}: {self.status} in {self.seconds:.1f} s ({phases}; written this run: {wrote})"


def registration_record(client: Neo4jClient, name: str) -> dict[str, Any] | None:
    recs = client.read(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) RETURN properties(d) AS p", name=name)
    return dict(recs[0]["p"]) if recs else None


def register(client: Neo4jClient, spec: RegisterSpec, config: LoadConfig, *, reset: bool = False) -> RegisterReport:
    """Register ``spec`` (resuming an unfinished registration of the same request); see the module doc."""
    t0 = time.perf_counter()
    s = spec.schema
    report = RegisterReport(spec.name, s.label, s.rel_type, s.direction, "registered")
    create_bookkeeping_constraints(client)
    existing = registration_record(client, spec.name)
    if existing is not None and reset:
        _refuse_other(existing, spec, allow_other_request=True)
        unregister(client, existing)
        existing = None
    if existing is not None:
        _refuse_other(existing, spec)
        if existing.get("complete"):
            rec = DatasetRecord.from_properties(existing)
            report.status, report.nodes, report.edges = "already registered", rec.num_nodes, rec.num_edges
            report.num_features, report.num_classes = rec.num_features, rec.num_classes
            report.seconds = time.perf_counter() - t0
            return report
        report.status = "resumed"
    t = time.perf_counter()
    facts = inspect_graph(client, spec)
    report.phases["checks"] = time.perf_counter() - t
    if existing is None:
        taken = client.read(f"MATCH (n:`{s.label}`) WHERE n.`{s.id_prop}` IS NOT NULL OR n.`{s.x_prop}` IS NOT NULL "
                            "RETURN count(n) AS c")[0]["c"]
        if taken:
            raise UserError(f"{taken} :{s.label} nodes already have properties {s.id_prop}/{s.x_prop} that no "
                            f"registration named {spec.name!r} owns; choose another --name")
        _create_record(client, spec, facts)
    elif (int(existing.get("num_features") or 0), list(existing.get("class_values") or [])) != (
            facts.num_features, list(facts.classes)):
        raise UserError(f"the features or classes of :{s.label} changed since the registration of {spec.name!r} "
                        "started; start it over with --reset")
    create_id_constraint(client, s)
    t = time.perf_counter()
    report.written["ids"], targets = write.assign_ids(client, spec, config)
    report.phases["ids"] = time.perf_counter() - t
    n = len(targets)
    y = write.class_indices(targets, facts.classes)
    codes = write.random_split_codes(y, spec) if spec.random_split is not None else None
    done = done_batches(client, spec.name)
    t = time.perf_counter()
    facts.num_nodes = n  # the nodes that got ids (the same as checked unless nodes came or went meanwhile)
    report.written["rows"], stats = write.write_rows(client, write.RowJob.of(spec, facts), y, codes,
                                                           done.get("rows", set()), config)
    report.phases["rows"] = time.perf_counter() - t
    t = time.perf_counter()
    report.written["adjacency"] = write.write_adjacency(client, spec, n, done.get("adjacency", set()), config)
    report.phases["adjacency"] = time.perf_counter() - t
    if stats is None:
        stats = write.read_stats(client, s, n, facts.num_features)
    report.edges = _verify(client, spec, n)
    report.nodes, report.num_features, report.num_classes = n, facts.num_features, len(facts.classes)
    report.seconds = time.perf_counter() - t0
    client.write(
        f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) SET d.complete = true, d.adjacency = $adj, d.num_nodes = $n, "
        "d.num_edges = $e, d.feature_stats = $stats, d.load_seconds = $seconds, d.loaded_at = $now",
        name=spec.name, adj=s.adj_prop, n=n, e=report.edges, stats=stats.to_bytes(), seconds=report.seconds,
        now=time.time())
    return report


def _refuse_other(record: dict[str, Any], spec: RegisterSpec, allow_other_request: bool = False) -> None:
    """A name that holds a loaded dataset, or another registration request, is not overwritten."""
    if record.get("hetero"):
        raise UserError(f"the name {spec.name!r} already holds a heterogeneous dataset "
                        f"(`{record.get('register_command') or record.get('source')}`); choose another --name")
    if record.get("method") != METHOD:
        raise UserError(f"the name {spec.name!r} already holds dataset {record.get('name')!r} loaded by the loader "
                        f"(source {record.get('source')}, label {record.get('label')}); choose another --name")
    if not allow_other_request and record.get("fingerprint") != spec.fingerprint:
        raise UserError(f"the name {spec.name!r} already holds another registration (label {record.get('label')}, "
                        f"type {record.get('rel_type')}: `{record.get('register_command')}`); choose another --name, "
                        "or pass --reset to replace it")


def _create_record(client: Neo4jClient, spec: RegisterSpec, facts: GraphFacts) -> None:
    props = {**spec.record_properties(), "num_nodes": facts.num_nodes, "num_edges": 0,
             "num_features": facts.num_features, "num_classes": len(facts.classes), "class_values": facts.classes,
             "feature_kind": facts.feature_kind, "feature_encoding": DENSE, "complete": False,
             "started_at": time.time()}
    client.write(f"MERGE (d:`{DATASET_LABEL}` {{name: $name}}) ON CREATE SET d += $props", name=spec.name, props=props)


def _verify(client: Neo4jClient, spec: RegisterSpec, n: int) -> int:
    """Every node has all registration properties; returns the number of sampled edges (sum of degrees)."""
    s = spec.schema
    rec = client.read(
        f"MATCH (n:`{s.label}`) RETURN count(n) AS nodes, count(n.`{s.id_prop}`) AS ids, count(n.`{s.x_prop}`) AS xs, "
        f"count(n.`{s.adj_prop}`) AS adj, sum(size(n.`{s.adj_prop}`)) / 8 AS edges")[0]
    if not rec["nodes"] == rec["ids"] == rec["xs"] == rec["adj"] == n:
        raise UserError(f"registration of {spec.name!r} is incomplete ({rec['nodes']} :{s.label} nodes, {rec['ids']} with "
                        f"ids, {rec['xs']} with rows, {rec['adj']} with adjacency, {n} expected); nodes changed while "
                        "it ran: run it again, or start over with --reset")
    return int(rec["edges"] or 0)


def unregister(client: Neo4jClient, record: dict[str, Any]) -> None:
    """Remove a registration: its namespaced properties, constraint, batch markers and record; user data stays."""
    rec = DatasetRecord.from_properties(record)
    s = rec.schema
    # removing: the plugin (LiveRows) stops re-deriving the rows from edits while they are removed
    client.write(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) SET d.complete = false, d.removing = true", name=rec.name)
    props = ", ".join(f"n.`{p}`" for p in (s.id_prop, s.x_prop, s.y_prop, s.split_prop, s.adj_prop))
    client.run_autocommit(f"MATCH (n:`{s.label}`) WHERE n.`{s.id_prop}` IS NOT NULL OR n.`{s.x_prop}` IS NOT NULL "
                          f"CALL (n) {{ REMOVE {props} }} IN TRANSACTIONS OF {RESET_TX_ROWS} ROWS")
    client.write(f"DROP CONSTRAINT `{s.constraint_name}` IF EXISTS")
    client.run_autocommit(f"MATCH (b:`{BATCH_LABEL}` {{dataset: $name}}) CALL (b) {{ DELETE b }} "
                          f"IN TRANSACTIONS OF {RESET_TX_ROWS} ROWS", name=rec.name)
    client.write(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) DELETE d", name=rec.name)
