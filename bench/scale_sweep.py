"""Benchmark (not a test): trainer memory and epoch time against synthetic graph size, per backend.

    python bench/scale_sweep.py [--sizes 100000,1000000,2000000] [--avg_degree 10] [--num_features 64]
        [--backends neo4j,in_memory] [--ranks 2] [--out bench_out/sweep] [-- training flags]

For each size (smallest first) the synthetic graph ``synthetic_n{N}_d{D}_f{F}_c{C}_s0`` is
generated (cached under data/datasets) and METIS-partitioned once for ``--ranks`` ranks
(``partition_graph.py``, a process of its own: not counted in any trainer), and loaded into a
Neo4j server of its own (``GNN_NEO4J_DIR=<server_root>/n{N}``, offline import into the empty
database: the fast path, and no other graph shares its page cache).  Then every backend trains
with the same bounded settings (default: 3 epochs of 15 steps, evaluation once on a fixed
subset, so the cost per size does not grow with the graph) through
``bench/compare_backends.py``'s launcher, and the size's server is stopped (and deleted unless
``--keep_servers``) before the next size starts.

Output: ``<out>/logs/<run>/``, ``<out>/plots/`` (``scale.png`` = peak trainer RSS and epoch
time against size; per-run figures; summary.md), and ``<out>/sweep.md``, rewritten after every
size so an interrupted sweep keeps what finished.  Each row records the 1-minute load average
before/after its job: the machine is shared, so timings are noisy.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parent.parent

from compare_backends import BackendRun, draw, fmt, parse_backends, ratio, run_backend

from src.data.synthetic import synthetic_dir_name, synthetic_params
from src.core.errors import UsageError, UserError, run_cli
from src.neo4jdb.local import LocalNeo4j

DEFAULT_TRAINING = ["--epochs", "3", "--max_steps_per_epoch", "15", "--eval_every", "3", "--max_eval_seeds", "1024",
                    "--fanouts", "10,10", "--num_layers", "2", "--hidden_channels", "128",
                    "--batch_size", "256", "--lr", "0.005"]


@dataclass
class SizeResult:
    """Everything measured for one graph size."""

    num_nodes: int
    num_edges: int | None
    prepare_seconds: float  # generate (if not cached) + partition
    import_seconds: float | None  # Neo4j offline import (None: no neo4j backend)
    runs: list[BackendRun]


def _timed(cmd: Sequence[str], env: dict[str, str] | None, what: str, log_path: Path) -> float:
    """Run ``cmd`` from the repo root, output to ``log_path``; seconds taken, or a UserError."""
    start = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.run(list(cmd), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-5:])
        raise UserError(f"{what} failed (exit {proc.returncode}); last lines of {log_path}:\n{tail}")
    return time.perf_counter() - start


def _server_env(server_root: Path, num_nodes: int) -> dict[str, str]:
    """Environment of this size's own local server; it shares the main server's jars and plugin."""
    root = server_root / f"n{num_nodes}"
    main = LocalNeo4j(root=REPO / "data" / "neo4j")
    root.mkdir(parents=True, exist_ok=True)
    for shared in (main.lib, main.lib.with_name(f"plugin-{main.version}")):
        link = root / shared.name
        if shared.exists() and not link.exists():
            link.symlink_to(shared.resolve(), target_is_directory=True)
    return {"GNN_NEO4J_DIR": str(root)}


def sweep_size(n: int, args: argparse.Namespace, backends: list[str], training: list[str],
               out: Path) -> SizeResult:
    params = (synthetic_params(preset=args.preset, num_nodes=n) if args.preset else
              synthetic_params(num_nodes=n, avg_degree=args.avg_degree, num_features=args.num_features,
                               num_classes=args.num_classes))
    name = f"synthetic_{synthetic_dir_name(params)}"
    print(f"[{time.strftime('%H:%M:%S')}] {name}: generate + partition ...", flush=True)
    prepare = _timed([sys.executable, "partition_graph.py", "--dataset", name,
                      "--num_partitions", str(args.ranks)], None, f"partitioning {name}",
                     out / f"{name}.partition.log")
    env: dict[str, str] = {}
    import_s = None
    if "neo4j" in backends:
        env = _server_env(Path(args.server_root), n)
        print(f"[{time.strftime('%H:%M:%S')}] {name}: Neo4j import into {env['GNN_NEO4J_DIR']} ...", flush=True)
        shape = (["--preset", args.preset] if args.preset else
                 ["--avg_degree", str(params["avg_degree"]), "--num_features", str(params["num_features"]),
                  "--num_classes", str(params["num_classes"])])
        load = [sys.executable, "loaders/load_into_neo4j.py", "--dataset", "synthetic", "--num_nodes", str(n),
                *shape, "--method", args.load_method]
        _timed(["bash", "jobs/neo4j.sh", "start", *args.server_memory.split()], env, "starting Neo4j", out / f"{name}.neo4j-start.log")
        import_s = _timed(load, env, f"loading {name} into Neo4j", out / f"{name}.load.log")
    runs = []
    try:
        for backend in backends:
            # a new name per sweep: the trainers refuse to overwrite an earlier sweep's run of this size
            runs.append(run_backend(backend, f"{name}-{backend}-{args.ranks}r-{args.stamp}", dataset=name,
                                    ranks=args.ranks, log_dir=out / "logs", training=training,
                                    env=env, stderr_dir=out))
    finally:
        if env:
            _timed(["bash", "jobs/neo4j.sh", "stop"], env, "stopping Neo4j", out / f"{name}.neo4j-stop.log")
            if not args.keep_servers:
                shutil.rmtree(env["GNN_NEO4J_DIR"], ignore_errors=True)
    return SizeResult(n, _num_edges(out / "logs", runs), prepare, import_s, runs)


def _num_edges(log_dir: Path, runs: list[BackendRun]) -> int | None:
    """Edge count from the first run's run_start event (the graph as the backend saw it)."""
    for r in runs:
        with open(log_dir / r.run_name / "rank0.jsonl") as fh:
            first = json.loads(fh.readline())
        if first.get("event") == "run_start" and first.get("num_edges"):
            return int(first["num_edges"])
    return None


