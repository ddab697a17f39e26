#!/usr/bin/env python3
"""Partition a graph for the partitioned in-memory backend (METIS or random).

  python partition_graph.py --dataset cora --num_partitions 2
writes data/partitions/cora/2-parts/ (layout in src/in_memory/partition.py).  Re-running with the same
settings is a no-op; a different existing partitioning is replaced only with --overwrite.
"""
from __future__ import annotations

import logging
import sys

from src.core.errors import ArgumentParser, run_cli
from src.in_memory.partition import DEFAULT_OUTPUT_DIR, METHODS, PartitionConfig, partition_dataset


def main() -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])

    def arg(name: str, help: str, **kwargs: object) -> None:
        parser.add_argument(name, help=f"{help} (default: %(default)s)", **kwargs)

    parser.add_argument("--dataset", required=True, help="dataset name, e.g. cora, amazon_cs, ogbn-arxiv; "
                        "heterogeneous: ogbn-mag or synthetic_hetero_n..")
    parser.add_argument("--num_partitions", type=int, required=True,
                        help="number of partitions k (= ranks of the training job)")
    arg("--dataset_root_dir", "directory holding the datasets; None = the project's usual places", default=None)
    arg("--method", "how nodes are assigned to partitions", choices=METHODS, default="metis")
    arg("--output_dir", "partitions go to <output_dir>/<dataset>/<k>-parts/", default=DEFAULT_OUTPUT_DIR)
    arg("--overwrite", "replace an existing partitioning made with other settings", action="store_true")
    arg("--seed", "seed of METIS and of the random assignment", type=int, default=0)
    arg("--add_reverse", "heterogeneous graph: partition it with every relationship type also walked backwards "
        "(rev_<rel>), into <k>-parts-rev/, for training with --add_reverse", action="store_true")
    args = parser.parse_args()
    # not src.train.cli.configure_console_logging: that module imports torch (seconds)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = PartitionConfig(dataset=args.dataset, num_partitions=args.num_partitions, method=args.method,
                          output_dir=args.output_dir, dataset_root_dir=args.dataset_root_dir,
                          overwrite=args.overwrite, seed=args.seed, add_reverse=args.add_reverse)
    result = partition_dataset(cfg)
    meta = result.meta
    sizes = ", ".join(" ".join(f"{t} {n}" for t, n in p["nodes"].items()) if meta.get("hetero") else str(p["nodes"])
                      for p in meta["partitions"])  # a heterogeneous graph: every node type partitioned
    what = "partitioned" if result.created else "already partitioned (nothing to do)"
    print(f"{what}: {result.root}: {meta['dataset']} in {meta['num_partitions']} partitions "
          f"({meta['method']}, seed {meta['seed']}); nodes per partition {sizes}")
    print(f"edge cut {meta['edge_cut']} of {meta['num_edges']} edges ({100 * meta['edge_cut_fraction']:.2f}%), "
          f"balance {meta['balance']:.3f} (max part / mean), time {meta['time_s']:.1f} s, "
          f"peak RSS {meta['peak_rss_mb']:.0f} MiB")
    return 0


if __name__ == "__main__":
    run_cli(main)
