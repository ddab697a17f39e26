"""``register_hetero``: several labels and relationship types already in Neo4j made a heterogeneous dataset.

Why in place, as the single-label registration (src/neo4jdb/register/run.py): the user's labels,
properties and relationships stay as they are; per label the registration adds dense ids
(``gnn_<name>_id``, 0..n-1 per label), packed float32 rows on the featured labels, class index and
split on the target label, and the ``(:GnnDataset {hetero: true})`` record the hetero backend
(src/neo4jdb/hetero/) reads; its samplers walk the user's relationships. Every check runs before
anything is written: the labels and types exist, no node carries two of the labels, every
relationship of a declared type goes between one of the label pairs declared for it, the features
and the target pass the homogeneous checks. A re-run resumes (per-label batch markers) or is a
no-op; --reset removes only the registration's own properties.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from src.client import Neo4jClient
from src.core.errors import UserError
from src.core.schema import DATASET_LABEL
from src.data.loading import LoadConfig
from src.neo4jdb.hetero.schema import HeteroSchema, NodeTypeSpec, RelTypeSpec
from src.neo4jdb.load.records import BATCH_LABEL, RESET_TX_ROWS, _create_constraint, create_bookkeeping_constraints
from src.neo4jdb.load.unwind import done_batches
from src.neo4jdb.register import write
from src.neo4jdb.register.hetero_spec import HeteroRegisterSpec
from src.neo4jdb.register.inspect import check_features, check_labels, check_rel_types, check_split, check_target
from src.neo4jdb.register.spec import METHOD

log = logging.getLogger(__name__)


@dataclass
class HeteroFacts:
    """What the checks found: nodes per label, (kind, width) per featured label, classes, edges per name."""

    num_nodes: dict[str, int]
    features: dict[str, tuple[str, int]]
    classes: list[Any]
    num_edges: dict[str, int]
    split_counts: dict[str, int] = field(default_factory=dict)


def inspect_hetero(client: Neo4jClient, spec: HeteroRegisterSpec) -> HeteroFacts:
    """Every read-only check of the request; a :class:`UserError` names the first problem found."""
    labels = [t.label for t in spec.node_types]
    check_labels(client, labels, "--node_types")
    check_rel_types(client, sorted({r.rel_type for r in spec.relationships}), "--relationships")
    counts = {label: client.count_nodes(label) for label in labels}
    for label in labels:
        others = [x for x in labels if x != label]
        if others:
            rec = client.read(f"MATCH (n:`{label}`) WHERE " + " OR ".join(f"n:`{x}`" for x in others)
                              + " RETURN count(n) AS c, head(collect(labels(n))) AS l")[0]
            if rec["c"]:
                both = [x for x in rec["l"] if x in labels]
                raise UserError(f"{rec['c']} nodes carry more than one of the --node_types labels (e.g. "
                                f"{':'.join([''] + both)}); a node must belong to one node type")
    features = {}
    for t in spec.node_types:
        if t.features:
            kind, width, _ = check_features(client, t.label, t.features, spec.missing_features, counts[t.label])
            features[t.label] = (kind, width)
    classes, _ = check_target(client, spec.target_type, spec.target, spec.missing_target)
    split_counts = check_split(client, spec.target_type, spec.split_prop) if spec.split_prop else {}
    check_endpoints(client, spec)
    edges = {r.name: int(client.read(f"MATCH (:`{r.src}`)-[e:`{r.rel_type}`]->(:`{r.dst}`) RETURN count(e) AS c")
                         [0]["c"]) for r in spec.relationships}
    return HeteroFacts(counts, features, classes, edges, split_counts)


def check_endpoints(client: Neo4jClient, spec: HeteroRegisterSpec) -> None:
    """Every relationship of each declared type goes between one of the label pairs declared for it."""
    for rel_type in dict.fromkeys(r.rel_type for r in spec.relationships):
        pairs = [(r.src, r.dst) for r in spec.relationships if r.rel_type == rel_type]
        ok = " OR ".join(f"(a:`{s}` AND b:`{d}`)" for s, d in pairs)
        rec = client.read(f"MATCH (a)-[e:`{rel_type}`]->(b) RETURN count(e) AS n, "
                          f"count(CASE WHEN NOT ({ok}) THEN e END) AS bad, "
                          f"head(collect(CASE WHEN NOT ({ok}) THEN [labels(a), labels(b)] END)) AS one")[0]
        if rec["bad"]:
            src, dst = (":".join([""] + sorted(x)) or "(no label)" for x in rec["one"])
            declared = ", ".join(f"{s}->{d}" for s, d in pairs)
            raise UserError(f"relationship type {rel_type}: {rec['bad']} of {rec['n']} relationships do not go "
                            f"between the declared labels ({declared}), e.g. from {src} to {dst}; declare that pair "
                            f"in --relationships (NAME={rel_type}:Src->Dst) or fix those relationships")


def hetero_schema(spec: HeteroRegisterSpec, facts: HeteroFacts) -> HeteroSchema:
    """The record's description: node type = label, edge type (Src, NAME, Dst), the namespaced names."""
    nodes = tuple(NodeTypeSpec(t.label, t.label, facts.num_nodes[t.label], facts.features.get(t.label, ("", 0))[1],
                               t.label == spec.target_type) for t in spec.node_types)
    rels = tuple(RelTypeSpec(r.src, r.name, r.dst, r.rel_type, facts.num_edges[r.name]) for r in spec.relationships)
    return HeteroSchema(spec.name, nodes, rels, spec.target_type, len(facts.classes), **spec.props)


