"""Figures and a markdown summary from the per-rank JSONL run logs (docs/ARCHITECTURE.md, "Logs").

Why a module of its own: benchmark jobs and the paper figures must read the logs the same way,
so the parsing rules (corrupt lines skipped with a warning, runs without epochs reported as
incomplete) and the run-level aggregates live here once; ``visualize.py`` only wires flags.

Output layout under ``out`` (names are stable, other tools may link to them):

* ``<run>/memory.png``: trainer RSS and, where logged, Neo4j server RSS over time, per rank.
* ``<run>/epoch_time.png``: per rank and epoch, the epoch's wall time stacked by phase
  (``t_wait``, ``t_forward_backward``, ``t_allreduce``, the unaccounted rest, then ``t_eval``),
  and below it the sampling/feature-fetch work done in the prefetch threads (``t_sample``,
  ``t_fetch``), which overlaps training and is therefore not stacked into the wall time.
* ``<run>/throughput.png``: train seeds/s per epoch per rank (and their sum).
* ``<run>/accuracy.png``: training loss, train/val/test accuracy per epoch, best val marked.
* ``comparison.png``: only when runs of two or more backends exist; per dataset, graph size
  and rank count, the latest run of each backend side by side.
* ``scale.png``: only when a backend has runs on ``synthetic`` graphs of two or more sizes;
  peak trainer RSS and mean epoch time against the number of nodes (log x).
* ``summary.md``: one row per run (columns and definitions in the file's header).

Run-level aggregates: the mean (median) epoch time is the mean (median) over epochs of the
slowest rank's ``epoch_time`` (the job's wall time per epoch); the cross-run figures use the
median, which a slow first epoch (caches, JIT warm-up) does not dominate; seeds/s is the mean over epochs of the ranks'
summed ``seeds_per_s``; peak RSS values are the maximum over ranks (memory per machine).
"""
from __future__ import annotations

import json
import logging
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from src.core.errors import UsageError, UserError
from src.train.run_log import EVENTS, redact

log = logging.getLogger(__name__)

RUN_FIGURES = ("memory.png", "epoch_time.png", "throughput.png", "accuracy.png")
COMPARISON_FIGURE = "comparison.png"
SCALE_FIGURE = "scale.png"
SUMMARY_FILE = "summary.md"
SYNTHETIC = "synthetic"

BACKEND_COLOURS = {"in_memory": "#0072B2", "neo4j": "#E69F00", "partitioned": "#009E73", "ladybug": "#D55E00"}
"""Fixed colour per backend (Okabe-Ito, colour-blind safe); others get a stable fallback."""
_FALLBACK_COLOURS = ("#CC79A7", "#56B4E9", "#000000", "#F0E442")
_RANK_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
                 "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
# Phases that add up to an epoch's wall time (plus t_eval after it), bottom to top.
_WALL_PHASES = (
    ("t_wait", "waiting for a batch (t_wait)", "tab:red", None),
    ("t_forward_backward", "forward + backward + step", "tab:blue", None),
    ("t_allreduce", "gradient allreduce", "tab:purple", None),
    ("other", "other (logging etc.)", "tab:gray", None),
    ("t_eval", "evaluation (after the epoch)", "tab:olive", "//"),
)
_LOADER_PHASES = (("t_sample", "sampling (t_sample)", "tab:green", "o"),
                  ("t_fetch", "feature fetch (t_fetch)", "tab:orange", "s"))
_SPLIT_COLOURS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}

STYLE = {
    "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "figure.titlesize": 13,
    "legend.fontsize": 10, "xtick.labelsize": 10, "ytick.labelsize": 10,
    "axes.grid": True, "grid.alpha": 0.3, "savefig.dpi": 150, "lines.markersize": 5,
}
"""Matplotlib rc overrides for every figure: readable (>= 10 pt) text, light grid."""

_EPOCH_FIELDS = ("epoch", "time", "loss", "train_acc", "val_acc", "test_acc", "epoch_time",
                 "t_wait", "t_sample", "t_fetch", "t_forward_backward", "t_allreduce", "t_eval",
                 "seeds_per_s", "rss_mb", "peak_rss_mb", "neo4j_rss_mb")
_MEMORY_FIELDS = ("time", "rss_mb", "neo4j_rss_mb")
_RANK_FILE = re.compile(r"rank(\d+)\.jsonl")


