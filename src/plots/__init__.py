"""Figures and a markdown summary from the per-rank JSONL run logs (docs/ARCHITECTURE.md, "Logs").

Why a package of its own: benchmark jobs and the paper figures must read the logs the same way.
:mod:`src.plots.runs` reads the logs and computes the run-level numbers, :mod:`src.plots.figures`
draws them, :mod:`src.plots.summary` writes the summary table and every file (``visualize.py``
only wires flags).
"""
