"""Benchmark (not a test): trainer memory and epoch time against synthetic graph size, per backend.

    python bench/scale_sweep.py [--sizes 100000,1000000,2000000] [--avg_degree 10] [--num_features 64]
        [--backends neo4j,in_memory] [--backend_flags "neo4j=--projection_mb 900"] [--ranks 2]
        [--out bench_out/sweep] [-- training flags]

A job of ``--backends`` is ``NAME[@LIMIT]``: NAME is a backend of src/backends/registry.py
(``in_memory`` = the partitioned in-memory backend) or ``full`` (in_memory --full_graph);
``@LIMIT`` (e.g. ``@2200m``) runs every rank in a memory cgroup of that size
(``jobs/memory_capped.sh``, cgroup v1, root).  The memory wall is e.g. ``neo4j@2200m,full@2200m,full``:
under the limit the full graph's preflight refuses (a row with its one-line error) while Neo4j
trains; the unlimited ``full`` job measures what the limit refused.  ``--backend_flags B=FLAGS``
(repeatable) adds FLAGS to backend B's jobs only (a flag one backend does not know, such as
``--projection_mb``, must not reach the other).

For each size (smallest first) the synthetic graph ``synthetic_n{N}_d{D}_f{F}_c{C}_s0`` is
generated (cached under data/datasets; METIS-partitioned once for ``--ranks`` ranks by
``partition_graph.py`` only when a partitioned job runs: a process of its own, not counted in any
trainer), and loaded into a Neo4j server of its own (``GNN_NEO4J_DIR=<server_root>/n{N}``, offline
import into the empty database: the fast path, and no other graph shares its page cache).  Then
every job trains with the same bounded settings (default: 3 epochs of 15 steps, evaluation once on
a fixed subset, so the cost per size does not grow with the graph) through
``bench/compare_backends.py``'s launcher: the jobs that need the server first, then the server is
stopped (and deleted unless ``--keep_servers``), then the others (its memory is the machine's again).

Output: ``<out>/logs/<run>/``, ``<out>/plots/`` (per-run figures; summary.md),
``<out>/memory_wall.png`` (peak trainer RSS and epoch time against size per job, the limit drawn
in, a refused job at its preflight estimate; its points in ``<out>/points.json``, which
bench/memory_wall.py draws together with other runs') and ``<out>/sweep.md``, all rewritten after every
size so an interrupted sweep keeps what finished.  Each row records the 1-minute load average
before/after its job: the machine is shared, so timings are noisy.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parent.parent

from compare_backends import BackendRun, draw, fmt, load_average, ratio
from memory_wall import WallPoint, write_points
from memory_wall import plot as plot_wall
from products_scale import JOBS, CappedOutcome, capped_run

from src.backends import registry

from src.data.synthetic import synthetic_dir_name, synthetic_params
from src.core.cgroup_run import parse_size
from src.core.errors import UsageError, UserError, run_cli
from src.neo4jdb.local import LocalNeo4j

DEFAULT_TRAINING = ["--epochs", "3", "--max_steps_per_epoch", "15", "--eval_every", "3", "--max_eval_seeds", "1024",
                    "--fanouts", "10,10", "--num_layers", "2", "--hidden_channels", "128",
                    "--batch_size", "256", "--lr", "0.005"]


@dataclass(frozen=True)
class Job:
    """One entry of --backends: a backend, its extra flags, and the per-rank memory limit (None: none)."""

    label: str  # as given, e.g. full@2200m
    backend: str  # registry name
    extra: tuple[str, ...]
    limit: str | None

    @property
    def needs_server(self) -> bool:
        return self.backend == "neo4j"


@dataclass
class JobResult(CappedOutcome):
    """A job of one size: its run, or the one-line error that ended it (a preflight refusal)."""

    job: Job
    run: BackendRun | None
    error: str | None
    cgroup: list[dict]  # one row per capped Python process (the ranks are the large ones)
    load_before: float
    load_after: float


def parse_jobs(text: str) -> list[Job]:
    """``neo4j@2200m,full@2200m,full`` -> Jobs (labels distinct)."""
    labels = [b.strip() for b in text.split(",") if b.strip()]
    if not labels or len(set(labels)) != len(labels):
        raise UsageError(f"--backends must be a comma list of distinct NAME[@LIMIT], e.g. neo4j@2200m,full "
                         f"(got {text!r})")
    jobs = []
    for label in labels:
        name, _, limit = label.partition("@")
        backend, extra = JOBS.get(name, (name, []))
        if backend not in registry.BACKENDS:
            raise UsageError(f"--backends: unknown {name!r} in {label!r}; use full, partitioned or one of "
                             f"{', '.join(registry.BACKENDS)}")
        if "@" in label and not re.fullmatch(r"\d+(\.\d+)?[kmg]", limit.lower()):
            raise UsageError(f"--backends: the limit of {label!r} must be a size such as 2200m or 3g")
        jobs.append(Job(label, backend, tuple(extra), limit or None))
    return jobs


def parse_backend_flags(items: Sequence[str], jobs: Sequence[Job]) -> dict[str, list[str]]:
    """``["neo4j=--projection_mb 900"]`` -> {"neo4j": ["--projection_mb", "900"]}."""
    flags: dict[str, list[str]] = {}
    for item in items:
        backend, sep, text = item.partition("=")
        if not sep or backend not in {j.backend for j in jobs}:
            raise UsageError(f"--backend_flags must be BACKEND=FLAGS with BACKEND one of the jobs' backends "
                             f"({', '.join(sorted({j.backend for j in jobs}))}); got {item!r}")
        flags.setdefault(backend, []).extend(shlex.split(text))
    return flags


@dataclass
class SizeResult:
    """Everything measured for one graph size."""

    num_nodes: int
    num_edges: int | None
    prepare_seconds: float  # generate (if not cached) + partition
    import_seconds: float | None  # Neo4j offline import (None: no neo4j backend)
    jobs: list[JobResult]


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
    for shared in (main.lib, *(main.lib.with_name(f"{m}-{main.version}") for m in ("plugin", "importer"))):
        link = root / shared.name
        if shared.exists() and not link.exists():
            link.symlink_to(shared.resolve(), target_is_directory=True)
    return {"GNN_NEO4J_DIR": str(root)}


def sweep_size(n: int, args: argparse.Namespace, jobs: list[Job], training: list[str],
               out: Path) -> SizeResult:
    params = (synthetic_params(preset=args.preset, num_nodes=n) if args.preset else
              synthetic_params(num_nodes=n, avg_degree=args.avg_degree, num_features=args.num_features,
                               num_classes=args.num_classes))
    name = f"synthetic_{synthetic_dir_name(params)}"
    if any(j.backend == "in_memory" and "--full_graph" not in j.extra for j in jobs):
        print(f"[{time.strftime('%H:%M:%S')}] {name}: generate + partition ...", flush=True)
        prepare = _timed([sys.executable, "partition_graph.py", "--dataset", name, "--num_partitions",
                          str(args.ranks), "--method", args.partition_method], None, f"partitioning {name}",
                         out / f"{name}.partition.log")
    else:  # the full graph needs no partition: generate (cached) only, outside every trainer
        print(f"[{time.strftime('%H:%M:%S')}] {name}: generate ...", flush=True)
        prepare = _timed([sys.executable, "-c", "import sys; from src.data.sources import load_dataset; "
                          "load_dataset(sys.argv[1])", name], None, f"generating {name}", out / f"{name}.generate.log")
    env: dict[str, str] = {}
    import_s = None
    ordered = [j for j in jobs if j.needs_server] + [j for j in jobs if not j.needs_server]
    results: list[JobResult] = []
    try:
        if ordered[0].needs_server:
            env = _server_env(Path(args.server_root), n)
            print(f"[{time.strftime('%H:%M:%S')}] {name}: Neo4j import into {env['GNN_NEO4J_DIR']} ...", flush=True)
            shape = (["--preset", args.preset] if args.preset else
                     ["--avg_degree", str(params["avg_degree"]), "--num_features", str(params["num_features"]),
                      "--num_classes", str(params["num_classes"])])
            load = [sys.executable, "loaders/load_into_neo4j.py", "--dataset", "synthetic", "--num_nodes", str(n),
                    *shape, "--method", args.load_method, "--feature_format", args.feature_format]
            _timed(["bash", "jobs/neo4j.sh", "start", *args.server_memory.split()], env, "starting Neo4j",
                   out / f"{name}.neo4j-start.log")
            import_s = _timed(load, env, f"loading {name} into Neo4j", out / f"{name}.load.log")
        for job in ordered:
            if env and not job.needs_server:
                _stop_server(env, name, args, out)
                env = {}
            before = load_average()
            # a new name per sweep: the trainers refuse to overwrite an earlier sweep's run of this size
            tag = job.label.replace("@", "-cap")
            run, error, cgroup = capped_run(
                job.backend, f"{name}-{tag}-{args.ranks}r-{args.stamp}", dataset=name, ranks=args.ranks,
                out=out, training=[*training, *job.extra, *args.backend_flags.get(job.backend, [])],
                limit=job.limit, env=env)
            if error:
                print(f"  {job.label}: {error}", flush=True)
            results.append(JobResult(job, run, error, cgroup, before, load_average()))
    finally:
        if env:
            _stop_server(env, name, args, out)
    return SizeResult(n, _num_edges(out / "logs", [r.run for r in results if r.run]), prepare, import_s, results)


def _stop_server(env: dict[str, str], name: str, args: argparse.Namespace, out: Path) -> None:
    _timed(["bash", "jobs/neo4j.sh", "stop"], env, "stopping Neo4j", out / f"{name}.neo4j-stop.log")
    if not args.keep_servers:
        shutil.rmtree(env["GNN_NEO4J_DIR"], ignore_errors=True)


def _num_edges(log_dir: Path, runs: list[BackendRun]) -> int | None:
    """Edge count from the first run's run_start event (the graph as the backend saw it)."""
    for r in runs:
        with open(log_dir / r.run_name / "rank0.jsonl") as fh:
            first = json.loads(fh.readline())
        if first.get("event") == "run_start" and first.get("num_edges"):
            return int(first["num_edges"])
    return None


