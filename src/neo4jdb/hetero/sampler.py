"""Heterogeneous neighbour sampling inside Neo4j, and the typed rows the batches need.

With the plugin, ONE ``gnn.sampleHeteroHops`` call per batch samples every hop and relationship type
and relabels per node type on the server (jobs/neo4j/plugin, ``HeteroProcedures``). Without it (the
fallback) the sampler is :class:`~src.core.hetero_sampling.HeteroHopSampler` with one Cypher query per
(hop, relationship type): for each frontier node of the destination label, its in-neighbours of the
source label through that relationship type (its out-neighbours for a ``rev_`` type), ordered by dense id (the order the in-memory
:class:`~src.core.hetero_sampling.HeteroCSR` stores), then Floyd's draw over the minstd state the
client sends per node: exactly the in-memory sampler's sample for the same seed. Only nodes with the
label and an integer id are neighbours.

``projection_mb > 0`` lets the procedure sample from the server's in-heap CSR per relationship type
(built on first use, shared, dropped by any write: the same samples, bit for bit). Rows per type:
src/neo4jdb/hetero/rows.py.
"""
from __future__ import annotations

import logging

import numpy as np
from neo4j import exceptions as neo4j_exc
from torch_geometric.sampler import HeteroSamplerOutput

from src.client import Neo4jClient
from src.core.arrays import segment_arange
from src.core.errors import UserError
from src.core.hetero_fanouts import EdgeType, Fanouts
from src.core.hetero_sampling import HeteroHopSampler, TypedHop, hetero_sampler_output
from src.core.minstd import MINSTD_MODULUS
from src.core.schema import rel_arrow
from src.neo4jdb import procedures
from src.neo4jdb.hetero.schema import HeteroSchema

log = logging.getLogger(__name__)


def typed_hop_query(s: HeteroSchema, edge_type: EdgeType) -> str:
    """One hop of one relationship type for ``$ids`` (destination ids) with ``$states`` and ``$fanout``."""
    r = s.rel(edge_type)
    src, dst = s.node(r.src).label, s.node(r.dst).label
    arrow = rel_arrow(r.rel_type, not r.reverse)
    step = f"((st[0] * 48271) % {MINSTD_MODULUS})"
    return f"""
UNWIND range(0, size($ids) - 1) AS k
MATCH (n:`{dst}` {{`{s.id_prop}`: $ids[k]}})
CALL (n) {{
  OPTIONAL MATCH (n){arrow}(m:`{src}`) WHERE m.`{s.id_prop}` IS NOT NULL
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


HETERO_PROCEDURE = "gnn.sampleHeteroHops"
_HOPS_ARGS = "$labels, $id_prop, $rel_types, $srcs, $dsts, $seed_type, $seeds, $fanouts, $hop_states"


class Neo4jHeteroSampler(HeteroHopSampler):
    """Thread-safe as the homogeneous sampler (per-batch generators, per-call sessions).

    ``use_procedures`` None: ONE ``gnn.sampleHeteroHops`` call per batch (every hop and type, relabelled on
    the server) when the server has it, else one Cypher query per (hop, relationship type).
    ``projection_mb``: server heap the procedure's per-relationship-type projections may use (0: the store)."""

    def __init__(self, client: Neo4jClient, schema: HeteroSchema, fanouts: Fanouts, seed: int | None = None,
                 use_procedures: bool | None = None, projection_mb: float = 0.0) -> None:
        super().__init__([t.name for t in schema.node_types], fanouts, seed)
        self.client = client
        self.schema = schema
        self._queries = {e: typed_hop_query(schema, e) for e in fanouts}
        self.use_procedures = (HETERO_PROCEDURE in procedures.installed(client) if use_procedures is None
                               else use_procedures)
        types = [t.name for t in schema.node_types]
        self._call = {"labels": [t.label for t in schema.node_types], "id_prop": schema.id_prop,
                      "rel_types": [schema.rel(e).rel_type for e in self.edge_types],
                      "srcs": [types.index(e[0]) for e in self.edge_types],
                      "dsts": [types.index(e[2]) for e in self.edge_types],
                      "fanouts": [self.fanouts[e] for e in self.edge_types], "projection_mb": float(projection_mb),
                      "reversed": [schema.rel(e).reverse for e in self.edge_types]}
        reverse = any(self._call["reversed"])  # only then passed: a plugin without rev_ types refuses the call
        self._hops_query = procedures.procedure_call(
            HETERO_PROCEDURE, _HOPS_ARGS + (", $projection_mb, $reversed" if reverse else ""), "counts, locals, nodes",
            0.0 if reverse else projection_mb)
        self.queries = 0

    def sample_multi_hop(self, seed_type: str, seeds: np.ndarray, bases: np.ndarray) -> HeteroSamplerOutput:
        if not self.use_procedures:
            return super().sample_multi_hop(seed_type, seeds, bases)
        self.queries += 1
        params = {**self._call, "seed_type": self.node_types.index(seed_type),
                  "seeds": np.asarray(seeds, dtype="<i8").tobytes(), "hop_states": bases.tolist()}
        try:
            rec = self.client.read_tx(lambda tx: tx.run(self._hops_query, params).single(strict=True))
        except neo4j_exc.ClientError as exc:
            if "gnn.sampleHeteroHops: no (:" in (exc.message or ""):
                raise UserError(f"a seed or sampled node of dataset {self.schema.dataset!r} is not in Neo4j "
                                f"({exc.message.split('no ')[-1]}); reload it") from None
            raise
        r, t = len(self.edge_types), len(self.node_types)
        hops = [TypedHop([procedures.decode_int64(c) for c in rec["counts"][h * r:(h + 1) * r]],
                         [np.frombuffer(c, dtype="<i4").astype(np.int64) for c in rec["locals"][h * r:(h + 1) * r]],
                         [procedures.decode_int64(c) for c in rec["nodes"][h * t:(h + 1) * t]])
                for h in range(self.num_hops)]
        return hetero_sampler_output(self.node_types, self.edge_types, seed_type, seeds, hops)

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