@dataclass
class Run:
    """One run's logs: identity plus per-rank epoch and memory tables (NaN = not logged)."""

    name: str
    backend: str | None
    dataset: str | None
    world_size: int | None
    num_nodes: int | None
    start_time: float | None  # unix seconds of the first run_start (or first event)
    rank_logs: list[int]  # ranks with a log file
    epochs: pd.DataFrame  # columns rank, seconds + _EPOCH_FIELDS, one row per (rank, epoch)
    memory: pd.DataFrame  # columns rank, seconds (since start), rss_mb, neo4j_rss_mb
    summaries: dict[int, dict[str, Any]]  # last summary event per rank

    @property
    def title(self) -> str:
        ranks = _ranks_text(self.world_size)
        return f"{self.name}: {self.backend or '?'} on {self.dataset or '?'}, {ranks}"


@dataclass
class RunMetrics:
    """One row of the summary table (None = not available)."""

    run: str
    status: str
    backend: str | None
    dataset: str | None
    ranks: int | None
    nodes: int | None
    epochs: int
    mean_epoch_time: float | None
    median_epoch_time: float | None
    seeds_per_s: float | None
    best_val_acc: float | None
    test_acc_at_best_val: float | None
    peak_rss_mb: float | None
    peak_neo4j_rss_mb: float | None
    start_time: float | None


# ---------------------------------------------------------------------------------------------
# reading


def find_runs(log_dir: Path) -> list[Path]:
    """Run folders under ``log_dir`` (or ``log_dir`` itself if it holds rank logs), sorted."""
    if not log_dir.exists():
        raise UsageError(f"--log_dir {log_dir} does not exist: pass the folder the training "
                         "scripts wrote to (their --log_dir, default logs/) or one run folder in it")
    if not log_dir.is_dir():
        raise UsageError(f"--log_dir {log_dir} is not a directory: "
                         "pass the logs folder or one run folder")
    if _rank_files(log_dir):
        return [log_dir]
    runs = sorted(d for d in log_dir.iterdir() if d.is_dir() and _rank_files(d))
    if not runs:
        raise UserError(f"no run logs in {log_dir}: expected <run>/rank<k>.jsonl files; "
                        "train first or point --log_dir at the right folder")
    return runs


def _rank_files(folder: Path) -> dict[int, Path]:
    files = {}
    for path in folder.iterdir():
        match = _RANK_FILE.fullmatch(path.name)
        if match and path.is_file():
            files[int(match.group(1))] = path
    return dict(sorted(files.items()))


def read_events(path: Path) -> list[dict[str, Any]]:
    """Events of one JSONL file in order; corrupt lines are skipped with a file:line warning.

    Why skip rather than fail: a killed run leaves a torn last line, and one bad line must not
    hide the rest of a long run.  Secret-looking keys are dropped here so nothing can echo them.
    """
    events = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    log.warning("%s:%d: skipped corrupt line (invalid JSON at column %d)",
                                path, lineno, exc.colno)
                    continue
                if not isinstance(record, dict) or record.get("event") not in EVENTS:
                    log.warning("%s:%d: skipped line that is not a log event", path, lineno)
                    continue
                events.append(redact(record))
    except OSError as exc:
        log.warning("%s: skipped unreadable log (%s)", path, exc.strerror or exc)
    return events


def load_run(folder: Path) -> Run:
    """Parse every ``rank<k>.jsonl`` of one run folder into a :class:`Run`."""
    by_rank = {rank: read_events(path) for rank, path in _rank_files(folder).items()}
    everything = [e for events in by_rank.values() for e in events]
    starts = [e for e in everything if e["event"] == "run_start"]
    times = [float(e["time"]) for e in (starts or everything) if _is_number(e.get("time"))]
    t0 = min(times) if times else None
    first = (starts or everything or [{}])[0]
    world_sizes = [int(e["world_size"]) for e in everything if _is_number(e.get("world_size"))]
    epoch_rows = [{**e, "rank": r} for r, events in by_rank.items() for e in events
                  if e["event"] == "epoch"]
    memory_rows = [{**e, "rank": r} for r, events in by_rank.items() for e in events
                   if e["event"] in ("step", "epoch")]
    epochs = _frame(epoch_rows, ("rank",) + _EPOCH_FIELDS).dropna(subset=["epoch"])
    epochs = (epochs.assign(seconds=epochs["time"] - (t0 or 0.0)).astype({"rank": int, "epoch": int})
              .drop_duplicates(["rank", "epoch"], keep="last").sort_values(["rank", "epoch"]))
    memory = _frame(memory_rows, ("rank",) + _MEMORY_FIELDS).dropna(subset=["time"])
    memory = (memory.assign(seconds=memory["time"] - (t0 or 0.0)).astype({"rank": int})
              .sort_values(["rank", "time"]))
    return Run(
        name=folder.resolve().name,
        backend=_text(first.get("backend")),
        dataset=_text(first.get("dataset")),
        world_size=max(world_sizes) if world_sizes else None,
        num_nodes=_num_nodes(starts, epoch_rows),
        start_time=t0,
        rank_logs=list(by_rank),
        epochs=epochs.reset_index(drop=True),
        memory=memory.reset_index(drop=True),
        summaries={r: s for r, events in by_rank.items() for s in events if s["event"] == "summary"},
    )