def register_hetero(client: Neo4jClient, spec: HeteroRegisterSpec, config: LoadConfig, *,
                    reset: bool = False) -> str:
    """Register ``spec`` (resuming an unfinished registration of the same request); returns a summary line."""
    t0 = time.perf_counter()
    create_bookkeeping_constraints(client)
    existing = _record(client, spec.name)
    if existing is not None:
        _refuse_other(existing, spec, allow_other_request=reset)
        if reset:
            unregister_hetero(client, existing)
            existing = None
        elif existing.get("complete"):
            return f"{spec.name}: already registered ({_describe(HeteroSchema.from_record(existing))}); nothing to do"
    facts = inspect_hetero(client, spec)
    schema = hetero_schema(spec, facts)
    p = spec.props
    if existing is None:
        for t in spec.node_types:
            taken = client.read(f"MATCH (n:`{t.label}`) WHERE n.`{p['id_prop']}` IS NOT NULL RETURN count(n) AS c")[0]["c"]
            if taken:
                raise UserError(f"{taken} :{t.label} nodes already have property {p['id_prop']} that no registration "
                                f"named {spec.name!r} owns; choose another --name")
        client.write(f"MERGE (d:`{DATASET_LABEL}` {{name: $name}}) ON CREATE SET d += $props", name=spec.name,
                     props={**schema.record_properties(), **_request_properties(spec, facts), "complete": False,
                            "started_at": time.time()})
    elif list(existing.get("class_values") or []) != list(facts.classes) or existing.get("node_types") != \
            schema.record_properties()["node_types"]:
        raise UserError(f"the node types or classes changed since the registration of {spec.name!r} started; "
                        "start it over with --reset")
    done = done_batches(client, spec.name)
    written = {"ids": 0, "rows": 0}
    for t in spec.node_types:
        _create_constraint(client, f"{t.label}_{p['id_prop']}_unique", t.label, (p["id_prop"],))
        target = t.label == spec.target_type
        n_written, values = write.assign_dense_ids(client, spec.name, t.label, p["id_prop"],
                                                   spec.target if target else None, spec.batch_nodes, config)
        written["ids"] += n_written
        if not t.features and not target:
            continue
        y = write.class_indices(values, facts.classes) if target else None
        codes = write.random_split_codes(y, spec) if target and spec.random_split is not None else None
        kind, width = facts.features.get(t.label, ("", 0))
        job = write.RowJob(spec.name, t.label, p["id_prop"], p["x_prop"], p["y_prop"], p["split_prop"], t.features,
                           kind, width, len(values), spec.split_prop, spec.batch_nodes, labelled=target,
                           kind=f"rows:{t.label}")
        written["rows"] += write.write_rows(client, job, y, codes, done.get(job.kind, set()), config)[0]
    _verify(client, spec, schema)
    seconds = time.perf_counter() - t0
    client.write(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) SET d.complete = true, d.load_seconds = $s, "
                 "d.loaded_at = $now", name=spec.name, s=seconds, now=time.time())
    status = "resumed" if existing is not None else "registered"
    return (f"{spec.name}: {_describe(schema)}: {status} in {seconds:.1f} s (written this run: {written['ids']} ids, "
            f"{written['rows']} rows)")


