"""The one place that talks to Ladybug (Kuzu's maintained fork): an embedded graph database.

There is no server: the database is a file (default ``data/ladybug/<dataset>.lbdb``) opened
inside the process. The loader opens it read-write (Ladybug allows one writer); every training
rank opens it **read-only**, which Ladybug allows from many processes at once (checked with two
ranks, tests/test_ladybug_backend.py). Queries borrow a ``Connection`` to the process's one
``Database`` from a small pool (a connection serialises its queries, so prefetch threads need
one each; a pool, not one per thread, because loaders start new threads every epoch and every
connection keeps buffer-pool memory), and close their results at once for the same reason.

:class:`LadybugClient` offers the same small surface as :class:`~src.client.Neo4jClient`
(``read``/``write`` returning rows as dicts, ``count_nodes``, ``count_relationships``), so code
that only needs those (verification, the graph store) serves both databases. Values always go
in as ``$parameters``; identifiers are validated by :class:`~src.core.schema.GraphSchema`.
"""
from __future__ import annotations

import argparse
import logging
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from src.core.schema import validate_identifier
from src.core.errors import UsageError, UserError, first_line

log = logging.getLogger(__name__)

DEFAULT_DIR = Path("data/ladybug")
DEFAULT_BUFFER_MB = 512  # Ladybug's own default is ~80% of RAM: far too much on a shared machine
LOAD_HINT = "python loaders/load_into_neo4j.py --backend ladybug"


def default_path(dataset: str, directory: str | Path = DEFAULT_DIR) -> Path:
    """``data/ladybug/<dataset>.lbdb`` (non-word characters of the name become ``_``)."""
    return Path(directory) / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', dataset)}.lbdb"


def add_ladybug_args(parser: argparse.ArgumentParser) -> None:
    """``--ladybug_path`` and ``--ladybug_buffer_mb`` for every script that opens a Ladybug database."""
    g = parser.add_argument_group("Ladybug (embedded database file)")
    g.add_argument("--ladybug_path", default=None,
                   help=f"database file (default: {DEFAULT_DIR}/<dataset>.lbdb)")
    g.add_argument("--ladybug_buffer_mb", type=int, default=DEFAULT_BUFFER_MB,
                   help="Ladybug buffer pool of this process in MiB (default: %(default)s)")


def path_from_args(args: argparse.Namespace, dataset: str) -> Path:
    if args.ladybug_buffer_mb < 16:
        raise UsageError(f"--ladybug_buffer_mb must be >= 16 (got {args.ladybug_buffer_mb})")
    return Path(args.ladybug_path) if args.ladybug_path else default_path(dataset)


class LadybugClient:
    """One embedded database (read-only unless ``read_only=False``) with a connection per thread."""

    def __init__(self, path: str | Path, *, read_only: bool = True, buffer_mb: int = DEFAULT_BUFFER_MB,
                 max_threads: int = 1, dataset: str | None = None) -> None:
        """``dataset``: the name the missing-file message tells the user to load."""
        import ladybug  # imported here so the Neo4j-only paths never need the package

        self.path = Path(path)
        self.read_only = read_only
        self.database = str(self.path)  # the attribute Neo4jClient callers print
        if read_only and not self.path.is_file():
            raise UserError(f"no Ladybug database at {self.path}; create it with `{LOAD_HINT} --dataset {dataset or '<name>'}` "
                            "(or point --ladybug_path at it)")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = ladybug.Database(str(self.path), read_only=read_only, buffer_pool_size=buffer_mb << 20,
                                        max_num_threads=max_threads)
        except RuntimeError as exc:
            raise UserError(f"cannot open the Ladybug database {self.path}: {first_line(exc)}") from None
        self._ladybug = ladybug
        self._connections: list[Any] = []  # every connection made
        self._idle: list[Any] = []  # those not running a query now
        self._lock = threading.Lock()

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._ladybug.Connection(self._db)
            with self._lock:
                self._connections.append(conn)
        try:
            yield conn
        finally:
            with self._lock:
                self._idle.append(conn)

    def _run(self, query: str, params: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
        with self._connection() as conn:
            try:
                result = conn.execute(query, params)
            except RuntimeError as exc:
                if self.read_only and "read only" in str(exc).lower():
                    raise UserError(f"the Ladybug database {self.path} is opened read-only here: "
                                    f"{first_line(exc)}") from None
                raise
            try:
                return result.get_column_names(), result.get_all()
            finally:
                result.close()

    def execute(self, query: str, **params: Any) -> list[list[Any]]:
        """Run ``query`` with ``$params`` on a pooled connection; rows as lists."""
        return self._run(query, params)[1]

    def read(self, query: str, **params: Any) -> list[dict[str, Any]]:
        """Rows as dicts keyed by the ``RETURN`` aliases (like ``Neo4jClient.read`` records)."""
        names, rows = self._run(query, params)
        return [dict(zip(names, row)) for row in rows]

    def write(self, query: str, **params: Any) -> list[dict[str, Any]]:
        if self.read_only:
            raise UserError(f"the Ladybug database {self.path} is opened read-only; writes go through the loader")
        return self.read(query, **params)

    def count_nodes(self, label: str) -> int:
        label = validate_identifier(label, "label")
        return int(self.execute(f"MATCH (n:`{label}`) RETURN count(n)")[0][0])

    def count_relationships(self, rel_type: str) -> int:
        rel_type = validate_identifier(rel_type, "relationship type")
        return int(self.execute(f"MATCH ()-[r:`{rel_type}`]->() RETURN count(r)")[0][0])

    def tables(self) -> dict[str, str]:
        """Table name -> ``NODE``/``REL``."""
        return {row[1]: row[2] for row in self.execute("CALL show_tables() RETURN *")}

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
            self._idle.clear()
        self._db.close()

    def __enter__(self) -> "LadybugClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
