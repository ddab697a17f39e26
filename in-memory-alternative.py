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
from src.backends.registry import run_training
from src.core.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda: run_training("in_memory", __doc__.splitlines()[0]))
