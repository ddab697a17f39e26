#!/usr/bin/env python3
"""Train GraphSAGE with the whole graph in each rank's RAM (the reference for the Neo4j backend).

Same flags and logs as ``main-neo4j-backend.py``, so the two can be compared run for run, e.g.
  python in-memory-alternative.py --dataset cora --epochs 20 --fanouts 10,10 --num_layers 2
Two machines: run it on each with ``--num_nodes 2 --node_rank {0,1} --master_addr <rank-0 host>``.
"""
from __future__ import annotations

import argparse

from src.backend_memory import FullGraphBackend
from src.datasets import load_dataset
from src.errors import run_cli
from src.train_cli import add_training_args, configure_console_logging, parse_training_config
from src.trainer import train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cfg = parse_training_config(add_training_args(parser).parse_args())
    configure_console_logging()
    backend = FullGraphBackend(load_dataset(cfg.dataset, root=cfg.dataset_root_dir),
                               fanouts=cfg.fanouts, batch_size=cfg.batch_size,
                               num_loader_threads=cfg.num_loader_threads)
    try:
        train(backend, cfg)
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    run_cli(main)
