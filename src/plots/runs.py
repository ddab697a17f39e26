"""Run logs read into tables, and the run-level numbers of the summary and the cross-run figures.

Why a module of its own: every reader of the logs (figures, summary, bench/compare_backends.py)
must apply the same parsing rules (corrupt lines skipped with a warning, runs without epochs
reported as incomplete) and the same aggregates, so they live here once.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from src.core.errors import UsageError, UserError
from src.train.run_log import EVENTS, redact

log = logging.getLogger(__name__)

_EPOCH_FIELDS = ("epoch", "time", "loss", "train_acc", "val_acc", "test_acc", "val_f1", "test_f1", "val_auc",
                 "test_auc", "val_metric", "test_metric", "epoch_time",
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
    metric: str = "accuracy"  # the run's --metric (what val_metric/test_metric hold); older logs: accuracy
    config: dict[str, Any] | None = None  # run_start's flags (rank 0's), for like-with-like comparisons

    @property
    def title(self) -> str:
        ranks = ranks_text(self.world_size)
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
    metric: str = "accuracy"  # --metric of the run (older logs: accuracy)
    best_val_metric: float | None = None
    test_metric_at_best_val: float | None = None
    config: dict[str, Any] | None = None


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
        metric=next((str(e["metric"]) for e in epoch_rows if _text(e.get("metric"))), "accuracy"),
        config=next((e["config"] for e in reversed(starts) if isinstance(e.get("config"), dict)), None),  # a resume's
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
    metric = run.metric
    key = "val_metric" if ep["val_metric"].notna().any() else "val_acc"  # older logs: accuracy only
    evals = per_epoch[["val_acc", "test_acc", "val_metric", "test_metric"]].first().dropna(subset=[key])
    best_val = test_at_best = best_metric = test_metric = None
    if not evals.empty:
        best = evals[key].idxmax()  # first epoch reaching the maximum, like the trainer
        best_val, test_at_best = evals.at[best, "val_acc"], evals.at[best, "test_acc"]
        best_metric, test_metric = (evals.at[best, "val_metric"], evals.at[best, "test_metric"]) \
            if key == "val_metric" else (best_val, test_at_best)
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
        start_time=run.start_time, metric=str(metric), best_val_metric=_finite(best_metric),
        test_metric_at_best_val=_finite(test_metric),
        config=run.config,
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


def ranks_text(ranks: int | None) -> str:
    """``"1 rank"``, ``"4 ranks"``, ``"? ranks"`` (titles and labels)."""
    return "? ranks" if ranks is None else f"{ranks} rank{'' if ranks == 1 else 's'}"