def sweep_table(results: Sequence[SizeResult], reference: str) -> str:
    head = ("| nodes | edges | job | limit per rank | outcome | median epoch time (s) | epoch time / "
            f"{reference} | seeds/s | peak trainer RSS (MiB) | trainer RSS / {reference} | cgroup peak (MiB) | "
            "peak Neo4j server RSS (MiB) | test acc (subset) | generate/partition (s) | "
            "Neo4j import (s) | load avg before/after |")
    lines = [head, "|" + "---:|---:|---|---|---|" + "---:|" * (head.count("|") - 6)]
    for res in results:
        ref = next((r.run.metrics for r in res.jobs if r.job.label == reference and r.run), None)
        for r in res.jobs:
            m = r.run.metrics if r.run else None
            lines.append(
                f"| {res.num_nodes:,} | {res.num_edges or 0:,} | {r.job.label} | {r.job.limit or '-'} | {r.outcome} | "
                f"{fmt(m and m.median_epoch_time, '.2f')} | "
                f"{ratio(m and m.median_epoch_time, ref and ref.median_epoch_time)} | "
                f"{fmt(m and m.seeds_per_s, '.0f')} | {fmt(m and m.peak_rss_mb, '.0f')} | "
                f"{ratio(m and m.peak_rss_mb, ref and ref.peak_rss_mb)} | {fmt(r.cgroup_peak_mb, '.0f')} | "
                f"{fmt(m and m.peak_neo4j_rss_mb, '.0f')} | {fmt(m and m.test_acc_at_best_val, '.3f')} | "
                f"{res.prepare_seconds:.0f} | {fmt(res.import_seconds, '.0f')} | "
                f"{r.load_before:.1f} / {r.load_after:.1f} |")
    return "\n".join(lines) + "\n"


