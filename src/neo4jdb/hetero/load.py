"""A :class:`~src.data.hetero.HeteroGraphDataset` into Neo4j: UNWIND batches per node and relationship type.

Why the homogeneous loader's machinery: the same exactly-once batches with markers
(:func:`~src.neo4jdb.load.unwind.run_batches`, kinds ``nodes:<type>`` / ``rels:<rel>``), so a killed
load resumes; the record (``hetero: true``) is created first and marked complete only after the
counts per label and relationship type, and a sample of rows and adjacency, matched the source.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from src.client import Neo4jClient
from src.core.codecs import DENSE, encode_rows, split_rows
from src.core.errors import UserError
from src.core.schema import DATASET_LABEL
from src.data.hetero import HeteroGraphDataset
from src.data.loading import SPLIT_NAMES, LoadConfig, LoadReport
from src.neo4jdb.hetero.schema import HeteroSchema, hetero_record
from src.neo4jdb.load.records import BATCH_LABEL, _create_constraint, create_bookkeeping_constraints
from src.neo4jdb.load.unwind import done_batches, run_batches

log = logging.getLogger(__name__)

NODE_BATCH = 10_000
EDGE_BATCH = 50_000


def ensure_hetero_loaded(client: Neo4jClient, ds: HeteroGraphDataset, config: LoadConfig | None = None
                         ) -> LoadReport:
    """Make ``ds`` present and complete (a no-op when it is, resumed when interrupted, refused when the
    name holds another graph unless ``config.reset``)."""
    t0 = time.perf_counter()
    config = config or LoadConfig()
    schema = HeteroSchema.for_dataset(ds)
    create_bookkeeping_constraints(client)
    fingerprint = ds.fingerprint()
    props = hetero_record(client, schema.dataset)
    if props is not None and (props.get("fingerprint") != fingerprint or config.reset):
        if not config.reset:
            raise UserError(f"Neo4j already holds a different dataset named {schema.dataset!r} (fingerprint "
                            f"{props.get('fingerprint')}); pass --reset to delete it first")
        delete_hetero(client, schema.dataset)
        props = None
    report = LoadReport(schema.dataset, ",".join(t.label for t in schema.node_types),
                        ",".join(r.rel_type for r in schema.rel_types), "loaded", "unwind", ds.num_nodes, ds.num_edges)
    if props is not None and props.get("complete"):
        report.status, report.method = "already loaded", "none"
        return report
    if props is None:
        client.write(f"CREATE (d:`{DATASET_LABEL}` {{name: $name}}) SET d += $props", name=schema.dataset,
                     props={**schema.record_properties(), "fingerprint": fingerprint, "complete": False,
                            "source": ds.meta.get("source", ds.name), "started_at": time.time(), "method": "unwind"})
    else:
        report.status = "resumed"
    done = done_batches(client, schema.dataset)
    for t in schema.node_types:
        _create_constraint(client, f"{t.label}_{schema.id_prop}_unique", t.label, (schema.id_prop,))
    client.write("CALL db.awaitIndexes(3600)")
    for t in schema.node_types:
        query, params = _node_writer(ds, schema, t.name)
        report.nodes_written += run_batches(client, schema.dataset, f"nodes:{t.name}", t.num_nodes, NODE_BATCH,
                                            done.get(f"nodes:{t.name}", set()), query, params, config)
    for r in schema.rel_types:
        query, params = _edge_writer(ds, schema, r.edge_type)
        report.relationships_written += run_batches(client, schema.dataset, f"rels:{r.rel}", r.num_edges, EDGE_BATCH,
                                                    done.get(f"rels:{r.rel}", set()), query, params, config)
    problems = verify_hetero(client, ds, schema)
    if problems:
        raise UserError(f"dataset {schema.dataset!r} in Neo4j does not match its source: {'; '.join(problems)}; "
                        "reload it with --reset")
    report.seconds = time.perf_counter() - t0
    client.write(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) SET d.complete = true, d.load_seconds = $s",
                 name=schema.dataset, s=report.seconds)
    return report


def _node_writer(ds: HeteroGraphDataset, s: HeteroSchema, node_type: str):
    spec, data = s.node(node_type), ds.node_types[node_type]
    sets = [f"n.`{s.x_prop}` = r.x"] if data.x is not None else []
    if data.y is not None:
        sets += [f"n.`{s.y_prop}` = r.y", f"n.`{s.split_prop}` = r.split"]
    query = (f"UNWIND $rows AS r CREATE (n:`{spec.label}` {{`{s.id_prop}`: r.id}})"
             + (f" SET {', '.join(sets)}" if sets else ""))
    codes = data.split_codes() if data.y is not None else None

    def params(lo: int, hi: int) -> dict[str, Any]:
        rows: list[dict[str, Any]] = [{"id": i} for i in range(lo, hi)]
        if data.x is not None:
            for row, x in zip(rows, split_rows(*encode_rows(np.asarray(data.x[lo:hi], dtype=np.float32), DENSE))):
                row["x"] = x
        if data.y is not None:
            for row, y, sp in zip(rows, np.asarray(data.y[lo:hi]).tolist(), SPLIT_NAMES[codes[lo:hi]].tolist()):
                row["y"], row["split"] = y, sp
        return {"rows": rows}

    return query, params


def _edge_writer(ds: HeteroGraphDataset, s: HeteroSchema, edge_type: tuple[str, str, str]):
    r = s.rel(edge_type)
    src, dst = s.node(r.src), s.node(r.dst)
    ei = ds.edges[edge_type]
    query = (f"UNWIND $groups AS g MATCH (a:`{src.label}` {{`{s.id_prop}`: g.s}}) UNWIND g.d AS d "
             f"MATCH (b:`{dst.label}` {{`{s.id_prop}`: d}}) CREATE (a)-[:`{r.rel_type}`]->(b)")

    def params(lo: int, hi: int) -> dict[str, Any]:
        a, b = np.asarray(ei[0, lo:hi]), np.asarray(ei[1, lo:hi])
        order = np.argsort(a, kind="stable")
        a, b = a[order], b[order]
        starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
        return {"groups": [{"s": u, "d": d.tolist()} for u, d in zip(a[starts].tolist(), np.split(b, starts[1:]))]}

    return query, params


def verify_hetero(client: Neo4jClient, ds: HeteroGraphDataset, s: HeteroSchema) -> list[str]:
    """Counts per label and relationship type (endpoint labels included) against the source."""
    problems = []
    for t in s.node_types:
        n = client.count_nodes(t.label)
        if n != t.num_nodes:
            problems.append(f"{n} :{t.label} nodes, expected {t.num_nodes}")
    for r in s.rel_types:
        src, dst = s.node(r.src).label, s.node(r.dst).label
        n = client.read(f"MATCH (:`{src}`)-[e:`{r.rel_type}`]->(:`{dst}`) RETURN count(e) AS c")[0]["c"]
        if n != r.num_edges:
            problems.append(f"{n} :{r.rel_type} relationships from :{src} to :{dst}, expected {r.num_edges}")
    return problems


def delete_hetero(client: Neo4jClient, name: str) -> None:
    """Delete a hetero dataset: its relationships, nodes, batch markers and record."""
    props = hetero_record(client, name)
    if props is None:
        return
    if props.get("method") == "register":  # the user's own graph: never deleted, only unregistered
        raise UserError(f"dataset {name!r} is a graph registered in place (`{props.get('register_command')}`); "
                        "remove its registration with loaders/register_graph.py --name NAME --reset, not the loader")
    schema = HeteroSchema.from_record(props)
    client.write(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) SET d.complete = false", name=name)
    for r in schema.rel_types:
        client.run_autocommit(f"MATCH ()-[e:`{r.rel_type}`]->() CALL (e) {{ DELETE e }} IN TRANSACTIONS OF 10000 ROWS")
    for t in schema.node_types:
        client.run_autocommit(f"MATCH (n:`{t.label}`) CALL (n) {{ DETACH DELETE n }} IN TRANSACTIONS OF 10000 ROWS")
    client.run_autocommit(f"MATCH (b:`{BATCH_LABEL}` {{dataset: $name}}) CALL (b) {{ DELETE b }} "
                          "IN TRANSACTIONS OF 10000 ROWS", name=name)
    client.write(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) DELETE d", name=name)
