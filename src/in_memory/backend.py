"""The in-memory backends' entry in src/backends/registry.py: one partition per rank, or the whole graph.

``--full_graph`` gives every rank the whole graph (:class:`~src.in_memory.full_graph.FullGraphBackend`);
otherwise each rank holds one METIS partition and asks its peers for the rest
(:func:`~src.in_memory.partitioned.open_partitioned_backend`). A heterogeneous dataset (``--target_type``)
takes the same two ways: src/in_memory/hetero.py, src/in_memory/hetero_partitioned.py.
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Iterator, Sequence

from src.backends.base import Backend
from src.data.sources import load_dataset
from src.in_memory import preflight
from src.in_memory.full_graph import FullGraphBackend
from src.in_memory.partition import DEFAULT_OUTPUT_DIR
from src.in_memory.partitioned import open_partitioned_backend
from src.train.config import TrainConfig


def add_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("in-memory backend")
    g.add_argument("--partition_dir", default=DEFAULT_OUTPUT_DIR,
                   help="partitions are read from <partition_dir>/<dataset>/<world size>-parts "
                        "(default: %(default)s)")
    g.add_argument("--full_graph", action="store_true",
                   help="every rank holds the whole graph instead of one partition")


def check_args(args: argparse.Namespace) -> None:
    """Nothing to check before the training flags: the partition folder is checked when opened."""


@contextmanager
def open_backend(args: argparse.Namespace, cfg: TrainConfig) -> Iterator[Backend]:
    if cfg.target_type and args.full_graph:  # a heterogeneous dataset, whole on every rank (src/in_memory/hetero.py)
        from src.data.hetero_sources import load_hetero_dataset
        from src.in_memory.hetero import InMemoryHeteroBackend

        ds = load_hetero_dataset(cfg.dataset, cfg.dataset_root_dir)
        backend: Backend = InMemoryHeteroBackend(ds.with_reverse() if cfg.add_reverse else ds,
                                                 target_type=cfg.target_type,
                                                 fanouts=str(cfg.flags.get("fanouts")), batch_size=cfg.batch_size,
                                                 num_loader_threads=cfg.num_loader_threads,
                                                 featureless=cfg.featureless)
    elif args.full_graph:
        dataset = load_dataset(cfg.dataset, root=cfg.dataset_root_dir)  # memory-mapped: nothing read yet
        preflight.check_full_graph(dataset, cfg)
        backend = FullGraphBackend(dataset, fanouts=cfg.fanouts, batch_size=cfg.batch_size,
                                   num_loader_threads=cfg.num_loader_threads)
    else:
        backend = open_partitioned_backend(cfg, args.partition_dir)
    with backend:
        yield backend


def load_seconds(dataset: str, flags: Sequence[str], env: dict[str, str]) -> float | None:
    """No database, so no load to report."""
    return None
