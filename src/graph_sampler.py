"""Neighbour sampling inside Neo4j: one Cypher query per hop per batch.

Semantics are PyG's ``NeighborSampler`` (and our in-memory :class:`CSRNeighborSampler`): for
every node of the hop's frontier, a uniform sample without replacement of ``min(fanout,
degree)`` of its in-neighbours ``(v)<-[:T]-(u)``; the multi-hop relabelling is the shared
:func:`sample_multi_hop`, so both backends produce identical ``SamplerOutput`` structures.

How the sample is drawn in Cypher, exactly uniform and reproducible: the client sends one
random 31-bit state per frontier node (from the batch's seeded generator); Neo4j collects the
node's neighbour references and, when the degree ``d`` exceeds ``k``, picks positions with
Floyd's algorithm (k draws, each ``t = r mod (j+1)`` for ``j = d-k .. d-1``), advancing the
state with the Park-Miller "minimal standard" generator (``r <- 48271 r mod 2^31-1``). Only
the picked neighbours' ``id`` properties are read. Neighbours are dataset nodes only (the label and a
dense id): a node created since the load is not sampled on any path until it gets an id.

When the server has the project's ``gnn.*`` procedures (jobs/neo4j/plugin, installed by the
local server), the same algorithm runs in Java and returns packed bytes instead of records, and
ALL hops of a batch are one call (``gnn.sampleHops``): the server keeps the batch's node set,
builds each next frontier itself and answers in local indices (relabelled), so the only index
lookups are one per node of the batch and the client does no relabelling. When
the dataset has the packed adjacency property (``GraphSchema.adj_prop``, written by the loader),
the procedure reads a node's neighbours from it (one property read) instead of walking its
relationship chain. Per-node states are then derived on the server from one client state per hop
(:func:`src.neo4jdb.procedures.hop_states`). Every path is reproducible under ``seed`` and checked against
the Cypher query or the in-memory graph in tests/test_procedures.py. With a projection budget the
procedures may sample from an in-heap projection of the topology (same samples, see
:mod:`src.neo4jdb.procedures`).
"""
from __future__ import annotations

import logging

import numpy as np
from torch_geometric.sampler import NodeSamplerInput, SamplerOutput

from src.core.arrays import segment_arange
from src.core.edge_split import HELD_OUT
from src.core.minstd import MINSTD_MODULUS
from src.neo4jdb import procedures
from src.neo4jdb.access import Neo4jAccess
from src.client import Neo4jClient
from src.core.sampling import HopSampler, sampler_output
from src.core.schema import GraphSchema

log = logging.getLogger(__name__)


def hop_query(schema: GraphSchema, held_out_prop: str | None = None) -> str:
    """The Cypher that samples one hop for a list of frontier ids (identifiers pre-validated).

    ``held_out_prop``: the relationship property of a stored edge split (src/neo4jdb/edge_split.py);
    relationships it marks as validation or test are not neighbours (link training's graph)."""
    s = schema
    if held_out_prop is None:
        nbrs = f"[{s.neighbours_of('n', 'm')} | m]"
    else:
        nbrs = (f"[{s.neighbours_of('n', 'm', 'r')} WHERE NOT coalesce(r.`{held_out_prop}`, '') IN "
                f"{list(HELD_OUT)!r} | m]")
    return f"""
UNWIND range(0, size($ids) - 1) AS k
MATCH (n:`{s.label}` {{`{s.id_prop}`: $ids[k]}})
WITH k, [m IN {nbrs} WHERE m:`{s.label}` AND m.`{s.id_prop}` IS NOT NULL] AS nbrs
WITH k, nbrs, size(nbrs) AS d
WITH k, nbrs, CASE WHEN $fanout < 0 OR d <= $fanout THEN range(0, d - 1) ELSE
  reduce(st = [$states[k], []], j IN range(d - $fanout, d - 1) |
    [(st[0] * 48271) % {MINSTD_MODULUS},
     CASE WHEN ((st[0] * 48271) % {MINSTD_MODULUS}) % (j + 1) IN st[1]
          THEN st[1] + j
          ELSE st[1] + ((st[0] * 48271) % {MINSTD_MODULUS}) % (j + 1) END])[1]
  END AS picks
RETURN collect(k) AS pos, collect([i IN picks | nbrs[i].`{s.id_prop}`]) AS nbr
"""


