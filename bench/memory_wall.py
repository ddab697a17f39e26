"""Benchmark figure (not a test): the memory wall, trainer memory and epoch time against graph size per job.

    python bench/memory_wall.py --points bench_out/sweep/points.json bench_out/products/points.json \
        [--limit_mb 3072] --out plots/products-memory-wall/memory_wall.png

``bench/scale_sweep.py`` (a row per size and job) and ``bench/products_scale.py`` (a row per job) write their
results as ``<out>/points.json``; this draws any number of them in one figure, so a sweep and the repeated jobs
of a larger graph share axes. Repeats of a job at one size are drawn as points and joined at their mean.
"""
from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from src.core.errors import UsageError, run_cli


@dataclass
class WallPoint:
    """One job at one graph size: what it measured, or the line that ended it."""

    nodes: int
    job: str  # e.g. neo4j@3g, full
    limit_mb: float | None
    outcome: str  # trained | refused | OOM-killed
    median_epoch_s: float | None = None
    peak_rss_mb: float | None = None  # max over ranks (ru_maxrss)
    cgroup_peak_mb: float | None = None  # what the limit counts
    estimate_mb: float | None = None  # the preflight's, in a refusal line


def refusal_estimate(error: str | None) -> float | None:
    """The preflight's estimate in a refusal line (``needs ~7,141 MiB``)."""
    m = re.search(r"needs ~([\d,.]+) MiB", error or "")
    return float(m.group(1).replace(",", "")) if m else None


def write_points(points: Iterable[WallPoint], path: Path) -> None:
    path.write_text(json.dumps([asdict(p) for p in points], indent=1) + "\n")


def read_points(paths: Sequence[Path]) -> list[WallPoint]:
    points = []
    for path in paths:
        try:
            points.extend(WallPoint(**row) for row in json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise UsageError(f"--points {path}: not a points.json of bench/scale_sweep.py or bench/products_scale.py "
                             f"({exc})") from None
    return points


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def plot(points: Sequence[WallPoint], limits_mb: Sequence[float], path: Path) -> None:
    """Peak trainer RSS (and cgroup peaks) and median epoch time against nodes per job, the limits drawn in; a refused
    job is an x at its preflight estimate, an OOM-killed one a star at its cgroup peak."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rss, ax_time) = plt.subplots(1, 2, figsize=(10, 4))
    by_job: dict[str, list[WallPoint]] = defaultdict(list)
    for p in sorted(points, key=lambda p: p.nodes):
        by_job[p.job].append(p)

    def series(ax, rows: list[WallPoint], value: str, style: str, **kw) -> object:
        at: dict[int, list[float]] = defaultdict(list)
        for r in rows:
            if getattr(r, value) is not None:
                at[r.nodes].append(getattr(r, value))
        if not at:
            return None
        line, = ax.plot(list(at), [_mean(v) for v in at.values()], style, **kw)
        ax.plot([n for n, v in at.items() for _ in v], [x for v in at.values() for x in v], style[0],
                color=line.get_color(), alpha=0.5)
        return line

    for job, rows in by_job.items():
        trained = [r for r in rows if r.outcome == "trained"]
        line = series(ax_rss, trained, "peak_rss_mb", "o-", label=job)
        color = {"color": line.get_color()} if line is not None else {}
        series(ax_time, trained, "median_epoch_s", "o-", label=job, **color)
        series(ax_rss, trained, "cgroup_peak_mb", "s:", label=f"{job}: cgroup peak", **color)
        series(ax_rss, [r for r in rows if r.outcome == "refused"], "estimate_mb", "x--", markersize=9,
               label=f"{job}: refused, preflight estimate")
        series(ax_rss, [r for r in rows if r.outcome == "OOM-killed"], "cgroup_peak_mb", "*", markersize=12,
               label=f"{job}: OOM-killed at its cgroup limit")
    for limit, style in zip(sorted(set(limits_mb)), ("--", "-.", ":")):
        ax_rss.axhline(limit, color="red", linestyle=style, label=f"limit {limit:.0f} MiB per rank")
    ax_rss.set(xlabel="nodes", ylabel="peak trainer RSS (MiB, max over ranks)", title="trainer memory")
    ax_time.set(xlabel="nodes", ylabel="median epoch time (s, slowest rank)", title="epoch time")
    for ax in (ax_rss, ax_time):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", nargs="+", type=Path, required=True,
                        help="points.json files of bench/scale_sweep.py or bench/products_scale.py runs")
    parser.add_argument("--limit_mb", type=float, action="append", default=None,
                        help="per-rank limit to draw (repeatable; default: every limit of the points)")
    parser.add_argument("--out", type=Path, required=True, help="the figure (.png) to write")
    args = parser.parse_args()
    points = read_points(args.points)
    if not points:
        raise UsageError("--points: the files hold no points")
    if args.out.exists() and args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; name the .png to write")
    limits = args.limit_mb or sorted({p.limit_mb for p in points if p.limit_mb})
    plot(points, limits, args.out)
    print(f"wrote {args.out} ({len(points)} points)")
    return 0


if __name__ == "__main__":
    run_cli(main)
