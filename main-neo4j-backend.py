#!/usr/bin/env python3
"""Train GraphSAGE data-parallel over torch.distributed (gloo) with the graph kept in Neo4j.

Each rank samples neighbourhoods inside Neo4j and fetches features on demand, so trainer memory
does not grow with the graph. Load the dataset first (jobs/launch_training_single_node.sh does):
  python loaders/load_into_neo4j.py --dataset cora
  python main-neo4j-backend.py --dataset cora --epochs 20 --fanouts 10,10 --num_layers 2
Several machines: run it on each with --num_nodes N --node_rank k --master_addr <rank-0 host>
(or under torchrun, which sets RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT).
"""
from __future__ import annotations

import logging

from src.backends.database import add_database_backend_args, check_database_backend_args, train_on_database
from src.neo4jdb.backend import Neo4jBackend
from src.client import add_connection_args, connect, settings_from_args
from src.core.errors import ArgumentParser, run_cli
from src.neo4jdb.loader import require_loaded
from src.core.schema import GraphSchema, validate_dataset_name
from src.train.cli import add_training_args, configure_console_logging, parse_training_config


def main() -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    add_training_args(parser)
    add_connection_args(parser)
    g = add_database_backend_args(parser, "Neo4j backend", server_projection=True)
    g.add_argument("--cypher_only", action="store_true",
                   help="sample and fetch with plain Cypher even if the server has the gnn.* procedures "
                        "(jobs/neo4j/plugin; same samples, slower)")
    args = parser.parse_args()
    check_database_backend_args(args)
    cfg = parse_training_config(args)
    validate_dataset_name(cfg.dataset, "--dataset")  # before anything talks to Neo4j
    configure_console_logging()
    logging.getLogger("neo4j").setLevel(logging.CRITICAL)  # src.client reports outages in one line
    client = connect(settings_from_args(args), max_pool_size=cfg.concurrency + cfg.num_loader_threads,
                     max_retry_time=args.neo4j_retry_s)

    def make_backend() -> Neo4jBackend:
        record = require_loaded(client, cfg.dataset)
        return Neo4jBackend(client, GraphSchema.from_record(record), record, fanouts=cfg.fanouts,
                            batch_size=cfg.batch_size, num_loader_threads=cfg.num_loader_threads,
                            cache_mb=args.cache_mb, use_procedures=False if args.cypher_only else None,
                            projection_mb=args.projection_mb, cache_warm=args.cache_warm)

    train_on_database(client, make_backend, cfg)
    return 0


if __name__ == "__main__":
    run_cli(main)
