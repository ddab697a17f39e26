"""Edits made in Neo4j while (or between) runs: what the server's plugin says changed.

Why: the trainer keeps two kinds of copies of what is in the database. The packed adjacency
property is kept current by the plugin itself, inside each writing transaction
(``jobs/neo4j/plugin`` ``LiveAdjacency``), so it may be read only on a server whose plugin watches
writes (:func:`watches_writes`); elsewhere the samplers walk the relationships. The feature cache
holds rows in the trainer's RAM: :class:`RowChangeTracker` asks ``gnn.rowChanges`` before each
cached fetch which rows changed since it last asked and drops them, so the next batch reads them
again. Without the plugin nobody can say what changed, and the cache stays off.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from src.client import Neo4jClient
from src.core.schema import GraphSchema
from src.neo4jdb import procedures

log = logging.getLogger(__name__)

ROW_CHANGES_PROCEDURE = "gnn.rowChanges"


@dataclass(frozen=True)
class RowChanges:
    """One ``gnn.rowChanges`` answer: ``ids`` changed after the asked version (``complete`` False:
    unknown, drop every copy); ``watched`` False: the server does not watch writes at all."""

    watched: bool
    epoch: int
    version: int
    ids: np.ndarray
    complete: bool


def row_changes(client: Neo4jClient, schema: GraphSchema, epoch: int = 0, since: int = -1) -> RowChanges:
    """Rows of ``schema``'s dataset changed after version ``since`` of ``epoch`` (the defaults: none, learn the current version)."""
    query = (f"CALL {ROW_CHANGES_PROCEDURE}($label, $id_prop, $epoch, $since) "
             "YIELD watched, epoch, version, ids, complete RETURN watched, epoch, version, ids, complete")
    rec = client.read_tx(lambda tx: tx.run(query, label=schema.label, id_prop=schema.id_prop,
                                           epoch=int(epoch), since=int(since)).single(strict=True))
    return RowChanges(bool(rec["watched"]), int(rec["epoch"]), int(rec["version"]),
                      procedures.decode_int64(rec["ids"]), bool(rec["complete"]))


def watches_writes(client: Neo4jClient, schema: GraphSchema) -> bool:
    """Whether the server's plugin sees every write to the database (then it keeps adjacency copies
    current and reports changed rows); False for servers without the plugin, or with one too old."""
    if ROW_CHANGES_PROCEDURE not in procedures.installed(client):
        return False
    return row_changes(client, schema).watched


class RowChangeTracker:
    """Drops the cached rows the database changed, once per fetch (thread-safe: prefetch threads).

    :meth:`sync` runs before a fetch reads its misses and returns a token; :meth:`admissible` then
    refuses to cache rows that a later sync (another thread's) saw change, since the fetch may have
    read them before that change: a row read while an edit commits is never kept as current.
    """

    HISTORY = 256  # syncs with changes remembered for admissible(); older tokens admit nothing

    def __init__(self, client: Neo4jClient, schema: GraphSchema) -> None:
        self.client = client
        self.schema = schema
        first = row_changes(client, schema)
        self._epoch, self._version = first.epoch, first.version
        self._lock = threading.Lock()
        self._seq = 0
        self._history: deque[tuple[int, np.ndarray | None]] = deque(maxlen=self.HISTORY)  # (seq, ids; None: all)
        self.dropped = 0  # cached rows dropped because they changed (stats)

    def sync(self, cache) -> int:
        """Drop from ``cache`` (a :class:`~src.core.feature_cache.FeatureCache`) every row changed since
        the last sync; returns the token of this fetch for :meth:`admissible`."""
        with self._lock:
            ch = row_changes(self.client, self.schema, self._epoch, self._version)
            if not ch.complete:
                log.info("%s: the server cannot list what changed since the feature cache was filled "
                         "(restarted, or too many edits); the cache starts empty again", self.schema.dataset)
                self.dropped += len(cache)
                cache.clear()
                self._seq += 1
                self._history.append((self._seq, None))
            elif len(ch.ids):
                ids = np.unique(ch.ids)
                self.dropped += cache.discard(ids)
                self._seq += 1
                self._history.append((self._seq, ids))
            self._epoch, self._version = ch.epoch, ch.version
            return self._seq

    def admissible(self, ids: np.ndarray, token: int) -> np.ndarray:
        """Mask of ``ids`` (read by a fetch whose sync returned ``token``) that no later sync saw change."""
        with self._lock:
            later = [ids_ for seq, ids_ in self._history if seq > token]
            complete = token >= self._seq - len(self._history)
        ok = np.full(len(ids), complete, dtype=bool)
        for changed in later:
            if changed is None:
                ok[:] = False
                break
            ok &= ~np.isin(ids, changed, assume_unique=False)
        return ok


class SplitWatch:
    """Whether a dataset's splits changed since the trainer read them: asked once per epoch (rank 0).

    With the plugin, ``gnn.rowChanges`` names the nodes whose properties changed; only those nodes'
    split is read and compared. Without it nobody can say, so every epoch counts as changed (the
    splits are read again: one query per split)."""

    MAX_CHECKED = 200_000  # more changed nodes than this: read the splits again rather than compare

    def __init__(self, client: Neo4jClient, schema: GraphSchema) -> None:
        self.client, self.schema = client, schema
        self.watched = watches_writes(client, schema)
        first = row_changes(client, schema) if self.watched else None
        self._epoch, self._version = (first.epoch, first.version) if first else (0, -1)

    def changed(self, splits: dict[str, "object"]) -> bool:
        """True when some node's split may differ from ``splits`` (split -> sorted ids as read)."""
        if not self.watched:
            return True
        ch = row_changes(self.client, self.schema, self._epoch, self._version)
        self._epoch, self._version = ch.epoch, ch.version
        if not ch.complete or len(ch.ids) > self.MAX_CHECKED:
            return True
        ids = np.unique(ch.ids)
        if not len(ids):
            return False
        s = self.schema
        now = dict(self.client.read_tx(lambda tx: [tuple(r) for r in tx.run(
            f"UNWIND $ids AS i MATCH (n:`{s.label}` {{`{s.id_prop}`: i}}) RETURN i, n.`{s.split_prop}`",
            ids=ids.tolist())]))
        for split, members in splits.items():
            was = np.isin(ids, np.asarray(members))
            if not np.array_equal(was, np.array([now.get(int(i)) == split for i in ids])):
                return True
        return False
