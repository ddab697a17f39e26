"""Python side of the ``gnn.*`` Neo4j procedures (``jobs/neo4j/plugin``): fast hop sampling and feature fetch.

Why: with Cypher, the Community slotted runtime interprets the per-node work and Python decodes
one record (or list) per node. The procedures do the same work in Java and answer with ONE row of
packed little-endian bytes, decoded here with one ``np.frombuffer`` per column; measured against
Cypher in ``bench/sampler_procedures.py``.

- :func:`sample_hop` draws exactly the sample of the Cypher query in :mod:`src.graph_sampler`
  for the same per-node minstd states (same neighbour order, same Floyd arithmetic), so the two
  paths are interchangeable and the Cypher one stays the reference.
- :func:`fetch_rows` returns the ``x`` rows (dense after decoding, whatever their stored encoding)
  and integer ``y`` of a list of ids, in order.
- ``projection_mb > 0`` lets the server answer from an in-heap projection of the dataset (CSR of
  the in-neighbours, the stored rows and labels; built by the first call, shared by all, dropped
  on any write to the database) when it fits in that many MiB; the answers are bit-identical to
  the store path's. 0 reads the store (Neo4j's page cache) on every call. :func:`projections`
  lists what the server holds.

The local server (``jobs/neo4j.sh start``) builds and installs the plugin itself. On another
server (``NEO4J_URI``) copy ``data/neo4j/plugin-<version>/gnn-procedures.jar`` into its plugins
folder and restart it; callers check :func:`has_procedures` and fall back to Cypher when absent.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Callable

import neo4j
import numpy as np
import scipy.sparse as sp
from neo4j import exceptions as neo4j_exc

from src.client import Neo4jClient
from src.neo4jdb import call_times
from src.core.minstd import MINSTD_MODULUS, hop_states  # noqa: F401 (hop_states: part of this API)
from src.core.sampling import RelabelledHop
from src.core.errors import UserError
from src.core.codecs import DENSE, SPARSE, ColumnAffine, decode_rows_csr, place_rows, stored_rows_errors
from src.core.schema import GraphSchema

log = logging.getLogger(__name__)

PROCEDURES = ("gnn.fetchRows", "gnn.sampleHop", "gnn.sampleHops", "gnn.projections")
# Default server heap budget of a dataset projection (--projection_mb): fits amazon_cs (~45 MiB),
# coauthor_phy and the 1M-node synthetic graph (~350 MiB) in the default 2 GiB heap.
DEFAULT_PROJECTION_MB = 512.0
# Rows per gnn.fetchRows call when the row size is unknown: bounds the server-side byte array
# (8192 rows x 1433 float32 of cora = 47 MB); a single huge array could exhaust the server's heap,
# which exits the JVM.
ROWS_PER_CALL = 8192
# With a known row size, calls carry about CALL_BYTES of rows, up to MAX_ROWS_PER_CALL rows: fewer,
# larger calls cost less per row (1M synthetic graph, 180k rows of 256 B: 65536 rows per call
# took 25% less server CPU and 15% less client CPU than 8192).
MAX_ROWS_PER_CALL = 65536
CALL_BYTES = 16 * 2**20  # feature bytes per call: wide rows (coauthor_phy dense: 33 KB) must not flood the heap


def rows_per_call(row_bytes: int | None) -> int:
    """Rows per ``gnn.fetchRows`` call: about CALL_BYTES of stored rows, at most MAX_ROWS_PER_CALL;
    ROWS_PER_CALL when ``row_bytes`` (expected stored bytes per node, :func:`src.core.codecs.row_bytes`) is unknown.
    """
    if not row_bytes:
        return ROWS_PER_CALL
    return max(1, min(MAX_ROWS_PER_CALL, CALL_BYTES // row_bytes))

def procedure_call(procedure: str, args: str, columns: str, projection_mb: float) -> str:
    """The CALL of a gnn.* procedure; ``$projection_mb`` is passed only when > 0 (older plugins lack it)."""
    if projection_mb < 0:
        raise ValueError(f"projection_mb must be >= 0 (got {projection_mb})")
    extra = ", $projection_mb" if projection_mb > 0 else ""
    return f"CALL {procedure}({args}{extra}) YIELD {columns} RETURN {columns}"


def _hop_query(projection_mb: float) -> str:
    return procedure_call("gnn.sampleHop", "$label, $rel_type, $id_prop, $ids, $states, $fanout, $adj_prop",
                 "counts, neighbours", projection_mb)


def _hops_query(projection_mb: float) -> str:
    return procedure_call("gnn.sampleHops", "$label, $rel_type, $id_prop, $adj_prop, $seeds, $fanouts, $hop_states",
                 "counts, locals, nodes", projection_mb)


def _rows_query(projection_mb: float) -> str:
    return procedure_call("gnn.fetchRows", "$label, $id_prop, $x_prop, $y_prop, $ids", "x, lengths, y, missing",
                 projection_mb)

_installed: weakref.WeakKeyDictionary[Neo4jClient, frozenset[str]] = weakref.WeakKeyDictionary()
_installed_lock = threading.Lock()


def installed(client: Neo4jClient) -> frozenset[str]:
    """Names of the ``gnn.*`` procedures the server has (asked once per client, then cached).

    Empty when they cannot be listed (e.g. a user without the SHOW PROCEDURE privilege). A server
    restarted with the plugin added needs a new client to be noticed.
    """
    with _installed_lock:
        names = _installed.get(client)
    if names is not None:
        return names
    query = "SHOW PROCEDURES YIELD name WHERE name STARTS WITH 'gnn.' RETURN collect(name) AS names"
    try:
        names = frozenset(client.read_tx(lambda tx: tx.run(query).single(strict=True)["names"]))
    except neo4j_exc.ClientError as exc:
        log.warning("cannot list procedures (%s); using Cypher for sampling and features", exc.message)
        names = frozenset()
    if not set(PROCEDURES) <= names:
        log.info("gnn.* procedures not installed on %s; using Cypher", client.settings.uri)
    with _installed_lock:
        _installed[client] = names
    return names


def has_procedures(client: Neo4jClient) -> bool:
    """Whether the server has the ``gnn.*`` procedures sampling and feature fetch use (see :func:`installed`)."""
    return set(PROCEDURES) <= installed(client)


def projections(client: Neo4jClient) -> list[dict]:
    """The dataset projections the server holds now: ``key`` (database/label/idProp/what), ``nodes``,
    ``bytes`` and ``state`` (``ready``, ``building`` or ``not projected: <why>``)."""
    return [dict(r) for r in client.read("CALL gnn.projections() YIELD key, nodes, bytes, state "
                                         "RETURN key, nodes, bytes, state ORDER BY key")]


def sample_hop(client: Neo4jClient, schema: GraphSchema, frontier: np.ndarray, states: np.ndarray,
               fanout: int, *, adj_prop: str | None = None, projection_mb: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """One hop for ``frontier`` with one minstd state (1..2^31-2) per node; ``fanout < 0`` takes all.

    Neighbours come from the packed adjacency property ``adj_prop`` when given (source order, as in
    :class:`~src.core.csr.CSRGraph`), else from the incoming relationships (Cypher's order).
    Returns ``(counts int64 [len(frontier)], neighbours int64 [counts.sum()])``, neighbours grouped
    by frontier node in frontier order. Raises ``KeyError`` (as the Cypher sampler) for unknown ids.
    """
    frontier = np.asarray(frontier, dtype=np.int64)
    states = np.asarray(states, dtype=np.int64)
    if frontier.shape != states.shape or frontier.ndim != 1:
        raise ValueError(f"frontier {frontier.shape} and states {states.shape} must be 1-D of equal length")
    if len(frontier) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    params = {"label": schema.label, "rel_type": schema.rel_type, "id_prop": schema.id_prop,
              "ids": _pack(frontier), "states": _pack(states), "fanout": int(fanout), "adj_prop": adj_prop or "",
              "projection_mb": float(projection_mb)}
    query = _hop_query(projection_mb)
    rec = client.read_tx(lambda tx: call_times.single(tx, "gnn.sampleHop", query, params))
    counts, neighbours = decode_int64(rec["counts"]), decode_int64(rec["neighbours"])
    _check_known(schema, frontier, counts)
    return counts, neighbours


def sample_hops(client: Neo4jClient, schema: GraphSchema, seeds: np.ndarray, fanouts: list[int],
                hop_states: np.ndarray, *, adj_prop: str | None = None, projection_mb: float = 0.0
                ) -> list[RelabelledHop]:
    """All hops of one batch in ONE call (``gnn.sampleHops``), relabelled on the server.

    The server walks the hops itself with the frontier rule of :func:`~src.core.sampling.sample_multi_hop`
    (hop k samples the nodes new in hop k-1, in order of first appearance) and numbers the batch's
    nodes as it goes, so :func:`~src.core.sampling.sampler_output` assembles the ``SamplerOutput``
    without the client's relabelling sorts. Frontier position i of hop k draws with the minstd
    state ``hop_states(hop_states[k], len(frontier))[i]``. Unknown seed ids raise ``KeyError``.
    """
    seeds = np.asarray(seeds, dtype=np.int64)
    params = {"label": schema.label, "rel_type": schema.rel_type, "id_prop": schema.id_prop,
              "adj_prop": adj_prop or "", "seeds": _pack(seeds), "fanouts": [int(k) for k in fanouts],
              "hop_states": np.asarray(hop_states, dtype=np.int64).tolist(), "projection_mb": float(projection_mb)}
    query = _hops_query(projection_mb)
    rec = client.read_tx(lambda tx: call_times.single(tx, "gnn.sampleHops", query, params))
    hops = [RelabelledHop(decode_int64(c), np.frombuffer(loc, dtype="<i4").astype(np.int64), decode_int64(new))
            for c, loc, new in zip(rec["counts"], rec["locals"], rec["nodes"])]
    if hops:
        _check_known(schema, seeds, hops[0].counts)
    return hops


def hop_neighbours(seeds: np.ndarray, hops: list[RelabelledHop]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(counts, neighbour ids)]`` per hop of relabelled hops: the form :func:`sample_hop` answers."""
    nodes = np.concatenate([np.asarray(seeds, dtype=np.int64)] + [h.new_nodes for h in hops])
    return [(h.counts, nodes[h.locals]) for h in hops]


def _pack(ids: np.ndarray) -> bytes:
    """Ids as the procedures take them: packed int64 LE bytes (Bolt decodes a list one value at a time)."""
    return np.ascontiguousarray(ids, dtype="<i8").tobytes()


def decode_int64(raw: bytes) -> np.ndarray:
    """Packed int64 LE bytes of a procedure's answer as a writable native array (astype copies:
    not a read-only view of the Bolt bytes)."""
    return np.frombuffer(raw, dtype="<i8").astype(np.int64)


def _check_known(schema: GraphSchema, ids: np.ndarray, counts: np.ndarray) -> None:
    if counts.size and counts.min() < 0:  # the procedures mark unknown ids with count -1
        missing = ids[counts < 0][:5].tolist()
        raise KeyError(f"nodes {missing} of dataset {schema.dataset!r} are not in Neo4j")


def fetch_rows(client: Neo4jClient, schema: GraphSchema, ids: np.ndarray, *, num_features: int | None = None,
               encoding: str = DENSE, quant: ColumnAffine | None = None, row_bytes: int | None = None,
               projection_mb: float = 0.0,
               out: tuple[np.ndarray, np.ndarray] | None = None, at: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Features ``float32 [len(ids), F]`` and labels ``int64 [len(ids)]`` in ``ids`` order (repeats allowed).

    ``encoding`` is how ``x`` is stored (the dataset record's ``feature_encoding``, with ``quant`` its
    column scale and offset for 8-bit rows); rows are decoded to dense float32 here (the procedure
    returns the stored bytes as they are, whatever their width). ``num_features`` (``F``) is required for sparse rows; for dense rows it
    comes from the stored bytes if not given. ``row_bytes`` (expected stored bytes per node) sizes
    the calls. Missing ids raise :class:`UserError`, as in :class:`Neo4jFeatureStore`.
    ``projection_mb``: see the module docstring. ``out=(x, y)`` receives the rows instead of new
    arrays, at rows ``at`` if given (row ``i`` of ``ids`` to ``x[at[i]]``), else at ``0..len(ids)-1``;
    ``num_features`` is then required; a uint8 ``out`` x keeps the stored bytes (src/core/codecs.py ``place_rows``).
    """
    ids = np.asarray(ids, dtype=np.int64)
    if num_features is None and (encoding != DENSE or out is not None):
        raise ValueError(f"num_features is needed to decode {encoding} rows" + (" into out" if out is not None else ""))
    placed = {"out": out, "features": num_features, "seconds": 0.0}

    def place(rec: neo4j.Record, chunk: np.ndarray, start: int) -> None:
        began = time.perf_counter()
        if placed["features"] is None:  # dense float32 rows of unknown width: from the first answer
            placed["features"] = len(rec["x"]) // (4 * len(chunk))
        if placed["out"] is None:
            placed["out"] = (np.empty((len(ids), placed["features"]), dtype=np.float32), np.empty(len(ids), dtype=np.int64))
        x, y = placed["out"]
        rows = slice(start, start + len(chunk)) if at is None else at[start:start + len(chunk)]
        with stored_rows_errors(schema, encoding, placed["features"]):
            place_rows(rec["x"], np.frombuffer(rec["lengths"], dtype="<i4"), placed["features"], encoding, out=x,
                       at=rows, quant=quant)
        y[rows] = np.frombuffer(rec["y"], dtype="<i8")
        placed["seconds"] += time.perf_counter() - began

    _fetch_records(client, schema, ids, row_bytes or (4 * num_features if num_features else None), projection_mb,
                   place)
    call_times.current().decode_s += placed["seconds"]
    if placed["out"] is None:  # no ids
        placed["out"] = np.empty((0, placed["features"] or 0), dtype=np.float32), np.empty(0, dtype=np.int64)
    return placed["out"]


def fetch_rows_csr(client: Neo4jClient, schema: GraphSchema, ids: np.ndarray, *, num_features: int,
                   row_bytes: int | None = None, projection_mb: float = 0.0) -> tuple[sp.csr_matrix, np.ndarray]:
    """As :func:`fetch_rows` for sparse-stored rows, but ``x`` stays sparse: CSR ``[len(ids), F]``."""
    ids = np.asarray(ids, dtype=np.int64)
    recs: list[neo4j.Record] = []
    _fetch_records(client, schema, ids, row_bytes, projection_mb, lambda rec, _chunk, _start: recs.append(rec))
    raw = b"".join(rec["x"] for rec in recs)
    lengths = np.concatenate([np.frombuffer(rec["lengths"], dtype="<i4") for rec in recs]) if recs else np.zeros(0)
    with stored_rows_errors(schema, SPARSE, num_features):
        x = decode_rows_csr(raw, lengths, num_features)
    y = np.concatenate([np.frombuffer(rec["y"], dtype="<i8") for rec in recs]) if recs else np.zeros(0)
    return x, y.astype(np.int64)


def _fetch_records(client: Neo4jClient, schema: GraphSchema, ids: np.ndarray, row_bytes: int | None,
                   projection_mb: float, consume: Callable[[neo4j.Record, np.ndarray, int], None]) -> None:
    """``gnn.fetchRows`` answers for ``ids`` in calls of :func:`rows_per_call` rows (one transaction), each handed to
    ``consume(record, its ids, position of its first id)`` as it arrives: a batch's stored rows are then never all
    held at once (a retried transaction consumes its answers again, to the same places)."""
    step = rows_per_call(row_bytes)
    base = {"label": schema.label, "id_prop": schema.id_prop, "x_prop": schema.x_prop, "y_prop": schema.y_prop,
            "projection_mb": float(projection_mb)}
    query = _rows_query(projection_mb)

    def work(tx: neo4j.ManagedTransaction) -> None:
        for start in range(0, len(ids), step):
            chunk = ids[start:start + step]
            rec = call_times.single(tx, "gnn.fetchRows", query, {**base, "ids": _pack(chunk)})
            if rec["missing"]:
                raise UserError(f"nodes {list(rec['missing'])[:5]} of dataset {schema.dataset!r} are missing in "
                                f"Neo4j; reload it with `python loaders/load_into_neo4j.py --dataset {schema.dataset}`")
            consume(rec, chunk, start)

    if len(ids):
        client.read_tx(work)


HOT_NODES_PROCEDURE = "gnn.hotNodes"


def has_hot_nodes(client: Neo4jClient) -> bool:
    """Whether the server's plugin has ``gnn.hotNodes`` (an older plugin may not); asked once per client."""
    return HOT_NODES_PROCEDURE in installed(client)

def hot_nodes(client: Neo4jClient, schema: GraphSchema, k: int, *, adj_prop: str | None = None,
              projection_mb: float = 0.0) -> tuple[np.ndarray, np.ndarray, bool]:
    """``gnn.hotNodes``: ``(ids int64 [min(k, N)], degrees int64, projected)``, degree descending, ties by id.

    ``adj_prop``: count over the packed adjacency property (as the sampler reads it), else over the
    incoming relationships; ``projected``: whether the server counted over its in-heap projection.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0 (got {k})")
    query = ("CALL gnn.hotNodes($label, $rel_type, $id_prop, $adj_prop, $k, $projection_mb) "
             "YIELD ids, degrees, projected RETURN ids, degrees, projected")
    params = {"label": schema.label, "rel_type": schema.rel_type, "id_prop": schema.id_prop,
              "adj_prop": adj_prop or "", "k": int(k), "projection_mb": float(projection_mb)}
    rec = client.read_tx(lambda tx: tx.run(query, params).single(strict=True))
    return decode_int64(rec["ids"]), decode_int64(rec["degrees"]), bool(rec["projected"])
