"""A :class:`~src.data.hetero.HeteroGraphDataset` in a Ladybug file: a node table per type, a rel table per edge type.

Storage model (the names Neo4j gives a heterogeneous dataset, src/neo4jdb/hetero/schema.py):

* node type ``t`` of dataset ``d``: table ``<d>_<t>(id INT64 PRIMARY KEY[, x BLOB][, y INT64, split STRING])``,
  ids dense per type, ``x`` the float32-le row on featured types, ``y``/``split`` on labelled ones;
* relationship ``r`` from ``s`` to ``t``: rel table ``<d>_<r>(FROM <d>_<s> TO <d>_<t>)``;
* one row of ``GnnHeteroDataset`` per dataset: fingerprint, completeness, the types as JSON (the
  homogeneous ``GnnDataset`` table has fixed columns and stays untouched).

Why a load is not resumed batch by batch as the homogeneous one is: a hetero load writes many tables,
so an interrupted one (record not complete) is dropped and loaded again; a complete one with the same
fingerprint is a no-op, another graph under the same name is refused unless ``reset``.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from src.core.codecs import encode_features
from src.core.errors import UsageError, UserError
from src.core.hetero_fanouts import EdgeType
from src.core.schema import default_label
from src.data.hetero import HeteroGraphDataset
from src.data.loading import SPLIT_NAMES, LoadConfig, LoadReport
from src.ladybugdb.client import LOAD_HINT, LadybugClient

log = logging.getLogger(__name__)

RECORD_TABLE = "GnnHeteroDataset"
RECORD_COLUMNS = ("name STRING PRIMARY KEY, fingerprint STRING, complete BOOLEAN, node_types STRING, "
                  "rel_types STRING, target_type STRING, num_classes INT64, num_nodes INT64, num_edges INT64, "
                  "load_seconds DOUBLE")
NODE_BATCH_BYTES = 32 << 20
EDGE_BATCH = 1_000_000
NEIGHBOUR_CHECKS = 16


@dataclass(frozen=True)
class LadybugHeteroSpec:
    """A hetero dataset's types (as :meth:`HeteroGraphDataset.describe` gives them) and its table names."""

    dataset: str
    nodes: tuple[dict[str, Any], ...]  # name, num_nodes, num_features, labelled
    rels: tuple[dict[str, Any], ...]  # src, rel, dst, num_edges
    target_type: str
    num_classes: int

    @classmethod
    def of(cls, ds: HeteroGraphDataset) -> LadybugHeteroSpec:
        nodes, rels = ds.describe()
        return cls(ds.name, tuple(nodes), tuple(rels), ds.target_type, ds.num_classes)

    def label(self, node_type: str) -> str:
        return f"{default_label(self.dataset)}_{node_type}"

    def rel_table(self, edge_type: EdgeType) -> str:
        return f"{default_label(self.dataset)}_{edge_type[1]}"

    @property
    def edge_types(self) -> list[EdgeType]:
        return [(r["src"], r["rel"], r["dst"]) for r in self.rels]

    def node(self, node_type: str) -> dict[str, Any]:
        return next(n for n in self.nodes if n["name"] == node_type)

    def tables(self) -> list[str]:
        return [self.rel_table(e) for e in self.edge_types] + [self.label(n["name"]) for n in self.nodes]


def hetero_record(client: LadybugClient, name: str) -> dict[str, Any] | None:
    if RECORD_TABLE not in client.tables():
        return None
    rows = client.read(f"MATCH (d:`{RECORD_TABLE}`) WHERE d.name = $name RETURN d.*", name=name)
    return {k.removeprefix("d."): v for k, v in rows[0].items()} if rows else None


def require_hetero(client: LadybugClient, name: str) -> LadybugHeteroSpec:
    """The complete hetero dataset ``name`` in this file, or one line saying how to load it."""
    rec = hetero_record(client, name)
    if rec is None or not rec["complete"]:
        state = "is not loaded" if rec is None else "was not loaded completely"
        raise UserError(f"heterogeneous dataset {name!r} {state} in the Ladybug database {client.path}; load it with "
                        f"`{LOAD_HINT} --dataset {name} --ladybug_path {client.path}`")
    return spec_of_record(name, rec)


def spec_of_record(name: str, rec: dict[str, Any]) -> LadybugHeteroSpec:
    return LadybugHeteroSpec(name, tuple(json.loads(rec["node_types"])), tuple(json.loads(rec["rel_types"])),
                             rec["target_type"], int(rec["num_classes"]))


