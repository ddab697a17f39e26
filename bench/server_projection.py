"""Benchmark (not a test): the gnn.* procedures' store path vs their in-heap projection, on loaded datasets.

    python bench/server_projection.py --datasets amazon_cs synthetic_n1000000_d10_f64_c10_s0 \
        --projection_mb 0 512 [--tag after] [--results data/bench/server_projection.json]

For every dataset (already loaded with loaders/load_into_neo4j.py) and every ``--projection_mb``
(0 = the store path), after warm-up calls (the first one builds the projection; its time is
reported), the median of ``--repeats`` calls of:

- rows: ``fetch_rows`` of ``--rows`` random distinct ids (one Bolt transaction, <= 16 MiB per call);
- hops: one ``sample_hops`` call (``--batch`` seeds, ``--fanouts``, the adjacency property when loaded);
- batch: hops + the rows of every sampled node, single-threaded: the seeds/s one loader thread sees.

Server CPU ms per operation (all its threads) is printed next to wall time: on a shared machine wall
time mostly measures the queue for a core. Every configuration must return the same bytes (checked
here, and across runs through the digests saved in ``--results``). ``--results`` keeps the rows of
earlier runs (e.g. ``--tag before`` against an older plugin) and the table shows all of them side by
side; ratios are to the first run's store path of the same dataset.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import psutil


from src.client import Neo4jClient, connect
from src.core.sampling import sample_multi_hop
from src.neo4jdb.load.records import require_loaded
from src.core.codecs import row_bytes
from src.neo4jdb.local import local_server_pid
from src.core.minstd import MINSTD_MODULUS
from src.neo4jdb.procedures import fetch_rows, projections, sample_hops


def timed(fn, repeats: int, server: psutil.Process | None) -> tuple[float, float | None]:
    """Median wall ms and mean server CPU ms per call of ``fn``."""
    cpu0 = sum(server.cpu_times()[:2]) if server else 0.0
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        walls.append(1000 * (time.perf_counter() - t))
    cpu = 1000 * (sum(server.cpu_times()[:2]) - cpu0) / repeats if server else None
    return statistics.median(walls), cpu


def bench(client: Neo4jClient, name: str, mb: float, args: argparse.Namespace, server: psutil.Process | None
          ) -> dict:
    record = require_loaded(client, name)
    schema = record.schema
    n, f = record.num_nodes, record.num_features
    encoding = record.feature_encoding
    adj = schema.adj_prop if record.has_adjacency(schema) else None
    rng = np.random.default_rng(0)
    ids = rng.choice(n, size=min(args.rows, n), replace=False).astype(np.int64)
    seeds = rng.choice(n, size=min(args.batch, n), replace=False).astype(np.int64)
    states = rng.integers(1, MINSTD_MODULUS, size=len(args.fanouts), dtype=np.int64)
    kw = {"num_features": f, "encoding": encoding, "row_bytes": row_bytes(encoding, f, record.feature_density),
          "projection_mb": mb}

    def rows(which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return fetch_rows(client, schema, which, **kw)

    def hops() -> list:
        return sample_hops(client, schema, seeds, args.fanouts, states, adj_prop=adj, projection_mb=mb)

    def batch() -> int:
        got = hops()
        out = sample_multi_hop(lambda fr, k, hop: got[hop], seeds, args.fanouts)
        rows(out.node.numpy())
        return out.node.numel()

    t = time.perf_counter()
    x, y = rows(ids)
    first_rows = 1000 * (time.perf_counter() - t)
    t = time.perf_counter()
    got = hops()
    first_hops = 1000 * (time.perf_counter() - t)
    digest = hashlib.sha1(x.tobytes() + y.tobytes() + b"".join(a.tobytes() for h in got for a in h)).hexdigest()
    sampled = batch()
    rows_ms, rows_cpu = timed(lambda: rows(ids), args.repeats, server)
    hops_ms, hops_cpu = timed(hops, args.repeats, server)
    batch_ms, batch_cpu = timed(batch, args.repeats, server)
    held = projections(client) if mb > 0 else []
    return {"tag": args.tag, "dataset": name, "projection_mb": mb, "rows": len(ids), "seeds": len(seeds),
            "sampled_nodes": sampled, "first_rows_ms": first_rows, "first_hops_ms": first_hops,
            "rows_ms": rows_ms, "rows_cpu_ms": rows_cpu, "hops_ms": hops_ms, "hops_cpu_ms": hops_cpu,
            "batch_ms": batch_ms, "batch_cpu_ms": batch_cpu,
            "server_rss_mb": server.memory_info().rss / 2**20 if server else None,
            "projected": [p["state"] for p in held if f"/{schema.label}/" in p["key"]], "digest": digest}


def _fmt(v: float | None) -> str:
    return "?" if v is None else f"{v:,.0f}"


def print_table(results: list[dict]) -> None:
    print("| run | dataset | projection_mb | rows: ms/call (server CPU ms) | hops: ms/call (CPU) | batch: ms (CPU) |"
          " seeds/s | x vs first | first call rows/hops ms | server RSS MiB | digest |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    base: dict[str, float] = {}
    for r in results:
        rate = 1000 * r["seeds"] / r["batch_ms"]
        base.setdefault(r["dataset"], rate)
        print(f"| {r['tag']} | {r['dataset']} | {r['projection_mb']:g} | {r['rows_ms']:,.1f} ({_fmt(r['rows_cpu_ms'])})"
              f" | {r['hops_ms']:,.1f} ({_fmt(r['hops_cpu_ms'])}) | {r['batch_ms']:,.1f} ({_fmt(r['batch_cpu_ms'])})"
              f" | {rate:,.0f} | {rate / base[r['dataset']]:.2f}x | {r['first_rows_ms']:,.0f}/{r['first_hops_ms']:,.0f}"
              f" | {_fmt(r['server_rss_mb'])} | {r['digest'][:8]} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["amazon_cs"], help="names of loaded datasets")
    p.add_argument("--projection_mb", type=float, nargs="+", default=[0.0, 512.0],
                   help="budgets to compare; 0 = the store path")
    p.add_argument("--rows", type=int, default=12_000, help="feature rows per fetch (capped at the node count)")
    p.add_argument("--batch", type=int, default=1024, help="seeds per batch")
    p.add_argument("--fanouts", type=int, nargs="+", default=[15, 10, 5],
                   help="neighbours per hop (default %(default)s)")
    p.add_argument("--repeats", type=int, default=7, help="timed calls per measurement (default %(default)s)")
    p.add_argument("--tag", default="run", help="name of this run in the table (e.g. before, after)")
    p.add_argument("--results", type=Path, default=None,
                   help="JSON file that keeps the rows of every run (appended), printed together")
    args = p.parse_args()
    previous = json.loads(args.results.read_text()) if args.results and args.results.exists() else []
    with connect() as client:
        pid = local_server_pid(client.settings.uri)
        server = psutil.Process(pid) if pid else None
        mine = [bench(client, name, mb, args, server) for name in args.datasets for mb in args.projection_mb]
    for name in args.datasets:
        digests = {r["digest"] for r in previous + mine if r["dataset"] == name}
        if len(digests) > 1:
            sys.exit(f"{name}: the paths returned different bytes (digests {sorted(digests)})")
    results = previous + mine
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=1))
    print_table(results)


if __name__ == "__main__":
    main()
