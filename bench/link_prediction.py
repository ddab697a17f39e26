"""Benchmark (not a test): link prediction accuracy on Neo4j and in memory, and link batches per second.

    python bench/link_prediction.py accuracy --datasets cora,citeseer [--backends neo4j,in_memory] [-- <flags>]
    python bench/link_prediction.py batches --dataset amazon_cs [--batches 30] [--batch_size 512]
        [--paths store,projection,in_memory] [--projection_mb 256]

``accuracy`` trains ``--task link`` with the entry scripts (one rank each; the edge split must be
stored in Neo4j first: ``python loaders/edge_split.py --dataset D``) and prints, per dataset and
backend, the epoch with the best validation ROC-AUC and its test ROC-AUC, AP, MRR and Hits@K, read
from the runs' JSONL logs, with the command of each run. ``batches`` times link batches (sample +
fetch, PyG ``LinkLoader`` over each backend's sampler, one positive-pair order, same seed) on the
Neo4j procedures (store and projection) and the in-memory graph, with the process's peak RSS after
each path (run one path per process, ``--paths``, for a peak per path). Results go to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENTRY = {"neo4j": ["main-neo4j-backend.py"], "in_memory": ["in-memory-alternative.py", "--full_graph"]}
PATHS = ("store", "projection", "in_memory")
DEFAULT_FLAGS = ["--model", "sage", "--num_layers", "2", "--fanouts", "10,5", "--batch_size", "512", "--decoder", "mlp",
                 "--epochs", "20", "--edge_split", "0.85,0.05,0.10", "--edge_split_seed", "0", "--seed", "0"]


def best_epoch(log: Path) -> dict:
    epochs = [e for e in map(json.loads, log.read_text().splitlines()) if e.get("event") == "epoch"
              and e.get("val_auc") is not None]
    best = max(epochs, key=lambda e: e["val_auc"])
    return {**best, "mean_epoch_time": sum(e["epoch_time"] for e in epochs) / len(epochs)}


def accuracy(args: argparse.Namespace, extra: list[str]) -> None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows, commands = [], []
    for dataset in args.datasets.split(","):
        for backend in args.backends.split(","):
            run = f"link-{dataset}-{backend}-{stamp}"
            cmd = [sys.executable, *ENTRY[backend], "--dataset", dataset, "--task", "link", *DEFAULT_FLAGS, *extra,
                   "--run_name", run, "--log_dir", args.log_dir, "--checkpoint_dir", args.checkpoint_dir]
            commands.append(shlex.join(["python", *cmd[1:-6]]))
            subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
            e = best_epoch(Path(args.log_dir) / run / "rank0.jsonl")
            rows.append((dataset, backend, e["epoch"], e["val_auc"], e["test_auc"], e["test_ap"], e["test_mrr"],
                         e["test_hits"], e["mean_epoch_time"]))
            print(f"{dataset} {backend}: epoch {e['epoch']} test auc {e['test_auc']:.4f}", flush=True)
    print("\n| dataset | backend | best epoch | val ROC-AUC | test ROC-AUC | test AP | test MRR | test Hits@K | s/epoch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.4f} | {r[4]:.4f} | {r[5]:.4f} | {r[6]:.4f} | {r[7]:.4f} | {r[8]:.2f} |")
    print("\ncommands:\n" + "\n".join(commands))


def batches(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from torch_geometric.sampler import NegativeSampling

    from src.client import connect
    from src.core.edge_split import EdgeSplitSpec
    from src.data.sources import load_dataset
    from src.in_memory.full_graph import FullGraphBackend
    from src.neo4jdb.access import Neo4jAccess
    from src.neo4jdb.backend import Neo4jBackend
    from src.neo4jdb.load.records import require_loaded

    paths = args.paths.split(",")
    if unknown := set(paths) - set(PATHS):
        raise SystemExit(f"--paths: unknown {sorted(unknown)}; choose from {','.join(PATHS)}")
    spec, fanouts = EdgeSplitSpec(), [int(k) for k in args.fanouts.split(",")]
    common = dict(fanouts=fanouts, batch_size=args.batch_size, num_loader_threads=args.threads)
    client = connect()
    record = require_loaded(client, args.dataset)
    backends = {
        "store": lambda: Neo4jBackend(client, record, **common, access=Neo4jAccess(use_procedures=True, adj_prop="nbrs")),
        "projection": lambda: Neo4jBackend(client, record, **common, access=Neo4jAccess(
            use_procedures=True, adj_prop="nbrs", projection_mb=args.projection_mb)),
        "in_memory": lambda: FullGraphBackend(load_dataset(args.dataset), **common),
    }
    print(f"| {args.dataset}: path | batches | positive pairs/batch | batches/s | pairs/s | nodes/batch |")
    print("|---|---|---|---|---|---|")
    for name in paths:
        backend = backends[name]()
        split = backend.use_edge_split(spec)
        pairs = torch.from_numpy(split.train[np.random.default_rng(0).permutation(len(split.train))]
                                 [:args.batches * args.batch_size])
        for _ in range(2 if "projection" in name else 1):  # the first pass builds the projection
            nodes, start = 0, time.perf_counter()
            for batch in backend.make_link_loader(pairs, seed=0, neg_sampling=NegativeSampling("binary", 1.0),
                                                  exclude_targets=True):
                nodes += batch.num_nodes
            seconds = time.perf_counter() - start
        label = "in_memory" if name == "in_memory" else f"neo4j procedures ({name})"
        print(f"| {label} | {args.batches} | {args.batch_size} | {args.batches / seconds:.2f} | "
              f"{args.batches * args.batch_size / seconds:,.0f} | {nodes / args.batches:,.0f} |", flush=True)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  (peak RSS of this process so far: {peak:,.0f} MiB)", file=sys.stderr, flush=True)
    client.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("accuracy", help="train --task link on each backend and tabulate")
    a.add_argument("--datasets", default="cora,citeseer", help="comma list (default: %(default)s)")
    a.add_argument("--backends", default="neo4j,in_memory", help="comma list (default: %(default)s)")
    a.add_argument("--log_dir", default="logs", help="run logs (default: %(default)s)")
    a.add_argument("--checkpoint_dir", default="data/checkpoints", help="checkpoints (default: %(default)s)")
    b = sub.add_parser("batches", help="link batches per second, Neo4j vs in memory")
    b.add_argument("--dataset", default="amazon_cs", help="dataset with a stored edge split (default: %(default)s)")
    b.add_argument("--batches", type=int, default=30, help="batches per path (default: %(default)s)")
    b.add_argument("--batch_size", type=int, default=512, help="positive pairs per batch (default: %(default)s)")
    b.add_argument("--fanouts", default="10,5", help="fanouts (default: %(default)s)")
    b.add_argument("--paths", default=",".join(PATHS), help="comma list (default: %(default)s)")
    b.add_argument("--projection_mb", type=float, default=256.0,
                   help="projection budget of the projection path, within the server's cap (default: %(default)s)")
    b.add_argument("--threads", type=int, default=2, help="prefetch threads (default: %(default)s)")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    accuracy(args, extra) if args.what == "accuracy" else batches(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
