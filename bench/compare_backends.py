"""Benchmark (not a test): the same training on several backends, one table and the figures.

    python bench/compare_backends.py --dataset amazon_cs [--backends neo4j,in_memory] [--ranks 2]
        [--out bench_out/compare] [-- training flags]

(``jobs/benchmark_backends.sh`` runs this.)  For every backend, in the order given, one job of
``--ranks`` local ranks is launched through ``jobs/launch_training_single_node.sh --backend B``
with identical training flags and seed, so only the backend differs (``--repeats N``: N jobs per
backend, interleaved).  Afterwards ``visualize.py`` draws this invocation's runs (not earlier ones
under the same ``<out>/logs``) into ``<out>/plots`` (repeats: median bars, min..max error bars) and this script writes
``<out>/comparison.md``: per backend the mean epoch time and its median (epoch 1 warms caches and JIT
up) with its ratio to the reference backend (``--reference``, default in_memory; the median of its repeats), seeds/s, the trainer's
peak RSS (max over ranks), the Neo4j server's peak RSS (where the trainer logged it), their sum and its ratio, test accuracy (at the best
validation epoch, and after the last epoch), and for database backends the time the dataset's load
took (``load_seconds`` of its dataset record, written by loaders/load_into_neo4j.py; the launch script
loads a dataset that is not there yet, so a fresh database measures it in this run).  The 1-minute load average is recorded before and
after each job: the machine is shared, so timings are only comparable at similar load.

A new backend plugs in through src/backends/registry.py (name -> its entry script and dataset
record); nothing here changes.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parent.parent

from src.plots.runs import RunMetrics, load_run, run_metrics
from src.plots.summary import visualize
from src.backends import registry
from src.core.errors import UsageError, UserError, run_cli
from src.train.run_names import dataset_stem

LAUNCH = REPO / "jobs" / "launch_training_single_node.sh"
DEFAULT_BACKENDS = ("neo4j", "in_memory")
log = logging.getLogger("compare_backends")


@dataclass
class BackendRun:
    """One finished job of one backend: its metrics plus the machine load around it."""

    backend: str
    run_name: str
    metrics: RunMetrics
    final_test_acc: float | None
    load_before: float
    load_after: float
    wall_seconds: float
    load_seconds: float | None = None


def recorded_load_seconds(backend: str, dataset: str, training: Sequence[str],
                          env: dict[str, str] | None = None) -> float | None:
    """Seconds the loader took to put ``dataset`` into the backend's database (None: no database).

    ``env`` is the job's extra environment: a ``GNN_NEO4J_DIR`` there (the scale sweep's server
    per size) names the local server to ask instead of the default one.
    """
    try:
        return _recorded_load_seconds(backend, dataset, training, env or {})
    except Exception as exc:  # the run itself is done and logged: a missing figure must not end the benchmark
        log.warning("%s: could not read the dataset load time of %s (%s)", backend, dataset, exc)
        return None


def _recorded_load_seconds(backend: str, dataset: str, training: Sequence[str],
                           env: dict[str, str]) -> float | None:
    return registry.spec(backend).load().load_seconds(dataset, training, env)


def load_average() -> float:
    """1-minute load average of the machine (shared: say so next to every timing)."""
    return os.getloadavg()[0]


def run_backend(backend: str, run_name: str, *, dataset: str, ranks: int, log_dir: Path,
                training: Sequence[str], env: dict[str, str] | None = None,
                stderr_dir: Path | None = None) -> BackendRun:
    """Launch one job of ``ranks`` local ranks on ``backend`` and read back its logs."""
    cmd = ["bash", str(LAUNCH), "--backend", backend, "--ranks", str(ranks), "--dataset", dataset,
           "--run_name", run_name, "--log_dir", str(log_dir),
           "--checkpoint_dir", str(log_dir.parent / "checkpoints"), *training]  # beside the logs: a benchmark's own
    load_before = load_average()
    start = time.perf_counter()
    print(f"[{time.strftime('%H:%M:%S')}] {run_name}: {backend}, {ranks} rank(s), "
          f"load {load_before:.1f} ...", flush=True)
    err_path = (stderr_dir or log_dir) / f"{run_name}.stderr"
    err_path.parent.mkdir(parents=True, exist_ok=True)
    with open(err_path, "w") as err:
        proc = subprocess.run(cmd, cwd=REPO, stdout=err, stderr=subprocess.STDOUT,
                              env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "".join(err_path.read_text(errors="replace").splitlines(keepends=True)[-5:])
        raise UserError(f"{backend} job {run_name} failed (exit {proc.returncode}); "
                        f"last lines of {err_path}:\n{tail}")
    run = load_run(log_dir / run_name)
    metrics = run_metrics(run)
    last = run.epochs[run.epochs["epoch"] == run.epochs["epoch"].max()]["test_acc"].dropna()
    print(f"  done in {wall:.0f} s: mean epoch {metrics.mean_epoch_time or float('nan'):.3f} s, "
          f"test acc {metrics.test_acc_at_best_val}", flush=True)
    return BackendRun(backend, run_name, metrics,
                      float(last.iloc[0]) if len(last) else None,
                      load_before, load_average(), wall, recorded_load_seconds(backend, dataset, training, env))


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal ('-' for none)."""
    return "-" if value is None else f"{100 * value:.1f}"


