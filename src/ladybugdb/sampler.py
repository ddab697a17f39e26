"""Neighbour sampling inside Ladybug: one Cypher query per hop per batch, as in Neo4j.

Same semantics and the same algorithm as :mod:`src.graph_sampler` (Neo4j): for every frontier
node a uniform sample without replacement of ``min(fanout, degree)`` in-neighbours
``(u)-[:T]->(v)``, drawn with Floyd's algorithm over a minstd state the client sends per node
(``r <- 48271 r mod 2^31-1``, pick ``t = r mod (j+1)`` for ``j = d-k .. d-1``, or ``j`` if ``t``
was taken). The multi-hop relabelling is the shared :func:`~src.core.sampling.sample_multi_hop`.

Ladybug's Cypher differs from Neo4j's, hence a different query text (tests check the result,
tests/test_ladybug_backend.py, including chi-square uniformity):

* no ``reduce`` and no pattern comprehension: Floyd runs in ``list_reduce`` over the list
  ``[[state], [d-k], ..., [d-1]]``, the accumulator ``[state, pick1, pick2, ...]`` being an
  ``INT64[]`` (``list_reduce`` needs accumulator and elements of one type; and a struct built
  inside ``list_transform``'s lambda comes out with the first element's values for every element
  in ladybug 0.22, so lists are used instead of structs);
* lists are 1-based, so the pick ``i`` (0-based position) is ``nbrs[i + 1]``;
* neighbours are collected with ``MATCH (u)-[:T]->(v) WHERE v.id IN $ids`` (the form Ladybug
  plans fastest, measured: ~5x faster than ``UNWIND $ids ... MATCH``), sorted by id so a
  node's neighbour order, and hence a seeded sample, is reproducible. ``$ids`` are the distinct
  frontier ids and ``$states`` holds one list per id with a state for each of its positions
  (``list_position`` finds it; several when seeds repeat, since pyg-lib samples every position
  independently); ``UNWIND`` over that list gives one sample per position.

Node ids are the ``id`` property, never Ladybug's internal offsets (kuzu issues #2291/#6020).
Nodes of degree 0 return no row (count 0); ids outside ``0..num_nodes-1`` are refused.
"""
from __future__ import annotations

import logging

import numpy as np

from src.core.edge_split import EdgeSplit, pair_keys
from src.core.sampling import HopSampler
from src.core.minstd import MINSTD_MODULUS
from src.ladybugdb.client import LadybugClient
from src.core.schema import GraphSchema, rel_arrow

log = logging.getLogger(__name__)

# Floyd's algorithm as a list_reduce; `d`, `s0` and $fanout are in scope where it is used.
_FLOYD = f"""list_reduce(list_concat([[s0]], list_transform(range(d - $fanout, d - 1), j -> [j])),
      (a, e) -> list_concat([(a[1] * 48271) % {MINSTD_MODULUS}], list_append(list_slice(a, 2, size(a)),
        CASE WHEN list_contains(list_slice(a, 2, size(a)), ((a[1] * 48271) % {MINSTD_MODULUS}) % (e[1] + 1))
             THEN e[1] ELSE ((a[1] * 48271) % {MINSTD_MODULUS}) % (e[1] + 1) END)))"""


def hop_query(schema: GraphSchema, held_out: bool = False) -> str:
    """The Cypher that samples one hop: distinct ``$ids``, a list of states per id, ``$fanout``; ``held_out``:
    without the edges whose unordered pair key (``min * $n + max``, src/core/edge_split.py) is in ``$held``."""
    s = schema
    skip = (f" AND NOT list_contains($held, CASE WHEN u.`{s.id_prop}` < v.`{s.id_prop}` THEN u.`{s.id_prop}` * $n + "
            f"v.`{s.id_prop}` ELSE v.`{s.id_prop}` * $n + u.`{s.id_prop}` END)") if held_out else ""
    return typed_hop_query(s.label, s.rel_type, s.label, s.id_prop, skip)


