"""``refresh``: nodes of a registered label created since the registration join the dataset, at a
cost proportional to them (``register_graph.py --name N --refresh``).

Why not on commit, as edits of existing nodes are: a new node is part of the dataset only once it
has a dense id, and ids must stay 0..N-1 in one order every reader agrees on; the plugin sees a
transaction, not the set of nodes still waiting. So the refresh gives the nodes without an id the
next ids in the store's node order, their packed row, class index and split (from the user's own
properties, by the registration's rules; a random split draws each new labelled node's split from
the fractions, seeded by ``--seed`` and its id), rewrites the adjacency of the new nodes and of the
nodes they are neighbours of, and moves ``num_nodes``/``num_edges`` on the record, all in one
transaction per chunk of new nodes: a killed refresh keeps whole chunks and a re-run finishes the
rest. Everything is checked first (read-only): a bad value anywhere is one line and nothing written.
A run that started before the refresh stops with one line (its node count changed); --resume continues.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import neo4j
import numpy as np
from tqdm import tqdm

from src.client import Neo4jClient
from src.core.errors import UserError
from src.core.record import DatasetRecord
from src.core.schema import DATASET_LABEL
from src.neo4jdb.register.spec import SPLIT_VALUES, RegisterSpec
from src.neo4jdb.register.write import _internal_order

log = logging.getLogger(__name__)


@dataclass
class RefreshReport:
    name: str
    added: int
    rewritten: int  # adjacency lists written (new nodes and the nodes they are neighbours of)
    num_nodes: int
    num_edges: int
    seconds: float

    def summary(self) -> str:
        if not self.added:
            return f"{self.name}: refreshed, no new nodes: nothing to do ({self.num_nodes} nodes)"
        return (f"{self.name}: refreshed in {self.seconds:.1f} s: {self.added} new nodes, {self.rewritten} adjacency "
                f"lists rewritten; now {self.num_nodes} nodes, {self.num_edges} sampled edges")


class _Rows:
    """The registration's rules for the rows of new nodes (the same as write.py's, per node)."""

    def __init__(self, spec: RegisterSpec, record: dict[str, Any]) -> None:
        self.spec, self.s = spec, spec.schema
        self.kind = str(record.get("feature_kind") or "list")
        self.width = int(record["num_features"])
        self.classes = {c: k for k, c in enumerate(record.get("class_values") or [])}
        self.read_x = ("[" + ", ".join(f"n.`{p}`" for p in spec.features) + "]" if self.kind == "scalars"
                       else f"n.`{spec.features[0]}`")
        split = f"n.`{spec.split_prop}`" if spec.split_prop else "null"
        self.read = (f"UNWIND $eids AS e MATCH (n:`{self.s.label}`) WHERE elementId(n) = e AND n.`{self.s.id_prop}` IS NULL "
                     f"RETURN elementId(n) AS e, {self.read_x} AS x, n.`{spec.target}` AS t, {split} AS s")

    def fail(self, what: str, count: int, example: Any, fix: str) -> UserError:
        return UserError(f"{count} new :{self.s.label} nodes {what} (e.g. {example!r}); {fix}, then run --refresh "
                         "again (nothing was written)")

    def build(self, recs: list[Any], first_id: int) -> list[dict[str, Any]]:
        """Rows for ``recs`` (ids ``first_id``...); a :class:`UserError` names the first kind of bad value."""
        by_eid = {r["e"]: r for r in recs}
        rows, bad = [], {}
        for k, (e, r) in enumerate(by_eid.items()):
            x, problem = self._features(r["x"])
            if problem:
                bad.setdefault(problem, []).append(r["x"])
            t = r["t"]
            y = -1 if t is None else self.classes.get(t)
            if t is None and self.spec.missing_target == "error":
                bad.setdefault("lack the target", []).append(e)
            elif y is None:
                bad.setdefault("have a class outside the registered vocabulary", []).append(t)
                y = -1
            split = self._split(r["s"], first_id + k, bad) if y >= 0 else None
            rows.append({"e": e, "i": first_id + k, "x": x, "y": y, "split": split})
        fixes = {"lack the target": "set it, or register with --missing_target unlabelled (--reset)",
                 "have a class outside the registered vocabulary":
                     f"use one of {sorted(self.classes)[:10]}, or register again with --reset to add the class",
                 "lack features": "set them, or register with --missing_features zero (--reset)",
                 "have a split value other than train/val/test": "fix the values, or remove them (no split)"}
        for problem, examples in bad.items():
            raise self.fail(problem, len(examples), examples[0],
                            fixes.get(problem, f"give every node {self.width} finite numbers"))
        return rows

    def _features(self, v: Any) -> tuple[bytes | None, str | None]:
        if v is None or (self.kind == "scalars" and None in v):
            if self.spec.missing_features == "error":
                return None, "lack features"
            return np.zeros(self.width, "<f4").tobytes(), None
        if self.kind == "bytes":
            if not isinstance(v, (bytes, bytearray)) or len(v) != 4 * self.width:
                return None, f"have feature bytes that are not {self.width} float32 values"
            x = np.frombuffer(bytes(v), "<f4")
        else:
            if not isinstance(v, list) or len(v) != self.width or not all(
                    isinstance(e, (int, float)) and not isinstance(e, bool) for e in v):
                return None, f"have features that are not {self.width} numbers"
            x = np.asarray(v, dtype=np.float32)
        if not np.isfinite(x).all():
            return None, "have NaN or infinite features"
        return x.astype("<f4").tobytes(), None

    def _split(self, v: Any, dense_id: int, bad: dict[str, list]) -> str | None:
        spec = self.spec
        if spec.random_split is None:
            if v is None:
                return None
            key = SPLIT_VALUES.get(v.lower()) if isinstance(v, str) else None
            if key is None:
                bad.setdefault("have a split value other than train/val/test", []).append(v)
            return key
        f = spec.random_split
        u = float(np.random.default_rng([spec.seed, dense_id]).random())
        return "train" if u < f.train else "val" if u < f.train + f.val else "test" if u < f.train + f.val + f.test else None


def refresh(client: Neo4jClient, spec: RegisterSpec, record: dict[str, Any], *, batch_nodes: int = 2_000,
            progress: bool = True) -> RefreshReport:
    """Add the nodes of ``spec.label`` without a dense id to the registered dataset ``record``."""
    t0 = time.perf_counter()
    s, rules = spec.schema, _Rows(spec, record)
    eids = [r["e"] for r in client.read(f"MATCH (n:`{s.label}`) WHERE n.`{s.id_prop}` IS NULL RETURN elementId(n) AS e")]
    eids = [eids[k] for k in _internal_order(eids)]
    first = int(record["num_nodes"])
    for lo in range(0, len(eids), batch_nodes):  # every check first: nothing is written on bad input
        rules.build(client.read(rules.read, eids=eids[lo:lo + batch_nodes]), first + lo)
    rewritten = 0
    with tqdm(total=len(eids), unit="node", desc=f"{spec.name} refresh", disable=not progress) as bar:
        for lo in range(0, len(eids), batch_nodes):
            chunk = eids[lo:lo + batch_nodes]
            added, lists = client.write_tx(lambda tx: _chunk(tx, spec, rules, chunk))
            rewritten += lists
            bar.update(added)
    now = DatasetRecord.from_properties(client.read(f"MATCH (d:`{DATASET_LABEL}` {{name: $n}}) RETURN properties(d) AS p",
                                                    n=spec.name)[0]["p"])
    return RefreshReport(spec.name, now.num_nodes - first, rewritten, now.num_nodes, now.num_edges,
                         time.perf_counter() - t0)


def _chunk(tx: neo4j.ManagedTransaction, spec: RegisterSpec, rules: _Rows, chunk: list[str]) -> tuple[int, int]:
    """One transaction: ids, rows, adjacency of the chunk and of the nodes it is a neighbour of, the record."""
    s = spec.schema
    first = tx.run(f"MATCH (d:`{DATASET_LABEL}` {{name: $n}}) SET d.refreshing = true RETURN d.num_nodes AS n",
                   n=spec.name).single()["n"]  # locks the record: refreshes run one chunk at a time
    rows = rules.build(list(tx.run(rules.read, eids=chunk)), int(first))
    if not rows:
        return 0, 0
    tx.run(f"UNWIND $rows AS r MATCH (n) WHERE elementId(n) = r.e SET n.`{s.id_prop}` = r.i, n.`{s.x_prop}` = r.x, "
           f"n.`{s.y_prop}` = r.y, n.`{s.split_prop}` = r.split", rows=rows).consume()
    owners = f"""UNWIND $eids AS e MATCH (n) WHERE elementId(n) = e
        OPTIONAL MATCH {s.neighbour_of('n', f'o:`{s.label}`')} WHERE o.`{s.id_prop}` IS NOT NULL
        WITH collect(DISTINCT n) + collect(DISTINCT o) AS os UNWIND os AS o WITH DISTINCT o
        SET o.`{s.adj_prop}` = o.`{s.adj_prop}`
        RETURN o.`{s.id_prop}` AS i, coalesce(size(o.`{s.adj_prop}`), 0) / 8 AS old,
               [{s.neighbours_of('o', f'm:`{s.label}`')} WHERE m.`{s.id_prop}` IS NOT NULL | m.`{s.id_prop}`] AS nb"""
    lists = list(tx.run(owners, eids=[r["e"] for r in rows]))  # SET first: the owners are locked, then read
    tx.run(f"UNWIND $rows AS r MATCH (o:`{s.label}` {{`{s.id_prop}`: r.i}}) SET o.`{s.adj_prop}` = r.nb",
           rows=[{"i": r["i"], "nb": np.asarray(r["nb"], "<i8").tobytes()} for r in lists]).consume()
    delta = sum(len(r["nb"]) - int(r["old"]) for r in lists)
    tx.run(f"MATCH (d:`{DATASET_LABEL}` {{name: $n}}) SET d.num_nodes = $nodes, d.num_edges = d.num_edges + $delta, "
           "d.refreshed_at = $now REMOVE d.refreshing", n=spec.name, nodes=int(first) + len(rows), delta=delta,
           now=time.time()).consume()
    return len(rows), len(lists)


def check_refreshable(record: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """The record of a complete registration named ``name``, else one line saying what to do."""
    if record is None:
        raise UserError(f"no dataset named {name!r} is registered: register it first (without --refresh)")
    if record.get("method") != "register":
        raise UserError(f"dataset {name!r} was loaded by the loader, not registered: nodes join it by loading it "
                        f"again (python loaders/load_into_neo4j.py --dataset {name} --reset)")
    if not record.get("complete"):
        raise UserError(f"the registration of {name!r} is unfinished: run `{record.get('register_command')}` to "
                        "finish it, then --refresh")
    return record

