"""Backend name -> the module that provides its flags, checks and opening; the one training entry point.

A backend module (``src/<wing>/backend.py``) defines ``add_args(parser)``, ``check_args(args)``,
``open_backend(args, cfg)`` (a context manager yielding a :class:`~src.backends.base.Backend`)
and ``load_seconds(dataset, flags, env)`` (the loader's time for the dataset, for benchmarks). A new backend is
that module plus one line in :data:`BACKENDS`. Modules are imported only when used, so the
in-memory and Ladybug paths never import the Neo4j driver.

``python -m src.backends.registry script NAME`` prints the entry script of a backend (the launch
scripts use it); an unknown name is one ``error:`` line and exit 2.
"""
from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass
from types import ModuleType

from src.core.errors import ArgumentParser, UsageError


@dataclass(frozen=True)
class BackendSpec:
    name: str
    script: str  # the entry script at the repository root
    module: str  # where add_args / check_args / open_backend / load_seconds live
    reads_dataset_files: bool = False  # trains from the source files (--dataset_root_dir), not a database

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


BACKENDS: dict[str, BackendSpec] = {spec.name: spec for spec in (
    BackendSpec("neo4j", "main-neo4j-backend.py", "src.neo4jdb.backend"),
    BackendSpec("ladybug", "main-ladybug-backend.py", "src.ladybugdb.backend"),
    BackendSpec("in_memory", "in-memory-alternative.py", "src.in_memory.backend", reads_dataset_files=True),
)}


def spec(name: str) -> BackendSpec:
    if name not in BACKENDS:
        names = list(BACKENDS)
        raise UsageError(f"--backend must be {', '.join(names[:-1])} or {names[-1]} (got '{name}')")
    return BACKENDS[name]


def run_training(name: str, description: str) -> int:
    """What every training entry script does: flags, checks, open the backend, train, close."""
    from src.train.cli import add_training_args, configure_console_logging, parse_training_config
    from src.train.loop import joined, train

    wing = spec(name).load()
    parser = ArgumentParser(description=description)
    add_training_args(parser)
    wing.add_args(parser)
    args = parser.parse_args()
    wing.check_args(args)
    cfg = parse_training_config(args)
    configure_console_logging()
    if cfg.dataset_root_dir is not None and not spec(name).reads_dataset_files and cfg.node_rank == 0:
        logging.getLogger(__name__).warning(
            "--dataset_root_dir does not apply to the %s backend: it trains from the dataset in its database "
            "(the loader reads the files; pass the flag to loaders/load_into_neo4j.py); ignored", name)
    with joined(cfg) as batch_sizes, wing.open_backend(args, cfg) as backend:  # flags agree before data loads
        train(backend, cfg, batch_sizes)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description="the backends' entry scripts (for the launch scripts)")
    parser.add_argument("what", choices=("script",))
    parser.add_argument("name", help="backend name: " + ", ".join(BACKENDS))
    print(spec(parser.parse_args(argv).name).script)
    return 0


if __name__ == "__main__":
    from src.core.errors import run_cli

    run_cli(lambda: main(sys.argv[1:]))