def ensure_hetero_loaded(client: LadybugClient, ds: HeteroGraphDataset, config: LoadConfig | None = None
                         ) -> LoadReport:
    """Make ``ds`` present and complete in the (read-write) Ladybug file of ``client``."""
    t0 = time.perf_counter()
    config = config or LoadConfig()
    if config.feature_format not in ("auto", "dense"):
        raise UsageError(f"--feature_format {config.feature_format} applies to homogeneous Neo4j graphs only; "
                         "Ladybug stores dense float32 rows")
    spec, fingerprint = LadybugHeteroSpec.of(ds), ds.fingerprint()
    client.execute(f"CREATE NODE TABLE IF NOT EXISTS `{RECORD_TABLE}`({RECORD_COLUMNS})")
    rec = hetero_record(client, ds.name)
    report = LoadReport(ds.name, ",".join(spec.label(n["name"]) for n in spec.nodes),
                        ",".join(spec.rel_table(e) for e in spec.edge_types), "loaded", "copy", ds.num_nodes,
                        ds.num_edges)
    if rec is not None and rec["fingerprint"] != fingerprint and not config.reset:
        raise UserError(f"the Ladybug database {client.path} already holds a different dataset named {ds.name!r}; "
                        "pass --reset to replace it")
    if rec is not None and rec["complete"] and not config.reset:
        report.status, report.method = "already loaded", "none"
        return report
    if rec is not None:  # interrupted, or --reset: start again
        drop_hetero(client, spec_of_record(ds.name, rec))
        report.status = "reloaded" if config.reset else "resumed (from the start)"
    foreign = [t for t in spec.tables() if t in client.tables()]
    if foreign:
        raise UserError(f"{client.path} already has tables {', '.join(foreign)} without a dataset record; "
                        "reload with --reset to replace them")
    client.execute(f"CREATE (:`{RECORD_TABLE}` {{name: $name, fingerprint: $fp, complete: false, node_types: $nodes, "
                   "rel_types: $rels, target_type: $target, num_classes: $c, num_nodes: $n, num_edges: $e})",
                   name=ds.name, fp=fingerprint, nodes=json.dumps(spec.nodes), rels=json.dumps(spec.rels),
                   target=ds.target_type, c=ds.num_classes, n=ds.num_nodes, e=ds.num_edges)
    for t, d in ds.node_types.items():
        cols = ["id INT64 PRIMARY KEY"] + (["x BLOB"] if d.x is not None else [])
        cols += ["y INT64", "split STRING"] if d.y is not None else []
        client.execute(f"CREATE NODE TABLE `{spec.label(t)}`({', '.join(cols)})")
        report.nodes_written += _write_nodes(client, spec.label(t), d)
    for e, ei in ds.edges.items():
        client.execute(f"CREATE REL TABLE `{spec.rel_table(e)}`(FROM `{spec.label(e[0])}` TO `{spec.label(e[2])}`)")
        for lo in range(0, ei.shape[1], EDGE_BATCH):
            chunk = np.asarray(ei[:, lo:lo + EDGE_BATCH], dtype=np.int64)
            client.execute(f"COPY `{spec.rel_table(e)}` FROM $edges", edges=pd.DataFrame({"from": chunk[0], "to": chunk[1]}))
        report.relationships_written += int(ei.shape[1])
    problems = verify_hetero(client, ds, spec)
    if problems:
        raise UserError(f"dataset {ds.name!r} in Ladybug does not match its source: {'; '.join(problems)}; "
                        "reload it with --reset")
    report.seconds = time.perf_counter() - t0
    client.execute(f"MATCH (d:`{RECORD_TABLE}`) WHERE d.name = $name SET d.complete = true, d.load_seconds = $s",
                   name=ds.name, s=report.seconds)
    return report


def _write_nodes(client: LadybugClient, label: str, d: Any) -> int:
    """Nodes in id order, one ``UNWIND ... CREATE`` per batch of about ``NODE_BATCH_BYTES`` of rows."""
    props = ["id: r.id"] + (["x: r.x"] if d.x is not None else []) + (["y: r.y", "split: r.split"] if d.y is not None else [])
    query = f"UNWIND $rows AS r CREATE (:`{label}` {{{', '.join(props)}}})"
    codes = d.split_codes() if d.y is not None else None
    step = max(1, NODE_BATCH_BYTES // max(4 * d.num_features, 64))
    for lo in range(0, d.num_nodes, step):
        hi = min(lo + step, d.num_nodes)
        rows: list[dict[str, Any]] = [{"id": i} for i in range(lo, hi)]
        if d.x is not None:
            for row, x in zip(rows, encode_features(np.asarray(d.x[lo:hi], dtype=np.float32))):
                row["x"] = x
        if d.y is not None:
            for row, y, sp in zip(rows, np.asarray(d.y[lo:hi]).tolist(), SPLIT_NAMES[codes[lo:hi]].tolist()):
                row["y"], row["split"] = y, sp
        client.execute(query, rows=rows)
    return d.num_nodes


def verify_hetero(client: LadybugClient, ds: HeteroGraphDataset, spec: LadybugHeteroSpec) -> list[str]:
    """Counts per table, and the in-neighbours of a few nodes per relationship type, against the source."""
    problems = []
    for t, d in ds.node_types.items():
        n = client.count_nodes(spec.label(t))
        if n != d.num_nodes:
            problems.append(f"{n} {spec.label(t)} nodes, expected {d.num_nodes}")
    rng = np.random.default_rng()
    for e, ei in ds.edges.items():
        n = client.count_relationships(spec.rel_table(e))
        if n != ei.shape[1]:
            problems.append(f"{n} {spec.rel_table(e)} relationships, expected {ei.shape[1]}")
        nodes = np.unique(rng.integers(0, ds.node_types[e[2]].num_nodes, NEIGHBOUR_CHECKS))
        rows = client.execute(f"MATCH (u:`{spec.label(e[0])}`)-[:`{spec.rel_table(e)}`]->(v:`{spec.label(e[2])}`) "
                              "WHERE v.id IN $ids RETURN v.id, u.id", ids=nodes.tolist())
        keep = np.isin(ei[1], nodes)
        if sorted(map(tuple, rows)) != sorted(zip(ei[1][keep].tolist(), ei[0][keep].tolist())):
            problems.append(f"the {e[1]} neighbours of sampled {e[2]} nodes differ from the source")
    return problems


def drop_hetero(client: LadybugClient, spec: LadybugHeteroSpec) -> None:
    """The dataset's tables (relationships first) and its record."""
    tables = client.tables()
    for table in spec.tables():
        if table in tables:
            client.execute(f"DROP TABLE `{table}`")
    client.execute(f"MATCH (d:`{RECORD_TABLE}`) WHERE d.name = $name DELETE d", name=spec.dataset)
