"""Benchmark (not a test): test accuracy with and without feature normalisation, per graph and backend.

    python bench/normalization.py [--datasets cora citeseer amazon_cs coauthor_phy tolokers]
        [--backends in_memory neo4j] [--modes none row_l1] [--out bench_out/normalization] [-- training flags]

Every (dataset, backend, mode) is one job of one rank through jobs/launch_training_single_node.sh
with the same training flags and seed (the in-memory backend with ``--full_graph``), so only the
backend and ``--normalize_features`` differ. Prints one markdown table: test accuracy at the best
validation epoch (ROC-AUC is not computed yet: tolokers' figure is accuracy), best validation
accuracy, mean epoch time, and the load average around the job.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from compare_backends import REPO, pct, run_backend

from src.core.errors import run_cli

DEFAULT_TRAINING = ["--epochs", "30", "--fanouts", "10,10", "--num_layers", "2", "--hidden_channels", "256",
                    "--batch_size", "512", "--lr", "0.003", "--eval_every", "5", "--max_eval_seeds", "5000",
                    "--num_loader_threads", "2"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["cora", "citeseer", "amazon_cs", "coauthor_phy", "tolokers"],
                   help="shipped graphs to train on (default: %(default)s)")
    p.add_argument("--backends", nargs="+", default=["in_memory", "neo4j"], help="backends (default: %(default)s)")
    p.add_argument("--modes", nargs="+", default=["none", "row_l1"], help="--normalize_features values (default: %(default)s)")
    p.add_argument("--out", default=str(REPO / "bench_out" / "normalization"), help="logs go here (default: %(default)s)")
    p.add_argument("training", nargs="*", help="training flags after --, the same for every job "
                   f"(default: {' '.join(DEFAULT_TRAINING)})")
    args = p.parse_args()
    training = args.training or DEFAULT_TRAINING
    out = Path(args.out)
    rows = []
    for dataset in args.datasets:
        for backend in args.backends:
            for mode in args.modes:
                extra = ["--full_graph"] if backend == "in_memory" else []
                run = run_backend(backend, f"{dataset}-{backend}-{mode}", dataset=dataset, ranks=1, log_dir=out / "logs",
                                  training=[*training, *extra, "--normalize_features", mode])
                m = run.metrics
                rows.append(f"| {dataset} | {backend} | {mode} | {pct(m.test_acc_at_best_val)} | "
                            f"{pct(m.best_val_acc)} | {m.mean_epoch_time or float('nan'):.2f} | "
                            f"{run.load_before:.1f}-{run.load_after:.1f} |")
                print(rows[-1], flush=True)
    print(f"\ntraining flags: {' '.join(training)}\n")
    print("| dataset | backend | --normalize_features | test acc at best val | best val acc | epoch s | load avg |")
    print("|---|---|---|---:|---:|---:|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    run_cli(main)
