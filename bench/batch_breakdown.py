"""Benchmark (not a test): where one training batch's time goes, per backend and configuration.

    python bench/batch_breakdown.py [--dataset synthetic_products_n500000_s0] [--encodings float32,int8]
        [--projection_mb 0,900] [--batches 6] [--batch_size 1024] [--fanouts 15,10,5] [--out FILE]

Against the server of the environment (NEO4J_URI, or the local one of GNN_NEO4J_DIR), on a graph
already loaded there (``loaders/load_into_neo4j.py``). int8 (or float16/bfloat16) rows are written
once beside ``x`` by ``bench/feature_compression.py``'s ``variants`` (same nodes, same ``nbrs``).
One batch = sample (``gnn.sampleHops``), fetch every row of the batch (``gnn.fetchRows``, no
feature cache: the worst case a cache only shortens), decode into float32, one GraphSAGE step
(forward, backward, Adam). Per batch it splits into:

* server sampling / server rows: the procedures' time on the server, from Bolt's result summary
  (``result_available_after + result_consumed_after``, src/neo4jdb/call_times.py);
* Bolt + driver: the rest of those calls' wall time (round trip, bytes, the driver's unpacking);
* client: sampling = relabelled hops -> ``SamplerOutput``; rows = decode into float32 (Neo4j) or
  the gather from the in-memory tensor (in-memory);
* model step: the same model code on either batch.

The in-memory row samples the same seeds from a CSR of the same graph (``--full_graph``'s
sampler and gather). Configurations are interleaved batch by batch (the first round, which builds
any projection, is not counted); medians over ``--batches`` rounds; load average printed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.sampler import NodeSamplerInput

from feature_compression import variants

from src.client import Neo4jClient, connect
from src.core.codecs import row_bytes
from src.core.csr import CSRGraph
from src.core.errors import UsageError, run_cli
from src.core.minstd import MINSTD_MODULUS
from src.core.record import DatasetRecord
from src.core.sampling import CSRNeighborSampler, sampler_output
from src.data.sources import load_dataset
from src.neo4jdb import call_times, procedures
from src.neo4jdb.load.records import require_loaded
from src.train.model import batch_logits, build_model

PHASES = ("server_sample", "bolt_sample", "client_sample", "server_rows", "bolt_rows", "client_rows", "model")


@dataclass
class Config:
    name: str
    run: Callable[[np.ndarray, int], tuple[dict[str, float], Data, float]]  # seeds, round -> phases, batch, MiB


def neo4j_config(client: Neo4jClient, record: DatasetRecord, encoding: str, fanouts: list[int],
                 projection_mb: float) -> Config:
    schema, f = record.schema, record.num_features
    width = row_bytes(record.feature_encoding, f, record.feature_density)

    def run(seeds: np.ndarray, rnd: int) -> tuple[dict[str, float], Data, float]:
        states = np.random.default_rng(rnd).integers(1, MINSTD_MODULUS, size=len(fanouts), dtype=np.int64)
        call_times.take()
        t0 = time.perf_counter()
        hops = procedures.sample_hops(client, schema, seeds, fanouts, states, projection_mb=projection_mb)
        t1 = time.perf_counter()
        out = sampler_output(seeds, hops)
        t2 = time.perf_counter()
        sampled = call_times.take()
        x, y = procedures.fetch_rows(client, schema, out.node.numpy(), num_features=f,
                                     encoding=record.feature_encoding, quant=record.quant(),
                                     row_bytes=width, projection_mb=projection_mb)
        t3 = time.perf_counter()
        rows = call_times.take()
        server_s = sampled.server_s.get("gnn.sampleHops", 0.0)
        server_r = rows.server_s.get("gnn.fetchRows", 0.0)
        phases = {"server_sample": server_s, "bolt_sample": (t1 - t0) - server_s, "client_sample": t2 - t1,
                  "server_rows": server_r, "bolt_rows": (t3 - t2) - server_r - rows.decode_s,
                  "client_rows": rows.decode_s}
        batch = Data(x=torch.from_numpy(x), y=torch.from_numpy(y), edge_index=torch.stack([out.row, out.col]))
        batch.batch_size, batch.num_sampled_nodes, batch.num_sampled_edges = len(seeds), out.num_sampled_nodes, out.num_sampled_edges
        return phases, batch, rows.answer_bytes.get("gnn.fetchRows", 0) / 2**20

    return Config(f"neo4j {encoding}, projection {projection_mb:g} MiB", run)


def in_memory_config(name: str, fanouts: list[int]) -> Config:
    ds = load_dataset(name)
    n = ds.num_nodes
    x = torch.from_numpy(np.ascontiguousarray(ds.features(np.arange(n)), dtype=np.float32))
    y = torch.from_numpy(np.array(ds.y, dtype=np.int64))
    sampler = CSRNeighborSampler(CSRGraph.from_edge_index(np.ascontiguousarray(ds.edge_index, np.int64), n), fanouts,
                                 seed=0)

    def run(seeds: np.ndarray, rnd: int) -> tuple[dict[str, float], Data, float]:
        sampler.set_epoch(rnd)
        t0 = time.perf_counter()
        out = sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=torch.from_numpy(seeds)))
        t1 = time.perf_counter()
        bx, by = x.index_select(0, out.node), y.index_select(0, out.node)
        t2 = time.perf_counter()
        batch = Data(x=bx, y=by, edge_index=torch.stack([out.row, out.col]))
        batch.batch_size, batch.num_sampled_nodes, batch.num_sampled_edges = len(seeds), out.num_sampled_nodes, out.num_sampled_edges
        return {"client_sample": t1 - t0, "client_rows": t2 - t1}, batch, 0.0

    return Config("in-memory (full graph)", run)


def model_step(model: torch.nn.Module, opt: torch.optim.Optimizer, batch: Data) -> float:
    t = time.perf_counter()
    model.train()
    opt.zero_grad()
    bs = int(batch.batch_size)
    loss = torch.nn.functional.cross_entropy(batch_logits(model, batch), batch.y[:bs])
    loss.backward()
    opt.step()
    return time.perf_counter() - t


def table(results: dict[str, list[dict[str, float]]], nodes: dict[str, list[int]], mib: dict[str, list[float]]) -> str:
    ref = statistics.median(sum(r.values()) for r in results["in-memory (full graph)"]) \
        if "in-memory (full graph)" in results else None
    lines = ["| configuration | nodes per batch | MiB rows over Bolt | server sampling | sampling Bolt + driver | "
             "client sampling | server rows | rows Bolt + driver | client decode / gather | model step | "
             "batch total (ms) | x in-memory |", "|---|" + "---:|" * 11]
    for name, rows in results.items():
        med = {p: 1000 * statistics.median(r.get(p, 0.0) for r in rows) for p in PHASES}
        total = 1000 * statistics.median(sum(r.values()) for r in rows)
        cells = " | ".join(f"{med[p]:,.0f}" if any(p in r for r in rows) else "-" for p in PHASES)
        x_ref = f"{total / (1000 * ref):.2f}" if ref else "-"
        lines.append(f"| {name} | {statistics.median(nodes[name]):,.0f} | {statistics.median(mib[name]):,.1f} | "
                     f"{cells} | {total:,.0f} | {x_ref} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="synthetic_products_n500000_s0",
                   help="a graph loaded into the server (and readable in memory: its .npz or synthetic cache)")
    p.add_argument("--encodings", default="float32,int8", help="comma list of float32, float16, bfloat16, int8")
    p.add_argument("--projection_mb", default="0,900",
                   help="comma list of projection budgets (0: the store on every call; keep it under half the heap)")
    p.add_argument("--no_in_memory", action="store_true", help="skip the in-memory row")
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--batch_size", type=int, default=1024)
    p.add_argument("--fanouts", default="15,10,5")
    p.add_argument("--hidden_channels", type=int, default=256)
    p.add_argument("--out", default=None, help="also write the table to this file")
    args = p.parse_args()
    fanouts = [int(k) for k in args.fanouts.split(",")]
    budgets = [float(b) for b in args.projection_mb.split(",")]
    encodings = args.encodings.split(",")
    if bad := sorted(set(encodings) - {"float32", "float16", "bfloat16", "int8"}):
        raise UsageError(f"--encodings: unknown {', '.join(bad)}; use float32, float16, bfloat16 or int8")
    torch.manual_seed(0)
    load_before = os.getloadavg()
    with connect() as client:
        base = require_loaded(client, args.dataset)
        ds = load_dataset(args.dataset)
        recs = {"float32": base}
        lossy = [e for e in encodings if e != "float32"]
        if lossy:
            recs.update(variants(client, ds, base, formats=tuple(lossy)))
        configs = [neo4j_config(client, recs[e], e, fanouts, b) for b in budgets for e in encodings]
        if not args.no_in_memory:
            configs.append(in_memory_config(args.dataset, fanouts))
        model = build_model("sage", base.num_features, args.hidden_channels, base.num_classes, len(fanouts), 0.5)
        opt = torch.optim.Adam(model.parameters(), lr=0.003)
        train_ids = np.asarray(ds.train_idx, dtype=np.int64)
        results = {c.name: [] for c in configs}
        nodes = {c.name: [] for c in configs}
        mib = {c.name: [] for c in configs}
        for rnd in range(args.batches + 1):
            seeds = np.random.default_rng(100 + rnd).choice(train_ids, args.batch_size, replace=False)
            for c in configs[rnd % len(configs):] + configs[:rnd % len(configs)]:  # rotated order
                phases, batch, moved = c.run(seeds, rnd)
                phases["model"] = model_step(model, opt, batch)
                if rnd:  # round 0 builds projections and warms caches
                    results[c.name].append(phases)
                    nodes[c.name].append(batch.num_nodes)
                    mib[c.name].append(moved)
            print(f"round {rnd} done, load {os.getloadavg()[0]:.1f}", flush=True)
    load_after = os.getloadavg()
    text = (f"{args.dataset}: batch {args.batch_size}, fanouts {args.fanouts}, GraphSAGE hidden {args.hidden_channels}, "
            f"{args.batches} interleaved rounds (medians, ms); load average before {load_before[0]:.1f} / "
            f"{load_before[1]:.1f}, after {load_after[0]:.1f} / {load_after[1]:.1f}\n\n{table(results, nodes, mib)}\n")
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    run_cli(main)
