"""Benchmark (not a test): the seed's per-node commands, as written, run to completion on both backends.

    python bench/seed_commands.py [--dataset amazon_cs] [--backends in_memory,neo4j] [--epochs 3]
        [--out bench_out/seed_commands]

The seed starts one process per machine with its own flags: node 0 ``--batch_size 8192 --num_workers 2
--concurrency 4``, node 1 ``--batch_size 1024 --num_workers 16 --concurrency 16``. Here both
"machines" are local processes (``--num_nodes 2 --node_rank K --master_addr 127.0.0.1``), started
with exactly those flags through the in-memory script (the partitioned baseline, as in the seed) and
the Neo4j script. The table gives each rank's exit code, steps per epoch, train seeds it covered,
wall time and the test accuracy it reports. Last, the same pair with ``--model gat`` on node 1 shows
that a flag that must match stops both ranks within seconds with one line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from compare_backends import REPO, load_average, pct

from src.core.errors import UsageError, run_cli
from src.core.ports import free_port_pair

SCRIPTS = {"in_memory": "in-memory-alternative.py", "neo4j": "main-neo4j-backend.py"}
NODE_FLAGS = [["--batch_size", "8192", "--num_workers", "2", "--concurrency", "4"],
              ["--batch_size", "1024", "--num_workers", "16", "--concurrency", "16"]]


def run_pair(backend: str, dataset: str, run_name: str, out: Path, common: list[str],
             node_extra: list[list[str]]) -> list[dict]:
    """Start node 0 and node 1 of one job, wait for both; per rank: exit code, wall time, stderr's error lines."""
    port = free_port_pair()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs, started = [], time.monotonic()
    for rank, flags in enumerate(NODE_FLAGS):
        cmd = [sys.executable, SCRIPTS[backend], "--dataset", dataset, *flags, *common, *node_extra[rank],
               "--num_nodes", "2", "--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port),
               "--run_name", run_name, "--log_dir", str(out / "logs"), "--checkpoint_dir", str(out / "ckpt")]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))
    results = []
    for rank, proc in enumerate(procs):
        _, stderr = proc.communicate(timeout=3600)
        results.append({"rank": rank, "code": proc.returncode, "wall": time.monotonic() - started,
                        "errors": [ln for ln in stderr.splitlines() if ln.startswith("error: ")],
                        "tail": stderr[-1500:]})
    for r in results:
        path = out / "logs" / run_name / f"rank{r['rank']}.jsonl"
        events = [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []
        steps = [e for e in events if e["event"] == "step"]
        epochs = [e for e in events if e["event"] == "epoch"]
        end = [e for e in events if e["event"] == "summary"]
        r["steps_per_epoch"] = sorted({sum(1 for s in steps if s["epoch"] == ep["epoch"]) for ep in epochs})
        r["seeds"] = sum(s.get("num_seeds", 0) for s in steps)
        r["epochs"] = len(epochs)
        r["test_acc"] = end[-1].get("test_acc_at_best_val") if end else None
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="amazon_cs", help="a loaded or shipped dataset (default: %(default)s)")
    p.add_argument("--backends", default="in_memory,neo4j", help="comma-separated, of: in_memory, neo4j "
                   "(default: %(default)s)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per job (default: %(default)s)")
    p.add_argument("--out", default=str(REPO / "bench_out" / "seed_commands"), help="logs and checkpoints go here; "
                   "must not exist yet (default: %(default)s)")
    args = p.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or any(b not in SCRIPTS for b in backends):
        raise UsageError(f"--backends {args.backends!r}: choose from {', '.join(SCRIPTS)}")
    out = Path(args.out)
    if out.exists():
        raise UsageError(f"--out {out} exists; give a new folder (nothing is overwritten)")
    common = ["--epochs", str(args.epochs), "--eval_every", str(args.epochs)]
    rows = []
    for backend in backends:
        load = load_average()
        for r in run_pair(backend, args.dataset, f"seed-{backend}", out, common, [[], []]):
            rows.append(f"| {backend} | {r['rank']} | {' '.join(NODE_FLAGS[r['rank']])} | {r['code']} | {r['epochs']} | "
                        f"{r['steps_per_epoch']} | {r['seeds']} | {r['wall']:.1f} | "
                        f"{pct(r['test_acc'])} | {load:.1f} |")
            print(rows[-1] if r["code"] == 0 else rows[-1] + "\n" + r["tail"], flush=True)
    mismatch = []
    for backend in backends:
        started = time.monotonic()
        results = run_pair(backend, args.dataset, f"mismatch-{backend}", out, common, [["--model", "sage"],
                                                                                      ["--model", "gat"]])
        mismatch.append(f"| {backend} | {[r['code'] for r in results]} | {time.monotonic() - started:.1f} | "
                        f"{results[0]['errors']} |")
    print(f"\ndataset {args.dataset}, flags common to both nodes: {' '.join(common)}")
    print("\n| backend | node | the seed's per-node flags | exit | epochs | steps per epoch | train seeds | wall (s) "
          "| test acc at best val | load avg |")
    print("|---|---|---|---|---|---|---:|---:|---:|---|")
    print("\n".join(rows))
    print("\nnode 1 with --model gat (node 0: sage):\n\n| backend | exit codes | wall (s) | node 0's error line |")
    print("|---|---|---:|---|")
    print("\n".join(mismatch))
    return 0 if all("| 0 |" in row for row in rows) else 1


if __name__ == "__main__":
    run_cli(main)
