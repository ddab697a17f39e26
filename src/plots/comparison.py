"""The backend comparison: which runs may stand side by side, and the figure that shows them.

Why a module of its own: a comparison is only honest when the runs differ in the backend alone.
Runs are grouped by dataset, graph size and rank count, then by the values of every training
flag that all runs of that group logged (``run_start``'s ``config``) except those that name a
run rather than shape it (:data:`NOT_COMPARED`: paths, ports, ranks, resume...).  So a flag only
one backend has (``--cache_mb``) never splits a group, any shared flag that differs (batch size,
threads, epochs, seed) does, and nothing here depends on which flags or metric keys exist.  A
group needs two backends to be drawn; runs that would have been compared but differ are named
with the flags that differ (``compare_anyway`` draws them, the differences written under each
group).  Several runs of one backend with identical flags are repeats: the bar is their median,
the error bar their min..max, ``n=`` their count.  Memory is the trainer's peak RSS with the
database server's peak stacked on top: what the job needs on the machine.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from src.plots.figures import backend_colour, group_label
from src.plots.runs import RunMetrics

log = logging.getLogger(__name__)

NOT_COMPARED = frozenset({
    "dataset", "dataset_root_dir", "master_addr", "master_port", "num_nodes", "node_rank", "log_dir", "run_name",
    "checkpoint_dir", "resume", "overwrite", "tensorboard", "collective_timeout_s", "partition_dir", "ladybug_path",
    "neo4j_uri", "neo4j_user", "neo4j_database", "neo4j_password_file", "neo4j_retry_s",
})
"""Flags that name or place a run (or bound failure handling) without changing what it measures."""

PANELS = (("median_epoch_time", "median epoch time (s)", "{:.3g}"),
          ("peak_rss_mb", "peak memory: trainer + database server (MiB)", "{:.0f}"),
          ("test_acc_at_best_val", "test accuracy at best val", "{:.3f}"),
          ("seeds_per_s", "throughput, all ranks (seeds/s)", "{:.0f}"))


@dataclass
class Slot:
    """One x position of the figure: runs of >= 2 backends on one setting, by backend."""

    setting: tuple[Any, ...]  # (dataset, nodes, ranks)
    runs: dict[str, list[RunMetrics]]
    differs: dict[str, list[Any]] = field(default_factory=dict)  # flag -> values, only with compare_anyway


def comparable_flags(runs: Sequence[RunMetrics]) -> list[str]:
    """The flags every one of ``runs`` logged, minus :data:`NOT_COMPARED`."""
    keys = [set(r.config or {}) - NOT_COMPARED for r in runs]
    return sorted(set.intersection(*keys)) if keys else []


def flag_differences(runs: Sequence[RunMetrics]) -> dict[str, list[Any]]:
    """``flag -> distinct values`` for the comparable flags on which ``runs`` disagree."""
    out = {}
    for key in comparable_flags(runs):
        values = list(dict.fromkeys(_frozen((r.config or {}).get(key)) for r in runs))
        if len(values) > 1:
            out[key] = [json.loads(v) for v in values]
    return out


def comparison_slots(metrics: Sequence[RunMetrics], *, compare_anyway: bool = False) -> list[Slot]:
    """The settings the figure shows; mismatched runs are logged (or, ``compare_anyway``, labelled)."""
    by_setting: dict[tuple[Any, ...], list[RunMetrics]] = {}
    for m in metrics:
        if m.epochs > 0 and m.backend:
            by_setting.setdefault((m.dataset, m.nodes, m.ranks), []).append(m)
    slots = []
    for setting in sorted(by_setting, key=lambda s: (s[0] or "", s[1] or 0, s[2] or 0)):
        runs = by_setting[setting]
        if len({r.backend for r in runs}) < 2:
            continue
        if compare_anyway:
            slots.append(Slot(setting, _by_backend(runs), flag_differences(runs)))
            continue
        flags = comparable_flags(runs)
        groups: dict[str, list[RunMetrics]] = {}
        for r in runs:
            groups.setdefault(_frozen({k: (r.config or {}).get(k) for k in flags}), []).append(r)
        matched = [g for g in groups.values() if len({r.backend for r in g}) >= 2]
        slots += [Slot(setting, _by_backend(g)) for g in matched]
        left = [r for g in groups.values() if len({r.backend for r in g}) < 2 for r in g]
        if left:
            diffs = flag_differences(runs)
            log.warning("comparison: %s on %s not compared: their training flags differ (%s); "
                        "visualize.py --compare_anyway draws them side by side with the differences labelled",
                        ", ".join(f"{r.run} ({r.backend})" for r in left), setting[0] or "?",
                        "; ".join(f"{k}: {' vs '.join(map(str, v))}" for k, v in diffs.items()))
    return slots


def plot_comparison(metrics: Sequence[RunMetrics], *, compare_anyway: bool = False) -> Figure | None:
    """Backends side by side per matching setting; None when no setting has two backends."""
    slots = comparison_slots(metrics, compare_anyway=compare_anyway)
    if not slots:
        return None
    backends = sorted({b for s in slots for b in s.runs})
    width = 0.8 / len(backends)
    fig = Figure(figsize=(max(9.0, 1.5 + len(slots) * (0.35 + 0.55 * len(backends))), 12.5), layout="constrained")
    axes = fig.subplots(len(PANELS), 1, sharex=True)
    for ax, (name, label, fmt) in zip(axes, PANELS):
        for b, backend in enumerate(backends):
            x = np.arange(len(slots)) + (b - (len(backends) - 1) / 2) * width
            stats = [_spread([getattr(r, name) for r in s.runs.get(backend, [])]) for s in slots]
            mid = np.array([np.nan if st is None else st[1] for st in stats])
            bars = ax.bar(x, mid, width=width, color=backend_colour(backend), label=backend)
            top = mid
            if name == "peak_rss_mb":  # the server's memory on top: what the job takes on the machine
                server = np.array([_median_or_nan([r.peak_neo4j_rss_mb for r in s.runs.get(backend, [])])
                                   for s in slots])
                if np.isfinite(server).any():
                    bars = ax.bar(x, np.nan_to_num(server), bottom=mid, width=width, color=backend_colour(backend),
                                  alpha=0.45, hatch="//", edgecolor="white", linewidth=0,
                                  label="database server (stacked)" if "database server (stacked)" not in
                                  ax.get_legend_handles_labels()[1] else None)
                    top = mid + np.nan_to_num(server)
            if any(st is not None and st[3] > 1 for st in stats):
                ax.errorbar(x, mid, yerr=[[0 if st is None else st[1] - st[0] for st in stats],
                                          [0 if st is None else st[2] - st[1] for st in stats]],
                            fmt="none", ecolor="black", capsize=3, linewidth=1)
            ax.bar_label(bars, labels=[_value_label(st, t, fmt) for st, t in zip(stats, top)], padding=2, fontsize=9)
        ax.set(title=label, ylabel=label.split(":")[0], xlim=(-0.5, len(slots) - 0.5))
        ax.margins(y=0.18)
        ax.grid(axis="x", visible=False)
    crowded = len(slots) > 10
    ticks = [group_label(s.setting, one_line=crowded) + _differs_text(s.differs) for s in slots]
    axes[-1].set_xticks(np.arange(len(slots)), ticks, rotation=35 if crowded else 0,
                        ha="right" if crowded else "center")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), title="backend")
    how = ("DIFFERENT training flags (differences under each group)" if compare_anyway
           else "identical training flags")
    fig.suptitle(f"Backend comparison, {how}\nbars: median over repeats, error bars: min..max")
    return fig


def _by_backend(runs: Sequence[RunMetrics]) -> dict[str, list[RunMetrics]]:
    out: dict[str, list[RunMetrics]] = {}
    for r in sorted(runs, key=lambda r: (r.start_time or 0.0, r.run)):
        out.setdefault(str(r.backend), []).append(r)
    return out


def _spread(values: Sequence[float | None]) -> tuple[float, float, float, int] | None:
    """(min, median, max, n) of the finite values, None without any."""
    vals = [float(v) for v in values if v is not None and np.isfinite(float(v))]
    return (min(vals), float(np.median(vals)), max(vals), len(vals)) if vals else None


def _median_or_nan(values: Sequence[float | None]) -> float:
    st = _spread(values)
    return np.nan if st is None else st[1]


def _value_label(st: tuple[float, float, float, int] | None, top: float, fmt: str) -> str:
    if st is None:
        return ""
    text = fmt.format(top if np.isfinite(top) else st[1])
    return f"{text}\nn={st[3]}" if st[3] > 1 else text


def _differs_text(differs: dict[str, list[Any]]) -> str:
    if not differs:
        return ""
    return "\ndiffers: " + "; ".join(f"{k} {'/'.join(map(str, v))}" for k, v in differs.items())


def _frozen(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