def _frame(records: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """Float table of ``columns`` from ``records``; missing, null or non-numeric values -> NaN."""
    rows = [{c: r.get(c) if _is_number(r.get(c)) else None for c in columns} for r in records]
    return pd.DataFrame.from_records(rows, columns=list(columns)).astype(float)


def _num_nodes(starts: list[dict[str, Any]], epoch_rows: list[dict[str, Any]]) -> int | None:
    """Graph size from run_start (or, for a log without one, the epochs' backend stats)."""
    candidates = [e.get("num_nodes") for e in starts]
    candidates += [e["stats"].get("num_nodes") for e in epoch_rows if isinstance(e.get("stats"), dict)]
    return next((int(c) for c in candidates if _is_number(c)), None)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# ---------------------------------------------------------------------------------------------
# run-level numbers


def run_metrics(run: Run) -> RunMetrics:
    """The summary row of ``run`` (definitions in the module docstring)."""
    ep = run.epochs
    per_epoch = ep.groupby("epoch")
    evals = per_epoch[["val_acc", "test_acc"]].first().dropna(subset=["val_acc"])
    best_val = test_at_best = None
    if not evals.empty:
        best = evals["val_acc"].idxmax()  # first epoch reaching the maximum, like the trainer
        best_val, test_at_best = evals.at[best, "val_acc"], evals.at[best, "test_acc"]
    summaries = list(run.summaries.values())
    peak_rss = _peak([ep["peak_rss_mb"], ep["rss_mb"], run.memory["rss_mb"]],
                     [s.get("peak_rss_mb") for s in summaries])
    peak_neo4j = _peak([ep["neo4j_rss_mb"], run.memory["neo4j_rss_mb"]],
                       [s.get("peak_neo4j_rss_mb") for s in summaries])
    return RunMetrics(
        run=run.name, status=_status(run), backend=run.backend, dataset=run.dataset,
        ranks=run.world_size, nodes=run.num_nodes, epochs=int(ep["epoch"].nunique()),
        mean_epoch_time=_finite(per_epoch["epoch_time"].max().mean()),
        median_epoch_time=_finite(per_epoch["epoch_time"].max().median()),
        seeds_per_s=_finite(per_epoch["seeds_per_s"].sum(min_count=1).mean()),
        best_val_acc=_finite(best_val), test_acc_at_best_val=_finite(test_at_best),
        peak_rss_mb=peak_rss, peak_neo4j_rss_mb=peak_neo4j,
        start_time=run.start_time,
    )


def _status(run: Run) -> str:
    if run.epochs.empty or any(r not in run.summaries for r in run.rank_logs):
        return "incomplete"
    if run.world_size is not None and len(run.rank_logs) < run.world_size:
        return f"{len(run.rank_logs)} of {run.world_size} rank logs"
    return "complete"


def _peak(columns: Sequence[pd.Series], values: Sequence[Any]) -> float | None:
    candidates = [c.max() for c in columns if c.notna().any()] + [v for v in values if _is_number(v)]
    return float(max(candidates)) if candidates else None


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# per-run figures


def plot_memory(run: Run) -> Figure | None:
    """Trainer RSS (solid) with its high-water mark (dotted) and Neo4j server RSS (dashed).

    Colour = rank, line style = what is measured; the legend lists each once, so it stays
    small with many ranks.
    """
    mem = run.memory
    if mem[["rss_mb", "neo4j_rss_mb"]].isna().all().all():
        return None
    scale, unit = _time_unit(float(mem["seconds"].max()))
    fig = Figure(figsize=(8, 5.2), layout="constrained")
    ax = fig.add_subplot()
    kinds = (("rss_mb", "-", "trainer"), ("peak_rss_mb", ":", "trainer peak (high-water mark)"),
             ("neo4j_rss_mb", "--", "Neo4j server"))
    drawn_kinds: set[str] = set()
    rank_handles = []
    for rank, rows in mem.groupby("rank"):
        colour = _rank_colour(int(rank))
        for column, style, what in kinds:
            frame = run.epochs[run.epochs["rank"] == rank] if column == "peak_rss_mb" else rows
            series = frame.dropna(subset=[column])
            if not series.empty:
                ax.plot(series["seconds"] / scale, series[column], style, color=colour,
                        marker="." if len(series) < 50 else None)
                drawn_kinds.add(column)
        rank_handles.append(Line2D([], [], color=colour, linewidth=6, label=f"rank {rank}"))
    kind_handles = [Line2D([], [], color="black", linestyle=style, label=what)
                    for column, style, what in kinds if column in drawn_kinds]
    ax.set(xlabel=f"time since run start ({unit})", ylabel="resident set size (MiB)",
           title=f"{run.title}\nmemory over time")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    fig.legend(handles=rank_handles + kind_handles, loc="outside lower center",
               ncols=min(len(rank_handles) + len(kind_handles), 4))
    return fig


def plot_epoch_time(run: Run) -> Figure | None:
    """Per rank: epoch wall time stacked by phase (top) and prefetch-thread work (bottom)."""
    if run.epochs.empty:
        return None
    ranks = sorted(run.epochs["rank"].unique())
    ncols, blocks = min(len(ranks), 4), math.ceil(len(ranks) / 4)
    fig = Figure(figsize=(max(8.0, 1.5 + 3.5 * ncols), 1.6 + 5.6 * blocks), layout="constrained")
    axes = fig.subplots(2 * blocks, ncols, sharex=True, sharey="row", squeeze=False)
    used = set()
    for i, rank in enumerate(ranks):
        top, bottom = (2 * (i // 4), i % 4), (2 * (i // 4) + 1, i % 4)
        used |= {top, bottom}
        rows = run.epochs[run.epochs["rank"] == rank]
        _stack_phases(axes[top], rows)
        axes[top].set(title=f"rank {rank}: wall time per epoch", ylabel="time (s)")
        for column, label, colour, marker in _LOADER_PHASES:
            series = rows.dropna(subset=[column])
            axes[bottom].plot(series["epoch"], series[column], marker=marker, color=colour, label=label)
        axes[bottom].set(title=f"rank {rank}: work in prefetch threads", xlabel="epoch",
                         ylabel="time (s)")
        axes[bottom].xaxis.set_major_locator(MaxNLocator(integer=True))
    for index, ax in np.ndenumerate(axes):
        ax.set_visible(index in used)
        ax.set_ylim(bottom=0)  # after all ranks are drawn: shared rows autoscale to every rank
    handles, labels = axes[0, 0].get_legend_handles_labels()
    loader_handles, loader_labels = axes[1, 0].get_legend_handles_labels()
    fig.legend(handles + loader_handles, labels + loader_labels, loc="outside lower center",
               ncols=2 if ncols == 1 else 3)
    fig.suptitle(f"{run.title}\nepoch time by phase (sampling and fetch overlap training)")
    return fig


def _stack_phases(ax: Axes, rows: pd.DataFrame) -> None:
    """Stacked bars: the wall-time phases of each epoch, the rest as 'other', then eval."""
    accounted = rows[["t_wait", "t_forward_backward", "t_allreduce"]].fillna(0).sum(axis=1)
    values = rows.assign(other=(rows["epoch_time"] - accounted).clip(lower=0))
    bottom = np.zeros(len(rows))
    for column, label, colour, hatch in _WALL_PHASES:
        if column == "t_allreduce" and not rows[column].notna().any():
            continue  # one rank: no allreduce, keep it out of the legend
        heights = values[column].fillna(0).to_numpy()
        ax.bar(rows["epoch"], heights, bottom=bottom, width=0.8, color=colour, hatch=hatch,
               edgecolor="white" if hatch else None, linewidth=0, label=label)
        bottom += heights


def plot_throughput(run: Run) -> Figure | None:
    """Train seeds/s per epoch for each rank, plus the job's total with several ranks."""
    if run.epochs["seeds_per_s"].isna().all():
        return None
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for rank, rows in run.epochs.groupby("rank"):
        ax.plot(rows["epoch"], rows["seeds_per_s"], marker="o", color=_rank_colour(int(rank)),
                label=f"rank {rank}")
    if run.epochs["rank"].nunique() > 1:
        total = run.epochs.groupby("epoch")["seeds_per_s"].sum(min_count=1)
        ax.plot(total.index, total.to_numpy(), marker="s", color="black", label="all ranks (sum)")
    ax.set(xlabel="epoch", ylabel="throughput (seeds/s)", title=f"{run.title}\ntraining throughput")
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="best")
    return fig


def plot_accuracy(run: Run) -> Figure | None:
    """Training loss (left) and train/val/test accuracy (right) per epoch; best val starred."""
    if run.epochs.empty:
        return None
    rows = run.epochs.groupby("epoch").first().reset_index()  # identical on every rank
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(rows["epoch"], rows["loss"], marker="o", color="tab:red", label="train loss")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="training loss")
    loss_ax.set_ylim(bottom=0)
    for split, colour in _SPLIT_COLOURS.items():
        series = rows.dropna(subset=[f"{split}_acc"])
        acc_ax.plot(series["epoch"], series[f"{split}_acc"], marker="o", color=colour, label=split)
    evals = rows.dropna(subset=["val_acc"])
    if not evals.empty:
        best = evals.loc[evals["val_acc"].idxmax()]
        acc_ax.plot([best["epoch"]], [best["val_acc"]], marker="*", markersize=16, linestyle="none",
                    color=_SPLIT_COLOURS["val"], markeredgecolor="black",
                    label=f"best val {best['val_acc']:.4f} (epoch {int(best['epoch'])})")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    acc_ax.legend(loc="lower right")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(run.title)
    return fig


# ---------------------------------------------------------------------------------------------
# cross-run figures


def plot_comparison(metrics: Sequence[RunMetrics]) -> Figure | None:
    """Backends side by side per (dataset, nodes, ranks); None unless >= 2 backends have epochs.

    Several runs of one backend in a group: the latest is shown (the others are logged).
    """
    rows = _latest(metrics, lambda m: (m.dataset, m.nodes, m.ranks, m.backend))
    backends = sorted({m.backend for m in rows})
    if len(backends) < 2:
        return None
    groups = sorted({(m.dataset, m.nodes, m.ranks) for m in rows},
                    key=lambda g: (g[0] or "", g[1] or 0, g[2] or 0))
    panels = (("median_epoch_time", "median epoch time (s)", "{:.3g}"),
              ("peak_rss_mb", "peak trainer RSS (MiB)", "{:.0f}"),
              ("test_acc_at_best_val", "test accuracy at best val", "{:.3f}"),
              ("seeds_per_s", "throughput, all ranks (seeds/s)", "{:.0f}"))
    crowded = len(groups) > 10  # then one rotated line per group instead of three short ones
    width = 0.8 / len(backends)
    # one panel per row: every bar gets the full figure width for its value label
    fig = Figure(figsize=(max(9.0, 1.5 + len(groups) * (0.35 + 0.55 * len(backends))), 11.5),
                 layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True)
    for ax, (field, label, fmt) in zip(axes, panels):
        for b, backend in enumerate(backends):
            by_group = {(m.dataset, m.nodes, m.ranks): getattr(m, field)
                        for m in rows if m.backend == backend}
            values = [by_group.get(g) for g in groups]
            x = np.arange(len(groups)) + (b - (len(backends) - 1) / 2) * width
            bars = ax.bar(x, [np.nan if v is None else v for v in values], width=width,
                          color=backend_colour(backend), label=backend)
            ax.bar_label(bars, labels=["" if v is None else fmt.format(v) for v in values],
                         padding=2, fontsize=10)
        ax.set(title=label, ylabel=label, xlim=(-0.5, len(groups) - 0.5))  # missing bars keep their slot
        ax.margins(y=0.15)
        ax.grid(axis="x", visible=False)
    for ax in axes[-1:]:
        ax.set_xticks(np.arange(len(groups)), [_group_label(g, one_line=crowded) for g in groups],
                      rotation=35 if crowded else 0, ha="right" if crowded else "center")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(backends), title="backend")
    fig.suptitle("Backend comparison (latest run per dataset, graph size and rank count)")
    return fig


