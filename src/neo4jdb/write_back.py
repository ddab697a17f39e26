"""Predictions written back to the dataset's nodes in Neo4j: the --where selection and the writer.

Why batch markers: each chunk of predictions is one transaction that also creates its
``(:GnnLoadBatch {dataset: "predict:<run>", kind: <properties>, idx})`` marker, so a killed
write-back resumes without rewriting or skipping a node; a finished one (its
``(:GnnPrediction)`` job complete) or a changed request starts over and overwrites only the
named properties. The selection is the user's Cypher predicate, refused unless it is one:
no semicolon, no clause that writes or calls, and it runs read-only inside ``MATCH (n:L) WHERE``.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import neo4j
import numpy as np
from neo4j import exceptions as neo4j_exc

from src.client import Neo4jClient
from src.core.errors import UsageError, UserError, first_line
from src.core.record import DatasetRecord
from src.core.schema import GraphSchema, validate_identifier
from src.neo4jdb.load.records import BATCH_LABEL, RESET_TX_ROWS, create_bookkeeping_constraints
from src.train.predict import Prediction

log = logging.getLogger(__name__)

JOB_LABEL = "GnnPrediction"
_FORBIDDEN = re.compile(r"\b(CREATE|MERGE|SET|DELETE|DETACH|REMOVE|CALL|LOAD|FOREACH|USE|UNION|RETURN|WITH|"
                        r"UNWIND|FINISH|DROP|ALTER|GRANT|DENY|REVOKE|START|STOP|SHOW|TERMINATE)\b", re.IGNORECASE)
_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def cypher_text_problem(text: str, forbidden: re.Pattern[str]) -> tuple[str, str | None]:
    """``text`` with its string literals blanked, and what refuses it: ``"punctuation"`` (``;``, backticks,
    comments), the first ``forbidden`` keyword, or None. The one text check of Cypher given as a flag."""
    bare = _STRINGS.sub("''", text)
    if ";" in bare or "`" in bare or "//" in bare or "/*" in bare:
        return bare, "punctuation"
    bad = forbidden.search(bare)
    return bare, bad.group(1).upper() if bad else None


def check_predicate(where: str) -> str:
    """``where`` if it reads as a predicate over ``n`` (string literals aside), else a :class:`UsageError`."""
    bare, bad = cypher_text_problem(where, _FORBIDDEN)
    if bad == "punctuation":
        raise UsageError(f"--where {where!r}: a predicate cannot hold ';', backticks or comments; write e.g. "
                         "\"n.year >= 2000\"")
    if bad:
        raise UsageError(f"--where {where!r}: {bad} is not allowed in a predicate; write a "
                         "condition on n such as \"n.year >= 2000 AND n.category IS NULL\"")
    if not bare.strip():
        raise UsageError("--where is empty: omit it to predict every node")
    return where


def write_marked_chunk(client: Neo4jClient, marker: dict[str, Any], query: str, rows: list[dict[str, Any]],
                       what: str) -> None:
    """One chunk of a write-back and its ``GnnLoadBatch`` marker in one transaction; a chunk already marked is skipped.

    ``query`` takes ``$rows`` and returns ``c``, the rows it wrote; fewer means some of ``what``
    vanished meanwhile, and the transaction (marker included) rolls back with a one-line error.
    """
    marker = {**marker, "rows": len(rows)}

    def work(tx: neo4j.ManagedTransaction) -> None:
        if tx.run(f"MATCH (b:`{BATCH_LABEL}` {{dataset: $dataset, kind: $kind, idx: $idx}}) RETURN count(b) AS c",
                  marker).single()["c"]:
            return
        wrote = tx.run(query, rows=rows).single()["c"] if rows else 0
        if wrote != len(rows):
            raise UserError(f"{len(rows) - wrote} {what} vanished during the write-back; run predict.py again")
        tx.run(f"CREATE (:`{BATCH_LABEL}` {{dataset: $dataset, kind: $kind, idx: $idx, rows: $rows}})", marker).consume()

    client.write_tx(work)


@dataclass(frozen=True)
class WriteTarget:
    """The nodes predictions go to: a label and its dense id property; class values (empty: indices); the
    properties the dataset stores or was built from (never overwritten)."""

    name: str
    label: str
    id_prop: str
    classes: tuple[Any, ...]
    reserved: frozenset[str]

    @classmethod
    def of_record(cls, record: DatasetRecord) -> WriteTarget:
        s, props = record.schema, record.properties
        return cls(record.name, s.label, s.id_prop, tuple(props.get("class_values") or ()), frozenset(
            {s.id_prop, s.x_prop, s.y_prop, s.split_prop, s.adj_prop, *(props.get("feature_properties") or []),
             props.get("target_property"), props.get("split_source")} - {None}))

    @classmethod
    def of_hetero(cls, schema: Any, props: dict[str, Any]) -> WriteTarget:
        """The target type's nodes of a heterogeneous dataset (``schema``: its HeteroSchema, ``props``: its record)."""
        features = {f.split(":", 1)[1] for f in props.get("feature_properties") or []}
        return cls(schema.dataset, schema.node(schema.target_type).label, schema.id_prop,
                   tuple(props.get("class_values") or ()), frozenset(
                       {schema.id_prop, schema.x_prop, schema.y_prop, schema.split_prop, "id", "x", "y", "split",
                        *(p for f in features for p in f.split("+")), props.get("target_property"),
                        props.get("split_source")} - {None}))