def ratio(value: float | None, ref: float | None) -> str:
    return "-" if value is None or not ref else f"{value / ref:.2f}x"


def machine_rss(m: RunMetrics) -> float | None:
    """Trainer peak plus the database server's peak: what the job needs on the machine."""
    return None if m.peak_rss_mb is None else m.peak_rss_mb + (m.peak_neo4j_rss_mb or 0.0)


def _median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(statistics.median(vals)) if vals else None


def comparison_table(runs: Sequence[BackendRun], reference: str) -> str:
    """Markdown table, one row per backend run; ratios are to the median of the ``reference`` backend's runs."""
    refs = [r.metrics for r in runs if r.backend == reference]
    ref_time = _median([m.median_epoch_time for m in refs])
    ref_rss = _median([machine_rss(m) for m in refs])
    head = ("| backend | run | ranks | epochs | mean epoch time (s) | median epoch time (s) | "
            f"median epoch time / {reference} | seeds/s | peak trainer RSS (MiB) | peak Neo4j server RSS (MiB) | "
            f"trainer + server (MiB) | trainer + server / {reference} | dataset load into the database (s) | "
            "test acc (best val) | test acc (last epoch) | load avg before/after |")
    lines = [head, "|---|---|" + "---:|" * (head.count("|") - 3)]
    for r in runs:
        m = r.metrics
        lines.append(
            f"| {r.backend} | {r.run_name} | {m.ranks} | {m.epochs} | {fmt(m.mean_epoch_time, '.3f')} | "
            f"{fmt(m.median_epoch_time, '.3f')} | {ratio(m.median_epoch_time, ref_time)} | "
            f"{fmt(m.seeds_per_s, '.1f')} | {fmt(m.peak_rss_mb, '.0f')} | {fmt(m.peak_neo4j_rss_mb, '.0f')} | "
            f"{fmt(machine_rss(m), '.0f')} | {ratio(machine_rss(m), ref_rss)} | {fmt(r.load_seconds, '.1f')} | "
            f"{fmt(m.test_acc_at_best_val, '.4f')} | {fmt(r.final_test_acc, '.4f')} | "
            f"{r.load_before:.1f} / {r.load_after:.1f} |")
    return "\n".join(lines) + "\n"


