"""Benchmark (not a test): Cypher vs the gnn.* procedures for one hop, a feature fetch and a full batch.

    python bench/sampler_procedures.py [--datasets cora amazon_cs] [--frontier 10000] [--rows 10000]

Each dataset is loaded under a fresh ``T_<uuid>`` label on the configured server (NEO4J_URI or the
local one, which must have the plugin) and deleted afterwards. Measured after three warm-up runs,
best of ``--repeats``, both paths on the same ids and the same minstd states:

- hop: one hop over ``--frontier`` random frontier nodes (with repeats when the graph is smaller),
  Cypher = the production ``Neo4jNeighborSampler.hop`` decode, procedure = ``sample_hop``;
- rows: ``--rows`` unique ids (capped at the node count): ``Neo4jFeatureStore.fetch`` vs ``fetch_rows``;
- batch: ``--batch`` seeds through ``sample_multi_hop`` with ``--fanouts``, then x/y of every
  sampled node: the end-to-end seeds/s a training step sees (without prefetch threads).

Besides wall-clock rates, the table gives the CPU milliseconds per operation of the Neo4j server
(all its threads, so run it on a server nobody else is using) and of this client: on a shared,
loaded machine wall time mostly measures the queue for a core, CPU time does not.
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import numpy as np
import psutil


from src.client import Neo4jClient, connect
from src.core.sampling import sample_multi_hop
from src.feature_store import Neo4jFeatureStore
from src.neo4jdb.access import Neo4jAccess
from src.neo4jdb.local import local_server_pid
from src.core.minstd import MINSTD_MODULUS
from src.graph_sampler import Neo4jNeighborSampler, hop_query
from src.neo4jdb.procedures import fetch_rows, has_procedures, sample_hop
from src.data.sources import load_dataset
from src.data.loading import LoadConfig
from src.neo4jdb.load.ensure import ensure_loaded
from src.neo4jdb.load.records import delete_dataset, require_loaded
from src.core.schema import GraphSchema


@dataclass
class Timing:
    wall: float  # best of the repeats, seconds
    server_cpu: float | None  # mean per repeat, seconds (None: server process unknown)
    client_cpu: float  # mean per repeat, seconds


def measure(fn: Callable[[], object], repeats: int, server: psutil.Process | None, warmup: int = 3) -> Timing:
    for _ in range(warmup):  # JIT of the server and of the query plans, page cache
        fn()
    best = float("inf")
    cpu0 = sum(server.cpu_times()[:2]) if server else 0.0
    client0 = time.process_time()
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    server_cpu = (sum(server.cpu_times()[:2]) - cpu0) / repeats if server else None
    return Timing(best, server_cpu, (time.process_time() - client0) / repeats)


def cypher_hop_fn(client: Neo4jClient, schema: GraphSchema) -> Callable:
    """The production Cypher hop (query and decode of Neo4jNeighborSampler.hop) without its base class."""
    sampler = SimpleNamespace(client=client, schema=schema, _query=hop_query(schema), queries=0)
    return lambda frontier, fanout, rng: Neo4jNeighborSampler.hop(sampler, frontier, fanout, rng)


def proc_hop_fn(client: Neo4jClient, schema: GraphSchema) -> Callable:
    """Same state draw as Neo4jNeighborSampler.hop, so both paths sample the same neighbours."""
    def hop(frontier: np.ndarray, fanout: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        states = rng.integers(1, MINSTD_MODULUS, size=len(frontier), dtype=np.int64)
        return sample_hop(client, schema, frontier, states, fanout)
    return hop


@dataclass
class Row:
    dataset: str
    what: str
    unit: str  # per-second unit of the rates
    count: int  # units per operation
    cypher: Timing
    procedure: Timing


def bench_dataset(client: Neo4jClient, name: str, args: argparse.Namespace, server: psutil.Process | None) -> list[Row]:
    ds = load_dataset(name)
    n, f = ds.num_nodes, ds.num_features
    schema = GraphSchema.for_dataset(f"T_{uuid.uuid4().hex[:12]}")
    report = ensure_loaded(client, ds, schema, LoadConfig(method="unwind", progress=False))
    print(f"{name}: N={n} E={ds.num_edges} F={f} loaded in {report.seconds:.1f} s", file=sys.stderr)
    rows = []
    try:
        rng = np.random.default_rng(0)
        hops = {"Cypher": cypher_hop_fn(client, schema), "procedure": proc_hop_fn(client, schema)}
        store = Neo4jFeatureStore.from_record(client, require_loaded(client, schema.dataset),
                                              access=Neo4jAccess.cypher())
        fetch = {"Cypher": store.fetch,
                 "procedure": lambda ids: fetch_rows(client, schema, ids, num_features=f, encoding=store.encoding,
                                                     row_bytes=store.row_bytes)}

        def both(fns: dict[str, Callable[[], object]]) -> tuple[Timing, Timing]:
            return measure(fns["Cypher"], args.repeats, server), measure(fns["procedure"], args.repeats, server)

        frontier = rng.choice(n, size=args.frontier, replace=args.frontier > n).astype(np.int64)
        a, b = (hops[k](frontier, args.fanout, np.random.default_rng(1)) for k in hops)
        assert all(np.array_equal(p, q) for p, q in zip(a, b)), "Cypher and procedure samples differ"
        timings = both({k: lambda k=k: hops[k](frontier, args.fanout, np.random.default_rng(1)) for k in hops})
        rows.append(Row(name, f"one hop, fanout {args.fanout}", "nodes", len(frontier), *timings))

        ids = rng.choice(n, size=min(args.rows, n), replace=False).astype(np.int64)
        timings = both({k: lambda k=k: fetch[k](ids) for k in fetch})
        rows.append(Row(name, f"feature rows, F={f}", "rows", len(ids), *timings))

        seeds = rng.choice(n, size=min(args.batch, n), replace=False).astype(np.int64)
        sampled = {}

        def batch(kind: str) -> None:
            hop_rng = np.random.default_rng(2)
            out = sample_multi_hop(lambda fr, k, hop: hops[kind](fr, k, hop_rng), seeds, args.fanouts)
            fetch[kind](out.node.numpy())
            sampled[kind] = out.num_sampled_nodes

        timings = both({k: lambda k=k: batch(k) for k in hops})
        assert sampled["Cypher"] == sampled["procedure"]
        rows.append(Row(name, f"batch, fanouts {args.fanouts}, new nodes per hop {sampled['procedure']}",
                        "seeds", len(seeds), *timings))
    finally:
        delete_dataset(client, schema.dataset, schema.label, schema.rel_type)
        client.write(f"DROP CONSTRAINT `{schema.constraint_name}` IF EXISTS")
    return rows


def _cpu(t: Timing) -> str:
    server = "?" if t.server_cpu is None else f"{1000 * t.server_cpu:,.0f}"
    return f"{server} + {1000 * t.client_cpu:,.0f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["cora", "amazon_cs"],
                   help="loaded datasets (default %(default)s)")
    p.add_argument("--frontier", type=int, default=10_000, help="frontier nodes in the one-hop test")
    p.add_argument("--fanout", type=int, default=10, help="fanout of the one-hop test")
    p.add_argument("--rows", type=int, default=10_000, help="feature rows (capped at the node count)")
    p.add_argument("--batch", type=int, default=1024, help="seeds per batch (default %(default)s)")
    p.add_argument("--fanouts", type=int, nargs="+", default=[15, 10, 5],
                   help="neighbours per hop (default %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per path, best taken (default %(default)s)")
    p.add_argument("--server_pid", type=int, default=None,
                   help="pid of the Neo4j server for its CPU time (default: the local server when it is the target)")
    args = p.parse_args()
    with connect() as client:
        if not has_procedures(client):
            sys.exit("the server has no gnn.* procedures: restart the local one (bash jobs/neo4j.sh stop && "
                     "bash jobs/neo4j.sh start) or copy data/neo4j/plugin-*/gnn-procedures.jar into its plugins")
        pid = args.server_pid or local_server_pid(client.settings.uri)
        server = psutil.Process(pid) if pid else None
        rows = [r for name in args.datasets for r in bench_dataset(client, name, args, server)]
    print("| dataset | measurement | ops of | Cypher /s | procedure /s | speed-up | CPU ms/op Cypher (server + client) | CPU ms/op procedure |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cy, pr = r.count / r.cypher.wall, r.count / r.procedure.wall
        print(f"| {r.dataset} | {r.what} | {r.count:,} {r.unit} | {cy:,.0f} | {pr:,.0f} | {pr / cy:.1f}x | "
              f"{_cpu(r.cypher)} | {_cpu(r.procedure)} |")


if __name__ == "__main__":
    main()
