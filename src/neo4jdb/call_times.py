"""Where a ``gnn.*`` call's time goes: the server's share (from Bolt's result summary) per thread.

Why: a batch's wall time on the Neo4j path mixes the procedure's own work on the server, moving
its answer over Bolt and decoding it in the trainer. The summary of every answer carries
``result_available_after`` (ms until the procedure's row was ready) and ``result_consumed_after``
(ms more until it was streamed), both measured by the server; the rest of a call's wall time is
the round trip and the driver reading the bytes. Counted per thread (each prefetch thread its
own batches) and per procedure; :func:`take` returns and resets the calling thread's counts.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import neo4j

_local = threading.local()


@dataclass
class CallTimes:
    """Seconds per procedure of one thread's calls since the last :func:`take`."""

    server_s: dict[str, float] = field(default_factory=dict)  # available + consumed, server clock
    wall_s: dict[str, float] = field(default_factory=dict)  # run to summary, trainer clock
    answer_bytes: dict[str, int] = field(default_factory=dict)  # bytes values of the answers
    decode_s: float = 0.0  # trainer: stored rows -> float32 in place

    def add(self, procedure: str, server_s: float, wall_s: float, nbytes: int) -> None:
        self.server_s[procedure] = self.server_s.get(procedure, 0.0) + server_s
        self.wall_s[procedure] = self.wall_s.get(procedure, 0.0) + wall_s
        self.answer_bytes[procedure] = self.answer_bytes.get(procedure, 0) + nbytes


def current() -> CallTimes:
    """The calling thread's counts (created on first use)."""
    times = getattr(_local, "times", None)
    if times is None:
        times = _local.times = CallTimes()
    return times


def take() -> CallTimes:
    """The calling thread's counts since the last take; starts new ones."""
    times, _local.times = current(), CallTimes()
    return times


def single(tx: neo4j.ManagedTransaction, procedure: str, query: str, params: dict) -> neo4j.Record:
    """The one row of ``query`` (a ``gnn.*`` CALL), its times added to the thread's counts."""
    start = time.perf_counter()
    result = tx.run(query, params)
    rec = result.single(strict=True)
    summary = result.consume()
    wall = time.perf_counter() - start
    server = ((summary.result_available_after or 0) + (summary.result_consumed_after or 0)) / 1000.0
    nbytes = sum(_nbytes(v) for v in rec.values())
    current().add(procedure, server, wall, nbytes)
    return rec


def _nbytes(value: object) -> int:
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, list):
        return sum(_nbytes(v) for v in value)
    return 0