def spread_table(runs: Sequence[BackendRun]) -> str:
    """Per backend over its repeats: min / median / max of the main figures."""
    def cell(values: Sequence[float | None], spec: str) -> str:
        vals = sorted(v for v in values if v is not None)
        if not vals:
            return "-"
        return " / ".join(format(v, spec) for v in (vals[0], statistics.median(vals), vals[-1]))

    head = ("| backend | repeats | median epoch time (s) | seeds/s | trainer + server RSS (MiB) | "
            "test acc (best val) |")
    lines = ["min / median / max over the repeats of each backend:", "", head, "|---|" + "---:|" * 5]
    for backend in dict.fromkeys(r.backend for r in runs):
        ms = [r.metrics for r in runs if r.backend == backend]
        lines.append(f"| {backend} | {len(ms)} | {cell([m.median_epoch_time for m in ms], '.3f')} | "
                     f"{cell([m.seeds_per_s for m in ms], '.1f')} | {cell([machine_rss(m) for m in ms], '.0f')} | "
                     f"{cell([m.test_acc_at_best_val for m in ms], '.4f')} |")
    return "\n".join(lines) + "\n"


def parse_backends(text: str) -> list[str]:
    backends = [b.strip() for b in text.split(",") if b.strip()]
    if not backends or len(set(backends)) != len(backends):
        raise UsageError(f"--backends must be a comma list of distinct names, e.g. neo4j,in_memory (got {text!r})")
    return backends


def draw(log_dir: Path, plot_dir: Path, runs: Sequence[str] | None = None) -> None:
    """All figures and summary.md for the ``runs`` under ``log_dir`` (None: all; visualize.py's job).

    A benchmark draws only its own runs, so earlier ones in the same --out never join its figures."""
    with_warnings = logging.getLogger("src.plots")
    with_warnings.setLevel(logging.WARNING)
    for path in visualize(log_dir, plot_dir, only=runs):
        print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Training flags after -- go to every backend unchanged, e.g. "
                                            "-- --epochs 20 --fanouts 10,10 --num_layers 2 --lr 0.01")
    parser.add_argument("--dataset", default="cora", help="dataset of every run (default: %(default)s)")
    parser.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                        help="comma list of --backend names of the launch script, run in this order "
                             "(default: %(default)s)")
    parser.add_argument("--reference", default="in_memory",
                        help="backend the ratios are relative to (default: %(default)s)")
    parser.add_argument("--ranks", type=int, default=2, help="ranks per job on this machine (default: %(default)s)")
    parser.add_argument("--out", default=str(REPO / "bench_out" / "compare"),
                        help="logs/, plots/ and comparison.md go here (default: %(default)s)")
    parser.add_argument("--tag", default=None, help="run names are <dataset>-<backend>-<tag>[-r<k>] "
                        "(default: a timestamp)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="jobs per backend, interleaved (b1 b2 b1 b2 ...); the figure draws the median and "
                             "min..max, comparison.md adds a min/median/max table (default: %(default)s)")
    parser.add_argument("training", nargs="*", help="training flags after --")
    args = parser.parse_args()
    if args.ranks < 1:
        raise UsageError(f"--ranks must be >= 1 (got {args.ranks})")
    if args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1 (got {args.repeats})")
    backends = parse_backends(args.backends)
    out = Path(args.out)
    tag = args.tag or time.strftime("%Y%m%d-%H%M%S")
    stem = dataset_stem(args.dataset)
    names = [(b, f"{stem}-{b}-{tag}" + (f"-r{k}" if args.repeats > 1 else ""))
             for k in range(1, args.repeats + 1) for b in backends]
    runs = [run_backend(b, name, dataset=args.dataset, ranks=args.ranks, log_dir=out / "logs",
                        training=args.training) for b, name in names]
    draw(out / "logs", out / "plots", [name for _, name in names])
    table = comparison_table(runs, args.reference) + ("\n" + spread_table(runs) if args.repeats > 1 else "")
    header = (f"# Backend comparison on {args.dataset}\n\n{args.ranks} rank(s) per job on one machine, "
              f"training flags: `{' '.join(args.training) or '(defaults)'}`. Load average: 1-minute, "
              "before/after each job (2 shared cores: timings are noisy).\n\n")
    (out / "comparison.md").write_text(header + table)
    print(f"\n{header}{table}\nwrote {out / 'comparison.md'}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s: %(message)s")
    run_cli(main)
