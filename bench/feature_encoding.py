"""Benchmark (not a test): dense vs sparse feature rows in Neo4j, bytes per node and fetch time.

    python bench/feature_encoding.py [--dataset coauthor_phy] [--num_nodes 5000] [--rows 2000] [--repeats 5]

The first ``--num_nodes`` nodes of the dataset (no edges: only ``x`` and ``y`` matter here) are
loaded twice under fresh ``T_<uuid>`` labels, once per encoding (``--feature_format dense`` and
``sparse``), and deleted afterwards. Per encoding it prints the stored bytes per node (the sum of
the ``x`` byte arrays, as Neo4j holds them) and the time to fetch ``--rows`` random unique rows
as dense float32 (decode included) through ``gnn.fetchRows`` and through the Cypher fallback:
best of ``--repeats`` after one warm-up, same ids for all. ``PyG ms`` / ``x MiB`` are what the
training loader gets through ``multi_get_tensor`` (procedure path): dense-stored rows as a dense
tensor, sparse-stored rows as a sparse COO tensor (never densified). Results are checked bit for
bit against the source. Run it on a quiet server: wall times on a shared machine are noisy.
"""
from __future__ import annotations

import argparse
import logging
import time
import uuid

import numpy as np
import torch
from torch_geometric.data.feature_store import TensorAttr


from src.client import connect, Neo4jSettings
from src.data.graph import GraphDataset
from src.data.sources import load_dataset
from src.core.errors import run_cli
from src.feature_store import Neo4jFeatureStore
from src.neo4jdb.access import Neo4jAccess
from src.data.loading import LoadConfig
from src.neo4jdb.load.ensure import ensure_loaded
from src.neo4jdb.load.records import delete_dataset, require_loaded
from src.neo4jdb.procedures import has_procedures
from src.core.schema import GraphSchema


def first_nodes(ds: GraphDataset, n: int) -> GraphDataset:
    """The first ``n`` nodes with their features and labels, no edges."""
    n = min(n, ds.num_nodes)
    return GraphDataset(name=f"{ds.name}_first{n}", num_nodes=n, num_features=ds.num_features,
                        num_classes=ds.num_classes, edge_index=np.zeros((2, 0), dtype=np.int64), x=ds.x[:n],
                        y=np.asarray(ds.y[:n]), train_idx=np.arange(0), val_idx=np.arange(0), test_idx=np.arange(0))


def tensor_mib(x: torch.Tensor) -> float:
    """Memory held by a dense or sparse COO tensor (indices + values for sparse)."""
    if x.is_sparse:
        return (x._indices().numel() * 8 + x._values().numel() * 4) / 2**20
    return x.numel() * x.element_size() / 2**20


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up: query plans, page cache
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="coauthor_phy", help="dataset (default: %(default)s)")
    p.add_argument("--num_nodes", type=int, default=5000, help="nodes loaded per encoding (default: %(default)s)")
    p.add_argument("--rows", type=int, default=2000, help="unique rows per fetch (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed fetches per path (default: %(default)s)")
    args = p.parse_args()
    logging.getLogger("neo4j").setLevel(logging.ERROR)  # "label does not exist" notices of the fresh labels
    ds = first_nodes(load_dataset(args.dataset), args.num_nodes)
    ids = np.random.default_rng(0).choice(ds.num_nodes, min(args.rows, ds.num_nodes), replace=False)
    want = ds.features(ids)
    client = connect(Neo4jSettings.resolve())
    procs = has_procedures(client)
    print(f"{args.dataset}: first {ds.num_nodes} nodes, F={ds.num_features}, {len(ids)} random rows per fetch, "
          f"best of {args.repeats}", flush=True)
    print(f"{'encoding':<26} {'bytes/node':>10} {'load s':>7} {'procedure ms':>13} {'Cypher ms':>10} "
          f"{'PyG ms':>8} {'x MiB':>7}")
    results = {}
    try:
        for fmt in ("dense", "sparse"):
            schema = GraphSchema.for_dataset(f"T_{uuid.uuid4().hex[:12]}")
            try:
                report = ensure_loaded(client, ds, schema, LoadConfig(method="unwind", progress=False,
                                                                      feature_format=fmt))
                record = require_loaded(client, schema.dataset)
                stored = client.read(f"MATCH (n:`{schema.label}`) RETURN sum(size(n.x)) AS b")[0]["b"]
                row = {"bytes": stored / ds.num_nodes, "load": report.seconds}
                for name, use in (("procedure", True), ("Cypher", False)):
                    if use and not procs:
                        row[name] = float("nan")
                        continue
                    store = Neo4jFeatureStore.from_record(client, record, access=Neo4jAccess(use_procedures=use))
                    x, _ = store.fetch(ids)
                    assert np.array_equal(x.view(np.uint32), want.view(np.uint32)), f"{fmt}/{name} rows differ"
                    row[name] = 1000 * best_of(lambda: store.fetch(ids), args.repeats)
                store = Neo4jFeatureStore.from_record(client, record, access=Neo4jAccess(use_procedures=procs))
                attrs = [TensorAttr(None, "x", torch.from_numpy(ids)), TensorAttr(None, "y", torch.from_numpy(ids))]
                xt, _ = store.multi_get_tensor(attrs)
                assert torch.equal(xt.to_dense() if xt.is_sparse else xt, torch.from_numpy(want))
                row["PyG"] = 1000 * best_of(lambda: store.multi_get_tensor(attrs), args.repeats)
                row["x_mb"] = tensor_mib(xt)
                results[fmt] = row
                print(f"{record.feature_encoding:<26} {row['bytes']:>10,.0f} {row['load']:>7.1f} "
                      f"{row['procedure']:>13.1f} {row['Cypher']:>10.1f} {row['PyG']:>8.1f} {row['x_mb']:>7.1f}",
                      flush=True)
            finally:
                delete_dataset(client, schema.dataset, schema.label, schema.rel_type)
    finally:
        client.close()
    d, s = results["dense"], results["sparse"]
    print(f"{'dense / sparse':<26} {d['bytes'] / s['bytes']:>10.1f}x {d['load'] / s['load']:>6.1f}x "
          f"{d['procedure'] / s['procedure']:>12.1f}x {d['Cypher'] / s['Cypher']:>9.1f}x "
          f"{d['PyG'] / s['PyG']:>7.1f}x {d['x_mb'] / s['x_mb']:>6.1f}x")
    return 0


if __name__ == "__main__":
    run_cli(main)
