"""The one place that talks to Neo4j: settings, driver, managed transactions, identifiers.

Connection settings come from flags, then the environment (``NEO4J_URI``, ``NEO4J_USER``,
``NEO4J_PASSWORD``, ``NEO4J_DATABASE``), then the project's local server (``jobs/neo4j.sh``).
Every query runs in a managed transaction (``execute_read``/``execute_write``) so transient
errors (leader switch, restart, deadlock) are retried within a bounded time budget; values
always travel as parameters, and the few identifiers that must be spliced into Cypher text
(labels, relationship types, property names) go through :func:`src.core.schema.validate_identifier`.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import neo4j
from neo4j import GraphDatabase
from neo4j import exceptions as neo4j_exc

from src.core.errors import Neo4jUnavailable, UsageError, first_line
from src.core.schema import validate_identifier
from src.core.secret_file import read_secret_file

log = logging.getLogger(__name__)

T = TypeVar("T")

_DATABASE = re.compile(r"^[A-Za-z][A-Za-z0-9.\-]{2,62}$")  # Neo4j's rule for database names
RETRY_S = 50.0
"""Default time budget for retrying a query while Neo4j is unavailable (e.g. restarting); below
the 60 s collective timeout, so a rank blocked on the database gives the database's message."""
_MAX_BACKOFF_S = 2.0  # the pause between retries doubles up to this, so a returning server is seen quickly
READ_TIMEOUT_S = 8
"""How long a request may go without a byte from the server before the driver drops the connection:
the project's server sends this as its ``connection.recv_timeout_seconds`` hint (keep-alive 4 s x 2
probes, src/neo4jdb/local.py) and a NOOP chunk at least that often while a query runs, so only a
stopped or unreachable server trips it. Another server's hint is its own (Neo4j's default: 120 s)."""
ATTEMPT_MARGIN_S = READ_TIMEOUT_S + _MAX_BACKOFF_S
"""A query still failing after the retry budget fails within the budget plus this: no attempt starts
past the budget, and the last one ends within a read timeout or a connection's acquisition timeout
(both READ_TIMEOUT_S, on the project's server) plus a pause."""
_OUTAGES = (neo4j_exc.DriverError, neo4j_exc.TransientError, neo4j_exc.DatabaseError)  # the server, not the query
_SCHEMES = ("bolt", "neo4j", "bolt+s", "bolt+ssc", "neo4j+s", "neo4j+ssc")
START_HINT = "start the local server with `bash jobs/neo4j.sh start` or set NEO4J_URI to a running server"


def validate_database(name: str) -> str:
    """Return ``name`` if it is a legal Neo4j database name, else raise :class:`UsageError`."""
    if not isinstance(name, str) or not _DATABASE.match(name):
        raise UsageError(f"invalid database name {name!r}: use 3-63 letters, digits, dots or dashes, "
                         "starting with a letter (e.g. neo4j)")
    return name


