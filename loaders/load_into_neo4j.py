#!/usr/bin/env python3
"""Load a graph dataset for training into Neo4j (default) or, with --backend ladybug, into an
embedded Ladybug database file; resumable and idempotent for both.

  python loaders/load_into_neo4j.py --dataset cora
  python loaders/load_into_neo4j.py --dataset synthetic --num_nodes 1000000 --avg_degree 25 --num_features 32
  python loaders/load_into_neo4j.py --backend ladybug --dataset cora     # -> data/ladybug/cora.lbdb

A re-run of a finished load does nothing; a re-run of an interrupted one finishes it. Nodes get
the label (default: the dataset name) and the integer property id; features are stored as bytes
in x (little-endian float32 rows, or (int32 column, float32 value) pairs of the non-zeros for
sparse features), labels in y, the split in split. See docs/ARCHITECTURE.md.
With --backend ladybug the same model goes into a Ladybug file (node and rel tables; no server):
the loader is its only writer, so do not train from the file while it loads. This script is
the one loader for both databases; it only wires flags to src/neo4jdb/load/ensure.py (Neo4j)
or src/ladybugdb/loader.py (Ladybug).
"""
from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path


from src.client import add_connection_args, connect, settings_from_args
from src.data.sources import load_dataset
from src.data.shapes import PRESETS
from src.data.synthetic import SYNTHETIC, SYNTHETIC_DEFAULTS
from src.data.ogb_mag import OGBN_MAG, load_ogbn_mag
from src.data.synthetic_hetero import SYNTHETIC_HETERO, generate_hetero, params_from_name
from src.core.errors import ArgumentParser, UsageError, run_cli
from src.ladybugdb.client import DEFAULT_DIR, LadybugClient, add_ladybug_args, path_from_args
from src.data.loading import (
    EDGE_BATCH,
    FEATURE_FORMATS,
    INT8_MAX_ERROR,
    IMPORT_MIN_EDGES,
    METHODS,
    NODE_BATCH,
    LoadConfig,
    LoadReport,
)
from src.neo4jdb.load.ensure import ensure_loaded
from src.core.codecs import SPARSE_MAX_DENSITY
from src.core.schema import GraphSchema, validate_dataset_name, validate_identifier

