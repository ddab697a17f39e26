"""The online way into Neo4j: UNWIND batches in managed transactions, resumable by batch markers.

Why it exists: it works on any server and survives being killed. The batches are fixed and
deterministic (their sizes are kept in the dataset record); each is one managed transaction
that also creates its ``(:GnnLoadBatch {dataset, kind, idx})`` marker, so data and marker commit
together: a killed load resumes exactly where it stopped, and a transaction the driver retries
(or a second loader racing on the same batch) never writes a batch twice. Also here: the packed
in-adjacency property ``nbrs`` that ``gnn.sampleHop(s)`` reads, written the same way.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable

import neo4j
import numpy as np
from neo4j import exceptions as neo4j_exc
from tqdm import tqdm

from src.client import Neo4jClient
from src.core.codecs import encode_adjacency, encode_rows, split_rows
from src.core.csr import in_adjacency
from src.core.errors import UserError
from src.core.record import DatasetRecord
from src.core.schema import GraphSchema
from src.data.graph import GraphDataset
from src.data.loading import SPLIT_NAMES, LoadConfig, LoadReport, feature_rows
from src.data.verification import check_adjacency
from src.neo4jdb.load.records import BATCH_LABEL, create_id_constraint, mark_adjacency

log = logging.getLogger(__name__)

ADJ_BATCH_NODES = 10_000  # nodes per adjacency transaction
ADJ_BATCH_BYTES = 8 << 20  # cap on adjacency bytes per transaction (hubs)


# --------------------------------------------------------------------------------------------
# nodes and relationships
# --------------------------------------------------------------------------------------------
def load_unwind(client: Neo4jClient, ds: GraphDataset, schema: GraphSchema, record: dict[str, Any],
                config: LoadConfig) -> LoadReport:
    """The batches of nodes, then of relationships, that ``record``'s markers do not list as committed."""
    create_id_constraint(client, schema)  # before the first node: CREATE then checks uniqueness
    done = done_batches(client, schema.dataset)
    resumed = any(done.values())
    node_batch, edge_batch = int(record["node_batch"]), int(record["edge_batch"])
    stored = DatasetRecord.from_properties({"name": schema.dataset, "label": schema.label,
                                            "rel_type": schema.rel_type, **record})
    encoding, quant = stored.feature_encoding, stored.quant()  # as the load started: a resume keeps them
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
        xs = split_rows(*encode_rows(feature_rows(ds, np.arange(lo, hi)), encoding, quant))
        ys = np.asarray(ds.y[lo:hi]).tolist()
        splits = SPLIT_NAMES[codes[lo:hi]].tolist()
        return {"rows": [{"id": i, "x": x, "y": y, "split": sp}
                         for i, x, y, sp in zip(range(lo, hi), xs, ys, splits)]}

    t = time.perf_counter()
    report.nodes_written = run_batches(client, s.dataset, "nodes", ds.num_nodes, node_batch, done["nodes"],
                                        node_query, node_params, config)
    report.phases["nodes"] = time.perf_counter() - t
    edge_query, edge_params = _edge_writer(ds, s)
    t = time.perf_counter()
    report.relationships_written = run_batches(client, s.dataset, "relationships", ds.num_edges, edge_batch,
                                                done["relationships"], edge_query, edge_params, config)
    report.phases["relationships"] = time.perf_counter() - t
    return report


def _edge_writer(ds: GraphDataset, s: GraphSchema) -> tuple[str, Callable[[int, int], dict[str, Any]]]:
    """Query and parameter builder for relationship batches: each source id once with its destination
    list (less to encode and one source lookup per group than one row per edge)."""
    match_b = f"MATCH (b:`{s.label}` {{`{s.id_prop}`: d}}) CREATE (a)-[:`{s.rel_type}`]->(b)"

    def groups(lo: int, hi: int) -> dict[str, Any]:
        src, dst = np.asarray(ds.edge_index[0, lo:hi]), np.asarray(ds.edge_index[1, lo:hi])
        order = np.argsort(src, kind="stable")
        src, dst = src[order], dst[order]
        starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
        return {"groups": [{"s": a, "d": d.tolist()}
                           for a, d in zip(src[starts].tolist(), np.split(dst, starts[1:]))]}

    return (f"UNWIND $groups AS g MATCH (a:`{s.label}` {{`{s.id_prop}`: g.s}}) UNWIND g.d AS d {match_b}",
            groups)


def done_batches(client: Neo4jClient, name: str) -> dict[str, set[int]]:
    recs = client.read(f"MATCH (b:`{BATCH_LABEL}` {{dataset: $name}}) RETURN b.kind AS kind, b.idx AS idx", name=name)
    done: dict[str, set[int]] = {"nodes": set(), "relationships": set()}
    for r in recs:
        done.setdefault(r["kind"], set()).add(int(r["idx"]))
    return done


def run_batches(client: Neo4jClient, name: str, kind: str, total: int, batch: int, done: set[int], query: str,
                 params: Callable[[int, int], dict[str, Any]], config: LoadConfig) -> int:
    """Write the batches of ``kind`` not in ``done`` with ``config.workers`` threads; rows written."""
    ranges = [(lo, min(lo + batch, total)) for lo in range(0, total, batch)]
    todo = [i for i in range(len(ranges)) if i not in done]
    initial = total - sum(ranges[i][1] - ranges[i][0] for i in todo)
    unit = "rel" if kind == "relationships" else "node"

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
# adjacency property (read by gnn.sampleHop(s) instead of the relationship chains)
# --------------------------------------------------------------------------------------------
def add_adjacency(client: Neo4jClient, ds: GraphDataset, schema: GraphSchema, config: LoadConfig) -> None:
    """Write every node's in-neighbour ids as one packed int64 bytes property ``schema.adj_prop``.

    For datasets loaded before the property existed (a new load writes it before its
    verification: :func:`~src.neo4jdb.load.ensure.ensure_loaded`; the bulk importer stores it
    with the nodes). Idempotent (a re-run writes the same values), so an interrupted run is
    simply repeated. The order is the source's edge order per destination
    (:func:`~src.core.csr.in_adjacency`, as in :class:`~src.core.csr.CSRGraph`), so the
    procedures' samples can be replayed against the in-memory graph. Checked bit for bit on a
    sample, then recorded on the dataset record (``adjacency``), which is what tells the backend
    it may use it.
    """
    s = schema
    write_adjacency(client, ds, s, config)
    missing = client.read(f"MATCH (n:`{s.label}`) WHERE n.`{s.adj_prop}` IS NULL RETURN count(n) AS c")[0]["c"]
    problems = [f"{missing} nodes have no {s.adj_prop!r}"] if missing else check_adjacency(client, ds, s)
    if problems:
        raise UserError(f"adjacency property {s.adj_prop!r} of dataset {s.dataset!r} does not match the source: "
                        f"{'; '.join(problems)}; reload it with --reset")
    mark_adjacency(client, s)


def write_adjacency(client: Neo4jClient, ds: GraphDataset, s: GraphSchema, config: LoadConfig) -> None:
    """The UNWIND writes of :func:`add_adjacency`, in node ranges bounded in count and bytes."""
    indptr, indices = in_adjacency(ds.edge_index, ds.num_nodes)
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
