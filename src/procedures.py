"""Python side of the ``gnn.*`` Neo4j procedures (``jobs/neo4j/plugin``): fast hop sampling and feature fetch.

Why: with Cypher, the Community slotted runtime interprets the per-node work and Python decodes
one record (or list) per node. The procedures do the same work in Java and answer with ONE row of
packed little-endian bytes, decoded here with one ``np.frombuffer`` per column; measured against
Cypher in ``bench/sampler_procedures.py``.

- :func:`sample_hop` draws exactly the sample of the Cypher query in :mod:`src.graph_sampler`
  for the same per-node minstd states (same neighbour order, same Floyd arithmetic), so the two
  paths are interchangeable and the Cypher one stays the reference.
- :func:`fetch_rows` returns the packed float32 ``x`` and integer ``y`` of a list of ids, in order.

The local server (``jobs/neo4j.sh start``) builds and installs the plugin itself. On another
server (``NEO4J_URI``) copy ``data/neo4j/plugin-<version>/gnn-procedures.jar`` into its plugins
folder and restart it; callers check :func:`has_procedures` and fall back to Cypher when absent.
"""
from __future__ import annotations

import logging
import threading
import weakref

import neo4j
import numpy as np
from neo4j import exceptions as neo4j_exc

from src.client import Neo4jClient
from src.errors import UserError
from src.schema import GraphSchema

log = logging.getLogger(__name__)

PROCEDURES = ("gnn.fetchRows", "gnn.sampleHop")
# Rows per gnn.fetchRows call: bounds the server-side byte array (8192 rows x 1433 float32 of cora
# = 47 MB); a single huge array could exhaust the server's heap, which exits the JVM.
ROWS_PER_CALL = 8192
CALL_BYTES = 16 * 2**20  # feature bytes per call: wide rows (coauthor_phy: 33 KB) must not flood the heap


def rows_per_call(num_features: int | None) -> int:
    """Rows per ``gnn.fetchRows`` call: at most ROWS_PER_CALL and about CALL_BYTES of features."""
    if not num_features:
        return ROWS_PER_CALL
    return max(1, min(ROWS_PER_CALL, CALL_BYTES // (4 * num_features)))

_HOP_QUERY = ("CALL gnn.sampleHop($label, $rel_type, $id_prop, $ids, $states, $fanout) "
              "YIELD counts, neighbours RETURN counts, neighbours")
_ROWS_QUERY = ("CALL gnn.fetchRows($label, $id_prop, $x_prop, $y_prop, $ids) "
               "YIELD x, y, missing RETURN x, y, missing")

_available: weakref.WeakKeyDictionary[Neo4jClient, bool] = weakref.WeakKeyDictionary()
_available_lock = threading.Lock()


def has_procedures(client: Neo4jClient) -> bool:
    """Whether the server has the ``gnn.*`` procedures (asked once per client, then cached).

    A server restarted with the plugin added needs a new client to be noticed.
    """
    with _available_lock:
        known = _available.get(client)
    if known is not None:
        return known
    query = "SHOW PROCEDURES YIELD name WHERE name STARTS WITH 'gnn.' RETURN collect(name) AS names"
    try:
        names = client.read_tx(lambda tx: tx.run(query).single(strict=True)["names"])
        known = set(PROCEDURES) <= set(names)
    except neo4j_exc.ClientError as exc:  # e.g. a user without the SHOW PROCEDURE privilege
        log.warning("cannot list procedures (%s); using Cypher for sampling and features", exc.message)
        known = False
    if not known:
        log.info("gnn.* procedures not installed on %s; using Cypher", client.settings.uri)
    with _available_lock:
        _available[client] = known
    return known


def sample_hop(client: Neo4jClient, schema: GraphSchema, frontier: np.ndarray, states: np.ndarray,
               fanout: int) -> tuple[np.ndarray, np.ndarray]:
    """One hop for ``frontier`` with one minstd state (1..2^31-2) per node; ``fanout < 0`` takes all.

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
              "ids": frontier.tolist(), "states": states.tolist(), "fanout": int(fanout)}
    rec = client.read_tx(lambda tx: tx.run(_HOP_QUERY, params).single(strict=True))
    # astype copies: writable native arrays instead of read-only views of the Bolt bytes.
    counts = np.frombuffer(rec["counts"], dtype="<i8").astype(np.int64)
    neighbours = np.frombuffer(rec["neighbours"], dtype="<i8").astype(np.int64)
    if counts.size and counts.min() < 0:  # the procedure marks unknown ids with count -1
        missing = frontier[counts < 0][:5].tolist()
        raise KeyError(f"nodes {missing} of dataset {schema.dataset!r} are not in Neo4j")
    return counts, neighbours


def fetch_rows(client: Neo4jClient, schema: GraphSchema, ids: np.ndarray,
               *, num_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features ``float32 [len(ids), F]`` and labels ``int64 [len(ids)]`` in ``ids`` order (repeats allowed).

    ``F`` comes from the stored bytes; pass ``num_features`` to check it (and to shape an empty
    result). Missing ids raise :class:`UserError`, as in :class:`Neo4jFeatureStore`.
    """
    ids = np.asarray(ids, dtype=np.int64)
    step = rows_per_call(num_features)
    chunks = [ids[i:i + step].tolist() for i in range(0, len(ids), step)]
    base = {"label": schema.label, "id_prop": schema.id_prop, "x_prop": schema.x_prop, "y_prop": schema.y_prop}

    def work(tx: neo4j.ManagedTransaction) -> list[neo4j.Record]:
        return [tx.run(_ROWS_QUERY, base, ids=chunk).single(strict=True) for chunk in chunks]

    recs = client.read_tx(work) if chunks else []
    missing = [i for rec in recs for i in rec["missing"]]
    if missing:
        raise UserError(f"nodes {missing[:5]} of dataset {schema.dataset!r} are missing in Neo4j; "
                        f"reload it with `python loaders/load_into_neo4j.py --dataset {schema.dataset}`")
    if num_features is None:
        num_features = len(recs[0]["x"]) // (4 * len(chunks[0])) if recs else 0
    # One copy of the (immutable) Bolt bytes into writable arrays, as torch.from_numpy needs.
    x = np.empty((len(ids), num_features), dtype=np.float32)
    y = np.empty(len(ids), dtype=np.int64)
    start = 0
    for rec, chunk in zip(recs, chunks):
        stop = start + len(chunk)
        if len(rec["x"]) != 4 * num_features * len(chunk):
            raise UserError(f"feature property {schema.x_prop!r} of dataset {schema.dataset!r} holds "
                            f"{len(rec['x']) / len(chunk):g} bytes per node, expected {4 * num_features} "
                            f"({num_features} float32); reload the dataset")
        x[start:stop] = np.frombuffer(rec["x"], dtype="<f4").reshape(len(chunk), num_features)
        y[start:stop] = np.frombuffer(rec["y"], dtype="<i8")
        start = stop
    return x, y