BACKENDS = ("neo4j", "ladybug")
SYNTHETIC_FLAGS = ("num_nodes", "avg_degree", "num_features", "num_classes", "seed", "preset")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--backend", choices=BACKENDS, default="neo4j",
                   help="neo4j: the Neo4j server of the connection flags; ladybug: an embedded Ladybug database "
                        f"file (--ladybug_path, default {DEFAULT_DIR}/<name>.lbdb) (default: %(default)s)")
    p.add_argument("--dataset", required=True,
                   help="dataset name: a shipped graph (cora, citeseer, amazon_cs, coauthor_phy, tolokers), "
                        "an .npz path, synthetic, heterogeneous graphs (synthetic_hetero: papers, authors, venues; ogbn-mag), "
                        "or an OGB name (ogbn-arxiv, ...)")
    p.add_argument("--dataset_root_dir", default=None,
                   help="folder with <name>.npz files and the synthetic/OGB caches (default: data/datasets, "
                        "then the shared datasets folder)")
    p.add_argument("--name", default=None,
                   help="name of the dataset's (:GnnDataset) record in Neo4j, used by the backend to find it "
                        "(default: the dataset's own name, e.g. cora or synthetic_n1000_d10_f16_c4_s0)")
    p.add_argument("--node_label", default=None,
                   help="node label (default: the name with non-word characters replaced by _)")
    p.add_argument("--rel_type", default=None, help="relationship type (default: <label>_EDGE)")
    p.add_argument("--reset", action="store_true",
                   help="delete whatever this name, label or relationship type holds (only that data, in batches) "
                        "and load from scratch; without it a different graph there is refused")
    p.add_argument("--method", choices=METHODS, default="auto",
                   help="unwind: batched Cypher transactions, any server, resumable. import: offline bulk import "
                        "(Neo4j's batch importer fed binary arrays, jobs/neo4j/importer; needs Maven and a JDK), "
                        "only into an EMPTY database of the project's local server, which is stopped and "
                        "restarted; a re-run after a killed import finishes it or starts it afresh (after SIGKILL "
                        "with the server down: `bash jobs/neo4j.sh start` first). auto (default): import if that is possible and the graph has >= "
                        f"{IMPORT_MIN_EDGES:,} relationships, else unwind. Neo4j only (Ladybug: batched statements "
                        "for nodes, COPY for relationships)")
    p.add_argument("--batch_size", type=int, default=None,
                   help=f"rows per transaction for unwind (default: {NODE_BATCH:,} nodes, capped at 16 MiB of "
                        f"features, and {EDGE_BATCH:,} relationships); a resumed load keeps its first batch size")
    p.add_argument("--feature_format", "--feature_encoding", choices=FEATURE_FORMATS, default="auto",
                   help="how node features are stored in x: dense (F float32 per node) or sparse ((column, value) "
                        f"pairs of the non-zeros); auto (default): sparse when under {SPARSE_MAX_DENSITY * 100:g}%% of "
                        "the values are non-zero (e.g. coauthor_phy, cora), else dense. Compressed dense rows, decoded "
                        "to float32 by the trainer: float16 (2 bytes a value; |x| <= 65504), bfloat16 (2 bytes, "
                        "float32's range), int8 (1 byte, per-column scale and offset; refused when its error on a "
                        f"sample exceeds {INT8_MAX_ERROR * 100:g}%% unless --force_encoding). Fixed when a load starts; "
                        "an existing load keeps its format (--reset to change it). Neo4j only")
    p.add_argument("--force_encoding", action="store_true",
                   help="load int8 features even when their measured quantisation error is above the bound (warns)")
    p.add_argument("--workers", type=int, default=2,
                   help="parallel writer threads for unwind into Neo4j, worker threads of the bulk import "
                        "(default: %(default)s)")
    g = p.add_argument_group("synthetic graph (only with --dataset synthetic or synthetic_hetero)")
    for flag, kind, text in (("num_nodes", int, "number of nodes"),
                             ("avg_degree", float, "stored (directed) edges per node"),
                             ("num_features", int, "feature dimension"), ("num_classes", int, "number of classes"),
                             ("seed", int, "generator seed")):
        g.add_argument(f"--{flag}", type=kind, default=None, help=f"{text} (default {SYNTHETIC_DEFAULTS[flag]})")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a real graph's shape: products = ogbn-products (2,449,029 nodes, 61,859,140 undirected edges, "
                        "100 features, 47 classes, split 196,615/39,323/2,213,091); --num_nodes scales edges and split "
                        "at the same degree; the graph is named synthetic_<preset>_n{N}_s{seed}")
    add_connection_args(p)
    add_ladybug_args(p)
    return p.parse_args(argv)


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C: the bulk importer is stopped and the local server restarted."""
    signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _terminated)
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("neo4j").setLevel(logging.CRITICAL)  # src.client reports retries and outages
    # names are checked before anything talks to Neo4j
    if args.node_label is not None:
        validate_identifier(args.node_label, "--node_label")
    if args.rel_type is not None:
        validate_identifier(args.rel_type, "--rel_type")
    if args.name is not None:
        validate_dataset_name(args.name, "--name")
        GraphSchema.for_dataset(args.name, label=args.node_label, rel_type=args.rel_type)  # names derive from it
    if not (args.dataset.endswith(".npz") and Path(args.dataset).is_file()):
        validate_dataset_name(args.dataset, "--dataset")
    config = LoadConfig(method=args.method, batch_size=args.batch_size, workers=args.workers, reset=args.reset,
                        feature_format=args.feature_format, force_encoding=args.force_encoding)
    options = {k: getattr(args, k) for k in SYNTHETIC_FLAGS if getattr(args, k) is not None}
    hetero = (args.dataset.strip().lower() in (SYNTHETIC_HETERO, OGBN_MAG)
              or params_from_name(args.dataset) is not None)
    if hetero:
        report = load_hetero(args, config, options)
        print(report.summary(), flush=True)
        return 0
    if options and args.dataset.strip().lower() != SYNTHETIC:
        raise UsageError(f"--{' --'.join(options)} apply only to --dataset {SYNTHETIC}, not {args.dataset!r}")
    if args.backend == "ladybug":
        if args.method != "auto":
            raise UsageError("--method applies to Neo4j only; drop it for --backend ladybug")
        report = load_ladybug(args, config, options)
    else:
        client = connect(settings_from_args(args), max_retry_time=args.neo4j_retry_s)
        try:
            dataset = load_dataset(args.dataset, root=args.dataset_root_dir, **options)
            schema = GraphSchema.for_dataset(args.name or dataset.name, label=args.node_label, rel_type=args.rel_type)
            report = ensure_loaded(client, dataset, schema, config)
        finally:
            client.close()
    print(report.summary(), flush=True)
    return 0


def load_hetero(args: argparse.Namespace, config: LoadConfig, options: dict) -> LoadReport:
    """A heterogeneous graph (synthetic_hetero, src/data/synthetic_hetero.py; ogbn-mag, src/data/ogb_mag.py)
    into Neo4j (UNWIND only, under its own names) or its Ladybug file."""
    from src.neo4jdb.hetero.load import ensure_hetero_loaded

    if args.name or args.node_label or args.rel_type or args.method == "import":
        raise UsageError(f"--dataset {SYNTHETIC_HETERO} loads with UNWIND under its own names: drop "
                         "--name, --node_label, --rel_type and --method import")
    if args.backend == "ladybug" and args.method != "auto":
        raise UsageError("--method applies to Neo4j only; drop it for --backend ladybug")
    if args.feature_format not in ("auto", "dense"):
        raise UsageError(f"--feature_format {args.feature_format} applies to homogeneous graphs only; heterogeneous "
                         "ones store dense float32 rows")
    named = params_from_name(args.dataset)
    if (named is not None or args.dataset.strip().lower() == OGBN_MAG) and options:
        raise UsageError(f"--{' --'.join(options)} apply only to --dataset {SYNTHETIC_HETERO}, not {args.dataset!r}")
    if args.dataset.strip().lower() == OGBN_MAG:
        dataset = load_ogbn_mag(args.dataset_root_dir)
    else:
        dataset = generate_hetero(**(named or options))
    if args.backend == "ladybug":  # its own tables per type (src/ladybugdb/hetero_loader.py)
        from src.ladybugdb import hetero_loader

        path = path_from_args(args, dataset.name)
        with LadybugClient(path, read_only=False, buffer_mb=args.ladybug_buffer_mb, max_threads=2) as lb:
            report = hetero_loader.ensure_hetero_loaded(lb, dataset, config)
        print(f"Ladybug database: {path}", flush=True)
        return report
    client = connect(settings_from_args(args), max_retry_time=args.neo4j_retry_s)
    try:
        return ensure_hetero_loaded(client, dataset, config)
    finally:
        client.close()


def load_ladybug(args: argparse.Namespace, config: LoadConfig, options: dict) -> LoadReport:
    """The dataset into its Ladybug file (opened read-write: Ladybug allows one writer)."""
    from src.ladybugdb import loader as ladybug_loader

    ladybug_loader.check_feature_format(config)
    dataset = load_dataset(args.dataset, root=args.dataset_root_dir, **options)
    schema = GraphSchema.for_dataset(args.name or dataset.name, label=args.node_label, rel_type=args.rel_type)
    path = path_from_args(args, schema.dataset)
    with LadybugClient(path, read_only=False, buffer_mb=args.ladybug_buffer_mb, max_threads=2) as client:
        report = ladybug_loader.ensure_loaded(client, dataset, schema, config)
    print(f"Ladybug database: {path}", flush=True)
    return report


if __name__ == "__main__":
    run_cli(main)