def typed_hop_query(src: str, rel_type: str, dst: str, id_prop: str, skip: str = "", backwards: bool = False) -> str:
    """The hop query over ``(u:src)-[:rel_type]->(v:dst)`` (validated identifiers): the frontier ``v`` draws from its
    sources ``u``; ``backwards``: over ``(u:src)<-[:rel_type]-(v:dst)`` (a reverse type: ``v``'s targets);
    ``skip``: more conditions."""
    arrow = rel_arrow(rel_type, backwards)
    return f"""
MATCH (u:`{src}`){arrow}(v:`{dst}`) WHERE v.`{id_prop}` IN $ids{skip}
WITH v.`{id_prop}` AS v, list_sort(collect(u.`{id_prop}`)) AS nbrs
WITH v, nbrs, size(nbrs) AS d, $states[list_position($ids, v)] AS states
UNWIND range(1, size(states)) AS r
WITH v, r, nbrs, d, states[r] AS s0
RETURN v, r, CASE WHEN $fanout < 0 OR d <= $fanout THEN nbrs
  ELSE list_transform(list_slice({_FLOYD}, 2, $fanout + 1), i -> nbrs[i + 1]) END AS picked
"""


def run_hop(client: LadybugClient, query: str, frontier: np.ndarray, states: np.ndarray, fanout: int,
            **extra: object) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, neighbours)`` of one hop query: distinct ids sent once, each frontier position drawn with its state."""
    uniq, inverse = np.unique(frontier, return_inverse=True)
    positions = np.argsort(inverse, kind="stable")  # frontier positions grouped by distinct id
    group_size = np.bincount(inverse, minlength=len(uniq))
    group_start = np.cumsum(group_size) - group_size
    per_id = np.split(np.asarray(states, np.int64)[positions], group_start[1:])
    rows = client.execute(query, ids=uniq.tolist(), states=[g.tolist() for g in per_id], fanout=int(fanout), **extra)
    picked: list[list[int]] = [[] for _ in range(len(frontier))]  # degree 0: no row
    if rows:
        v = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        r = np.fromiter((row[1] for row in rows), dtype=np.int64, count=len(rows))
        where = positions[group_start[np.searchsorted(uniq, v)] + r - 1]
        for pos, row in zip(where.tolist(), rows):
            picked[pos] = row[2]
    counts = np.fromiter((len(p) for p in picked), dtype=np.int64, count=len(picked))
    flat = np.fromiter((u for p in picked for u in p), dtype=np.int64, count=int(counts.sum()))
    return counts, flat


class HeldOutIndex:
    """An edge split's held-out pair keys by endpoint: each hop sends only those that touch its frontier."""

    def __init__(self, split: EdgeSplit) -> None:
        pairs = np.concatenate([split.val, split.test])
        keys = pair_keys(pairs[:, 0], pairs[:, 1], split.num_nodes)
        owner = np.concatenate([pairs[:, 0], pairs[:, 1]])
        order = np.argsort(owner, kind="stable")
        self.owner, self.keys = owner[order], np.concatenate([keys, keys])[order]

    def touching(self, ids: np.ndarray) -> list[int]:
        """Keys of the held-out pairs with an endpoint in ``ids`` (``[-1]`` for none: a typed empty list)."""
        lo, hi = np.searchsorted(self.owner, ids, "left"), np.searchsorted(self.owner, ids, "right")
        got = np.unique(np.concatenate([self.keys[a:b] for a, b in zip(lo, hi)])) if len(ids) else np.zeros(0, np.int64)
        return got.tolist() or [-1]


class LadybugNeighborSampler(HopSampler):
    """``BaseSampler`` for ``NodeLoader`` over a Ladybug database (thread-safe, see :class:`HopSampler`)."""

    def __init__(self, client: LadybugClient, schema: GraphSchema, num_nodes: int, fanouts: list[int],
                 seed: int | None = None, held_out: HeldOutIndex | None = None) -> None:
        """``held_out``: an edge split's validation and test pairs, never sampled (--task link)."""
        super().__init__(fanouts, seed)
        self.client = client
        self.schema = schema
        self.num_nodes = int(num_nodes)
        self.held_out = held_out
        self._query = hop_query(schema, held_out is not None)
        self.queries = 0

    def hop(self, frontier: np.ndarray, fanout: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        frontier = np.asarray(frontier, dtype=np.int64)
        if len(frontier) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        if frontier.min() < 0 or frontier.max() >= self.num_nodes:
            bad = frontier[(frontier < 0) | (frontier >= self.num_nodes)][:5].tolist()
            raise KeyError(f"nodes {bad} of dataset {self.schema.dataset!r} are not in Ladybug "
                           f"(ids are 0..{self.num_nodes - 1})")
        states = rng.integers(1, MINSTD_MODULUS, size=len(frontier), dtype=np.int64)
        self.queries += 1
        extra = {} if self.held_out is None else {"held": self.held_out.touching(np.unique(frontier)),
                                                   "n": self.num_nodes}
        return run_hop(self.client, self._query, frontier, states, fanout, **extra)
