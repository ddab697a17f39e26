"""Typed neighbour sampling and rows per node type inside Ladybug (src/ladybugdb/hetero_loader.py's tables).

Sampling: :class:`~src.core.hetero_sampling.HeteroHopSampler` with one query per (hop, relationship type),
the homogeneous Ladybug hop query (src/ladybugdb/sampler.py) over ``(u:<src>)-[:<rel>]->(v:<dst>)``:
in-neighbours sorted by id, Floyd's draw over the minstd state of each frontier position. Those are
the in-memory typed sampler's lists, states and arithmetic, so its samples are the in-memory sampler's
(and the Neo4j ones) for the same seed. Rows: ``MATCH ... WHERE n.id IN $ids`` per type, put in request
order by id; bit for bit the stored float32.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from src.core.codecs import DENSE, decode_rows
from src.core.errors import UserError
from src.core.hetero_fanouts import EdgeType, Fanouts, reverse_edge_type
from src.core.hetero_sampling import HeteroHopSampler
from src.core.hetero_stores import HeteroRowStore
from src.core.schema import rel_arrow
from src.ladybugdb.client import LOAD_HINT, LadybugClient
from src.ladybugdb.hetero_loader import LadybugHeteroSpec
from src.ladybugdb.sampler import run_hop, typed_hop_query


def stored_types(spec: LadybugHeteroSpec, add_reverse: bool) -> dict[EdgeType, tuple[EdgeType, bool]]:
    """Every edge type trained on -> (the stored type whose rel table holds it, walked backwards?): the stored
    types, and with ``add_reverse`` each one's ``rev_<rel>`` (nothing is written)."""
    out = {e: (e, False) for e in spec.edge_types}
    if add_reverse:
        out.update({reverse_edge_type(e): (e, True) for e in spec.edge_types})
    return out


class LadybugHeteroSampler(HeteroHopSampler):
    """Thread-safe as the homogeneous Ladybug sampler (pooled connections, per-batch generators)."""

    def __init__(self, client: LadybugClient, spec: LadybugHeteroSpec, fanouts: Fanouts, seed: int | None = None,
                 add_reverse: bool = False) -> None:
        super().__init__([n["name"] for n in spec.nodes], fanouts, seed)
        self.client = client
        self.spec = spec
        stored = stored_types(spec, add_reverse)
        self._queries = {e: typed_hop_query(spec.label(e[0]), spec.rel_table(stored[e][0]), spec.label(e[2]), "id",
                                            backwards=stored[e][1]) for e in self.edge_types}
        self.queries = 0

    def typed_hop(self, edge_type: EdgeType, frontier: np.ndarray, fanout: int, states: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        self.queries += 1
        return run_hop(self.client, self._queries[edge_type], np.asarray(frontier, np.int64), states, fanout)


class LadybugHeteroRows(HeteroRowStore):
    """``x``/``y`` per node type from Ladybug; ``--featureless degree`` counted over the rel tables."""

    def __init__(self, client: LadybugClient, spec: LadybugHeteroSpec, degrees: bool = False,
                 add_reverse: bool = False) -> None:
        self._stored = stored_types(spec, add_reverse)
        super().__init__({n["name"]: n["num_nodes"] for n in spec.nodes},
                         {n["name"]: n["num_features"] for n in spec.nodes},
                         {n["name"] for n in spec.nodes if n["labelled"]},
                         degree_edges=list(self._stored) if degrees else None)
        self.client = client
        self.spec = spec

    def _rows(self, query: str, node_type: str, ids: np.ndarray) -> tuple[np.ndarray, list[list]]:
        """Positions in ``ids`` of the rows ``query`` returns (``id`` first); every id must be there."""
        uniq, inverse = np.unique(ids, return_inverse=True)
        rows = self.client.execute(query, ids=uniq.tolist())
        got = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if len(got) != len(uniq):
            missing = np.setdiff1d(uniq, got)[:5].tolist()
            raise UserError(f"{node_type} nodes {missing} of dataset {self.spec.dataset!r} are not in Ladybug; "
                            f"reload it with `{LOAD_HINT} --dataset {self.spec.dataset} --reset`")
        order = np.argsort(got)
        return order[inverse], rows

    def fetch_type(self, node_type: str, ids: np.ndarray, want_x: bool, want_y: bool
                   ) -> tuple[Tensor | None, Tensor | None]:
        f = self.stored_features[node_type]
        want_x, want_y = want_x and f > 0, want_y and node_type in self.labelled
        cols = ["n.id"] + (["n.x"] if want_x else []) + (["n.y"] if want_y else [])
        x, y = np.zeros((len(ids), f), np.float32), np.full(len(ids), -1, np.int64)
        if len(ids):
            where, rows = self._rows(f"MATCH (n:`{self.spec.label(node_type)}`) WHERE n.id IN $ids "
                                     f"RETURN {', '.join(cols)}", node_type, ids)
            if want_x:
                raw = [bytes(rows[i][1]) for i in where]
                decode_rows(b"".join(raw), np.array([len(v) for v in raw], dtype=np.int64), f, DENSE, out=x)
            if want_y:
                y = np.asarray([rows[i][-1] for i in where], dtype=np.int64)
        return (torch.from_numpy(x) if want_x else None), (torch.from_numpy(y) if want_y else None)

    def fetch_degrees(self, node_type: str, ids: np.ndarray) -> np.ndarray:
        """One ``count`` query per column over the relationships the file holds."""
        s, label = self.spec, self.spec.label(node_type)
        out = np.zeros((len(ids), len(self.degrees[node_type])), dtype=np.int64)
        for c, (e, way) in enumerate(self.degrees[node_type]):
            stored, backwards = self._stored[e]
            arrow = rel_arrow(s.rel_table(stored), backwards)
            pattern = (f"(m:`{s.label(e[0])}`){arrow}(n:`{label}`)" if way == "in"
                       else f"(n:`{label}`){arrow}(m:`{s.label(e[2])}`)")
            rows = self.client.execute(f"MATCH {pattern} WHERE n.id IN $ids RETURN n.id, count(m)",
                                       ids=np.unique(ids).tolist())
            if rows:
                got = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
                got = got[np.argsort(got[:, 0])]
                pos = np.minimum(np.searchsorted(got[:, 0], ids), len(got) - 1)
                hit = got[pos, 0] == ids  # no row: degree 0
                out[hit, c] = got[pos[hit], 1]
        return out