def sweep_table(results: Sequence[SizeResult], reference: str) -> str:
    head = ("| nodes | edges | backend | median epoch time (s) | epoch time / "
            f"{reference} | seeds/s | peak trainer RSS (MiB) | trainer RSS / {reference} | "
            "peak Neo4j server RSS (MiB) | test acc (subset) | generate+partition (s) | "
            "Neo4j import (s) | load avg before/after |")
    lines = [head, "|" + "---:|---:|---|" + "---:|" * (head.count("|") - 4)]
    for res in results:
        ref = next((r.metrics for r in res.runs if r.backend == reference), None)
        for r in res.runs:
            m = r.metrics
            lines.append(
                f"| {res.num_nodes:,} | {res.num_edges or 0:,} | {r.backend} | "
                f"{fmt(m.median_epoch_time, '.2f')} | {ratio(m.median_epoch_time, ref and ref.median_epoch_time)} | "
                f"{fmt(m.seeds_per_s, '.0f')} | {fmt(m.peak_rss_mb, '.0f')} | "
                f"{ratio(m.peak_rss_mb, ref and ref.peak_rss_mb)} | {fmt(m.peak_neo4j_rss_mb, '.0f')} | "
                f"{fmt(m.test_acc_at_best_val, '.3f')} | {res.prepare_seconds:.0f} | "
                f"{fmt(res.import_seconds, '.0f')} | {r.load_before:.1f} / {r.load_after:.1f} |")
    return "\n".join(lines) + "\n"


