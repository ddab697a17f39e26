#!/usr/bin/env python3
"""Heterogeneous sampling + feature fetch, seeds/s and trainer RSS: Neo4j vs in-memory, per graph size.

  python bench/hetero_sampling.py --datasets synthetic_hetero_n20000_d10_f16_c4_s0,synthetic_hetero_n1000000_d2_f32_c8_s0

Every (dataset, backend) runs in its own process (so its peak RSS is its own): the backend's
``make_loader`` over the target type's train seeds, ``--batches`` batches of ``--batch_size`` with
``--fanouts`` per relationship type, prefetch threads as in training; the first batch is a warm-up.
The datasets must be loaded into Neo4j (loaders/load_into_neo4j.py --dataset synthetic_hetero ...).
Prints a markdown table with the load average during each row (results in bench/RESULTS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from src.core.errors import run_cli
from src.neo4jdb.procedures import DEFAULT_PROJECTION_MB

FANOUTS = "writes:10,5;written_by:5,5;cites:10,5;publishes:1,1"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", required=True, help="comma list of generated synthetic_hetero names")
    p.add_argument("--backends", default="in_memory,neo4j,neo4j_cache,neo4j_store,neo4j_cypher",
                   help="neo4j: gnn.sampleHeteroHops + gnn.fetchRows over the server's per-type projections "
                        "(--projection_mb); neo4j_cache: the same with the per-type feature cache (--cache_mb); "
                        "neo4j_store: the procedures reading the store (no projection); neo4j_cypher: the Cypher "
                        "fallback (default: %(default)s)")
    p.add_argument("--projection_mb", type=float, default=DEFAULT_PROJECTION_MB,
                   help="server heap of the projections of neo4j and neo4j_cache (default: %(default)s)")
    p.add_argument("--cache_mb", type=float, default=64.0, help="feature cache of neo4j_cache (default: %(default)s)")
    p.add_argument("--fanouts", default=FANOUTS, help="per relationship type (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=512, help="seeds per batch (default: %(default)s)")
    p.add_argument("--batches", type=int, default=20, help="timed batches (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="prefetch threads (default: %(default)s)")
    p.add_argument("--worker", nargs=2, metavar=("DATASET", "BACKEND"), help=argparse.SUPPRESS)
    return p.parse_args()


def open_backend(dataset: str, backend: str, args: argparse.Namespace):  # noqa: ANN201
    common = dict(target_type="paper", fanouts=args.fanouts, batch_size=args.batch_size,
                  num_loader_threads=args.threads)
    if backend == "in_memory":
        from src.data.hetero_sources import load_hetero_dataset
        from src.in_memory.hetero import InMemoryHeteroBackend

        return InMemoryHeteroBackend(load_hetero_dataset(dataset), **common)
    from src.client import connect
    from src.neo4jdb.hetero.backend import Neo4jHeteroBackend
    from src.neo4jdb.hetero.schema import require_hetero

    client = connect(max_pool_size=args.threads + 2)
    projected = backend in ("neo4j", "neo4j_cache")
    return Neo4jHeteroBackend(client, require_hetero(client, dataset), **common,
                              use_procedures=False if backend == "neo4j_cypher" else None,
                              projection_mb=args.projection_mb if projected else 0.0,
                              cache_mb=args.cache_mb if backend == "neo4j_cache" else 0.0)


def worker(dataset: str, backend_name: str, args: argparse.Namespace) -> dict:
    t_open = time.perf_counter()
    backend = open_backend(dataset, backend_name, args)
    t_open = time.perf_counter() - t_open
    seeds = backend.split_nodes("train")
    seeds = seeds[torch.randperm(len(seeds), generator=torch.Generator().manual_seed(0))][
        :(args.batches + 1) * args.batch_size]
    it = iter(backend.make_loader(seeds, shuffle=False, seed=0))
    first = next(it)  # warm-up: builds the server's projections (neo4j, neo4j_cache)
    load = os.getloadavg()[0]
    nodes = edges = 0
    t0 = time.perf_counter()
    count = 0
    for batch in it:
        count += int(batch.batch_size)
        nodes += sum(int(batch[t].n_id.numel()) for t in batch.node_types)
        edges += sum(int(batch[e].edge_index.size(1)) for e in batch.edge_types)
    seconds = time.perf_counter() - t0
    load = (load + os.getloadavg()[0]) / 2
    cache = backend.stats().get("feature_cache", {}).get(backend.input_type) if backend_name != "in_memory" else None
    backend.close()
    del first
    return {"dataset": dataset, "backend": backend_name, "num_nodes": backend.num_nodes, "open_s": t_open,
            "seeds_per_s": count / seconds, "nodes_per_batch": nodes / args.batches,
            "edges_per_batch": edges / args.batches, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "load_avg": load, "hit_rate": cache["hit_rate"] if cache else None}


def main() -> int:
    args = parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args)))
        return 0
    rows = []
    for dataset in args.datasets.split(","):
        for backend in args.backends.split(","):
            cmd = [sys.executable, __file__, "--datasets", dataset, "--worker", dataset, backend, "--fanouts",
                   args.fanouts, "--batch_size", str(args.batch_size), "--batches", str(args.batches),
                   "--threads", str(args.threads), "--projection_mb", str(args.projection_mb),
                   "--cache_mb", str(args.cache_mb)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr)
    print(f"\nfanouts {args.fanouts}, batch {args.batch_size}, {args.batches} batches, {args.threads} prefetch threads, "
          f"projection {args.projection_mb:g} MiB, cache {args.cache_mb:g} MiB\n")
    print("| dataset | backend | seeds/s | nodes/batch | edges/batch | trainer peak RSS MiB | cache hit rate | "
          "open s | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        hit = "" if r["hit_rate"] is None else f"{r['hit_rate']:.2f}"
        print(f"| {r['dataset']} | {r['backend']} | {r['seeds_per_s']:.0f} | {r['nodes_per_batch']:.0f} | "
              f"{r['edges_per_batch']:.0f} | {r['peak_rss_mb']:.0f} | {hit} | {r['open_s']:.1f} | {r['load_avg']:.1f} |")
    return 0


if __name__ == "__main__":
    run_cli(main)