def plot_scale(metrics: Sequence[RunMetrics]) -> Figure | None:
    """Peak RSS and mean epoch time against synthetic graph size, one line per backend/ranks."""
    rows = _latest([m for m in metrics if _is_synthetic(m.dataset) and m.nodes],
                   lambda m: (m.backend, m.ranks, m.nodes))
    lines: dict[tuple[str, int | None], list[RunMetrics]] = {}
    for m in sorted(rows, key=lambda m: m.nodes or 0):
        lines.setdefault((m.backend or "?", m.ranks), []).append(m)
    lines = {k: v for k, v in lines.items() if len(v) >= 2}
    if not lines:
        return None
    rank_counts = sorted({k[1] or 0 for k in lines})
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    panels = (("peak_rss_mb", "peak trainer RSS (MiB)", "trainer memory"),
              ("median_epoch_time", "median epoch time (s)", "epoch time"))
    for ax, (field, label, title) in zip(fig.subplots(1, 2), panels):
        for (backend, ranks), points in sorted(lines.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
            style = ("-", "--", ":", "-.")[rank_counts.index(ranks or 0) % 4]
            name = backend if len(rank_counts) == 1 else f"{backend}, {_ranks_text(ranks)}"
            values = [getattr(p, field) for p in points]
            ax.plot([p.nodes for p in points], [np.nan if v is None else v for v in values],
                    style, marker="o", color=backend_colour(backend), label=name)
        ax.set_xscale("log")
        ax.set(xlabel="graph size (nodes, log scale)", ylabel=label, title=title)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left")
    fig.suptitle("Scaling on synthetic graphs (latest run per backend, rank count and size)")
    return fig


def _latest(metrics: Sequence[RunMetrics], key: Callable[[RunMetrics], Hashable]) -> list[RunMetrics]:
    """Runs with epochs, only the most recent per ``key(m)``; skipped ones are logged."""
    chosen: dict[Any, RunMetrics] = {}
    for m in sorted((m for m in metrics if m.epochs > 0 and m.backend),
                    key=lambda m: (m.start_time or 0.0, m.run)):
        if key(m) in chosen:
            log.info("cross-run figures: run %s supersedes %s (same backend and setting)",
                     m.run, chosen[key(m)].run)
        chosen[key(m)] = m
    return list(chosen.values())


def _is_synthetic(dataset: str | None) -> bool:
    """``synthetic`` (the flag value) or a generated graph's full name ``synthetic_n..._s...``."""
    return dataset is not None and (dataset == SYNTHETIC or dataset.startswith(SYNTHETIC + "_"))


def _group_label(group: tuple[str | None, int | None, int | None], *, one_line: bool) -> str:
    dataset, nodes, ranks = group
    parts = [dataset or "?", f"{_short_count(nodes)} nodes", _ranks_text(ranks)]
    return ", ".join(parts) if one_line else "\n".join(parts)


def _ranks_text(ranks: int | None) -> str:
    return "? ranks" if ranks is None else f"{ranks} rank{'' if ranks == 1 else 's'}"


def _short_count(n: int | None) -> str:
    """2708 -> '2.7k', 1000000 -> '1M': tick labels stay short."""
    if n is None:
        return "?"
    for divisor, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= divisor:
            return f"{n / divisor:.2g}{suffix}" if n < 10 * divisor else f"{n / divisor:.0f}{suffix}"
    return str(n)


def backend_colour(backend: str) -> str:
    """Fixed colour of a backend, the same in every figure and every invocation."""
    if backend in BACKEND_COLOURS:
        return BACKEND_COLOURS[backend]
    return _FALLBACK_COLOURS[zlib.crc32(backend.encode()) % len(_FALLBACK_COLOURS)]


def _rank_colour(rank: int) -> str:
    return _RANK_COLOURS[rank % len(_RANK_COLOURS)]


def _time_unit(max_seconds: float) -> tuple[float, str]:
    """A divisor and unit name that keep time-axis numbers short."""
    if max_seconds >= 3 * 3600:
        return 3600.0, "h"
    if max_seconds >= 600:
        return 60.0, "min"
    return 1.0, "s"


# ---------------------------------------------------------------------------------------------
# summary table and the whole job


SUMMARY_COLUMNS = (
    ("run", "run", "{}"), ("status", "status", "{}"), ("backend", "backend", "{}"),
    ("dataset", "dataset", "{}"), ("ranks", "ranks", "{}"), ("nodes", "nodes", "{:,}"),
    ("epochs", "epochs", "{}"), ("mean_epoch_time", "mean epoch time (s)", "{:.3f}"),
    ("median_epoch_time", "median epoch time (s)", "{:.3f}"),
    ("seeds_per_s", "seeds/s", "{:.1f}"), ("best_val_acc", "best val acc", "{:.4f}"),
    ("test_acc_at_best_val", "test acc at best val", "{:.4f}"),
    ("peak_rss_mb", "peak trainer RSS (MiB)", "{:.0f}"),
    ("peak_neo4j_rss_mb", "peak Neo4j RSS (MiB)", "{:.0f}"),
)
"""(RunMetrics field, column header, format) of ``summary.md``; missing values print as '-'."""


def summary_markdown(metrics: Sequence[RunMetrics], log_dir: Path) -> str:
    """The markdown summary: a short header with the definitions, then one row per run."""
    header = "| " + " | ".join(h for _, h, _ in SUMMARY_COLUMNS) + " |"
    rule = "|" + "|".join("---" if f in ("run", "status", "backend", "dataset") else "---:"
                          for f, _, _ in SUMMARY_COLUMNS) + "|"
    lines = [
        "# Run summary", "",
        f"From the logs in `{log_dir}`, written by `visualize.py`. Mean epoch time: mean over epochs "
        "(median: median over epochs) of the slowest rank's epoch time (training only, without evaluation). seeds/s: mean over "
        "epochs of the summed per-rank throughput. Accuracies: the epoch with the best validation "
        "accuracy. Peak RSS: maximum over ranks. `incomplete`: the run has no summary event "
        "(still running, killed, or no epoch finished).", "",
        header, rule,
    ]
    for m in metrics:
        cells = [_cell(getattr(m, f), fmt) for f, _, fmt in SUMMARY_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value).replace("|", "\\|")


def visualize(log_dir: Path, out_dir: Path) -> list[Path]:
    """Read every run under ``log_dir``, write all figures and the summary; return the paths."""
    runs = [load_run(folder) for folder in find_runs(log_dir)]
    metrics = [run_metrics(run) for run in runs]
    written: list[Path] = []
    with rc_context(STYLE):
        for run, m in zip(runs, metrics):
            if m.epochs == 0:
                log.warning("run %s has no epoch events: listed as incomplete, no epoch figures",
                            run.name)
            figures = (plot_memory(run), plot_epoch_time(run), plot_throughput(run), plot_accuracy(run))
            for name, fig in zip(RUN_FIGURES, figures):
                if fig is not None:
                    written.append(_write(run_out_dir(out_dir, run.name) / name, _png_writer(fig)))
        cross_run = ((COMPARISON_FIGURE, plot_comparison(metrics)), (SCALE_FIGURE, plot_scale(metrics)))
        for name, fig in cross_run:
            if fig is not None:
                written.append(_write(out_dir / name, _png_writer(fig)))
    summary = summary_markdown(metrics, log_dir)
    written.append(_write(out_dir / SUMMARY_FILE, lambda path: path.write_text(summary, encoding="utf-8")))
    return written


def run_out_dir(out_dir: Path, run_name: str) -> Path:
    """Where a run's figures go: ``<out>/<run>/``, or ``<out>`` itself when it is already named after
    the run (``--log_dir logs/R --out plots/R`` gives ``plots/R/memory.png``, not ``plots/R/R/``)."""
    return out_dir if out_dir.name == run_name else out_dir / run_name


def _png_writer(fig: Figure) -> Callable[[Path], None]:
    FigureCanvasAgg(fig)  # explicit Agg: headless, no pyplot state
    return fig.savefig


def _write(path: Path, writer: Callable[[Path], None]) -> Path:
    """Create the folder and write ``path``; an unwritable --out is a one-line usage error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path} ({exc.strerror or exc}): pick a writable --out") from None
    return path