@dataclass(frozen=True)
class Neo4jSettings:
    """Where and as whom to connect. ``password`` never appears in ``repr`` or logs."""

    uri: str
    user: str = "neo4j"
    password: str = field(default="", repr=False)
    database: str = "neo4j"
    local: bool = False  # True when the settings came from the project's own server

    @classmethod
    def resolve(
        cls,
        uri: str | None = None,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        password_file: str | None = None,
    ) -> "Neo4jSettings":
        """Flags win over the environment, which wins over the local server's files."""
        env = os.environ
        if password is None and password_file:
            password = read_secret_file(Path(password_file))
        uri = uri or env.get("NEO4J_URI")
        local = False
        if not uri:
            from src.neo4jdb import local as neo4j_local

            server = neo4j_local.LocalNeo4j()
            st = server.state()
            if st is None:
                raise Neo4jUnavailable(f"no Neo4j configured: NEO4J_URI is not set and no local server is running; {START_HINT}")
            uri, local = f"bolt://127.0.0.1:{st['port']}", True
            if password is None and not env.get("NEO4J_PASSWORD"):
                password = server.password()  # its file (a one-line error if it is gone)
        return cls(
            uri=uri,
            user=user or env.get("NEO4J_USER") or "neo4j",
            password=password if password is not None else env.get("NEO4J_PASSWORD", ""),
            database=validate_database(database or env.get("NEO4J_DATABASE") or "neo4j"),
            local=local,
        )


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    """Connection flags shared by every entry script (defaults from the environment)."""
    g = parser.add_argument_group("Neo4j connection (default: environment, then the local server)")
    g.add_argument("--neo4j_uri", default=None, help="Bolt URI, e.g. bolt://host:7687 (env NEO4J_URI; default: the local server from jobs/neo4j.sh)")
    g.add_argument("--neo4j_user", default=None, help="user name (env NEO4J_USER; default neo4j)")
    g.add_argument("--neo4j_password_file", default=None, help="file holding the password (env NEO4J_PASSWORD; default: the local server's data/neo4j/password)")
    g.add_argument("--neo4j_database", default=None, help="database name (env NEO4J_DATABASE; default neo4j)")
    g.add_argument("--neo4j_retry_s", type=float, default=RETRY_S,
                   help="how long a query is retried while Neo4j is unavailable (e.g. restarting) before the "
                        "run stops with a --resume hint (default: %(default)s)")


def settings_from_args(args: argparse.Namespace) -> Neo4jSettings:
    """Settings from the connection flags; checks the flags that need no server first."""
    if getattr(args, "neo4j_retry_s", RETRY_S) < 0:
        raise UsageError(f"--neo4j_retry_s must be >= 0 (got {args.neo4j_retry_s})")
    if args.neo4j_database is not None:
        validate_database(args.neo4j_database)
    return Neo4jSettings.resolve(
        uri=args.neo4j_uri, user=args.neo4j_user, database=args.neo4j_database,
        password_file=args.neo4j_password_file,
    )


