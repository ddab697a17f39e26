#!/usr/bin/env python3
"""Loader throughput: online UNWIND batches vs the offline neo4j-admin import, side by side.

  python bench/loader.py                                   # 1M nodes / 25M relationships (slow: ~1 h here)
  python bench/loader.py --num_nodes 200000 --methods unwind,import

Each method loads the same synthetic graph into a fresh temporary Neo4j server of its own
(under --work_dir, stopped and deleted afterwards), never into the shared one. Rates are wall
clock: nodes/s and rels/s over the node and relationship phases of UNWIND; for the import both
are over the whole offline pipeline (binary arrays, server stop, bulk import, restart); "total s"
and "end-to-end rels/s" add the adjacency property (UNWIND), the id index (built during the
verification's node scan after an import) and the verification. The
bulk importer's own stage report is printed too, with the rate of its relationship stage, and
per method a table of where the wall time went (each step, the importer's stages under
"import"). The load average (1 min, before/after) is printed because other processes on the
machine share its cores.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path


from src.client import Neo4jSettings, connect
from src.data.sources import load_dataset
from src.core.errors import run_cli
from src.data.loading import FeatureLayout, LoadConfig, LoadReport
from src.neo4jdb.load.ensure import ensure_loaded
from src.neo4jdb.local import LocalNeo4j
from src.core.schema import GraphSchema


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num_nodes", type=int, default=1_000_000, help="synthetic graph: nodes (default %(default)s)")
    p.add_argument("--avg_degree", type=float, default=25,
                   help="synthetic graph: stored relationships per node (default %(default)s)")
    p.add_argument("--num_features", type=int, default=32,
                   help="synthetic graph: float32 features (default %(default)s)")
    p.add_argument("--num_classes", type=int, default=10, help="synthetic graph: label classes (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="synthetic graph: generator seed (default %(default)s)")
    p.add_argument("--dataset_root_dir", default=None, help="synthetic cache folder (default: data/datasets)")
    p.add_argument("--methods", default="unwind,import", help="comma-separated: unwind, import")
    p.add_argument("--heap", default="3g", help="heap of each temporary server (default %(default)s)")
    p.add_argument("--pagecache", default="3g", help="page cache of each temporary server (default %(default)s)")
    p.add_argument("--batch_size", type=int, default=None, help="rows per UNWIND transaction (default: loader's)")
    p.add_argument("--workers", type=int, default=2,
                   help="UNWIND writer threads, and the bulk importer's threads (default %(default)s)")
    p.add_argument("--import_memory", default=LoadConfig.import_memory,
                   help="off-heap memory of the bulk importer (default %(default)s)")
    p.add_argument("--dense_node_threshold", type=int, default=LoadConfig.dense_node_threshold,
                   help="bulk importer: relationships from which a node is stored dense, i.e. grouped by type "
                        "and direction (default %(default)s, Neo4j's own)")
    p.add_argument("--work_dir", default=None, help="where the temporary servers live (default: a new temp dir)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    return p.parse_args()


def run_one(method: str, ds, args: argparse.Namespace, work: Path) -> LoadReport:
    server = LocalNeo4j(root=work / method, lib=LocalNeo4j().lib)
    server.start(heap=args.heap, pagecache=args.pagecache)
    try:
        info = server.connection_info()
        with connect(Neo4jSettings(uri=info["uri"], password=info["password"])) as client:
            config = LoadConfig(method=method, batch_size=args.batch_size, workers=args.workers,
                                import_min_edges=0, import_memory=args.import_memory,
                                dense_node_threshold=args.dense_node_threshold)
            return ensure_loaded(client, ds, GraphSchema.for_dataset(ds.name), config, server=server)
    finally:
        server.stop()
        shutil.rmtree(work / method, ignore_errors=True)


def table(rows: list[dict]) -> str:
    cols = ["method", "nodes", "rels", "nodes/s", "rels/s", "total s", "end-to-end rels/s", "steps (s)", "importer stages (s)",
            "importer rel stage rels/s", "heap", "pagecache", "batch (nodes/rels)", "threads", "load avg"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def _stage_rate(report: LoadReport) -> str:
    seconds = report.tool_stages.get("relationships")
    return f"{report.relationships / seconds:,.0f}" if seconds else "-"


def stage_table(report: LoadReport) -> str:
    """Where the wall time went: the loader's steps, with the importer's own stages under "import"."""
    lines = ["| step | s | share of total |", "|---|---|---|"]
    for step, seconds in report.phases.items():
        if step in ("nodes", "relationships") and report.method == "import":
            continue  # spans over the other steps, not steps
        lines.append(f"| {step} | {seconds:.1f} | {seconds / report.seconds:.0%} |")
        if step == "import":
            lines += [f"| &nbsp;&nbsp;importer: {stage} | {s:.1f} | {s / report.seconds:.0%} |"
                      for stage, s in report.tool_stages.items()]
    lines.append(f"| total | {report.seconds:.1f} | 100% |")
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("neo4j").setLevel(logging.ERROR)
    ds = load_dataset("synthetic", root=args.dataset_root_dir, num_nodes=args.num_nodes, avg_degree=args.avg_degree,
                      num_features=args.num_features, num_classes=args.num_classes, seed=args.seed)
    ds.fingerprint()  # computed once, outside the timed loads
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-loader-"))
    rows, reports = [], []
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        load_before = os.getloadavg()[0]
        report = run_one(method, ds, args, work)
        cfg = LoadConfig(batch_size=args.batch_size)
        rows.append({
            "method": method,
            "nodes": f"{report.nodes:,}", "rels": f"{report.relationships:,}",
            "nodes/s": f"{report.nodes_per_s:,.0f}", "rels/s": f"{report.rels_per_s:,.0f}",
            "total s": f"{report.seconds:.0f}", "end-to-end rels/s": f"{report.relationships / report.seconds:,.0f}",
            "steps (s)": ", ".join(f"{k} {v:.0f}" for k, v in report.phases.items()
                                   if method == "unwind" or k not in ("nodes", "relationships")),
            "importer stages (s)": ", ".join(f"{k} {v:.0f}" for k, v in report.tool_stages.items()) or "-",
            "importer rel stage rels/s": _stage_rate(report),
            "heap": args.heap, "pagecache": args.pagecache,
            "batch (nodes/rels)": "-" if method == "import" else f"{cfg.node_batch(FeatureLayout.choose(ds, cfg.feature_format).row_bytes(ds.num_features))}/{cfg.edge_batch()}",
            "threads": args.workers if method == "unwind" else (
                f"{args.workers} ({args.import_memory} off-heap, dense from {args.dense_node_threshold} rels)"),
            "load avg": f"{load_before:.1f}/{os.getloadavg()[0]:.1f}",
        })
        reports.append(report)
        print(report.summary(), flush=True)
    print(f"\n{ds.name}: {ds.num_nodes:,} nodes, {ds.num_edges:,} relationships, {ds.num_features} float32 features; "
          f"{os.cpu_count()} cores; Neo4j {LocalNeo4j().version} Community, temporary servers under {work}\n")
    print(table(rows))
    for report in reports:
        print(f"\n{report.method}: wall time per step (end to end {report.relationships / report.seconds:,.0f} "
              f"rels/s, {report.nodes / report.seconds:,.0f} nodes/s)\n")
        print(stage_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
