"""Benchmark (not a test): each rank's peak RSS when the graph is split into 1 vs 2 partitions.

    python bench/partition_memory.py [--dataset coauthor_phy] [--full_graph] [-- extra training flags]

Runs ``in-memory-alternative.py`` (the partitioned backend) with one rank holding the only
partition, then with two ranks on this machine holding one partition each, with the same
training flags, and prints one row per rank from the run logs: the trainer's kernel peak RSS
(``summary.peak_rss_mb``, reached while evaluating), its RSS at the end of the training steps,
the feature MiB the rank holds, its nodes/edges and how many feature rows it fetched from the
other rank.  About 740 MiB of every rank is the torch + PyG import alone.  ``--full_graph``
adds two ranks of the old backend (every rank holds the whole graph) for reference.
Partitions are made first (one process, not counted).  Small batches are the default so the graph, not the batch,
dominates memory.  Sparse features (coauthor_phy) are held and moved as CSR (src/core/sparse_features.py), so
"features held" is the CSR size there.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

from src.core.ports import free_port_pair

DEFAULT_TRAINING = ["--epochs", "1", "--fanouts", "5,5", "--num_layers", "2", "--hidden_channels", "64",
                    "--batch_size", "64", "--num_loader_threads", "1"]


def run(label: str, name: str, world: int, args: list[str], out: Path) -> list[dict[str, Any]]:
    """One training job of ``world`` local ranks; returns each rank's summary + last epoch stats."""
    port = free_port_pair()
    cmd = [sys.executable, str(REPO / "in-memory-alternative.py"), *args, "--run_name", name,
           "--log_dir", str(out / "logs"), "--checkpoint_dir", str(out / "ckpt"),
           "--num_nodes", str(world), "--master_addr", "127.0.0.1", "--master_port", str(port)]
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {world} rank(s) ...", flush=True)
    start = time.perf_counter()
    procs = [subprocess.Popen([*cmd, "--node_rank", str(r)], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=open(out / f"{name}.rank{r}.err", "w")) for r in range(world)]
    codes = [p.wait() for p in procs]
    if any(codes):
        sys.exit(f"error: {name} failed (exit codes {codes}); see {out}/{name}.rank*.err")
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    rows = []
    for r in range(world):
        events = [json.loads(line) for line in (out / "logs" / name / f"rank{r}.jsonl").read_text().splitlines()]
        summary = next(e for e in events if e["event"] == "summary")
        last = [e for e in events if e["event"] == "epoch"][-1]
        rows.append({"setup": label, "rank": r, "summary": summary, "stats": last["stats"],
                     "train_rss_mb": last["rss_mb"]})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| setup | rank | nodes held | in-edges held | features held (MiB) | rows fetched remotely | "
            "RSS while training (MiB) | peak RSS (MiB) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        s = row["stats"]
        lines.append(f"| {row['setup']} | {row['rank']} | {s.get('local_nodes', s['num_nodes'])} | "
                     f"{s.get('local_edges', s['num_edges'])} | {s['feature_mb']:.0f} | "
                     f"{s.get('remote_feature_rows', 0)} | {row['train_rss_mb']:.0f} | "
                     f"{row['summary']['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="coauthor_phy",
                        help="dataset to partition and load (default %(default)s)")
    parser.add_argument("--partition_dir", default=str(REPO / "data" / "partitions"),
                        help="where the partitions are written (default %(default)s)")
    parser.add_argument("--out", default=str(REPO / "logs" / "bench_partition_memory"),
                        help="run logs and stderr of every rank go here")
    parser.add_argument("--full_graph", action="store_true", help="also run 2 ranks of the full-graph backend")
    parser.add_argument("training", nargs="*",
                        help=f"training flags after --, default: {' '.join(DEFAULT_TRAINING)}")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    training = ["--dataset", args.dataset, *(args.training or DEFAULT_TRAINING)]
    for k in (1, 2):
        subprocess.run([sys.executable, str(REPO / "partition_graph.py"), "--dataset", args.dataset,
                        "--num_partitions", str(k), "--output_dir", args.partition_dir], check=True,
                       stdout=subprocess.DEVNULL)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for k in (1, 2):
        label = f"{k} partition{'s' * (k > 1)}, {k} rank{'s' * (k > 1)}"
        rows += run(label, f"{args.dataset}-{k}part-{stamp}", k,
                    [*training, "--partition_dir", args.partition_dir], out)
    if args.full_graph:
        rows += run("full graph on each of 2 ranks", f"{args.dataset}-fullgraph-{stamp}", 2,
                    [*training, "--full_graph"], out)
    print(f"\n{args.dataset}, training flags: {' '.join(training[2:])}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
