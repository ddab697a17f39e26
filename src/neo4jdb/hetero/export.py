"""A heterogeneous dataset read back from Neo4j into a :class:`~src.data.hetero.HeteroGraphDataset`.

Why: the in-memory hetero backend is the oracle the Neo4j samplers are compared with; for a graph
registered in place (src/neo4jdb/register/hetero.py) there is no source file, so the oracle is what
the database stores: rows by dense id per label, every relationship of each declared type between
nodes with ids (what the samplers walk), labels and splits of the target type. Reads in id ranges.
"""
from __future__ import annotations

import numpy as np

from src.client import Neo4jClient
from src.core.codecs import DENSE, decode_rows
from src.data.hetero import HeteroGraphDataset, NodeTypeData
from src.neo4jdb.hetero.schema import HeteroSchema

READ_BATCH = 20_000


def read_hetero(client: Neo4jClient, s: HeteroSchema, name: str | None = None) -> HeteroGraphDataset:
    """The whole dataset ``s`` as Neo4j holds it now (named ``name``, default the dataset's)."""
    nodes = {}
    for t in s.node_types:
        x = np.zeros((t.num_nodes, t.num_features), dtype=np.float32) if t.num_features else None
        y = np.full(t.num_nodes, -1, dtype=np.int64) if t.labelled else None
        codes = np.full(t.num_nodes, -1, dtype=np.int8)
        for lo in range(0, t.num_nodes, READ_BATCH):
            hi = min(t.num_nodes, lo + READ_BATCH)
            rec = client.read(f"UNWIND range($lo, $hi - 1) AS i MATCH (n:`{t.label}` {{`{s.id_prop}`: i}}) "
                              f"RETURN collect(n.`{s.x_prop}`) AS x, collect(coalesce(n.`{s.y_prop}`, -1)) AS y, "
                              f"collect(coalesce(n.`{s.split_prop}`, '')) AS split", lo=lo, hi=hi)[0]
            if x is not None:
                raw = [bytes(v) for v in rec["x"]]
                decode_rows(b"".join(raw), np.array([len(v) for v in raw], dtype=np.int64), t.num_features, DENSE,
                            out=x[lo:hi])
            if y is not None:
                y[lo:hi] = rec["y"]
                codes[lo:hi] = [{"train": 0, "val": 1, "test": 2}.get(v, -1) for v in rec["split"]]
        split = {f"{k}_idx": np.flatnonzero(codes == c) for c, k in enumerate(("train", "val", "test"))} if y is not None \
            else {}
        nodes[t.name] = NodeTypeData(t.num_nodes, x=x, y=y, **split)
    edges = {}
    for r in s.rel_types:
        src, dst = s.node(r.src).label, s.node(r.dst).label
        rec = client.read(f"MATCH (a:`{src}`)-[:`{r.rel_type}`]->(b:`{dst}`) "
                          f"WHERE a.`{s.id_prop}` IS NOT NULL AND b.`{s.id_prop}` IS NOT NULL "
                          f"RETURN collect(a.`{s.id_prop}`) AS a, collect(b.`{s.id_prop}`) AS b")[0]
        edges[r.edge_type] = np.array([rec["a"], rec["b"]], dtype=np.int64).reshape(2, -1)
    return HeteroGraphDataset(name or s.dataset, nodes, edges, s.target_type, s.num_classes,
                              meta={"source": f"neo4j:{s.dataset}"})
