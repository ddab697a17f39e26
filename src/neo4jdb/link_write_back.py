"""Predicted links written back to Neo4j as relationships of a type of their own: the checks and the writer.

Why so: the user's relationships are never touched. The type (``--write_relationship``) must be
new to the database, or one a previous predict job of the same run wrote (its ``(:GnnPrediction
{key: "links:<run>:<TYPE>", run, rel_type})`` job says so); a dataset's own type, a type that
holds relationships nobody's job wrote, or another run's type is refused in one line. Each chunk
of links is one transaction that also creates its ``(:GnnLoadBatch {dataset: <job key>, kind:
"links", idx})`` marker, so a killed write-back resumes without writing a link twice or skipping
one; a finished job or a changed request deletes the type's relationships between the dataset's
nodes (its own) and starts over. ``finish`` checks that the type now holds exactly the links
the markers count.

Pairs from Cypher (``--pairs_query``): a query that reads, returning two columns of nodes of the
dataset or of their dense ids. It is refused unless it reads as one (no ';', comments or
backticks, no clause that writes, calls procedures, loads files or changes databases), unless the
server's own plan of it (``EXPLAIN``) is read-only, and it runs in a read transaction.
"""
from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import numpy as np
from neo4j import exceptions as neo4j_exc
from neo4j.graph import Node

from src.client import Neo4jClient
from src.core.errors import UsageError, UserError, first_line
from src.core.record import DatasetRecord
from src.core.schema import DATASET_LABEL, validate_identifier
from src.neo4jdb.load.records import BATCH_LABEL, RESET_TX_ROWS, create_bookkeeping_constraints
from src.neo4jdb.write_back import JOB_LABEL, cypher_text_problem, write_marked_chunk
from src.train.link_predict import Links, check_pairs

log = logging.getLogger(__name__)

_WRITES = re.compile(r"\b(CREATE|MERGE|SET|DELETE|DETACH|REMOVE|CALL|LOAD|FOREACH|USE|FINISH|DROP|ALTER|GRANT|DENY|"
                     r"REVOKE|START|STOP|SHOW|TERMINATE|EXPLAIN|PROFILE)\b", re.IGNORECASE)


def job_key(run: str, rel_type: str) -> str:
    return f"links:{run}:{rel_type}"


def fingerprint(arr: np.ndarray) -> str:
    """A short digest of the request's node ids or pairs: a different list is a different request."""
    return hashlib.sha1(np.ascontiguousarray(arr, dtype="<i8").tobytes()).hexdigest()[:16]


def check_relationship_type(client: Neo4jClient, record: DatasetRecord, run: str, rel_type: str) -> str:
    """``rel_type`` if predicted links of ``run`` may be written as it, else one line naming the fix."""
    validate_identifier(rel_type, "--write_relationship")
    fix = f"choose a new one, e.g. --write_relationship PREDICTED_{re.sub(r'[^0-9A-Za-z_]', '_', run).upper()}"
    datasets = client.read(f"MATCH (d:`{DATASET_LABEL}`) WHERE d.rel_type = $t RETURN d.name AS n", t=rel_type)
    if datasets:
        raise UsageError(f"--write_relationship {rel_type} is the relationship type of dataset {datasets[0]['n']!r}: {fix}")
    owners = [r["run"] for r in client.read(f"MATCH (j:`{JOB_LABEL}`) WHERE j.rel_type = $t RETURN j.run AS run",
                                            t=rel_type)]
    others = [o for o in owners if o != run]
    if others:
        raise UsageError(f"--write_relationship {rel_type} holds the predicted links of run {others[0]!r}: {fix}")
    existing = client.count_relationships(rel_type)
    if existing and run not in owners:
        raise UsageError(f"--write_relationship {rel_type}: the database already has {existing:,} relationships of that "
                         f"type that predict.py did not write for run {run!r}; {fix}")
    return rel_type


def check_pairs_query(query: str) -> str:
    """``query`` if it reads as a read-only query (string literals aside), else a :class:`UsageError`."""
    bare, bad = cypher_text_problem(query, _WRITES)
    if bad == "punctuation":
        raise UsageError(f"--pairs_query {query!r}: a query cannot hold ';', backticks or comments; write e.g. "
                         "\"MATCH (a:Paper)-[:CITES]->(b) RETURN a, b LIMIT 100\"")
    if bad:
        raise UsageError(f"--pairs_query {query!r}: {bad} is not allowed; write a query that only "
                         "reads, e.g. \"MATCH (a:Paper), (b:Paper) WHERE a.year = 2000 RETURN a, b\"")
    if not re.search(r"\bRETURN\b", bare, re.IGNORECASE):
        raise UsageError(f"--pairs_query {query!r} returns nothing: end it with RETURN <source>, <destination>")
    return query


