"""Benchmark (not a test): ogbn-products' shape end to end, and the memory wall.

    python bench/products_scale.py [--dataset synthetic_products_n2449029_s0] [--jobs neo4j,full,partitioned]
        [--limit 3g] [--ranks 2] [--projection_mb 0] [--out bench_out/products] [-- training flags]

The graph must be loaded first (``python loaders/load_into_neo4j.py --dataset synthetic --preset
products --method import``; the loader records its time).  ``partitioned`` is METIS-partitioned
first by ``partition_graph.py`` in a process of its own (timed; outside any limit).  Every job runs
``--ranks`` local ranks through ``jobs/launch_training_single_node.sh`` with the seed's flags
(batch 1024, fanouts 15,10,5, GraphSAGE, hidden 256; 3 epochs of 50 steps, test accuracy on a
fixed subset of 4096 seeds).  With ``--limit`` every rank runs in a memory cgroup of that size
(``jobs/memory_capped.sh``): a job refused by its preflight is a row with its one-line error, the
cgroup's peak and whether the kernel's OOM killer struck.  Jobs run in the order given (interleave
by listing one twice); each row records the 1-minute load average before/after.  Output:
``<out>/logs/<run>/``, ``<out>/products.md`` and ``<out>/points.json`` (for bench/memory_wall.py), rewritten
after every job.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from compare_backends import BackendRun, fmt, load_average, run_backend
from memory_wall import WallPoint, refusal_estimate, write_points

from src.core.cgroup_run import parse_size
from src.core.errors import UsageError, UserError, run_cli
from src.in_memory.partition import DEFAULT_OUTPUT_DIR
from src.in_memory.partition_format import partition_dir, read_meta
from src.neo4jdb.local import LocalNeo4j

# The seed's flags, bounded to 3 epochs of 50 steps; one prefetch thread, sampling ahead, fetching a batch's rows once
# the step before it is done (--fetch_rows after_step): on 2 shared cores no slower than fetching beside the step, and
# one batch's rows fewer per rank, the difference between +16 % and +12.5 % of peak RSS from 0.5M to 5M nodes
# (bench/RESULTS.md).
SEED_FLAGS = ["--epochs", "3", "--max_steps_per_epoch", "50", "--eval_every", "3", "--max_eval_seeds", "4096",
              "--batch_size", "1024", "--fanouts", "15,10,5", "--num_layers", "3", "--model", "sage",
              "--hidden_channels", "256", "--lr", "0.003", "--seed", "0", "--num_loader_threads", "1",
              "--fetch_rows", "after_step"]
JOBS = {"neo4j": ("neo4j", []), "full": ("in_memory", ["--full_graph"]), "partitioned": ("in_memory", [])}


class CappedOutcome:
    """What a job under a memory limit came to, from its ``run`` (None: it failed), ``error`` (its one-line error)
    and ``cgroup`` rows (one per capped Python process; the ranks are the large ones)."""

    run: BackendRun | None
    error: str | None
    cgroup: list[dict]

    @property
    def cgroup_peak_mb(self) -> float | None:
        return max((c["peak"] / 2**20 for c in self.cgroup if c.get("peak")), default=None)

    @property
    def outcome(self) -> str:
        """``trained``, ``OOM-killed: <error>`` or ``refused: `<error>```."""
        if self.run is not None:
            return "trained"
        if any(c.get("oom_killed") for c in self.cgroup):
            return f"OOM-killed: {self.error}"
        return f"refused: `{self.error}`"

    @property
    def estimate_mb(self) -> float | None:
        return refusal_estimate(self.error)

    def wall_point(self, nodes: int, label: str, limit: str | None) -> WallPoint:
        """This job as a point of the memory-wall figure (bench/memory_wall.py)."""
        m = self.run.metrics if self.run else None
        return WallPoint(nodes, label, limit and parse_size(limit) / 2**20, self.outcome.split(":")[0],
                         m and m.median_epoch_time, m and m.peak_rss_mb, self.cgroup_peak_mb, self.estimate_mb)


@dataclass
class JobRow(CappedOutcome):
    job: str
    limit: str | None
    run: BackendRun | None
    error: str | None
    cgroup: list[dict]  # one row per capped Python process of the job (the ranks are the large ones)
    load_before: float
    load_after: float
    prepare_s: float | None  # load (Neo4j, from its record) or partition time


def _cgroup_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return [r for r in rows if any(str(c).endswith(("-backend.py", "alternative.py")) for c in r["cmd"])]


def _partition(dataset: str, ranks: int, method: str, out: Path) -> float:
    start = time.perf_counter()
    with open(out / f"{dataset}.partition.log", "w") as log:
        proc = subprocess.run([sys.executable, "partition_graph.py", "--dataset", dataset, "--num_partitions",
                               str(ranks), "--method", method], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise UserError(f"partitioning {dataset} failed; see {out / f'{dataset}.partition.log'}")
    meta = read_meta(partition_dir(REPO / DEFAULT_OUTPUT_DIR, dataset, ranks)) or {}
    return float(meta.get("time_s") or time.perf_counter() - start)  # the partitioning's own time when reused


def capped_run(backend: str, name: str, *, dataset: str, ranks: int, out: Path, training: list[str],
               limit: str | None, env: dict[str, str] | None = None
               ) -> tuple[BackendRun | None, str | None, list[dict]]:
    """One job, every rank in a ``limit`` memory cgroup when given: (run or None, its one-line error, cgroup rows).

    A job that fails (a preflight refusal, an OOM kill) is a result, not the end of the benchmark."""
    report = out / f"{name}.cgroup.jsonl"
    env = dict(env or {})
    if limit:
        env.update({"PYTHON": str(REPO / "jobs" / "capped_python"), "GNN_MEMORY_CAP": limit,
                    "GNN_MEMORY_CAP_REPORT": str(report), "GNN_CAPPED_PYTHON": sys.executable})
    try:
        return run_backend(backend, name, dataset=dataset, ranks=ranks, log_dir=out / "logs",
                           training=training, env=env, stderr_dir=out), None, _cgroup_rows(report)
    except UserError as exc:
        text = (out / f"{name}.stderr").read_text(errors="replace") if (out / f"{name}.stderr").exists() else ""
        lines = [ln[ln.index("error: "):] for ln in text.splitlines() if "error: " in ln]
        killed = [ln for ln in lines if "killed by signal" in ln]  # the rank the kernel killed, not its peers' echo
        return None, (killed or lines or [str(exc).splitlines()[0]])[0], _cgroup_rows(report)


def run_job(job: str, args: argparse.Namespace, training: list[str], out: Path, index: int) -> JobRow:
    backend, extra = JOBS[job]
    if backend == "neo4j" and args.projection_mb > 0:
        extra = [*extra, "--projection_mb", f"{args.projection_mb:g}"]
    if backend == "neo4j" and args.decode_rows:
        extra = [*extra, "--decode_rows", args.decode_rows]
    name = f"{args.dataset}-{job}-{args.ranks}r-{args.stamp}-{index}" + ("-capped" if args.limit else "")
    before = load_average()
    run, error, cgroup = capped_run(backend, name, dataset=args.dataset, ranks=args.ranks, out=out,
                                    training=[*training, *extra], limit=args.limit)
    prepare = run.load_seconds if run is not None and backend == "neo4j" else args.partition_s.get(job)
    return JobRow(job, args.limit, run, error, cgroup, before, load_average(), prepare)


def wall_points(rows: list[JobRow], dataset: str) -> list[WallPoint]:
    """The jobs as points of the memory-wall figure (bench/memory_wall.py), labelled as the scale sweep's jobs
    (``neo4j@3g``, ``full``); none for a graph whose name does not say its size (``..._n{N}_...``)."""
    m = re.search(r"_n(\d+)_", dataset)
    if m is None:
        return []
    return [r.wall_point(int(m.group(1)), r.job + (f"@{r.limit}" if r.limit else ""), r.limit) for r in rows]


def server_facts() -> dict[str, str]:
    """Heap, page cache and store size of the local server (GNN_NEO4J_DIR)."""
    server = LocalNeo4j()
    st = server.state() or {}
    store = server.home / "data" / "databases" / os.environ.get("NEO4J_DATABASE", "neo4j")
    size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) if store.exists() else 0
    return {"heap": str(st.get("heap", "?")), "pagecache": str(st.get("pagecache", "?")),
            "store_gib": f"{size / 2**30:.1f}"}


def table(rows: list[JobRow], facts: dict[str, str]) -> str:
    head = ("| job | limit | outcome | load/partition (s) | median epoch (s, slowest rank) | train seeds/s | "
            "peak trainer RSS (MiB) | cgroup peak (MiB) | peak Neo4j RSS (MiB) | test acc (subset) | load avg |")
    lines = [head, "|---|---|---|" + "---:|" * (head.count("|") - 4)]
    for r in rows:
        m = r.run.metrics if r.run else None
        lines.append(f"| {r.job} | {r.limit or '-'} | {r.outcome} | {fmt(r.prepare_s, '.0f')} | "
                     f"{fmt(m and m.median_epoch_time, '.2f')} | {fmt(m and m.seeds_per_s, '.0f')} | "
                     f"{fmt(m and m.peak_rss_mb, '.0f')} | {fmt(r.cgroup_peak_mb, '.0f')} | "
                     f"{fmt(m and m.peak_neo4j_rss_mb, '.0f')} | {fmt(m and m.test_acc_at_best_val, '.3f')} | "
                     f"{r.load_before:.1f} / {r.load_after:.1f} |")
    lines.append(f"\nNeo4j: heap {facts['heap']}, page cache {facts['pagecache']}, store {facts['store_gib']} GiB on disk.")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=f"default training flags: {' '.join(SEED_FLAGS)}")
    p.add_argument("--dataset", default="synthetic_products_n2449029_s0", help="loaded dataset (default: %(default)s)")
    p.add_argument("--jobs", default="neo4j,full,partitioned",
                   help=f"comma list of {', '.join(JOBS)}, run in this order (default: %(default)s)")
    p.add_argument("--limit", default=None, help="memory limit per rank (cgroup v1, root), e.g. 3g (default: none)")
    p.add_argument("--ranks", type=int, default=2, help="ranks per job (default: %(default)s)")
    p.add_argument("--partition_method", default="metis", choices=("metis", "random"),
                   help="partition_graph.py --method (METIS needs ~8 GB at products scale; default: %(default)s)")
    p.add_argument("--projection_mb", type=float, default=0.0,
                   help="the Neo4j job's server projection budget (its --projection_mb; the in-memory jobs have "
                        "no such flag; default: %(default)s = read the store)")
    p.add_argument("--decode_rows", default=None, choices=("fetch", "step", "layer"),
                   help="the Neo4j job's --decode_rows (when its int8 rows become float32; default: the trainer's)")
    p.add_argument("--out", default=str(REPO / "bench_out" / "products"), help="output folder (default: %(default)s)")
    p.add_argument("training", nargs="*", help="training flags after -- (replace the defaults)")
    args = p.parse_args()
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    if not jobs or any(j not in JOBS for j in jobs):
        raise UsageError(f"--jobs must be a comma list of {', '.join(JOBS)} (got {args.jobs!r})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.stamp = time.strftime("%H%M%S")
    args.partition_s = {"partitioned": _partition(args.dataset, args.ranks, args.partition_method, out)} if "partitioned" in jobs else {}
    training = args.training or SEED_FLAGS
    facts = server_facts()
    header = (f"# {args.dataset}, {args.ranks} ranks\n\ntraining flags: `{' '.join(training)}`"
              + (f"; every rank in a {args.limit} memory cgroup" if args.limit else "")
              + (f"; the Neo4j job with `--projection_mb {args.projection_mb:g}`" if args.projection_mb > 0 else "")
              + (f"; the Neo4j job with `--decode_rows {args.decode_rows}`" if args.decode_rows else "") + "\n\n")
    rows: list[JobRow] = []
    for i, job in enumerate(jobs):
        print(f"[{time.strftime('%H:%M:%S')}] {job} ...", flush=True)
        rows.append(run_job(job, args, training, out, i))
        (out / "products.md").write_text(header + table(rows, facts))
        write_points(wall_points(rows, args.dataset), out / "points.json")
    print(header + table(rows, facts), flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
