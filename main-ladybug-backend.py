#!/usr/bin/env python3
"""Train GraphSAGE data-parallel over torch.distributed (gloo) with the graph in an embedded Ladybug database.

Ladybug (Kuzu's maintained fork) runs inside each rank: no server. Every rank opens the same
database file read-only, samples neighbourhoods in it and fetches features on demand. Create
the file first (jobs/launch_training_single_node.sh --backend ladybug does):
  python loaders/load_into_neo4j.py --backend ladybug --dataset cora
  python main-ladybug-backend.py --dataset cora --epochs 20 --fanouts 10,10 --num_layers 2
Several machines: each needs the file (copy it); run with --num_nodes N --node_rank k
--master_addr <rank-0 host> (or under torchrun).
"""
from __future__ import annotations

from src.backends.database import add_database_backend_args, check_database_backend_args, train_on_database
from src.ladybugdb.backend import LadybugBackend
from src.core.errors import ArgumentParser, UsageError, run_cli
from src.ladybugdb.client import LadybugClient, add_ladybug_args, path_from_args
from src.ladybugdb.loader import require_loaded
from src.core.schema import GraphSchema, validate_dataset_name
from src.train.cli import add_training_args, configure_console_logging, parse_training_config


def main() -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    add_training_args(parser)
    add_ladybug_args(parser)
    g = add_database_backend_args(parser, "Ladybug backend")
    g.add_argument("--ladybug_threads", type=int, default=1,
                   help="threads Ladybug may use per query (default: %(default)s; the prefetch threads "
                        "already run queries in parallel)")
    args = parser.parse_args()
    check_database_backend_args(args)
    if args.ladybug_threads < 1:
        raise UsageError(f"--ladybug_threads must be >= 1 (got {args.ladybug_threads})")
    cfg = parse_training_config(args)
    validate_dataset_name(cfg.dataset, "--dataset")
    configure_console_logging()
    client = LadybugClient(path_from_args(args, cfg.dataset), read_only=True, buffer_mb=args.ladybug_buffer_mb,
                           max_threads=args.ladybug_threads)

    def make_backend() -> LadybugBackend:
        record = require_loaded(client, cfg.dataset)
        return LadybugBackend(client, GraphSchema.from_record(record), record, fanouts=cfg.fanouts,
                              batch_size=cfg.batch_size, num_loader_threads=cfg.num_loader_threads,
                              cache_mb=args.cache_mb, cache_warm=args.cache_warm)

    train_on_database(client, make_backend, cfg)
    return 0


if __name__ == "__main__":
    run_cli(main)
