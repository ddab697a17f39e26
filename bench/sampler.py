#!/usr/bin/env python3
"""Sampler + feature-fetch benchmark: Neo4j backend vs in-memory, side by side in one run.

For each dataset, a fresh worker process per row iterates ``--batches`` mini-batches of
``--batch_size`` random training seeds with fanouts ``--fanouts`` through the same
``NodeLoader`` + ``PrefetchLoader`` the trainer uses (no model). Rows: in-memory without and
with prefetch threads; for each ``--projection_mb`` (0 = the procedures read the store, else
the server's in-heap projection), Neo4j with the packed adjacency property (``adjacency``)
without and with prefetch and with prefetch and a feature cache (one row per ``--cache_mb``
budget and ``--cache_warm`` policy: pre-filled with the highest-degree rows, or filled by first
use); and walking relationships (``relationships``, the path of datasets loaded without
the property) or Cypher (``cypher``) with prefetch. It reports
seeds/s, p50/p99 latency of sampling, feature fetch and the whole batch, the worker's peak RSS
(a separate process per row, so RSS is not shared), the local Neo4j server's peak RSS while
the row ran, the CPU time per timed batch of the worker (all its threads) and of the local server
(all its threads; shared with whatever else uses that server, so run nothing else against it),
which load on the machine changes far less than wall time, the cache hit rate (over all batches,
the untimed first one included), the cache
warm-up's time (not in seeds/s: it is paid once per run) and the ratio to in-memory with the same
number of threads. Timings are wall clock on a shared machine: read ratios within one run.

  python bench/sampler.py                                   # amazon_cs, coauthor_phy
  python bench/sampler.py --datasets amazon_cs coauthor_phy synthetic_n1000000_d10_f64_c10_s0
  python bench/sampler.py --cache_mb 16 64 256 --projection_mb 512 --compare   # cache sweep
  python bench/sampler.py --cache_mb 64 --cache_warm degree none --projection_mb 512 --compare  # warm-up
Neo4j datasets must be loaded first (loaders/load_into_neo4j.py); a synthetic name
``synthetic_n<N>_d<D>_f<F>_c<C>_s<seed>`` is generated/cached for the in-memory side.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

REPO = Path(__file__).resolve().parent.parent

from src.core.hot_nodes import WARM_POLICIES
from src.neo4jdb.procedures import DEFAULT_PROJECTION_MB


def _load_dataset(name: str):
    from src.data.sources import load_dataset

    m = re.fullmatch(r"synthetic_n(\d+)_d([\d.]+)_f(\d+)_c(\d+)_s(\d+)", name)
    if m:
        n, d, f, c, s = m.groups()
        return load_dataset("synthetic", num_nodes=int(n), avg_degree=float(d), num_features=int(f),
                            num_classes=int(c), seed=int(s))
    return load_dataset(name)


class Row(NamedTuple):
    """One measured configuration (a worker process) per dataset."""

    backend: str
    threads: int
    mode: str = "adjacency"  # Neo4j sampling path
    cache_mb: float = 0.0
    projection_mb: float = 0.0
    cache_warm: str = "none"

    def argv(self) -> list[str]:
        return ["--backend", self.backend, "--threads", str(self.threads), "--mode", self.mode,
                "--cache_mb", str(self.cache_mb), "--projection_mb", str(self.projection_mb),
                "--cache_warm", self.cache_warm]


def _backend(kind: str, dataset: str, fanouts: list[int], batch_size: int, row: Row):
    if kind == "in_memory":
        from src.in_memory.full_graph import FullGraphBackend

        return FullGraphBackend(_load_dataset(dataset), fanouts=fanouts, batch_size=batch_size,
                                num_loader_threads=row.threads)
    from src.client import connect
    from src.neo4jdb.access import Neo4jAccess
    from src.neo4jdb.backend import Neo4jBackend
    from src.neo4jdb.load.records import require_loaded

    client = connect(max_pool_size=row.threads + 2)
    record = require_loaded(client, dataset)
    access = Neo4jAccess.resolve(client, record.schema, record, use_procedures=row.mode != "cypher",
                                 use_adjacency=row.mode == "adjacency", projection_mb=row.projection_mb)
    return Neo4jBackend(client, record, fanouts=fanouts, batch_size=batch_size, num_loader_threads=row.threads,
                        cache_mb=row.cache_mb, cache_warm=row.cache_warm, access=access)


def worker(args: argparse.Namespace) -> None:
    """One (backend, dataset, threads) measurement; prints one JSON line."""
    import torch

    from src.train.run_log import MemoryMonitor

    torch.set_num_threads(1)
    t_setup = time.perf_counter()
    row = Row(args.backend, args.threads, args.mode, args.cache_mb[0], args.projection_mb[0],
              args.cache_warm[0])  # one value each
    backend = _backend(args.backend, args.dataset, args.fanouts, args.batch_size, row)
    monitor = MemoryMonitor(backend.server_pid())
    setup_s = time.perf_counter() - t_setup
    train = backend.split_nodes("train")
    pool = train if len(train) >= args.batch_size else torch.arange(backend.num_nodes)
    gen = torch.Generator().manual_seed(0)
    seeds = pool[torch.randint(len(pool), (args.batch_size * (args.batches + 1),), generator=gen)]
    loader = backend.make_loader(seeds, shuffle=False, seed=0)
    lat_s, lat_f, lat_t, nodes = [], [], [], []
    it = iter(loader)
    next(it)  # warm-up batch (connections, JIT, caches), not timed
    server = _process(backend.server_pid())
    cpu0, server0 = time.process_time(), _cpu_seconds(server)
    t0 = last = time.perf_counter()
    for batch in it:
        now = time.perf_counter()
        lat_s.append(batch.t_sample)
        lat_f.append(batch.t_fetch)
        lat_t.append(now - last if args.threads else batch.t_sample + batch.t_fetch)
        nodes.append(batch.num_nodes)
        monitor.sample()
        last = now
    wall = time.perf_counter() - t0
    cpu_ms = 1000 * (time.process_time() - cpu0) / max(1, len(lat_t))
    server_cpu_ms = None if server is None else 1000 * (_cpu_seconds(server) - server0) / max(1, len(lat_t))
    pct = lambda xs, q: float(np.percentile(xs, q)) * 1000  # noqa: E731
    stats = backend.stats()
    print(json.dumps({
        "backend": args.backend, "dataset": args.dataset, "threads": args.threads,
        "mode": args.mode if args.backend == "neo4j" else "", "cache_mb": row.cache_mb,
        "cache_warm": row.cache_warm if row.cache_mb > 0 else None,
        "warm_s": (stats.get("cache_warm") or {}).get("seconds"),
        "projection_mb": row.projection_mb if args.backend == "neo4j" else None,
        "server_peak_rss_mb": monitor.peak_server_mb, "cache_hit_rate": stats.get("cache_hit_rate"),
        "batches": len(lat_t), "seeds_per_s": args.batch_size * len(lat_t) / wall,
        "nodes_per_batch": float(np.mean(nodes)),
        "sample_p50_ms": pct(lat_s, 50), "sample_p99_ms": pct(lat_s, 99),
        "fetch_p50_ms": pct(lat_f, 50), "fetch_p99_ms": pct(lat_f, 99),
        "total_p50_ms": pct(lat_t, 50), "total_p99_ms": pct(lat_t, 99),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu_ms_per_batch": cpu_ms, "server_cpu_ms_per_batch": server_cpu_ms,
        "setup_s": setup_s, "stats": stats,
    }))
    backend.close()


def _process(pid: int | None):
    """psutil handle of the local server (None: remote server, or gone)."""
    import psutil

    try:
        return psutil.Process(pid) if pid is not None else None
    except psutil.Error:
        return None


def _cpu_seconds(proc) -> float:
    """User + system CPU seconds of ``proc`` so far (0.0 for None)."""
    if proc is None:
        return 0.0
    t = proc.cpu_times()
    return t.user + t.system


def _rows(args: argparse.Namespace) -> list[Row]:
    """Every configuration measured per dataset (see the module docstring)."""
    t, cache = args.threads, [mb for mb in args.cache_mb if mb > 0]
    rows = [Row("in_memory", 0), Row("in_memory", t)]
    for proj in args.projection_mb:
        rows += [Row("neo4j", 0, projection_mb=proj), Row("neo4j", t, projection_mb=proj)]
        rows += [Row("neo4j", t, cache_mb=mb, projection_mb=proj, cache_warm=w) for mb in cache for w in args.cache_warm]
    rows += [Row("neo4j", t, mode=m) for m in args.compare]
    return [r for r in rows if r.backend in args.backends]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["amazon_cs", "coauthor_phy"], help="datasets to measure")
    p.add_argument("--backends", nargs="+", default=["in_memory", "neo4j"], choices=["in_memory", "neo4j"],
                   help="backends to measure (default: both)")
    p.add_argument("--batch_size", type=int, default=1024, help="seeds per batch (default 1024)")
    p.add_argument("--fanouts", type=lambda s: [int(x) for x in s.split(",")], default=[15, 10, 5],
                   help="comma list (default 15,10,5)")
    p.add_argument("--batches", type=int, default=8, help="timed batches per row (default 8)")
    p.add_argument("--threads", type=int, default=2, help="prefetch threads of the 'prefetch on' rows (default 2)")
    p.add_argument("--cache_mb", type=float, nargs="+", default=[64.0],
                   help="Neo4j feature cache budgets in MiB, one prefetch row each (per --cache_warm); 0 = no such row "
                        "(default 64)")
    p.add_argument("--cache_warm", nargs="+", choices=WARM_POLICIES, default=["degree"],
                   help="how each cache row's cache starts, one row per policy: 'degree' pre-fills it with the rows "
                        "of the highest out-degree nodes, 'none' fills it by first use (default: degree)")
    p.add_argument("--projection_mb", type=float, nargs="+", default=[0.0, DEFAULT_PROJECTION_MB],
                   help="server heap budgets (MiB) of the gnn.* in-memory projection, 0 = read the store: each value "
                        f"adds the Neo4j rows (prefetch off/on, each cache) (default: 0 {DEFAULT_PROJECTION_MB:g})")
    p.add_argument("--compare", nargs="*", default=["relationships"], choices=["relationships", "cypher"],
                   help="other Neo4j sampling paths to measure with prefetch (default: relationships)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--dataset", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="adjacency", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    rows = []
    for ds in args.datasets:
        for row in _rows(args):
            cmd = [sys.executable, __file__, "--worker", "--dataset", ds, "--batch_size", str(args.batch_size),
                   "--fanouts", ",".join(map(str, args.fanouts)), "--batches", str(args.batches), *row.argv()]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=os.environ)
            line = next((l for l in out.stdout.splitlines() if l.startswith("{")), None)
            if out.returncode != 0 or line is None:
                print(f"{ds} {row}: FAILED\n{out.stderr.strip()[-600:]}", file=sys.stderr)
                continue
            rows.append(json.loads(line))
            print(f"  {ds:>14} {row}: {rows[-1]['seeds_per_s']:8.0f} seeds/s", file=sys.stderr)

    print(f"\nbatch {args.batch_size}, fanouts {args.fanouts}, {args.batches} timed batches; latencies in ms (p50/p99); "
          "threads = prefetch threads (0 = prefetch off); "
          "projection = server projection budget MiB (0 = store); CPU = the worker's, all threads, and the local "
          "Neo4j server's (- = remote or none) per timed batch; "
          "ratio = in-memory seeds/s (same threads) / this row's")
    print("| dataset | backend | sampling | projection | threads | cache MB | warm-up | hit rate | seeds/s | nodes/batch "
          "| sample | fetch | total | CPU ms/batch | server CPU ms/batch | peak RSS MiB | server RSS MiB | in-memory / this |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ref = next((x for x in rows if x["dataset"] == r["dataset"] and x["backend"] == "in_memory"
                    and x["threads"] == r["threads"]), None)
        ratio = f"{ref['seeds_per_s'] / r['seeds_per_s']:.1f}x" if ref else "-"
        hit = "-" if r["cache_hit_rate"] is None else f"{r['cache_hit_rate']:.2f}"
        server = "-" if r["server_peak_rss_mb"] is None else f"{r['server_peak_rss_mb']:.0f}"
        proj = "-" if r["projection_mb"] is None else f"{r['projection_mb']:g}"
        warm = "-" if r["cache_warm"] is None else r["cache_warm"] + (f" {r['warm_s']:.1f}s" if r["warm_s"] else "")
        server_cpu = "-" if r["server_cpu_ms_per_batch"] is None else f"{r['server_cpu_ms_per_batch']:.0f}"
        print(f"| {r['dataset']} | {r['backend']} | {r['mode'] or 'csr'} | {proj} | {r['threads']} | "
              f"{r['cache_mb']:g} | {warm} | {hit} | {r['seeds_per_s']:.0f} | "
              f"{r['nodes_per_batch']:.0f} | {r['sample_p50_ms']:.0f}/{r['sample_p99_ms']:.0f} | "
              f"{r['fetch_p50_ms']:.0f}/{r['fetch_p99_ms']:.0f} | {r['total_p50_ms']:.0f}/{r['total_p99_ms']:.0f} | "
              f"{r['cpu_ms_per_batch']:.0f} | {server_cpu} | "
              f"{r['peak_rss_mb']:.0f} | {server} | {ratio} |")


if __name__ == "__main__":
    main()
