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
Edits of your feature, target and split properties are carried into the registration's own
properties on commit (by the server's plugin). Nodes created later join with
  python loaders/register_graph.py --name papers --refresh
which costs in proportion to the new nodes (the other flags come from the registration's record).

A graph of several labels and relationship types becomes a heterogeneous dataset the same way:
  python loaders/register_graph.py --name bib --node_types Paper:features,Author,Venue \
      --relationships WRITES:Author->Paper,CITES:Paper->Paper,PUBLISHES:Venue->Paper \
      --target_type Paper --target category --split random:0.6,0.2,0.2
  python main-neo4j-backend.py --dataset bib --target_type Paper --fanouts "WRITES:10,5;CITES:5,5;PUBLISHES:1,1"
(LABEL:PROP features, LABEL:P1+P2 numeric scalars, a bare LABEL is featureless; NAME=TYPE:Src->Dst
names the edge type when one relationship type joins several label pairs.)
This script only wires flags to src/neo4jdb/register/.
"""
from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path

from src.client import add_connection_args, connect, settings_from_args
from src.core.errors import ArgumentParser, run_cli
from src.core.record import DatasetRecord
from src.core.schema import DIRECTIONS
from src.data.loading import LoadConfig
from src.neo4jdb.register.export import export_npz
from src.neo4jdb.register.hetero import register_hetero
from src.neo4jdb.register.hetero_spec import HeteroRegisterSpec, parse_node_types, parse_relationships
from src.neo4jdb.register.refresh import check_refreshable, refresh
from src.neo4jdb.register.run import register, registration_record
from src.neo4jdb.register.spec import MISSING_FEATURES, MISSING_TARGET, RegisterSpec

REQUEST_FLAGS = ("node_label", "rel_type", "features", "target", "split")
HETERO_FLAGS = ("node_types", "relationships", "target_type", "target", "split")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--name", required=True, help="dataset name the trainer will use (--dataset NAME)")
    p.add_argument("--node_label", help="(required unless --refresh) label of your nodes, e.g. Paper")
    p.add_argument("--rel_type", help="(required unless --refresh) relationship type between them, e.g. CITES")
    p.add_argument("--direction", choices=DIRECTIONS, default="in",
                   help="whose features a node aggregates: in = nodes with a relationship TO it (u)-[:T]->(v), "
                        "out = nodes it points to, undirected = both (default: %(default)s)")
    p.add_argument("--features",
                   help="(required unless --refresh) feature source: one LIST<FLOAT>/LIST<INTEGER> property, a "
                        "comma-separated list of numeric scalar properties, or one property of packed little-endian "
                        "float32 bytes")
    p.add_argument("--target",
                   help="(required unless --refresh) class property (integers or strings; the class vocabulary is sorted)")
    p.add_argument("--split",
                   help="(required unless --refresh) PROP: a property with train/val/test values (val also as "
                        "valid/validation; others are refused, absent = no split); or random:TRAIN,VAL,TEST fractions "
                        "of the labelled nodes")
    h = p.add_argument_group("several labels and relationship types (a heterogeneous dataset)")
    h.add_argument("--node_types", help="LABEL[:FEATURES],...: the labels, each with its feature property "
                                        "(P, or P1+P2 numeric scalars) or none (featureless), e.g. Paper:features,Author")
    h.add_argument("--relationships", help="[NAME=]TYPE:SrcLabel->DstLabel,...: the relationship types and the labels "
                                           "they join, e.g. WRITES:Author->Paper,CITES:Paper->Paper")
    h.add_argument("--target_type", help="the labelled node type (its label), whose --target is the class")
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
    p.add_argument("--refresh", action="store_true",
                   help="add the --node_label nodes created since the registration of --name (those without its dense "
                        "id), at a cost proportional to them; pass only --name: the rest comes from the record")
    p.add_argument("--export", default=None, metavar="PATH.npz",
                   help="after registering, also write the dataset to an .npz in the shipped layout (for "
                        "partition_graph.py and the in-memory backends; in data/datasets/ they find it by name)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    add_connection_args(p)
    args = p.parse_args(argv)
    if args.node_types is not None or args.relationships is not None or args.target_type is not None:
        wrong = [f"--{f}" for f in ("node_label", "rel_type", "features") if getattr(args, f) is not None]
        wrong += ["--direction"] if args.direction != "in" else []
        wrong += [f for f, v in (("--refresh", args.refresh), ("--export", args.export)) if v]
        if wrong:
            p.error(f"{', '.join(wrong)} do not apply to a heterogeneous registration (--node_types, "
                    "--relationships, --target_type): relationships are sampled as declared, from source to destination")
        missing = [f"--{f}" for f in HETERO_FLAGS if getattr(args, f) is None]
        if missing:
            p.error(f"a heterogeneous registration needs {', '.join(missing)}")
        return args
    given = [f"--{f}" for f in REQUEST_FLAGS if getattr(args, f) is not None]
    if args.refresh and (given or args.reset):
        p.error(f"--refresh takes the registration's flags from its record: pass only --name (not "
                f"{', '.join(given) or '--reset'})")
    if not args.refresh and len(given) < len(REQUEST_FLAGS):
        p.error(f"the following arguments are required: "
                f"{', '.join(f'--{f}' for f in REQUEST_FLAGS if getattr(args, f) is None)}")
    return args


def spec_from_args(args: argparse.Namespace) -> RegisterSpec:
    split_prop, random_split = RegisterSpec.parse_split(args.split)
    return RegisterSpec(name=args.name, label=args.node_label, rel_type=args.rel_type,
                        features=tuple(p.strip() for p in args.features.split(",") if p.strip()), target=args.target,
                        split_prop=split_prop, random_split=random_split, direction=args.direction,
                        stratify=args.stratify, seed=args.seed, missing_features=args.missing_features,
                        missing_target=args.missing_target, batch_nodes=args.batch_nodes)


def hetero_spec_from_args(args: argparse.Namespace) -> HeteroRegisterSpec:
    split_prop, random_split = RegisterSpec.parse_split(args.split)
    return HeteroRegisterSpec(name=args.name, node_types=parse_node_types(args.node_types),
                              relationships=parse_relationships(args.relationships), target_type=args.target_type,
                              target=args.target, split_prop=split_prop, random_split=random_split,
                              stratify=args.stratify, seed=args.seed, missing_features=args.missing_features,
                              missing_target=args.missing_target, batch_nodes=args.batch_nodes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("neo4j").setLevel(logging.CRITICAL)  # src.client reports retries and outages
    config = LoadConfig(workers=args.workers, progress=not args.no_progress)
    if args.node_types is not None:
        hetero = hetero_spec_from_args(args)  # identifiers checked before anything talks to Neo4j
        with connect(settings_from_args(args), max_retry_time=args.neo4j_retry_s) as client:
            print(register_hetero(client, hetero, config, reset=args.reset), flush=True)
        return 0
    spec = None if args.refresh else spec_from_args(args)  # identifiers checked before anything talks to Neo4j
    with connect(settings_from_args(args), max_retry_time=args.neo4j_retry_s) as client:
        if args.refresh:
            record = check_refreshable(registration_record(client, args.name), args.name)
            spec = spec_from_args(parse_args(shlex.split(record["register_command"])[2:]))
            print(refresh(client, spec, record, batch_nodes=args.batch_nodes, progress=config.progress).summary(),
                  flush=True)
            return 0
        report = register(client, spec, config, reset=args.reset)
        print(report.summary(), flush=True)
        if args.export:
            record = DatasetRecord.from_properties(registration_record(client, args.name) or {})
            path = export_npz(client, record, Path(args.export), progress=not args.no_progress)
            print(f"exported {record.name} to {path}: partition_graph.py and the in-memory backends read it with "
                  f"--dataset {path} (or --dataset {path.stem} when it is in data/datasets/)", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
