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
from src.backends.registry import run_training
from src.core.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda: run_training("ladybug", __doc__.splitlines()[0]))