def select_ids(client: Neo4jClient, schema: GraphSchema | WriteTarget, where: str | None) -> np.ndarray:
    """Sorted dense ids of the dataset's nodes that ``where`` selects (all without it), read-only."""
    s = schema
    cond = f"WHERE ({check_predicate(where)}) " if where else ""
    query = f"MATCH (n:`{s.label}`) {cond}RETURN n.`{s.id_prop}` AS id"
    try:
        ids = client.read_tx(lambda tx: [r[0] for r in tx.run(query)])
    except neo4j_exc.ClientError as exc:
        raise UsageError(f"--where {where!r} is not a valid predicate over n: {first_line(exc, 200)}") from None
    return np.sort(np.asarray([i for i in ids if i is not None], dtype=np.int64))


def check_properties(target: WriteTarget, names: dict[str, str | None]) -> dict[str, str]:
    """The properties to write, validated and not one the dataset stores or reads (ids, rows, sources)."""
    reserved = target.reserved
    out = {}
    for flag, prop in names.items():
        if prop is None:
            continue
        validate_identifier(prop, flag)
        if prop in reserved:
            raise UsageError(f"{flag} {prop!r} is a property the dataset {target.name!r} stores or was built from; "
                             "choose another name, e.g. predicted_class")
        out[flag] = prop
    if len(set(out.values())) != len(out):
        raise UsageError(f"the write properties must differ ({', '.join(f'{k} {v}' for k, v in out.items())})")
    return out


class Neo4jWriter:
    """Writes predictions as node properties of ``target``'s nodes in resumable marked chunks."""

    def __init__(self, client: Neo4jClient, target: WriteTarget, run: str, props: dict[str, str],
                 *, request: dict[str, Any], embedding_format: str = "list") -> None:
        self.client, self.target, self.props = client, target, props
        self.embedding_format = embedding_format
        self.classes = list(target.classes)
        self.key = f"predict:{run}"
        self.kind = ",".join(f"{k}={v}" for k, v in sorted(props.items()))
        self.request = {**request, "kind": self.kind}
        self._done = self._start()
        s = target
        sets = [f"n.`{props['--write_property']}` = r.p"]
        if "--write_proba" in props:
            sets.append(f"n.`{props['--write_proba']}` = r.q")
        if "--write_embedding" in props:
            sets.append(f"n.`{props['--write_embedding']}` = r.e")
        self.query = (f"UNWIND $rows AS r MATCH (n:`{s.label}` {{`{s.id_prop}`: r.id}}) SET {', '.join(sets)} "
                      "RETURN count(n) AS c")

    def _start(self) -> set[int]:
        """Resume an unfinished job with the same request; else clear its markers and start over."""
        create_bookkeeping_constraints(self.client)
        job = self.client.read(f"MATCH (j:`{JOB_LABEL}` {{key: $key}}) RETURN properties(j) AS p", key=self.key)
        old = dict(job[0]["p"]) if job else None
        same = old is not None and not old.get("complete") and all(old.get(k) == v for k, v in self.request.items())
        if not same:
            self.client.run_autocommit(f"MATCH (b:`{BATCH_LABEL}` {{dataset: $key}}) CALL (b) {{ DELETE b }} "
                                       f"IN TRANSACTIONS OF {RESET_TX_ROWS} ROWS", key=self.key)
            self.client.write(f"MERGE (j:`{JOB_LABEL}` {{key: $key}}) SET j = $props",
                              key=self.key, props={"key": self.key, **self.request, "complete": False})
            return set()
        recs = self.client.read(f"MATCH (b:`{BATCH_LABEL}` {{dataset: $key}}) RETURN b.idx AS i", key=self.key)
        log.info("resuming the write-back of %s: %d chunks already written", self.key, len(recs))
        return {int(r["i"]) for r in recs}

    def done(self) -> set[int]:
        return self._done

    def _value(self, k: int) -> Any:
        return self.classes[k] if self.classes else k

    def write(self, idx: int, p: Prediction) -> None:
        rows = []
        for j, i in enumerate(p.ids.tolist()):
            row: dict[str, Any] = {"id": i, "p": self._value(int(p.pred[j]))}
            if p.proba is not None:
                row["q"] = p.proba[j].astype(float).tolist()
            if p.embedding is not None:
                e = p.embedding[j]
                row["e"] = e.astype("<f4").tobytes() if self.embedding_format == "bytes" else e.astype(float).tolist()
            rows.append(row)
        write_marked_chunk(self.client, {"dataset": self.key, "kind": self.kind, "idx": idx}, self.query, rows,
                           f"nodes of {self.target.name!r}")

    def finish(self) -> str:
        """Every chunk written exactly once (marker rows add up to the selection), then the job complete."""
        rec = self.client.read(f"MATCH (b:`{BATCH_LABEL}` {{dataset: $key}}) RETURN count(b) AS n, sum(b.rows) AS rows",
                               key=self.key)[0]
        want = int(self.request["num_nodes"])
        if int(rec["rows"] or 0) != want or int(rec["n"]) != int(self.request["num_chunks"]):
            raise UserError(f"write-back {self.key} wrote {rec['rows']} of {want} nodes; run predict.py again to finish it")
        self.client.write(f"MATCH (j:`{JOB_LABEL}` {{key: $key}}) SET j.complete = true", key=self.key)
        names = ", ".join(self.props.values())
        return f"wrote {names} to {want} :{self.target.label} nodes"
