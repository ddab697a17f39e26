"""Benchmark (not a test): the trimmed training step against the untrimmed one, on every backend.

    python bench/trim_step.py --dataset synthetic_n1000000_d20_f64_c10_s0
        [--backends full_graph,partitioned,neo4j] [--repeats 1] [--out bench_out/trim] [-- training flags]

For each backend the same job runs with trimming (the default) and with ``--no_trim``, interleaved
(on, off, off, on, ...) so drifting machine load hits both alike; each job is a fresh process
(peak RSS is per process). Defaults are the issue's flags: GraphSAGE, 3 layers, hidden 256, batch
1024, fanouts 15,10,5, 1 epoch of 20 steps, evaluation on 2048 nodes. The table gives train seeds/s,
step time p50, model step (forward + backward) p50 and peak trainer RSS (max over ranks), with the
trimmed/untrimmed ratios, and the load average around each job. The partitioned job's two ranks
split the batch (512 seeds each for 1024), so every row trains the same seeds per step.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from compare_backends import BackendRun, fmt, run_backend

from src.core.errors import UsageError, run_cli

# label -> (registry backend, ranks, extra flags). The partitioned job's 2 ranks share the batch
# (each takes half), so a step trains as many seeds as the 1-rank jobs' and the untrimmed pair fits
# in memory (two untrimmed ranks of 1024 seeds at fanouts 15,10,5 would need ~19 GB).
BACKENDS = {"full_graph": ("in_memory", 1, ["--full_graph"]), "partitioned": ("in_memory", 2, []),
            "neo4j": ("neo4j", 1, [])}


def per_rank(training: list[str], ranks: int) -> list[str]:
    """``training`` with ``--batch_size`` divided among ``ranks`` (the global batch stays the same)."""
    flags = list(training)
    if ranks > 1 and "--batch_size" in flags:
        at = flags.index("--batch_size") + 1
        flags[at] = str(max(1, int(flags[at]) // ranks))
    return flags
DEFAULT_FLAGS = ["--epochs", "1", "--max_steps_per_epoch", "20", "--max_eval_seeds", "2048", "--batch_size", "1024",
                 "--fanouts", "15,10,5", "--num_layers", "3", "--hidden_channels", "256", "--num_workers", "2",
                 "--num_loader_threads", "2", "--eval_every", "1"]


def step_p50(log_dir: Path, run_name: str, key: str) -> float | None:
    """Median of ``key`` over rank 0's step events (the first step, which warms up, left out)."""
    path = log_dir / run_name / "rank0.jsonl"
    steps = [e for e in map(json.loads, path.read_text().splitlines()) if e["event"] == "step"]
    values = [s[key] for s in steps[1:] if s.get(key) is not None]
    return statistics.median(values) if values else None


def table(rows: list[tuple[str, bool, BackendRun, float | None, float | None]]) -> str:
    head = ("| backend | trim | train seeds/s | step p50 (s) | model step p50 (s) | peak trainer RSS (MiB) | "
            "seeds/s trimmed / untrimmed | RSS trimmed / untrimmed | load avg before/after |")
    lines = [head, "|---|---|" + "---:|" * (head.count("|") - 3)]
    for label, trim, run, p50, fb in rows:
        other = [r for r in rows if r[0] == label and r[1] != trim]
        speed = rss = "-"
        if trim and other:
            speed_off = statistics.median(o[2].metrics.seeds_per_s for o in other)
            rss_off = statistics.median(o[2].metrics.peak_rss_mb for o in other)
            speed, rss = f"{run.metrics.seeds_per_s / speed_off:.2f}x", f"{run.metrics.peak_rss_mb / rss_off:.2f}"
        lines.append(f"| {label} | {'on' if trim else 'off'} | {fmt(run.metrics.seeds_per_s, '.1f')} | "
                     f"{fmt(p50, '.3f')} | {fmt(fb, '.3f')} | {fmt(run.metrics.peak_rss_mb, '.0f')} | {speed} | "
                     f"{rss} | {run.load_before:.1f} / {run.load_after:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Training flags after -- replace the defaults: " + " ".join(DEFAULT_FLAGS))
    parser.add_argument("--dataset", default="synthetic_n1000000_d20_f64_c10_s0", help="dataset (default: %(default)s)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma list of {', '.join(BACKENDS)} (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="jobs per backend and trim setting (default: %(default)s)")
    parser.add_argument("--out", default="bench_out/trim", help="logs and table go here (default: %(default)s)")
    parser.add_argument("--neo4j_dir", default=None,
                        help="GNN_NEO4J_DIR of the local server holding the dataset, e.g. one made for a big graph "
                             "(default: the usual local server)")
    args, training = parser.parse_known_args()
    training = [a for a in training if a != "--"] or DEFAULT_FLAGS
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise UsageError(f"--backends: unknown {unknown}; choose from {', '.join(BACKENDS)}")
    if args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1 (got {args.repeats})")
    out = Path(args.out).resolve()
    log_dir = out / "logs"
    rows = []
    for label in backends:
        backend, ranks, extra = BACKENDS[label]
        for k in range(args.repeats):
            for trim in ((True, False) if k % 2 == 0 else (False, True)):
                name = f"{label}-{'trim' if trim else 'notrim'}-{k}"
                flags = [*per_rank(training, ranks), *extra, *([] if trim else ["--no_trim"])]
                env = {"GNN_NEO4J_DIR": str(Path(args.neo4j_dir).resolve())} if args.neo4j_dir else None
                run = run_backend(backend, name, dataset=args.dataset, ranks=ranks, log_dir=log_dir, training=flags,
                                  env=env)
                rows.append((label, trim, run, step_p50(log_dir, name, "t_step"),
                             step_p50(log_dir, name, "t_forward_backward")))
    text = f"dataset {args.dataset}, flags: {' '.join(training)}\n\n" + table(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trim_step.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    run_cli(main)