def memory_wall_plot(results: Sequence[SizeResult], limit_mb: float, path: Path) -> None:
    """Peak trainer RSS and median epoch time against nodes per backend, the per-rank limit drawn in."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rss, ax_time) = plt.subplots(1, 2, figsize=(10, 4))
    names = sorted({r.backend for res in results for r in res.runs})
    for backend in names:
        pts = [(res.num_nodes, r.metrics) for res in results for r in res.runs if r.backend == backend]
        xs = [n for n, _ in pts]
        ax_rss.plot(xs, [m.peak_rss_mb for _, m in pts], "o-", label=backend)
        ax_time.plot(xs, [m.median_epoch_time for _, m in pts], "o-", label=backend)
    ax_rss.axhline(limit_mb, color="red", linestyle="--", label=f"limit {limit_mb:.0f} MiB")
    ax_rss.set(xlabel="nodes", ylabel="peak trainer RSS (MiB, max over ranks)", title="trainer memory")
    ax_time.set(xlabel="nodes", ylabel="median epoch time (s, slowest rank)", title="epoch time")
    for ax in (ax_rss, ax_time):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog=f"default training flags: {' '.join(DEFAULT_TRAINING)}")
    parser.add_argument("--sizes", default="100000,1000000,2000000",
                        help="comma list of node counts, run smallest first (default: %(default)s)")
    parser.add_argument("--avg_degree", type=float, default=10, help="stored edges per node (default: %(default)s)")
    parser.add_argument("--num_features", type=int, default=64, help="feature dimension (default: %(default)s)")
    parser.add_argument("--num_classes", type=int, default=10, help="classes (default: %(default)s)")
    parser.add_argument("--preset", default=None, choices=("products",),
                        help="a real graph's degree, width, classes and split fractions at every size "
                             "(src/data/shapes.py); replaces --avg_degree/--num_features/--num_classes")
    parser.add_argument("--server_memory", default="--heap 2g --pagecache 2g",
                        help="jobs/neo4j.sh start flags of each size's server (default: %(default)s)")
    parser.add_argument("--limit_mb", type=float, default=None,
                        help="draw this per-rank memory limit into <out>/memory_wall.png (trainer peak RSS and "
                             "epoch time against size)")
    parser.add_argument("--backends", default="neo4j,in_memory", help="comma list (default: %(default)s)")
    parser.add_argument("--reference", default="in_memory", help="ratios are to this backend (default: %(default)s)")
    parser.add_argument("--ranks", type=int, default=2, help="ranks per job (default: %(default)s)")
    parser.add_argument("--out", default=str(REPO / "bench_out" / "sweep"), help="output folder (default: %(default)s)")
    parser.add_argument("--server_root", default=str(REPO / "data" / "neo4j-sweep"),
                        help="one Neo4j server folder per size goes here (default: %(default)s)")
    parser.add_argument("--load_method", default="import", choices=("import", "unwind", "auto"),
                        help="how graphs get into Neo4j (default: %(default)s, offline import)")
    parser.add_argument("--keep_servers", action="store_true", help="keep each size's Neo4j database")
    parser.add_argument("training", nargs="*", help="training flags after -- (replace the defaults)")
    args = parser.parse_args()
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        raise UsageError(f"--sizes must be a comma list of integers (got {args.sizes!r})") from None
    if not sizes or sizes[0] < 2:
        raise UsageError(f"--sizes needs node counts >= 2 (got {args.sizes!r})")
    backends = parse_backends(args.backends)
    training = args.training or DEFAULT_TRAINING
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = (f"# Scale sweep on synthetic graphs\n\n{args.ranks} rank(s) per job on one machine; "
              f"avg degree {args.avg_degree:g}, {args.num_features} features, {args.num_classes} classes; "
              f"training flags: `{' '.join(training)}`. Epoch time = median over the bounded epochs of "
              "the training wall time (slowest rank; epoch 1 includes warm-up); RSS = max over ranks. Load average: 1-minute, before/after each job "
              "(2 shared cores: timings are noisy).\n\n")
    results: list[SizeResult] = []
    args.stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in sizes:
        results.append(sweep_size(n, args, backends, training, out))
        (out / "sweep.md").write_text(header + sweep_table(results, args.reference))
        print(sweep_table(results, args.reference), flush=True)
    draw(out / "logs", out / "plots")
    if args.limit_mb:
        memory_wall_plot(results, args.limit_mb, out / "memory_wall.png")
    print(f"\n{header}{sweep_table(results, args.reference)}\nwrote {out / 'sweep.md'}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s: %(message)s")
    run_cli(main)