class Neo4jNeighborSampler(HopSampler):
    """``BaseSampler`` for ``NodeLoader(data=(feature_store, graph_store), node_sampler=...)``.

    Thread-safe: each batch derives its own generator (see :class:`HopSampler`), and the
    driver's sessions are per call, so prefetch threads can sample concurrently.
    """

    def __init__(self, client: Neo4jClient, schema: GraphSchema, fanouts: list[int], seed: int | None = None,
                 *, access: Neo4jAccess | None = None, held_out_prop: str | None = None,
                 num_nodes: int | None = None) -> None:
        """``access`` None: the procedures when the server has them, walking the relationships (no
        adjacency property), no projection (see :class:`~src.neo4jdb.access.Neo4jAccess`).
        ``held_out_prop``: the Cypher path skips relationships an edge split holds out (the procedures
        read the split's training adjacency, ``access.adj_prop``). ``num_nodes``: for link batches."""
        super().__init__(fanouts, seed)
        self.client = client
        self.schema = schema
        self.num_nodes = num_nodes
        self._query = hop_query(schema, held_out_prop)
        self.access = access if access is not None else Neo4jAccess.resolve(client, schema)
        self.queries = 0

    @property
    def use_procedures(self) -> bool:
        return self.access.use_procedures

    def sample_from_nodes(self, inputs: NodeSamplerInput, **kwargs) -> SamplerOutput:
        """With the procedures: every hop of the batch in one ``gnn.sampleHops`` call; else one query per hop."""
        if not self.use_procedures:
            return super().sample_from_nodes(inputs, **kwargs)
        if inputs.input_type is not None or inputs.time is not None:
            raise NotImplementedError(f"{type(self).__name__} supports homogeneous, non-temporal graphs only")
        seeds = inputs.node.numpy().astype(np.int64, copy=False)
        rng = self.batch_rng(seeds)
        states = rng.integers(1, MINSTD_MODULUS, size=len(self.fanouts), dtype=np.int64)
        self.queries += 1
        hops = procedures.sample_hops(self.client, self.schema, seeds, self.fanouts, states, adj_prop=self.access.adj_prop,
                                      projection_mb=self.access.projection_mb)
        out = sampler_output(seeds, hops)
        out.metadata = (inputs.input_id, inputs.time)
        return out

    def hop(self, frontier: np.ndarray, fanout: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if len(frontier) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        states = rng.integers(1, MINSTD_MODULUS, size=len(frontier), dtype=np.int64)
        self.queries += 1
        if self.use_procedures:
            return procedures.sample_hop(self.client, self.schema, frontier, states, fanout, adj_prop=self.access.adj_prop,
                                         projection_mb=self.access.projection_mb)
        params = {"ids": frontier.tolist(), "states": states.tolist(), "fanout": int(fanout)}
        rec = self.client.read_tx(lambda tx: tx.run(self._query, params).single(strict=True))
        pos = np.asarray(rec["pos"], dtype=np.int64)
        lists = rec["nbr"]
        if len(pos) != len(frontier):
            missing = np.setdiff1d(np.arange(len(frontier)), pos)[:5]
            raise KeyError(f"nodes {frontier[missing].tolist()} of dataset {self.schema.dataset!r} are not in Neo4j")
        counts_by_pos = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        flat = np.fromiter((v for x in lists for v in x), dtype=np.int64, count=int(counts_by_pos.sum()))
        if np.all(pos[:-1] < pos[1:]):  # the usual case: rows come back in frontier order
            return counts_by_pos, flat
        order = np.argsort(pos, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts_by_pos)[:-1]])
        counts = counts_by_pos[order]
        return counts, flat[segment_arange(starts[order], counts)]
