"""The local server's secrets stay private (issue 24 items 16, 17), checked on a real second server.

A fresh server in a temp folder, named like a shell injection, is started for real while every
process's command line is watched for the generated password; then the modes of everything it
wrote are checked, and ``jobs/neo4j.sh env`` is evaluated by bash.
"""
from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from src.client import Neo4jSettings, connect
from src.core.paths import REPO_DIR as REPO
from src.neo4jdb.local import LocalNeo4j
from src.neo4jdb.password import new_password

INJECTION = "odd '$(touch PWNED)' `touch PWNED2` dir"


@pytest.fixture(scope="module")
def shared_lib() -> str:
    srv = LocalNeo4j()
    srv.install()  # cached jars of this checkout's server (no download when present)
    return str(srv.lib)


class CommandLineWatch(threading.Thread):
    """Reads every process's command line every few milliseconds; remembers those holding ``secret``."""

    def __init__(self, secret: str):
        super().__init__(daemon=True)
        self.secret, self.seen, self.scans, self.done = secret, [], 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for proc in psutil.process_iter(["cmdline"]):
                line = " ".join(proc.info["cmdline"] or [])
                if self.secret in line:
                    self.seen.append(line[:200])
            self.scans += 1
            time.sleep(0.005)


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory, shared_lib: str):
    """A never-started server under a folder named like an injection; its start watched."""
    root = tmp_path_factory.mktemp("sec") / INJECTION / "neo4j"
    srv = LocalNeo4j(root=root, lib=shared_lib)
    new_password(srv.password_file)  # what start() would generate (kept): the watch must know it beforehand
    watch = CommandLineWatch(srv.password())
    watch.start()
    t0 = time.monotonic()
    try:
        srv.start(heap="512m", pagecache="64m", timeout=180)
        elapsed = time.monotonic() - t0
        watch.done.set()
        watch.join()
        yield srv, watch, elapsed
    finally:
        watch.done.set()
        srv.stop()


def test_initial_password_never_in_a_command_line(fresh_server) -> None:
    srv, watch, elapsed = fresh_server
    assert (srv.home / "data" / "dbms" / "auth.ini").exists()
    assert watch.scans > 50, "the watch must have covered the whole start"
    assert watch.seen == [], f"password visible in a process list: {watch.seen[:1]}"
    info = srv.connection_info()  # the password really was set (through stdin): it authenticates
    with connect(Neo4jSettings(uri=info["uri"], password=info["password"])) as c:
        assert c.read("RETURN 1 AS one")[0]["one"] == 1
    print(f"fresh start with set-initial-password on stdin: {elapsed:.1f} s, {watch.scans} process-list scans")


def test_server_files_are_owner_only(fresh_server) -> None:
    srv, _, _ = fresh_server
    with connect(Neo4jSettings(uri=srv.connection_info()["uri"], password=srv.password())) as c:
        c.write("CREATE (:T_sec_probe {id: 1})")  # the store and transaction logs get written
    for folder in (srv.root, srv.home):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
    assert stat.S_IMODE(os.stat(srv.home / "data" / "dbms" / "auth.ini").st_mode) & 0o077 == 0
    assert stat.S_IMODE(os.stat(srv.password_file).st_mode) == 0o600
    checked = 0
    for sub in ("data", "logs", "conf"):
        for path in (srv.home / sub).rglob("*"):
            if not path.is_symlink():
                assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path
                checked += 1
    assert checked > 20  # store files, transaction logs, neo4j.log, debug.log, ...
    assert (srv.home / "logs" / "debug.log").exists()


def test_env_output_is_shell_quoted(fresh_server, tmp_path: Path) -> None:
    """``eval "$(bash jobs/neo4j.sh env)"`` with GNN_NEO4J_DIR holding ``'$(touch PWNED)'``: no command runs."""
    srv, _, _ = fresh_server
    env = {k: v for k, v in os.environ.items() if k != "NEO4J_URI"}
    env["GNN_NEO4J_DIR"] = str(srv.root)
    out = subprocess.run(["bash", str(REPO / "jobs" / "neo4j.sh"), "env"], cwd=tmp_path, capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert srv.password() not in out.stdout
    shown = subprocess.run(["bash", "-c", f'eval "$1"; printf "%s\\n%s" "$NEO4J_URI" "$NEO4J_PASSWORD"', "_",
                            out.stdout], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [srv.connection_info()["uri"], srv.password()]
    assert not list(tmp_path.iterdir()), "a command hidden in the folder name ran"
