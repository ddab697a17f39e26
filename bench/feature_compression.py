"""Benchmark (not a test): compressed feature rows over Bolt, per encoding, in one table.

    python bench/feature_compression.py [--datasets amazon_cs,coauthor_phy,synthetic_products]
        [--products_nodes 100000] [--batches 8] [--rounds 2] [--cache_mb 4] [--epochs 10]

Against the server of the environment (NEO4J_URI, or the local one of GNN_NEO4J_DIR). Each graph
is loaded once with the loader (``--feature_format auto``: the products-shaped synthetic graph by
the offline import when the database is empty, the others by UNWIND). Its feature rows are then
written a second time per encoding into properties of their own (``x_float32``, ``x_float16``,
``x_bfloat16``, ``x_int8``; the bytes ``encode_rows`` makes, the int8 scales of
``FeatureLayout.choose``), so every encoding is read over the same nodes and the same ``nbrs``;
each encoding gets the dataset record with its own ``x_prop``, ``feature_encoding`` and scales.
A graph stored sparse (coauthor_phy) also keeps its ``sparse`` row.

Per encoding: bytes per batch (feature rows read over Bolt, cache hits excluded, x their stored
width), fetch time p50 (``batch.t_fetch``), seeds/s of sampling + fetch through the Neo4j
backend's loader (no model; ``--batches`` batches of ``--batch_size`` random seeds, one prefetch
thread, a ``--cache_mb`` feature cache warmed by degree so rows really go over Bolt), and the test
accuracy of a short fixed training run (GraphSAGE, ``--epochs``, at most ``--max_steps`` steps per
epoch, ``--max_eval_seeds``). The encodings are interleaved (``--rounds`` rounds, the order rotated)
and each row also gives its ratio to float32 of the same round; the load average is printed.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from src.client import Neo4jClient, connect
from src.core.codecs import DENSE, SPARSE, encode_rows, row_bytes, split_rows
from src.core.errors import run_cli
from src.core.record import DatasetRecord
from src.data.graph import GraphDataset
from src.data.loading import FeatureLayout, LoadConfig, feature_rows
from src.data.sources import load_dataset
from src.neo4jdb.backend import Neo4jBackend
from src.neo4jdb.load.ensure import ensure_loaded
from src.neo4jdb.load.records import require_loaded
from src.core.schema import GraphSchema
from src.train.config import TrainConfig
from src.train.loop import train

FORMATS = ("dense", "float16", "bfloat16", "int8")  # dense = float32
NAMES = {"dense": "float32", "sparse": "sparse"}
WRITE_BYTES = 8 << 20  # feature bytes per write transaction


def load_graph(name: str, products_nodes: int) -> GraphDataset:
    if name == "synthetic_products":
        return load_dataset("synthetic", preset="products", num_nodes=products_nodes)
    return load_dataset(name)


def variants(client: Neo4jClient, ds: GraphDataset, base: DatasetRecord,
             formats: tuple[str, ...] = FORMATS) -> dict[str, DatasetRecord]:
    """Encoding name -> a record reading that encoding's copy of the rows (written here if missing)."""
    out = {}
    if base.feature_encoding == SPARSE:
        out["sparse"] = base
    s = base.schema
    for fmt in formats:
        layout = FeatureLayout.choose(ds, fmt, force=True)
        prop = f"x_{NAMES.get(fmt, fmt)}"
        missing = client.read(f"MATCH (n:`{s.label}`) WHERE n.`{prop}` IS NULL RETURN count(n) AS c")[0]["c"]
        if missing:
            step = max(1, WRITE_BYTES // row_bytes(layout.encoding, ds.num_features))
            t = time.perf_counter()
            for lo in range(0, ds.num_nodes, step):
                hi = min(ds.num_nodes, lo + step)
                xs = split_rows(*encode_rows(feature_rows(ds, np.arange(lo, hi)), layout.encoding, layout.quant))
                client.write(f"UNWIND $rows AS r MATCH (n:`{s.label}` {{`{s.id_prop}`: r.id}}) SET n.`{prop}` = r.x",
                             rows=[{"id": i, "x": x} for i, x in zip(range(lo, hi), xs)])
            print(f"  {ds.name}: wrote {prop} ({layout.encoding}) in {time.perf_counter() - t:.1f} s", flush=True)
        props = {**base.properties, "x_prop": prop, "feature_encoding": layout.encoding,
                 "feature_quant": None if layout.quant is None else layout.quant.to_bytes()}
        out[NAMES.get(fmt, fmt)] = DatasetRecord.from_properties(props)
    return out


def loader_pass(client: Neo4jClient, record: DatasetRecord, seeds: torch.Tensor, args: argparse.Namespace
                ) -> dict[str, float]:
    """Sampling + fetch of ``seeds`` through the backend's loader: bytes per batch, fetch p50, seeds/s."""
    backend = Neo4jBackend(client, record, fanouts=args.fanouts, batch_size=args.batch_size, num_loader_threads=1,
                           cache_mb=args.cache_mb)  # not closed: closing a backend closes the shared client
    fs = backend.feature_store
    width = row_bytes(record.feature_encoding, record.num_features, record.feature_density)
    rows0 = fs.stats.rows_fetched
    fetch, nodes = [], 0
    t = time.perf_counter()
    for batch in backend.make_loader(seeds, shuffle=False, seed=0):
        fetch.append(batch.t_fetch)
        nodes += batch.num_nodes
    wall = time.perf_counter() - t
    n = max(1, len(fetch))
    return {"bytes": (fs.stats.rows_fetched - rows0) * width / n, "rows": nodes / n,
            "fetch_p50": statistics.median(fetch), "seeds_s": len(seeds) / wall}


def accuracy(client: Neo4jClient, record: DatasetRecord, run: str, args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    backend = Neo4jBackend(client, record, fanouts=args.fanouts, batch_size=args.batch_size, num_loader_threads=1,
                           cache_mb=args.cache_mb)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(dataset=record.name, fanouts=tuple(args.fanouts), num_layers=len(args.fanouts),
                          hidden_channels=128, batch_size=args.batch_size, lr=0.005, epochs=args.epochs,
                          max_steps_per_epoch=args.max_steps, eval_every=args.eval_every, max_eval_seeds=args.max_eval_seeds, seed=0,
                          log_dir=os.path.join(tmp, "logs"), checkpoint_dir=os.path.join(tmp, "ckpt"),
                          run_name=run, num_loader_threads=1)
        return float(train(backend, cfg)["test_acc_at_best_val"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="amazon_cs,coauthor_phy,synthetic_products")
    p.add_argument("--products_nodes", type=int, default=100_000)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--fanouts", type=lambda v: [int(f) for f in v.split(",")], default=[10, 5])
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cache_mb", type=float, default=4.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--eval_every", type=int, default=5)
    p.add_argument("--max_steps", type=int, default=5)
    p.add_argument("--max_eval_seeds", type=int, default=1024)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("neo4j").setLevel(logging.ERROR)  # "property key does not exist" before a copy is written
    torch.set_num_threads(2)
    load_before = os.getloadavg()
    lines = []
    with connect() as client:
        for name in args.datasets.split(","):
            ds = load_graph(name, args.products_nodes)
            t = time.perf_counter()
            report = ensure_loaded(client, ds, GraphSchema.for_dataset(f"fc_{ds.name}"), LoadConfig(progress=False))
            print(f"{ds.name}: {report.status} ({report.method}) in {time.perf_counter() - t:.1f} s", flush=True)
            recs = variants(client, ds, require_loaded(client, f"fc_{ds.name}"))
            seeds = torch.from_numpy(np.random.default_rng(0).permutation(ds.num_nodes)[:args.batches * args.batch_size])
            runs: dict[str, list[dict[str, float]]] = {k: [] for k in recs}
            order = list(recs)
            for r in range(args.rounds):
                for enc in order[r % len(order):] + order[:r % len(order)]:  # rotated: no encoding always first
                    runs[enc].append(loader_pass(client, recs[enc], seeds, args))
            acc = {enc: accuracy(client, rec, f"fc_{ds.name}_{enc}", args) for enc, rec in recs.items()}
            for enc in recs:
                med = {k: statistics.median(m[k] for m in runs[enc]) for k in runs[enc][0]}
                ratio = {k: statistics.median(m[k] / f[k] for m, f in zip(runs[enc], runs["float32"]))
                         for k in ("bytes", "fetch_p50", "seeds_s")}
                lines.append(f"| {ds.name} | {enc} | {med['rows']:,.0f} | {med['bytes'] / 2**20:,.2f} | "
                             f"{ratio['bytes']:.2f} | {1000 * med['fetch_p50']:,.1f} | {ratio['fetch_p50']:.2f} | "
                             f"{med['seeds_s']:,.0f} | {ratio['seeds_s']:.2f} | {100 * acc[enc]:.1f} |")
                print(lines[-1], flush=True)
    load_after = os.getloadavg()
    print(f"\nbatch {args.batch_size}, fanouts {','.join(map(str, args.fanouts))}, {args.batches} batches x "
          f"{args.rounds} rounds (interleaved), cache {args.cache_mb:g} MiB warmed by degree; accuracy: "
          f"{args.epochs} epochs of <= {args.max_steps} steps, <= {args.max_eval_seeds} eval seeds")
    print(f"load average before {load_before[0]:.1f} / {load_before[1]:.1f}, after {load_after[0]:.1f} / {load_after[1]:.1f}\n")
    print("| dataset | encoding | nodes per batch | MiB over Bolt per batch | x float32 | fetch p50 (ms) | x float32 | "
          "seeds/s (sample + fetch) | x float32 | test acc (%) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    run_cli(main)
