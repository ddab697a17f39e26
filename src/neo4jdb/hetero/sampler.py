"""Heterogeneous neighbour sampling inside Neo4j, and the typed rows the batches need.

The sampler is :class:`~src.core.hetero_sampling.HeteroHopSampler` with one Cypher query per
(hop, relationship type): for each frontier node of the destination label, its in-neighbours of the
source label through that relationship type, ordered by dense id (the order the in-memory
:class:`~src.core.hetero_sampling.HeteroCSR` stores), then Floyd's draw over the minstd state the
client sends per node: exactly the in-memory sampler's sample for the same seed. Only nodes with the
label and an integer id are neighbours.

Rows: ``gnn.fetchRows`` per label when the server has the procedures (the same call as the
homogeneous feature store), else ``UNWIND ... MATCH`` in Cypher; bit for bit the stored float32.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

from src.client import Neo4jClient
from src.core.arrays import segment_arange
from src.core.codecs import DENSE, decode_rows
from src.core.errors import UserError
from src.core.hetero_fanouts import EdgeType, Fanouts
from src.core.hetero_sampling import HeteroHopSampler
from src.core.hetero_stores import HeteroRowStore
from src.core.minstd import MINSTD_MODULUS
from src.core.schema import GraphSchema
from src.neo4jdb import procedures
from src.neo4jdb.hetero.schema import HeteroSchema

log = logging.getLogger(__name__)


def typed_hop_query(s: HeteroSchema, edge_type: EdgeType) -> str:
    """One hop of one relationship type for ``$ids`` (destination ids) with ``$states`` and ``$fanout``."""
    r = s.rel(edge_type)
    src, dst = s.node(r.src).label, s.node(r.dst).label
    step = f"((st[0] * 48271) % {MINSTD_MODULUS})"
    return f"""
UNWIND range(0, size($ids) - 1) AS k
MATCH (n:`{dst}` {{`{s.id_prop}`: $ids[k]}})
CALL (n) {{
  OPTIONAL MATCH (n)<-[:`{r.rel_type}`]-(m:`{src}`) WHERE m.`{s.id_prop}` IS NOT NULL
  WITH m.`{s.id_prop}` AS m ORDER BY m
  RETURN collect(m) AS nbrs
}}
WITH k, nbrs, size(nbrs) AS d
WITH k, nbrs, CASE WHEN $fanout < 0 OR d <= $fanout THEN range(0, d - 1) ELSE
  reduce(st = [$states[k], []], j IN range(d - $fanout, d - 1) |
    [{step}, CASE WHEN {step} % (j + 1) IN st[1] THEN st[1] + j ELSE st[1] + {step} % (j + 1) END])[1]
  END AS picks
RETURN collect(k) AS pos, collect([i IN picks | nbrs[i]]) AS nbr
"""


class Neo4jHeteroSampler(HeteroHopSampler):
    """Thread-safe as the homogeneous sampler (per-batch generators, per-call sessions)."""

    def __init__(self, client: Neo4jClient, schema: HeteroSchema, fanouts: Fanouts, seed: int | None = None) -> None:
        super().__init__([t.name for t in schema.node_types], fanouts, seed)
        self.client = client
        self.schema = schema
        self._queries = {e: typed_hop_query(schema, e) for e in fanouts}
        self.queries = 0

    def typed_hop(self, edge_type: EdgeType, frontier: np.ndarray, fanout: int, states: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        self.queries += 1
        params = {"ids": frontier.tolist(), "states": states.tolist(), "fanout": int(fanout)}
        query = self._queries[edge_type]
        rec = self.client.read_tx(lambda tx: tx.run(query, params).single(strict=True))
        pos, lists = np.asarray(rec["pos"], dtype=np.int64), rec["nbr"]
        if len(pos) != len(frontier):
            missing = np.setdiff1d(np.arange(len(frontier)), pos)[:5]
            raise UserError(f"nodes {frontier[missing].tolist()} of type {edge_type[2]!r} of dataset "
                            f"{self.schema.dataset!r} are not in Neo4j; reload it")
        counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        flat = np.fromiter((v for x in lists for v in x), dtype=np.int64, count=int(counts.sum()))
        if np.all(pos[:-1] < pos[1:]):
            return counts, flat
        order = np.argsort(pos, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return counts[order], flat[segment_arange(starts[order], counts[order])]


class Neo4jHeteroRows(HeteroRowStore):
    """``x``/``y`` per node type from Neo4j (``gnn.fetchRows`` per label, else Cypher)."""

    def __init__(self, client: Neo4jClient, schema: HeteroSchema, use_procedures: bool | None = None) -> None:
        super().__init__({t.name: t.num_nodes for t in schema.node_types},
                         {t.name: t.num_features for t in schema.node_types},
                         {t.name for t in schema.node_types if t.labelled})
        self.client = client
        self.schema = schema
        self.use_procedures = procedures.has_procedures(client) if use_procedures is None else use_procedures
        self._graph = {t.name: GraphSchema(dataset=schema.dataset, label=t.label, rel_type=schema.rel_types[0].rel_type,
                                           id_prop=schema.id_prop, x_prop=schema.x_prop, y_prop=schema.y_prop)
                       for t in schema.node_types}

    def fetch_type(self, node_type: str, ids: np.ndarray, want_x: bool, want_y: bool
                   ) -> tuple[Tensor | None, Tensor | None]:
        f = self.num_features[node_type]
        if len(ids) == 0:
            return torch.zeros((0, f)), torch.zeros(0, dtype=torch.long)
        if self.use_procedures and f:
            x, y = procedures.fetch_rows(self.client, self._graph[node_type], ids, num_features=f)
        else:
            x, y = self._cypher_rows(node_type, ids, f)
        return (torch.from_numpy(x) if want_x else None), (torch.from_numpy(y) if want_y else None)

    def _cypher_rows(self, node_type: str, ids: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
        s, label = self.schema, self.schema.node(node_type).label
        query = (f"UNWIND $ids AS i MATCH (n:`{label}` {{`{s.id_prop}`: i}}) "
                 f"RETURN collect(n.`{s.x_prop}`) AS x, collect(coalesce(n.`{s.y_prop}`, -1)) AS y")
        rec = self.client.read_tx(lambda tx: tx.run(query, ids=ids.tolist()).single(strict=True))
        if len(rec["y"]) != len(ids):
            raise UserError(f"{len(ids) - len(rec['y'])} of the requested {node_type} nodes of dataset "
                            f"{s.dataset!r} are not in Neo4j; reload it")
        x = np.zeros((len(ids), f), dtype=np.float32)
        if f:
            raw = [bytes(v) for v in rec["x"]]
            decode_rows(b"".join(raw), np.array([len(v) for v in raw], dtype=np.int64), f, DENSE, out=x)
        return x, np.asarray(rec["y"], dtype=np.int64)
