"""The whole job of ``visualize.py``: every run's figures, the cross-run figures and ``summary.md``.

Why a module of its own: the output layout is an interface (other tools link to the files), so
the file names and the summary table's columns are fixed here. Under ``out``:

* ``<run>/memory.png``, ``<run>/epoch_time.png``, ``<run>/throughput.png``,
  ``<run>/accuracy.png``: the per-run figures (:mod:`src.plots.figures`).
* ``comparison.png``: only when runs of two or more backends with identical training flags exist
  (:mod:`src.plots.comparison`; ``compare_anyway`` draws mismatched ones, differences labelled).
* ``scale.png``: only when a backend has runs on ``synthetic`` graphs of two or more sizes.
* ``summary.md``: one row per run (columns and definitions in the file's header).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from src.core.errors import UsageError
from src.plots.comparison import plot_comparison
from src.plots.figures import STYLE, plot_accuracy, plot_epoch_time, plot_memory, plot_scale, plot_throughput
from src.plots.runs import RunMetrics, find_runs, load_run, run_metrics

log = logging.getLogger(__name__)

RUN_FIGURES = ("memory.png", "epoch_time.png", "throughput.png", "accuracy.png")
COMPARISON_FIGURE = "comparison.png"
SCALE_FIGURE = "scale.png"
SUMMARY_FILE = "summary.md"

SUMMARY_COLUMNS = (
    ("run", "run", "{}"), ("status", "status", "{}"), ("backend", "backend", "{}"),
    ("dataset", "dataset", "{}"), ("ranks", "ranks", "{}"), ("nodes", "nodes", "{:,}"),
    ("epochs", "epochs", "{}"), ("mean_epoch_time", "mean epoch time (s)", "{:.3f}"),
    ("median_epoch_time", "median epoch time (s)", "{:.3f}"),
    ("seeds_per_s", "seeds/s", "{:.1f}"), ("best_val_acc", "best val acc", "{:.4f}"),
    ("test_acc_at_best_val", "test acc at best val", "{:.4f}"), ("metric", "metric", "{}"),
    ("best_val_metric", "best val metric", "{:.4f}"), ("test_metric_at_best_val", "test metric at best val", "{:.4f}"),
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
        "epochs of the summed per-rank throughput. Accuracies and metrics: the epoch with the best "
        "validation metric (the run's --metric: accuracy, f1 = macro-F1, roc_auc). Peak RSS: maximum over ranks. `incomplete`: the run has no summary event "
        "(still running, killed, or no epoch finished).", "",
        header, rule,
    ]
    for m in metrics:
        cells = [_cell(getattr(m, f), fmt) for f, _, fmt in SUMMARY_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value).replace("|", "\\|")


def visualize(log_dir: Path, out_dir: Path, *, compare_anyway: bool = False,
              only: Sequence[str] | None = None) -> list[Path]:
    """Read every run under ``log_dir`` (or the ``only`` named ones), write all figures and the summary."""
    folders = [f for f in find_runs(log_dir) if only is None or f.name in only]
    runs = [load_run(folder) for folder in folders]
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
        cross_run = ((COMPARISON_FIGURE, plot_comparison(metrics, compare_anyway=compare_anyway)), (SCALE_FIGURE, plot_scale(metrics)))
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
