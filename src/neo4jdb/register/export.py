"""Export a dataset from Neo4j to an ``.npz`` in the shipped layout (src/data/sources.py reads it).

Why: the partitioned in-memory baseline (partition_graph.py) and the in-memory oracle read
``.npz`` files; a registered graph lives only in Neo4j. The edge list is the stored adjacency
(each node's neighbours in stored order as edges neighbour -> node), so loading the export with
the loader rebuilds the same adjacency and the same samples.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from src.client import Neo4jClient
from src.core.codecs import decode_rows
from src.core.record import DatasetRecord
from src.core.errors import UserError

SPLIT_NAMES = ("train", "val", "test")


def export_npz(client: Neo4jClient, record: DatasetRecord, path: Path, *, batch: int = 10_000,
               progress: bool = True) -> Path:
    """Write ``record``'s dataset to ``path`` (atomically: a temporary file, then renamed)."""
    s = record.schema
    if not record.has_adjacency(s):
        raise UserError(f"dataset {record.name!r} has no adjacency property to export; re-run its loader or registration")
    n, f = record.num_nodes, record.num_features
    x = np.zeros((n, f), dtype=np.float32)
    y = np.full(n, -1, dtype=np.int64)
    split = np.empty(n, dtype=object)
    src, dst = [], []
    query = (f"UNWIND range($lo, $hi - 1) AS i MATCH (n:`{s.label}` {{`{s.id_prop}`: i}}) RETURN i, n.`{s.x_prop}` AS x, "
             f"n.`{s.y_prop}` AS y, n.`{s.split_prop}` AS split, n.`{s.adj_prop}` AS nbrs ORDER BY i")
    with tqdm(total=n, unit="node", unit_scale=True, desc=f"export {record.name}", disable=not progress) as bar:
        for lo in range(0, n, batch):
            hi = min(n, lo + batch)
            recs = client.read(query, lo=lo, hi=hi)
            if len(recs) != hi - lo:
                raise UserError(f"dataset {record.name!r} lacks nodes {lo}..{hi - 1}; re-run its registration")
            raw = [bytes(r["x"]) for r in recs]
            decode_rows(b"".join(raw), np.array([len(b) for b in raw]), f, record.feature_encoding, out=x, at=slice(lo, hi),
                        quant=record.quant())
            y[lo:hi] = [r["y"] for r in recs]
            split[lo:hi] = [r["split"] for r in recs]
            for r in recs:
                nb = np.frombuffer(bytes(r["nbrs"]), dtype="<i8")
                src.append(nb)
                dst.append(np.full(len(nb), r["i"], dtype=np.int64))
            bar.update(hi - lo)
    edge_index = np.stack([np.concatenate(src or [np.zeros(0, np.int64)]),
                           np.concatenate(dst or [np.zeros(0, np.int64)])]).astype(np.int64)
    meta = {"num_classes": record.num_classes, "directed": record.schema.direction != "undirected",
            "exported_from": record.name, "class_values": list(record.properties.get("class_values") or [])}
    idx = {f"{k}_idx": np.flatnonzero(split == k).astype(np.int64) for k in SPLIT_NAMES}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, x=x, y=y, edge_index=edge_index, meta=np.array(json.dumps(meta, default=str)), **idx)
    os.replace(tmp, path)
    return path
