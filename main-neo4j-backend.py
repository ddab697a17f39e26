#!/usr/bin/env python3
"""Train GraphSAGE data-parallel over torch.distributed (gloo) with the graph kept in Neo4j.

Each rank samples neighbourhoods inside Neo4j and fetches features on demand, so trainer memory
does not grow with the graph. Load the dataset first (jobs/launch_training_single_node.sh does):
  python loaders/load_into_neo4j.py --dataset cora
  python main-neo4j-backend.py --dataset cora --epochs 20 --fanouts 10,10 --num_layers 2
Several machines: run it on each with --num_nodes N --node_rank k --master_addr <rank-0 host>
(or under torchrun, which sets RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT).
"""
from src.backends.registry import run_training
from src.core.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda: run_training("neo4j", __doc__.splitlines()[0]))
