#!/usr/bin/env python3
"""Plot training run logs: figures per run, backend comparison, scaling, and a markdown summary.

Reads <log_dir>/<run>/rank<k>.jsonl (or one run folder given as --log_dir), e.g.
  python visualize.py --log_dir logs/ --out plots/
and writes (existing files of the same name are replaced):
  <out>/<run>/memory.png       trainer and Neo4j server RSS over time, per rank
  <out>/<run>/epoch_time.png   epoch wall time stacked by phase, and prefetch-thread work, per rank
  <out>/<run>/throughput.png   train seeds/s per epoch, per rank and summed
  <out>/<run>/accuracy.png     training loss and train/val/test accuracy per epoch
  <out>/comparison.png         backends side by side per dataset, graph size and rank count, only runs
                               whose training flags match (others are named with the flags that differ;
                               --compare_anyway draws them labelled); repeats: median bar, min..max error bar;
                               memory: trainer peak RSS with the Neo4j server's stacked on top
  <out>/scale.png              peak RSS and epoch time vs synthetic graph size (only with >= 2 sizes)
  <out>/summary.md             one row per run; incomplete runs are listed too
An --out already named after the (single) run gets the run's figures directly:
  python visualize.py --log_dir logs/R --out plots/R   ->  plots/R/memory.png, ..., plots/R/summary.md
Corrupt log lines are skipped with a warning naming file:line.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from src.core.errors import ArgumentParser, check_writable_dir, run_cli
from src.plots.summary import visualize


def main() -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="\n".join(__doc__.splitlines()[2:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log_dir", default="logs",
                        help="folder with one subfolder per run, or a single run folder "
                             "(default: %(default)s)")
    parser.add_argument("--out", default="plots", help="output folder (default: %(default)s)")
    parser.add_argument("--compare_anyway", action="store_true",
                        help="draw runs whose training flags differ in comparison.png too, with the differing "
                             "flags written under each group (default: only runs with identical flags)")
    args = parser.parse_args()
    check_writable_dir(args.out, "--out")  # before any figure, so a bad --out writes nothing
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s: %(message)s")
    for path in visualize(Path(args.log_dir), Path(args.out), compare_anyway=args.compare_anyway):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
