"""The figures: per run (memory, epoch time by phase, throughput, accuracy) and across runs
(backend comparison, scaling on synthetic graphs), as matplotlib Figures without pyplot state.

Why a module of its own: every figure shares one style, one colour per backend and one way of
picking the runs a cross-run figure shows; :mod:`src.plots.summary` decides where they are written.

* memory: trainer RSS and, where logged, Neo4j server RSS over time, per rank.
* epoch time: per rank and epoch, the epoch's wall time stacked by phase (``t_wait``,
  ``t_forward_backward``, ``t_allreduce``, the unaccounted rest, then ``t_eval``), and below it
  the sampling/feature-fetch work done in the prefetch threads (``t_sample``, ``t_fetch``), which
  overlaps training and is therefore not stacked into the wall time.
* throughput: train seeds/s per epoch per rank (and their sum).
* accuracy: training loss, train/val/test accuracy per epoch, best val marked.
* comparison: :mod:`src.plots.comparison` (runs with identical training flags only).
* scale: only when a backend has runs on ``synthetic`` graphs of two or more sizes; peak trainer
  RSS and median epoch time against the number of nodes (log x).
"""
from __future__ import annotations

import logging
import math
import zlib
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from src.data.synthetic import SYNTHETIC
from src.plots.runs import Run, RunMetrics, ranks_text

log = logging.getLogger(__name__)

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
    """Training loss (left) and the run's metric on val/test (and train accuracy) per epoch; best val starred."""
    if run.epochs.empty:
        return None
    rows = run.epochs.groupby("epoch").first().reset_index()  # identical on every rank
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(rows["epoch"], rows["loss"], marker="o", color="tab:red", label="train loss")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="training loss")
    loss_ax.set_ylim(bottom=0)
    metric = run.metric
    column = "metric" if rows["val_metric"].notna().any() else "acc"  # older logs: accuracy only
    for split, colour in _SPLIT_COLOURS.items():
        key = "train_acc" if split == "train" else f"{split}_{column}"
        if split == "train" and metric != "accuracy":
            continue  # train accuracy is not the metric shown
        series = rows.dropna(subset=[key])
        acc_ax.plot(series["epoch"], series[key], marker="o", color=colour, label=split)
    evals = rows.dropna(subset=[f"val_{column}"])
    if not evals.empty:
        best = evals.loc[evals[f"val_{column}"].idxmax()]
        acc_ax.plot([best["epoch"]], [best[f"val_{column}"]], marker="*", markersize=16, linestyle="none",
                    color=_SPLIT_COLOURS["val"], markeredgecolor="black",
                    label=f"best val {best[f'val_{column}']:.4f} (epoch {int(best['epoch'])})")
    acc_ax.set(xlabel="epoch", ylabel=metric, title=metric, ylim=(0, 1.02))
    acc_ax.legend(loc="lower right")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(run.title)
    return fig


# ---------------------------------------------------------------------------------------------
# cross-run figures


def plot_scale(metrics: Sequence[RunMetrics]) -> Figure | None:
    """Peak RSS and median epoch time against synthetic graph size, one line per backend/ranks."""
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
            name = backend if len(rank_counts) == 1 else f"{backend}, {ranks_text(ranks)}"
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


def group_label(group: tuple[str | None, int | None, int | None], *, one_line: bool) -> str:
    dataset, nodes, ranks = group
    parts = [dataset or "?", f"{_short_count(nodes)} nodes", ranks_text(ranks)]
    return ", ".join(parts) if one_line else "\n".join(parts)


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

