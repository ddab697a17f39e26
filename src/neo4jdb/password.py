"""The local server's password: generated once per store, never regenerated for a store that has
one, and set again without losing data (``jobs/neo4j.sh set-password``).

Why: the password file used to be recreated with a new random password whenever it was missing,
while the server kept the old one; the next start failed with ``Unauthorized`` and only ``reset``
(deleting every database) recovered. ``neo4j-admin dbms set-initial-password`` works on a fresh
store only, so a new password for an existing store goes the way Neo4j documents for a lost admin
password: one start with authentication disabled (Bolt on 127.0.0.1 and a fresh port, for the
seconds it takes), ``ALTER USER`` on the system database, and a normal restart.
"""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

from src.core.errors import UserError
from src.core.ports import free_port
from src.neo4jdb.processes import server_lock

log = logging.getLogger(__name__)


def has_store_password(home: Path) -> bool:
    """True once the store under ``home`` has a password (set before or at its first start)."""
    data = home / "data"
    return (data / "dbms" / "auth.ini").exists() or (data / "databases" / "system").exists()


def read_password(path: Path, home: Path) -> str:
    """The password in ``path``; a one-line UserError (never a new password) when it is missing."""
    try:
        os.chmod(path, 0o600)
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    if has_store_password(home):
        raise UserError(f"the password file {path} is missing, but the Neo4j store under {home / 'data'} has a "
                        "password: restore the file, or set a new password keeping the data with "
                        "`bash jobs/neo4j.sh set-password`")
    raise UserError(f"no password yet for the Neo4j under {home}: `bash jobs/neo4j.sh start` creates one")


def new_password(path: Path) -> None:
    """Create ``path`` with a random password, owner-only; an existing file is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(24))


def set_password(srv: Any, timeout: float = 120.0) -> bool:
    """Give the store of ``srv`` (a :class:`~src.neo4jdb.local.LocalNeo4j`) a new random password and
    write it to its password file; the databases stay. Returns whether the server runs again after
    (it does if it ran before)."""
    from neo4j import GraphDatabase

    with server_lock(srv.root):
        if not has_store_password(srv.home):
            raise UserError(f"the Neo4j under {srv.home} has no store yet: `bash jobs/neo4j.sh start` sets a password")
        before = srv.state()
        if before is not None:
            srv.stop()
        pending = srv.password_file.with_name(srv.password_file.name + ".new")
        pending.unlink(missing_ok=True)
        new_password(pending)
        port = free_port()
        log.warning("restarting the Neo4j under %s once with authentication off (127.0.0.1:%d) to set its password",
                    srv.home, port)
        try:
            srv._start("512m", "64m", port, timeout, auth=False)
            with GraphDatabase.driver(f"bolt://127.0.0.1:{port}", auth=("neo4j", "")) as drv:
                drv.execute_query("ALTER USER neo4j SET PASSWORD $pw CHANGE NOT REQUIRED",
                                  pw=pending.read_text().strip(), database_="system")
        finally:
            srv.stop()
            srv._write_conf(port, "512m", "64m", True)  # never left with authentication off
        os.replace(pending, srv.password_file)
        if before is None:
            return False
        srv._start(before["heap"] if before["heap"] != "?" else "2g",
                   before["pagecache"] if before["pagecache"] != "?" else "2g", int(before["port"]), timeout)
        return True
