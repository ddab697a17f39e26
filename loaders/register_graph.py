#!/usr/bin/env python3
"""Register a graph that already lives in Neo4j as a trainable dataset, in place (no copy).

  python loaders/register_graph.py --name papers --node_label Paper --rel_type CITES \\
      --direction undirected --features features --target category --split random:0.6,0.2,0.2 --stratify
  python main-neo4j-backend.py --dataset papers --epochs 10

Adds only properties of its own to the nodes (gnn_<name>_id, _x, _y, _split, _nbrs: dense id,
packed float32 row, class index, split, packed neighbour ids), a uniqueness constraint on the
id, and a (:GnnDataset) record holding the class vocabulary (sorted); the user's labels,
properties and relationships are never changed. Every check runs before anything is written.
A re-run after an interruption finishes the registration; a re-run of a finished one does
nothing and says so; --reset removes a registration's own properties and registers anew.
Nodes created later are not part of the dataset until it is registered again (--reset).
This script only wires flags to src/neo4jdb/register/.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from src.client import add_connection_args, connect, settings_from_args
from src.core.errors import ArgumentParser, run_cli
from src.core.record import DatasetRecord
from src.core.schema import DIRECTIONS
from src.data.loading import LoadConfig
from src.neo4jdb.register.export import export_npz
from src.neo4jdb.register.run import register, registration_record
from src.neo4jdb.register.spec import MISSING_FEATURES, MISSING_TARGET, RegisterSpec


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--name", required=True, help="dataset name the trainer will use (--dataset NAME)")
    p.add_argument("--node_label", required=True, help="label of your nodes, e.g. Paper")
    p.add_argument("--rel_type", required=True, help="relationship type between them, e.g. CITES")
    p.add_argument("--direction", choices=DIRECTIONS, default="in",
                   help="whose features a node aggregates: in = nodes with a relationship TO it (u)-[:T]->(v), "
                        "out = nodes it points to, undirected = both (default: %(default)s)")
    p.add_argument("--features", required=True,
                   help="feature source: one LIST<FLOAT>/LIST<INTEGER> property, a comma-separated list of numeric "
                        "scalar properties, or one property of packed little-endian float32 bytes")
    p.add_argument("--target", required=True,
                   help="class property (integers or strings; the class vocabulary is sorted)")
    p.add_argument("--split", required=True,
                   help="PROP: a property with train/val/test values (val also as valid/validation; others are "
                        "refused, absent = no split); or random:TRAIN,VAL,TEST fractions of the labelled nodes")
    p.add_argument("--stratify", action="store_true", help="random split per class (same fractions in every class)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random split (default: %(default)s)")
    p.add_argument("--missing_features", choices=MISSING_FEATURES, default="error",
                   help="nodes without features: error (with their count) or zero (all-zero row) (default: %(default)s)")
    p.add_argument("--missing_target", choices=MISSING_TARGET, default="error",
                   help="nodes without target: error (with their count) or unlabelled (class -1, in no split) "
                        "(default: %(default)s)")
    p.add_argument("--batch_nodes", type=int, default=5_000,
                   help="nodes per write transaction (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="parallel write transactions (default: %(default)s)")
    p.add_argument("--reset", action="store_true",
                   help="remove an existing registration of this --name (its own properties only) and register anew")
    p.add_argument("--export", default=None, metavar="PATH.npz",
                   help="after registering, also write the dataset to an .npz in the shipped layout (for "
                        "partition_graph.py and the in-memory backends; in data/datasets/ they find it by name)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    add_connection_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("neo4j").setLevel(logging.CRITICAL)  # src.client reports retries and outages
    split_prop, random_split = RegisterSpec.parse_split(args.split)
    spec = RegisterSpec(name=args.name, label=args.node_label, rel_type=args.rel_type,
                        features=tuple(p.strip() for p in args.features.split(",") if p.strip()), target=args.target,
                        split_prop=split_prop, random_split=random_split, direction=args.direction,
                        stratify=args.stratify, seed=args.seed, missing_features=args.missing_features,
                        missing_target=args.missing_target, batch_nodes=args.batch_nodes)
    config = LoadConfig(workers=args.workers, progress=not args.no_progress)
    with connect(settings_from_args(args), max_retry_time=args.neo4j_retry_s) as client:
        report = register(client, spec, config, reset=args.reset)
        print(report.summary(), flush=True)
        if args.export:
            record = DatasetRecord.from_properties(registration_record(client, spec.name) or {})
            path = export_npz(client, record, Path(args.export), progress=not args.no_progress)
            print(f"exported {record.name} to {path}: partition_graph.py and the in-memory backends read it with "
                  f"--dataset {path} (or --dataset {path.stem} when it is in data/datasets/)", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
