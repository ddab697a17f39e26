#!/usr/bin/env python3
"""Benchmark (not a test): what keeping the adjacency copy current costs, and what it buys.

    python bench/live_edits.py [--dataset amazon_cs] [--batches 30] [--batch_size 1024] [--fanouts 15,10]

The dataset is loaded (once) under ``bench_live_<dataset>`` on the configured server (NEO4J_URI or
the local one). Rows:

- sampling: median milliseconds of one batch's ``gnn.sampleHops`` (``--batch_size`` random seeds,
  ``--fanouts``) through :class:`~src.graph_sampler.Neo4jNeighborSampler`, for the packed adjacency
  property and for the relationship walk, from the store and from the server's projection, and for
  the plain Cypher sampler (one query per hop);
- edits: median milliseconds of one write transaction that creates (then one that deletes)
  ``1`` or ``1000`` relationships of the dataset's type between random dataset nodes, with the
  plain Cypher a user would type: the cost the plugin's commit-time upkeep adds to a write.

Run it once with the plugin before a change and once after; the table goes to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch_geometric.sampler import NodeSamplerInput

from src.client import connect
from src.data.loading import LoadConfig
from src.data.sources import load_dataset
from src.graph_sampler import Neo4jNeighborSampler
from src.neo4jdb.access import Neo4jAccess
from src.neo4jdb.load.ensure import ensure_loaded
from src.neo4jdb.load.records import require_loaded
from src.core.schema import GraphSchema


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="amazon_cs", help="source dataset (default: %(default)s)")
    ap.add_argument("--batches", type=int, default=30, help="timed batches per sampling row (default: %(default)s)")
    ap.add_argument("--batch_size", type=int, default=1024, help="seeds per batch (default: %(default)s)")
    ap.add_argument("--fanouts", default="15,10", help="fanout per hop (default: %(default)s)")
    ap.add_argument("--edits", type=int, default=20, help="timed write transactions per edit row (default: %(default)s)")
    args = ap.parse_args()
    fanouts = [int(f) for f in args.fanouts.split(",")]
    client = connect()
    schema = GraphSchema.for_dataset(f"bench_live_{args.dataset}")
    ds = load_dataset(args.dataset)
    ensure_loaded(client, ds, schema, LoadConfig(progress=False))
    record = require_loaded(client, schema.dataset)
    rng = np.random.default_rng(0)
    seeds = [rng.integers(0, ds.num_nodes, args.batch_size) for _ in range(args.batches + 3)]

    def sampling(access: Neo4jAccess) -> float:
        sampler = Neo4jNeighborSampler(client, schema, fanouts, seed=0, access=access)
        it = iter(seeds * 2)
        return median_ms(lambda: sampler.sample_from_nodes(
            NodeSamplerInput(input_id=None, node=torch.from_numpy(next(it)))), args.batches)

    rows = []
    for name, access in [
        ("adjacency, store", Neo4jAccess(True, record.adjacency, 0.0)),
        ("relationships, store", Neo4jAccess(True, None, 0.0)),
        ("adjacency, projection", Neo4jAccess(True, record.adjacency, 512.0)),
        ("relationships, projection", Neo4jAccess(True, None, 512.0)),
        ("Cypher (relationships)", Neo4jAccess.cypher()),
    ]:
        rows.append((f"sample one batch: {name}", sampling(access)))

    s = schema
    create = (f"UNWIND $pairs AS p MATCH (a:`{s.label}` {{`{s.id_prop}`: p[0]}}), (b:`{s.label}` {{`{s.id_prop}`: p[1]}}) "
              f"CREATE (a)-[:`{s.rel_type}` {{bench: true}}]->(b)")
    delete = f"MATCH ()-[r:`{s.rel_type}` {{bench: true}}]->() DELETE r"
    for n in (1, 1000):
        def pairs() -> list[list[int]]:
            return rng.integers(0, ds.num_nodes, (n, 2)).tolist()
        t_create, t_delete = [], []
        for _ in range(args.edits):
            p = pairs()
            t0 = time.perf_counter()
            client.write(create, pairs=p)
            t_create.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            client.write(delete)
            t_delete.append(time.perf_counter() - t0)
        rows.append((f"create {n} relationship(s) in one transaction", 1000 * statistics.median(t_create)))
        rows.append((f"delete {n} relationship(s) in one transaction", 1000 * statistics.median(t_delete)))
    client.close()
    print(f"\n{args.dataset}: {ds.num_nodes:,} nodes, {ds.num_edges:,} edges; batch {args.batch_size}, "
          f"fanouts {args.fanouts}\n")
    print("| what | median ms |\n|---|---:|")
    for what, ms in rows:
        print(f"| {what} | {ms:.1f} |")


if __name__ == "__main__":
    main()
