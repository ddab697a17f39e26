#!/usr/bin/env python3
"""Train GraphSAGE with the graph in RAM, partitioned over the ranks (or whole on each: --full_graph).

By default each rank holds one METIS partition and asks the other ranks for the rest;
``--full_graph`` gives every rank the whole graph (the old baseline).

Same shared flags and logs as ``main-neo4j-backend.py``, so runs can be compared run for run, e.g.
  python in-memory-alternative.py --dataset cora --epochs 20 --fanouts 10,10 --num_layers 2
Two ranks (one per machine, or both on one machine with different --node_rank):
  python in-memory-alternative.py --num_nodes 2 --node_rank {0,1} --master_addr <rank-0 host> ...
or ``torchrun --nproc_per_node 2 in-memory-alternative.py ...``.  The partitioned backend uses
``--master_port`` for the gloo group and ``--master_port + 1`` for its RPC service.  It needs
``<partition_dir>/<dataset>/<world size>-parts``; if that is missing, rank 0 creates it (METIS)
and the other ranks wait (see src/in_memory/partitioned.py for several machines).
"""
from __future__ import annotations


from src.in_memory.full_graph import FullGraphBackend
from src.in_memory.partitioned import open_partitioned_backend
from src.data.datasets import load_dataset
from src.core.errors import ArgumentParser, run_cli
from src.in_memory.partition import DEFAULT_OUTPUT_DIR
from src.train.cli import add_training_args, configure_console_logging, parse_training_config
from src.train.loop import train


def main() -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    add_training_args(parser)
    g = parser.add_argument_group("in-memory backend")
    g.add_argument("--partition_dir", default=DEFAULT_OUTPUT_DIR,
                   help="partitions are read from <partition_dir>/<dataset>/<world size>-parts "
                        "(default: %(default)s)")
    g.add_argument("--full_graph", action="store_true",
                   help="every rank holds the whole graph instead of one partition")
    args = parser.parse_args()
    cfg = parse_training_config(args)
    configure_console_logging()
    if args.full_graph:
        backend = FullGraphBackend(load_dataset(cfg.dataset, root=cfg.dataset_root_dir),
                                   fanouts=cfg.fanouts, batch_size=cfg.batch_size,
                                   num_loader_threads=cfg.num_loader_threads)
        try:
            train(backend, cfg)
        finally:
            backend.close()
        return 0
    with open_partitioned_backend(cfg, args.partition_dir) as backend:
        train(backend, cfg)
    return 0


if __name__ == "__main__":
    run_cli(main)