def read_pairs_query(client: Neo4jClient, record: DatasetRecord, query: str) -> np.ndarray:
    """``[P, 2]`` dense ids of the pairs ``query`` returns (nodes of the dataset or their ids), read-only."""
    check_pairs_query(query)
    s = record.schema
    try:
        kind = client.read_tx(lambda tx: tx.run(f"EXPLAIN {query}").consume().query_type)
        if kind != "r":
            raise UsageError(f"--pairs_query {query!r}: the server plans it as {kind!r}, not read-only ('r')")
        keys, rows = client.read_tx(lambda tx: (lambda res: (res.keys(), [tuple(r.values()) for r in res]))(tx.run(query)))
    except neo4j_exc.ClientError as exc:
        raise UsageError(f"--pairs_query {query!r} is not a valid read query: {first_line(exc, 200)}") from None
    if len(keys) != 2:
        raise UsageError(f"--pairs_query {query!r} returns {len(keys)} columns ({', '.join(keys)}); return exactly two: "
                         "the source and the destination")

    def dense(value: Any) -> Any:
        if isinstance(value, Node):
            if s.label not in value.labels:
                raise UsageError(f"--pairs_query returned a node without the dataset's label {s.label!r}: return nodes "
                                 f"of dataset {record.name!r} or their {s.id_prop!r}")
            return value.get(s.id_prop, -1)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"--pairs_query returned {type(value).__name__} {str(value)[:40]!r}; return nodes of the "
                             f"dataset or their {s.id_prop!r} integers")
        return value

    arr = np.asarray([[dense(a), dense(b)] for a, b in rows]).reshape(-1, 2)
    return check_pairs(arr, record.num_nodes, "--pairs_query")


class Neo4jLinkWriter:
    """Links as ``(a)-[:TYPE {score[, rank]}]->(b)`` between ``record``'s nodes in resumable marked chunks."""

    def __init__(self, client: Neo4jClient, record: DatasetRecord, run: str, rel_type: str, *,
                 request: dict[str, Any]) -> None:
        self.client, self.record, self.run, self.rel_type = client, record, run, rel_type
        self.key = job_key(run, rel_type)
        self.request = request
        self._done = self._start()
        s = record.schema
        props = "{score: r.s, rank: r.k}" if request.get("top_k") else "{score: r.s}"
        self.query = (f"UNWIND $rows AS r MATCH (a:`{s.label}` {{`{s.id_prop}`: r.u}}), (b:`{s.label}` "
                      f"{{`{s.id_prop}`: r.v}}) CREATE (a)-[:`{rel_type}` {props}]->(b) RETURN count(*) AS c")

    def _own_links(self) -> str:
        s = self.record.schema
        return f"MATCH (:`{s.label}`)-[r:`{self.rel_type}`]->(:`{s.label}`)"

    def _start(self) -> set[int]:
        """Resume an unfinished job with the same request; else its own links and markers go, and it starts over."""
        create_bookkeeping_constraints(self.client)
        job = self.client.read(f"MATCH (j:`{JOB_LABEL}` {{key: $key}}) RETURN properties(j) AS p", key=self.key)
        old = dict(job[0]["p"]) if job else None
        same = old is not None and not old.get("complete") and all(old.get(k) == v for k, v in self.request.items())
        if same:
            recs = self.client.read(f"MATCH (b:`{BATCH_LABEL}` {{dataset: $key}}) RETURN b.idx AS i", key=self.key)
            log.info("resuming the link write-back %s: %d chunks already written", self.key, len(recs))
            return {int(r["i"]) for r in recs}
        # the job first: from here on the type is this run's, so an interrupted clean-up is finished by a re-run
        self.client.write(f"MERGE (j:`{JOB_LABEL}` {{key: $key}}) SET j = $props", key=self.key,
                          props={"key": self.key, "run": self.run, "rel_type": self.rel_type, "dataset": self.record.name,
                                 **self.request, "complete": False})
        self.client.run_autocommit(f"{self._own_links()} CALL (r) {{ DELETE r }} IN TRANSACTIONS OF {RESET_TX_ROWS} ROWS")
        self.client.run_autocommit(f"MATCH (b:`{BATCH_LABEL}` {{dataset: $key}}) CALL (b) {{ DELETE b }} "
                                   f"IN TRANSACTIONS OF {RESET_TX_ROWS} ROWS", key=self.key)
        return set()

    def done(self) -> set[int]:
        return self._done

    def write(self, idx: int, links: Links) -> None:
        rows = [{"u": int(u), "v": int(v), "s": float(sc)} for u, v, sc in zip(links.src, links.dst, links.score)]
        if links.rank is not None:
            for row, k in zip(rows, links.rank.tolist()):
                row["k"] = int(k)
        write_marked_chunk(self.client, {"dataset": self.key, "kind": "links", "idx": idx}, self.query, rows,
                           f"endpoints of predicted links in {self.record.name!r}")

    def finish(self) -> str:
        """Every chunk written once (markers add up to the request; the type holds their links), then complete."""
        rec = self.client.read(f"MATCH (b:`{BATCH_LABEL}` {{dataset: $key}}) RETURN count(b) AS n, sum(b.rows) AS links",
                               key=self.key)[0]
        links = int(rec["links"] or 0)
        have = int(self.client.read(f"{self._own_links()} RETURN count(r) AS c")[0]["c"])
        if int(rec["n"]) != int(self.request["num_chunks"]) or have != links:
            raise UserError(f"link write-back {self.key} is incomplete ({rec['n']} of {self.request['num_chunks']} chunks, "
                            f"{have:,} relationships for {links:,} written links); run predict.py again to finish it")
        self.client.write(f"MATCH (j:`{JOB_LABEL}` {{key: $key}}) SET j.complete = true, j.links = $links",
                          key=self.key, links=links)
        return f"wrote {links:,} :{self.rel_type} relationships between :{self.record.label} nodes"
