#!/usr/bin/env python3
"""Registration of a graph created in Neo4j, and its sampling + fetch rate beside the loader's copy.

  nice python bench/register_graph.py --num_nodes 1000000 --avg_degree 5 --num_features 32

1. Creates (once; kept for re-runs) ``(:BenchPaper_<N> {features: LIST<FLOAT>, category: STRING})``
   and random ``(:BenchPaper_<N>)-[:BENCH_CITES_<N>]->()`` relationships with plain Cypher (as a user
   would), timed. 2. Registers it in place (src/neo4jdb/register/, direction in), timed per phase.
3. Exports it to an .npz and loads that with the loader (a second copy), timed. 4. For both, the
   trainer's NodeLoader + PrefetchLoader (Neo4jBackend.make_loader, no model) over ``--batches``
   batches of random train seeds: seeds/s. Prints one markdown table (bench/RESULTS.md).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from src.client import connect
from src.data.loading import LoadConfig
from src.data.sources import load_dataset
from src.core.schema import GraphSchema
from src.neo4jdb.backend import Neo4jBackend
from src.neo4jdb.load.ensure import ensure_loaded
from src.neo4jdb.load.records import require_loaded
from src.neo4jdb.register.export import export_npz
from src.neo4jdb.register.run import register
from src.neo4jdb.register.spec import RegisterSpec


def create_graph(client, label: str, rel: str, n: int, degree: int, f: int, classes: int, batch: int = 10_000) -> float:
    """The graph with plain Cypher (elementIds to connect: the user's graph has no id); seconds, 0 if it exists."""
    if client.count_nodes(label) == n:
        return 0.0
    if client.count_nodes(label):
        sys.exit(f"{label} holds {client.count_nodes(label)} nodes, not {n}: delete them first")
    t = time.perf_counter()
    rng = np.random.default_rng(0)
    eids: list[str] = []
    for lo in tqdm(range(0, n, batch), desc="create nodes", unit="batch"):
        k = min(n, lo + batch) - lo
        cls = rng.integers(0, classes, k)
        x = rng.normal(size=(k, f)).astype(np.float32) + cls[:, None] * 0.1
        rows = [{"f": x[j].tolist(), "c": f"class_{cls[j]:02d}"} for j in range(k)]
        eids += [r["e"] for r in client.write(f"UNWIND $rows AS r CREATE (p:`{label}` {{features: r.f, category: r.c}}) "
                                              "RETURN elementId(p) AS e", rows=rows)]
    m = n * degree
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    for lo in tqdm(range(0, m, 5 * batch), desc="create relationships", unit="batch"):
        rows = [{"a": eids[a], "b": eids[b]} for a, b in zip(src[lo:lo + 5 * batch].tolist(), dst[lo:lo + 5 * batch].tolist())]
        client.write(f"UNWIND $rows AS r MATCH (a) WHERE elementId(a) = r.a MATCH (b) WHERE elementId(b) = r.b "
                     f"CREATE (a)-[:`{rel}`]->(b)", rows=rows)
    return time.perf_counter() - t


def seeds_per_s(name: str, fanouts: list[int], batch_size: int, batches: int) -> tuple[float, float]:
    """(seeds/s, seconds) of ``batches`` batches through the trainer's loader, after one warm-up batch."""
    client = connect(None)  # the backend closes it
    record = require_loaded(client, name)
    with Neo4jBackend(client, record, fanouts=fanouts, batch_size=batch_size, num_loader_threads=2) as backend:
        train = backend.split_nodes("train").numpy()
        seeds = torch.from_numpy(np.random.default_rng(1).choice(train, (batches + 1) * batch_size, replace=False))
        it = iter(backend.make_loader(seeds, shuffle=False, seed=0))
        next(it)
        t = time.perf_counter()
        count = sum(int(b.batch_size) for b in it)
        dt = time.perf_counter() - t
    return count / dt, dt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num_nodes", type=int, default=1_000_000, help="nodes (default: %(default)s)")
    p.add_argument("--avg_degree", type=int, default=5, help="relationships per node (default: %(default)s)")
    p.add_argument("--num_features", type=int, default=32, help="floats per node (default: %(default)s)")
    p.add_argument("--num_classes", type=int, default=10, help="categories (default: %(default)s)")
    p.add_argument("--fanouts", default="10,5", help="sampling fanouts (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=1024, help="seeds per batch (default: %(default)s)")
    p.add_argument("--batches", type=int, default=30, help="timed batches per dataset (default: %(default)s)")
    p.add_argument("--export_dir", default="data/bench", help="where the .npz export goes (default: %(default)s)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("neo4j").setLevel(logging.CRITICAL)  # not its notifications about not yet existing properties
    n, fanouts = args.num_nodes, [int(k) for k in args.fanouts.split(",")]
    label, rel, name = f"BenchPaper_{n}", f"BENCH_CITES_{n}", f"bench_registered_{n}"
    with connect(None) as client:
        t_create = create_graph(client, label, rel, n, args.avg_degree, args.num_features, args.num_classes)
        spec = RegisterSpec(name=name, label=label, rel_type=rel, features=("features",), target="category",
                            random_split=RegisterSpec.parse_split("random:0.6,0.2,0.2")[1])
        report = register(client, spec, LoadConfig(workers=2))
        print(report.summary(), flush=True)
        path = Path(args.export_dir) / f"{name}_export.npz"
        t = time.perf_counter()
        export_npz(client, require_loaded(client, name), path)
        t_export = time.perf_counter() - t
        loaded = f"bench_loaded_{n}"
        t = time.perf_counter()
        load = ensure_loaded(client, load_dataset(str(path)), GraphSchema.for_dataset(loaded), LoadConfig(method="unwind"))
        t_load = time.perf_counter() - t
        print(load.summary(), flush=True)
    rates = {k: seeds_per_s(k, fanouts, args.batch_size, args.batches) for k in (name, loaded)}
    print(f"\n{n:,} nodes, {report.edges:,} relationships, {args.num_features} features; fanouts {args.fanouts}, "
          f"batch {args.batch_size}, {args.batches} batches, 2 prefetch threads, procedures + adjacency\n")
    print("| dataset | way in | time in (s) | phases | seeds/s |")
    print("|---|---|---:|---|---:|")
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in report.phases.items())
    print(f"| {name} | created with Cypher ({t_create:.0f} s{'' if t_create else ': existed'}), then registered "
          f"| {report.seconds:.0f} | {phases} | {rates[name][0]:,.0f} |")
    print(f"| {loaded} | exported ({t_export:.0f} s), then loaded (unwind) | {t_load:.0f} | "
          f"{', '.join(f'{k} {v:.0f} s' for k, v in load.phases.items())} | {rates[loaded][0]:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