class Neo4jClient:
    """A checked driver plus managed read/write helpers. Thread-safe; use one per process.

    Construction fails fast with a one-line :class:`Neo4jUnavailable` when the server is
    unreachable (bounded by ``connect_timeout``), the credentials are wrong or the database
    does not exist.  Afterwards, queries that fail with a retryable error (server restarting or
    briefly away, deadlock) are retried for up to ``max_retry_time`` seconds with a doubling
    pause capped at 2 s; the driver's own exponential backoff (pauses up to 32 s) would notice a
    returning server too late for the peers waiting in a collective.
    """

    def __init__(
        self,
        settings: Neo4jSettings,
        *,
        connect_timeout: float = 5.0,
        max_retry_time: float = RETRY_S,
        max_pool_size: int = 16,
    ) -> None:
        self.settings = settings
        self.database = settings.database
        self.max_retry_time = max_retry_time
        scheme = settings.uri.split("://", 1)[0] if "://" in settings.uri else ""
        if scheme not in _SCHEMES:
            raise UsageError(
                f"bad Neo4j URI {settings.uri!r}: use one of {', '.join(s + '://host:port' for s in _SCHEMES[:2])} (or +s/+ssc variants)"
            )
        self._driver = GraphDatabase.driver(
            settings.uri,
            auth=(settings.user, settings.password),
            connection_timeout=connect_timeout,
            # bounds a new connection's handshake with a server that accepts but never answers (SIGSTOP)
            connection_acquisition_timeout=max(connect_timeout, READ_TIMEOUT_S),
            max_transaction_retry_time=0.0,  # one attempt per call: _retrying() owns the backoff
            max_connection_pool_size=max_pool_size,
            # Driver-level liveness check keeps pooled connections usable across server restarts.
            liveness_check_timeout=5.0,
        )
        try:
            self._check()
        except BaseException:
            self._driver.close()
            raise

    def _check(self) -> None:
        where = f"Neo4j at {self.settings.uri}"
        try:
            self._driver.verify_connectivity()
            self.read("RETURN 1 AS ok")
        except neo4j_exc.AuthError:
            raise Neo4jUnavailable(
                f"{where} rejected user {self.settings.user!r}: wrong password or unknown user; set "
                "NEO4J_USER/NEO4J_PASSWORD (or --neo4j_user/--neo4j_password_file) to an account of that server"
            ) from None
        except neo4j_exc.ClientError as exc:
            if exc.code and "DatabaseNotFound" in exc.code:
                raise Neo4jUnavailable(
                    f"{where} has no database {self.database!r}; set NEO4J_DATABASE to an existing one "
                    "(Community edition has only 'neo4j')"
                ) from None
            raise Neo4jUnavailable(f"{where} refused the connection check: {exc.message}") from None
        except (neo4j_exc.ServiceUnavailable, neo4j_exc.SessionExpired, OSError) as exc:
            raise Neo4jUnavailable(f"cannot reach {where} ({_short(exc)}); {START_HINT}") from None
        except neo4j_exc.ConfigurationError as exc:
            raise Neo4jUnavailable(f"bad Neo4j URI {self.settings.uri!r}: {exc}") from None

    # -- queries --------------------------------------------------------------------------
    def read(self, query: str, **params: Any) -> list[neo4j.Record]:
        """Run a read query in a managed (retried) transaction and return all records."""
        return self.read_tx(lambda tx: list(tx.run(query, params)))

    def write(self, query: str, **params: Any) -> list[neo4j.Record]:
        """Run a write query in a managed (retried) transaction and return all records."""
        return self.write_tx(lambda tx: list(tx.run(query, params)))

    def read_tx(self, work: Callable[[neo4j.ManagedTransaction], T]) -> T:
        """Run ``work(tx)`` in a managed read transaction; it may be retried, so keep it pure."""
        return self._retrying(lambda session: session.execute_read(lambda tx: work(_QuietTx(tx))), read=True)

    def write_tx(self, work: Callable[[neo4j.ManagedTransaction], T]) -> T:
        """Run ``work(tx)`` in a managed write transaction; it may be retried, so keep it idempotent."""
        return self._retrying(lambda session: session.execute_write(lambda tx: work(_QuietTx(tx))), read=False)

    def _retrying(self, call: Callable[[neo4j.Session], T], *, read: bool) -> T:
        """``call(session)`` in a fresh session, retried on retryable errors within the budget.

        A connection lost on a read's COMMIT (the driver's ``IncompleteCommit``, not retryable for
        it because a write's outcome is then unknown) is retried too: a read changed nothing. No
        attempt starts past the budget and each one is bounded by the connection and read
        timeouts, so a failure lands within the budget plus :data:`ATTEMPT_MARGIN_S`.
        """
        began = time.monotonic()
        deadline = began + self.max_retry_time
        pause, failed_at = 0.25, None
        while True:
            try:
                with self._driver.session(database=self.database) as session:
                    return call(session)
            except (neo4j_exc.DriverError, neo4j_exc.Neo4jError) as exc:
                now = time.monotonic()
                retryable = exc.is_retryable() or (read and isinstance(exc, neo4j_exc.IncompleteCommit))
                if not retryable or now + pause > deadline:
                    if isinstance(exc, _OUTAGES):
                        raise self._gave_up(exc, now - began if retryable else None) from None
                    raise
                if failed_at is None:  # deadlocks of parallel writers are routine, an outage is news
                    failed_at = now
                    deadlock = "Deadlock" in (getattr(exc, "code", None) or "")
                    log.log(logging.DEBUG if deadlock else logging.WARNING,
                            "Neo4j at %s: %s (%s); retrying for up to %.0f s", self.settings.uri,
                            _short(exc), type(exc).__name__, self.max_retry_time)
            time.sleep(pause)
            pause = min(2 * pause, _MAX_BACKOFF_S)

    def _gave_up(self, exc: BaseException, retried_s: float | None) -> Neo4jUnavailable:
        """The one line for a server that stopped answering, saying how long was really retried."""
        if retried_s is None:
            tried = "not retried: " + ("the commit's outcome is unknown" if isinstance(exc, neo4j_exc.IncompleteCommit)
                                       else "this call is not retryable")
        else:
            tried = f"after trying for {retried_s:.0f} s (--neo4j_retry_s {self.max_retry_time:g})"
        return Neo4jUnavailable(
            f"Neo4j at {self.settings.uri} stopped answering ({_short(exc)}), {tried}; check it with "
            "`bash jobs/neo4j.sh status`, then rerun (training: add --resume to continue from the last checkpoint)"
        )

    def run_autocommit(self, query: str, **params: Any) -> None:
        """Run ``query`` in an implicit (auto-commit) transaction, as ``CALL {} IN TRANSACTIONS`` needs.

        Not retried: callers pass idempotent queries and a re-run repeats them.
        """
        try:
            with self._driver.session(database=self.database) as session:
                session.run(query, quiet_params(params)).consume()
        except _OUTAGES as exc:
            raise self._gave_up(exc, None) from None

    def count_nodes(self, label: str) -> int:
        """Nodes with ``label`` (answered from Neo4j's count store, O(1))."""
        label = validate_identifier(label, "label")
        return int(self.read(f"MATCH (n:`{label}`) RETURN count(n) AS c")[0]["c"])

    def count_relationships(self, rel_type: str) -> int:
        """Relationships of ``rel_type`` (answered from Neo4j's count store, O(1))."""
        rel_type = validate_identifier(rel_type, "relationship type")
        return int(self.read(f"MATCH ()-[r:`{rel_type}`]->() RETURN count(r) AS c")[0]["c"])

    def server_version(self) -> str:
        rec = self.read("CALL dbms.components() YIELD versions RETURN versions[0] AS v")
        return str(rec[0]["v"])

    def close(self) -> None:
        self._driver.close()

    def __enter__(self) -> "Neo4jClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _QuietBytes(bytes):
    """A bytes parameter whose repr is its size (see :func:`quiet_params`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} bytes>"


class _QuietList(list):
    """A list parameter whose repr is its length (see :func:`quiet_params`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<list of {len(self)}>"


def quiet_params(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """``params`` with its bytes and list values wrapped so that ``repr`` prints only their size.

    Why: the driver (6.4) builds the text of a debug log line for every RUN message, the repr of
    all its parameters, even with debug logging off. For the 700 KB of packed ids of one feature
    fetch of a 1M-node graph batch that is 6.5 ms of CPU holding the GIL; for an UNWIND batch of
    the loader, megabytes of text. The wrappers pack exactly as the plain values do.
    """
    if not params:
        return params
    return {k: _QuietBytes(v) if type(v) is bytes else _QuietList(v) if type(v) is list else v
            for k, v in params.items()}


class _QuietTx:
    """A managed transaction whose ``run`` passes its parameters through :func:`quiet_params`."""

    def __init__(self, tx: neo4j.ManagedTransaction) -> None:
        self._tx = tx

    def run(self, query: str, parameters: dict[str, Any] | None = None, **kwparameters: Any) -> neo4j.Result:
        return self._tx.run(query, quiet_params(parameters), **quiet_params(kwparameters))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


def _short(exc: BaseException) -> str:
    if isinstance(exc, neo4j_exc.Neo4jError) and exc.message:
        return exc.message.strip().splitlines()[0][:200]
    return first_line(exc, 200)


def connect(settings: Neo4jSettings | None = None, **kwargs: Any) -> Neo4jClient:
    """Build a checked client from explicit settings or from the environment/local server."""
    return Neo4jClient(settings or Neo4jSettings.resolve(), **kwargs)