def wall_points(results: Sequence[SizeResult]) -> list[WallPoint]:
    """Every job of every size as a point of the memory-wall figure (bench/memory_wall.py)."""
    return [r.wall_point(res.num_nodes, r.job.label, r.job.limit) for res in results for r in res.jobs]


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
                        help="draw this per-rank memory limit into <out>/memory_wall.png (default: every "
                             "@LIMIT of --backends)")
    parser.add_argument("--backends", default="neo4j,in_memory",
                        help="comma list of jobs NAME[@LIMIT], e.g. neo4j@2200m,full@2200m,full (default: %(default)s)")
    parser.add_argument("--backend_flags", action="append", default=[], metavar="BACKEND=FLAGS",
                        help="training flags for one backend's jobs only, e.g. 'neo4j=--projection_mb 900' (repeatable)")
    parser.add_argument("--partition_method", default="metis", choices=("metis", "random"),
                        help="partition_graph.py --method for partitioned jobs (default: %(default)s)")
    parser.add_argument("--reference", default="in_memory", help="ratios are to this job (default: %(default)s)")
    parser.add_argument("--ranks", type=int, default=2, help="ranks per job (default: %(default)s)")
    parser.add_argument("--out", default=str(REPO / "bench_out" / "sweep"), help="output folder (default: %(default)s)")
    parser.add_argument("--server_root", default=str(REPO / "data" / "neo4j-sweep"),
                        help="one Neo4j server folder per size goes here (default: %(default)s)")
    parser.add_argument("--load_method", default="import", choices=("import", "unwind", "auto"),
                        help="how graphs get into Neo4j (default: %(default)s, offline import)")
    parser.add_argument("--feature_format", default="auto", choices=("auto", "dense", "float16", "bfloat16", "int8"),
                        help="how the loader stores the features in Neo4j (load_into_neo4j.py --feature_format; "
                             "int8 as bench/products_scale.py's graph) (default: %(default)s)")
    parser.add_argument("--keep_servers", action="store_true", help="keep each size's Neo4j database")
    parser.add_argument("training", nargs="*", help="training flags after -- (replace the defaults)")
    args = parser.parse_args()
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        raise UsageError(f"--sizes must be a comma list of integers (got {args.sizes!r})") from None
    if not sizes or sizes[0] < 2:
        raise UsageError(f"--sizes needs node counts >= 2 (got {args.sizes!r})")
    jobs = parse_jobs(args.backends)
    args.backend_flags = parse_backend_flags(args.backend_flags, jobs)
    limits = [parse_size(j.limit) / 2**20 for j in jobs if j.limit]
    limits_mb = [args.limit_mb] if args.limit_mb else limits
    training = args.training or DEFAULT_TRAINING
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = (f"# Scale sweep on synthetic graphs\n\n{args.ranks} rank(s) per job on one machine; "
              + (f"{args.preset}'s shape (src/data/shapes.py); " if args.preset else
                 f"avg degree {args.avg_degree:g}, {args.num_features} features, {args.num_classes} classes; ")
              + f"training flags: `{' '.join(training)}`"
              + "".join(f"; {b} also `{' '.join(f)}`" for b, f in args.backend_flags.items())
              + ". Epoch time = median over the bounded epochs of "
              "the training wall time (slowest rank; epoch 1 includes warm-up); RSS = max over ranks. Load average: 1-minute, before/after each job "
              "(2 shared cores: timings are noisy).\n\n")
    results: list[SizeResult] = []
    args.stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in sizes:
        results.append(sweep_size(n, args, jobs, training, out))
        (out / "sweep.md").write_text(header + sweep_table(results, args.reference))
        write_points(wall_points(results), out / "points.json")
        plot_wall(wall_points(results), limits_mb, out / "memory_wall.png")
        print(sweep_table(results, args.reference), flush=True)
    draw(out / "logs", out / "plots", [r.run.run_name for res in results for r in res.jobs if r.run])
    print(f"\n{header}{sweep_table(results, args.reference)}\nwrote {out / 'sweep.md'}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s: %(message)s")
    run_cli(main)
