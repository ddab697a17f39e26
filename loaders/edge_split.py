#!/usr/bin/env python3
"""Store a seeded edge split (train / val / test node pairs) of a dataset in Neo4j, for --task link.

  python loaders/edge_split.py --dataset cora --split 0.85,0.05,0.10 --seed 0
  python main-neo4j-backend.py --dataset cora --task link --edge_split 0.85,0.05,0.10 --edge_split_seed 0

Undirected pairs are kept together (every relationship between two nodes is in one part). Marks
the relationships of validation and test pairs with the dataset's split property
(`MATCH ()-[r]->() WHERE r.split = 'test'` shows them), writes every node's training adjacency
(its neighbours without held-out pairs: what link training samples from on every path) and a
(:GnnEdgeSplit) record. A re-run of the same split does nothing; another split needs --reset;
--delete removes the stored split. This script only wires flags to src/neo4jdb/edge_split.py.
"""
from __future__ import annotations

import argparse
import logging

from src.client import add_connection_args, connect, settings_from_args
from src.core.edge_split import EdgeSplitSpec
from src.core.errors import ArgumentParser, run_cli
from src.neo4jdb.edge_split import delete_edge_split, write_edge_split
from src.neo4jdb.load.records import require_loaded


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--dataset", required=True, help="a dataset loaded or registered in Neo4j")
    p.add_argument("--split", default="0.85,0.05,0.10",
                   help="TRAIN,VAL,TEST fractions of the node pairs, summing to at most 1 (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default: %(default)s)")
    p.add_argument("--reset", action="store_true", help="replace a different split already stored")
    p.add_argument("--delete", action="store_true", help="remove the stored split and stop")
    add_connection_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("neo4j").setLevel(logging.CRITICAL)
    spec = EdgeSplitSpec.parse(args.split, args.seed)
    with connect(settings_from_args(args), max_retry_time=args.neo4j_retry_s) as client:
        record = require_loaded(client, args.dataset)
        if args.delete:
            delete_edge_split(client, record)
            print(f"{args.dataset}: edge split deleted")
            return 0
        counts = write_edge_split(client, record, spec, reset=args.reset)
    print(f"{args.dataset}: edge split {spec.text} (seed {spec.seed}): "
          + ", ".join(f"{n:,} {p} pairs" for p, n in counts.items()))
    return 0


if __name__ == "__main__":
    run_cli(main)
