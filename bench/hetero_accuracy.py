#!/usr/bin/env python3
"""Typed GraphSAGE vs GraphSAGE on the flattened graph, per backend (in-memory, partitioned, Ladybug, Neo4j).

  python bench/hetero_accuracy.py --num_nodes 20000 --epochs 4 --backends in_memory,in_memory_partitioned,ladybug

Generates ``synthetic_hetero`` (src/data/synthetic_hetero.py), writes its flattened copy (one node
type, featureless nodes as zero rows) to ``data/datasets/<name>_flat.npz``, loads both into Neo4j,
trains each model on each backend with the same launch script, ranks, seed and epochs, and prints
the test accuracy at the best validation epoch (markdown table; results go to bench/RESULTS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from src.client import connect
from src.core.errors import UsageError, run_cli
from src.core.paths import REPO_DIR
from src.data.hetero import write_flattened_npz
from src.data.loading import LoadConfig
from src.data.sources import load_dataset
from src.data.synthetic_hetero import generate_hetero
from src.neo4jdb.hetero.load import ensure_hetero_loaded
from src.neo4jdb.load.ensure import ensure_loaded


# backend -> (launch script's --backend, extra flags); in_memory is the full graph on every rank, in_memory_partitioned
# one partition per rank (rank 0 partitions the graph into data/partitions first)
BACKEND_FLAGS = {"in_memory": ("in_memory", ["--full_graph"]), "in_memory_partitioned": ("in_memory", []),
                 "ladybug": ("ladybug", []), "neo4j": ("neo4j", [])}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num_nodes", type=int, default=20000, help="nodes over all types (default: %(default)s)")
    p.add_argument("--avg_degree", type=float, default=10, help="citations per paper (default: %(default)s)")
    p.add_argument("--num_features", type=int, default=16, help="paper features (default: %(default)s)")
    p.add_argument("--num_classes", type=int, default=4, help="classes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="generator and training seed (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=4, help="training epochs per run (default: %(default)s)")
    p.add_argument("--ranks", type=int, default=2, help="ranks per run (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=256, help="seeds per batch (default: %(default)s)")
    p.add_argument("--hetero_fanouts", default="writes:5,5;written_by:5,5;cites:5,5;publishes:1,1",
                   help="per-type fanouts of the typed model (default: %(default)s)")
    p.add_argument("--flat_fanouts", default="10,10", help="fanouts of GraphSAGE on the flattened graph "
                   "(default: %(default)s)")
    p.add_argument("--backends", default="in_memory,neo4j",
                   help=f"backends to compare, of {', '.join(BACKEND_FLAGS)} (default: %(default)s)")
    p.add_argument("--log_dir", default="logs", help="run logs (default: %(default)s)")
    p.add_argument("--reuse", action="store_true", help="read the result of a run already in --log_dir")
    return p.parse_args()


def train(args: argparse.Namespace, backend: str, dataset: str, run: str, extra: list[str]) -> float:
    log = Path(args.log_dir) / run / "rank0.jsonl"
    if args.reuse and log.exists() and '"summary"' in log.read_text():
        return _summary(log)
    cmd = ["bash", str(REPO_DIR / "jobs/launch_training_single_node.sh"), "--ranks", str(args.ranks),
           "--backend", BACKEND_FLAGS[backend][0], "--dataset", dataset, "--epochs", str(args.epochs), "--num_layers", "2",
           "--batch_size", str(args.batch_size), "--seed", str(args.seed), "--run_name", run, "--overwrite",
           "--log_dir", args.log_dir, "--checkpoint_dir", "data/checkpoints", *BACKEND_FLAGS[backend][1], *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ)
    return _summary(log)


def _summary(log: Path) -> float:
    lines = log.read_text().splitlines()
    summary = next(json.loads(line) for line in reversed(lines) if json.loads(line)["event"] == "summary")
    return float(summary["test_acc_at_best_val"])


def main() -> int:
    args = parse_args()
    ds = generate_hetero(num_nodes=args.num_nodes, avg_degree=args.avg_degree, num_features=args.num_features,
                         num_classes=args.num_classes, seed=args.seed)
    flat = Path("data/datasets") / f"{ds.name}_flat.npz"
    flat.parent.mkdir(parents=True, exist_ok=True)
    write_flattened_npz(ds, str(flat))
    backends = args.backends.split(",")
    unknown = [b for b in backends if b not in BACKEND_FLAGS]
    if unknown:
        raise UsageError(f"--backends names unknown backend {unknown[0]!r}; choose from {', '.join(BACKEND_FLAGS)}")
    if "neo4j" in backends:
        with connect() as client:
            ensure_hetero_loaded(client, ds, LoadConfig(progress=False))
            ensure_loaded(client, load_dataset(str(flat)), config=LoadConfig(progress=False, method="unwind"))
    rows = []
    for backend in backends:
        # the launch script's loader finds the flattened .npz in data/datasets (already loaded: a no-op)
        in_memory = backend.startswith("in_memory")
        typed = train(args, backend, ds.name, f"hetero-typed-{backend}",
                      ["--target_type", "paper", "--fanouts", args.hetero_fanouts])
        flat_acc = train(args, backend, str(flat.resolve()) if in_memory else flat.stem, f"hetero-flat-{backend}",
                         ["--model", "sage", "--fanouts", args.flat_fanouts,
                          *([] if in_memory else ["--dataset_root_dir", str(flat.parent)])])
        rows.append((backend, typed, flat_acc))
    print(f"\nsynthetic_hetero {ds.name}: test accuracy at best val, {args.ranks} ranks, {args.epochs} epochs\n")
    print("| backend | typed GraphSAGE (HeteroConv) | GraphSAGE, flattened | margin (points) |")
    print("|---|---|---|---|")
    for backend, typed, flat_acc in rows:
        print(f"| {backend} | {100 * typed:.2f} | {100 * flat_acc:.2f} | {100 * (typed - flat_acc):+.2f} |")
    for backend, typed, flat_acc in rows[1:]:
        print(f"\nparity of {backend} with {rows[0][0]}: typed {100 * abs(typed - rows[0][1]):.2f} points, "
              f"flattened {100 * abs(flat_acc - rows[0][2]):.2f} points")
    return 0


if __name__ == "__main__":
    run_cli(main)