def _describe(s: HeteroSchema) -> str:
    nodes = ", ".join(f"{t.num_nodes} :{t.label}" + (f" ({t.num_features} features)" if t.num_features else "")
                      for t in s.node_types)
    rels = ", ".join(f"{r.num_edges} {r.rel}" for r in s.rel_types)
    return f"{nodes}; {rels}; target {s.target_type}, {s.num_classes} classes"


def _request_properties(spec: HeteroRegisterSpec, facts: HeteroFacts) -> dict[str, Any]:
    return {"source": "neo4j", "method": METHOD, "fingerprint": spec.fingerprint, "class_values": facts.classes,
            "target_property": spec.target, "split_source": spec.split_text(),
            "missing_features": spec.missing_features, "missing_target": spec.missing_target,
            "feature_properties": [f"{t.label}:{'+'.join(t.features)}" for t in spec.node_types if t.features],
            "register_command": spec.command()}


def _record(client: Neo4jClient, name: str) -> dict[str, Any] | None:
    recs = client.read(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) RETURN properties(d) AS p", name=name)
    return dict(recs[0]["p"]) if recs else None


def _refuse_other(record: dict[str, Any], spec: HeteroRegisterSpec, allow_other_request: bool) -> None:
    if record.get("method") != METHOD or not record.get("hetero"):
        raise UserError(f"the name {spec.name!r} already holds another dataset (method {record.get('method')}, "
                        f"{'heterogeneous' if record.get('hetero') else 'label ' + str(record.get('label'))}); "
                        "choose another --name")
    if not allow_other_request and record.get("fingerprint") != spec.fingerprint:
        raise UserError(f"the name {spec.name!r} already holds another registration "
                        f"(`{record.get('register_command')}`); choose another --name, or pass --reset to replace it")


def _verify(client: Neo4jClient, spec: HeteroRegisterSpec, schema: HeteroSchema) -> None:
    """Every node of every label has its id (and its row where the type has features or labels)."""
    p = spec.props
    for t in schema.node_types:
        row = p["x_prop"] if t.num_features else p["y_prop"] if t.labelled else p["id_prop"]
        rec = client.read(f"MATCH (n:`{t.label}`) RETURN count(n) AS n, count(n.`{p['id_prop']}`) AS ids, "
                          f"count(n.`{row}`) AS rows, max(n.`{p['id_prop']}`) AS hi")[0]
        if not rec["n"] == rec["ids"] == rec["rows"] == t.num_nodes or (t.num_nodes and rec["hi"] != t.num_nodes - 1):
            raise UserError(f"registration of {spec.name!r} is incomplete ({rec['n']} :{t.label} nodes, {rec['ids']} "
                            f"with ids, {rec['rows']} with rows, {t.num_nodes} expected); nodes changed while it "
                            "ran: run it again, or start over with --reset")


def unregister_hetero(client: Neo4jClient, record: dict[str, Any]) -> None:
    """Remove a heterogeneous registration: its namespaced properties, constraints, markers and record."""
    s = HeteroSchema.from_record(record)
    client.write(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) SET d.complete = false, d.removing = true", name=s.dataset)
    props = ", ".join(f"n.`{q}`" for q in (s.id_prop, s.x_prop, s.y_prop, s.split_prop))
    for t in s.node_types:
        client.run_autocommit(f"MATCH (n:`{t.label}`) WHERE n.`{s.id_prop}` IS NOT NULL OR n.`{s.x_prop}` IS NOT NULL "
                              f"OR n.`{s.y_prop}` IS NOT NULL CALL (n) {{ REMOVE {props} }} "
                              f"IN TRANSACTIONS OF {RESET_TX_ROWS} ROWS")
        client.write(f"DROP CONSTRAINT `{t.label}_{s.id_prop}_unique` IF EXISTS")
    client.run_autocommit(f"MATCH (b:`{BATCH_LABEL}` {{dataset: $name}}) CALL (b) {{ DELETE b }} "
                          f"IN TRANSACTIONS OF {RESET_TX_ROWS} ROWS", name=s.dataset)
    client.write(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) DELETE d", name=s.dataset)
