"""The local server's state kept in step with reality, on servers in temporary homes of their own
(issue 24, items 7 and 8): a deleted password file is never replaced by a new random password,
and ``set-password`` sets one again keeping the data; two concurrent starts after a reset give one
tracked server; a serving JVM that ``server.json`` does not name is found by ``status`` and
stopped by ``stop``."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.client import Neo4jSettings, connect
from src.core.errors import UserError
from src.core.paths import REPO_DIR as REPO
from src.neo4jdb.local import LocalNeo4j
from src.neo4jdb.processes import serving_jvms

pytestmark = [pytest.mark.slow]
SMALL = ["--heap", "512m", "--pagecache", "64m"]


def own_root(tmp: Path) -> Path:
    """A server root whose jar cache and built jars are this checkout's (links: nothing fetched or built)."""
    shared = LocalNeo4j()
    shared.install()
    root = tmp / "neo4j"
    root.mkdir()
    for built in shared.lib.parent.iterdir():
        if built.is_dir() and built.name.endswith(f"-{shared.version}") and not built.name.startswith("."):
            (root / built.name).symlink_to(built)
    return root


def cli(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")}
    env["GNN_NEO4J_DIR"] = str(root)
    return subprocess.run([sys.executable, "-m", "src.neo4jdb.local", *args], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=timeout)


def _settings(srv: LocalNeo4j) -> Neo4jSettings:
    info = srv.connection_info()
    return Neo4jSettings(uri=info["uri"], password=info["password"])


def test_deleted_password_is_never_regenerated_and_set_password_keeps_data(tmp_path: Path) -> None:
    root = own_root(tmp_path)
    srv = LocalNeo4j(root=root)
    try:
        assert cli(root, "start", *SMALL).returncode == 0
        with connect(_settings(srv)) as c:
            c.write("CREATE (:Kept {v: 7})")
        old = srv.password_file.read_text()
        srv.password_file.unlink()  # the user deletes it while the server runs

        with pytest.raises(UserError) as err:
            srv.connection_info()
        out = cli(root, "status")
        print("status without the password file:", out.returncode, out.stderr.strip())
        assert out.returncode == 1 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
        assert "password file" in out.stderr and "set-password" in out.stderr and str(err.value) in out.stderr
        assert not srv.password_file.exists()  # nothing wrote a new random one
        assert srv.state() is not None  # the server kept running, with its old password

        t0 = time.monotonic()
        out = cli(root, "set-password")
        print(f"set-password: exit {out.returncode} in {time.monotonic() - t0:.1f} s: {out.stdout.strip()}")
        assert out.returncode == 0, out.stderr[-2000:]
        new = srv.password_file.read_text()
        assert new and new != old and old not in out.stdout + out.stderr and new not in out.stdout + out.stderr
        assert oct(srv.password_file.stat().st_mode & 0o777) == "0o600"
        with connect(_settings(srv)) as c:  # the new password works and the data is there
            assert c.read("MATCH (n:Kept) RETURN n.v AS v")[0]["v"] == 7
        assert "dbms.security.auth_enabled=true" in (srv.home / "conf" / "neo4j.conf").read_text()
        assert cli(root, "stop").returncode == 0 and cli(root, "start", *SMALL).returncode == 0  # and after a restart
        with connect(_settings(srv)) as c:
            assert c.read("MATCH (n:Kept) RETURN count(n) AS c")[0]["c"] == 1
    finally:
        srv.stop()
    assert serving_jvms(srv.home) == []


def test_concurrent_starts_give_one_tracked_server(tmp_path: Path) -> None:
    root = own_root(tmp_path)
    srv = LocalNeo4j(root=root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")}
    env["GNN_NEO4J_DIR"] = str(root)
    try:
        assert cli(root, "start", *SMALL).returncode == 0
        assert cli(root, "reset").returncode == 0  # as in the report: a reset, then two starts at once
        t0 = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-m", "src.neo4jdb.local", "start", *SMALL], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        elapsed = time.monotonic() - t0
        print(f"two concurrent starts ({elapsed:.1f} s):", [(p.returncode, o[0].strip()) for p, o in zip(procs, outs)])
        assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
        verbs = sorted("already running" in o[0] for o in outs)
        assert verbs == [False, True]  # one started it, the other found it
        jvms = serving_jvms(srv.home)
        assert len(jvms) == 1 and srv.state()["pid"] == jvms[0]
        status = cli(root, "status")
        assert status.returncode == 0 and f"pid      {jvms[0]}" in status.stdout

        # a JVM serving this home that server.json does not name (the file is lost)
        srv.state_file.unlink()
        status = cli(root, "status")
        print("status without server.json:", status.returncode, status.stdout.split("\n")[:3])
        assert status.returncode == 0 and f"pid      {jvms[0]}" in status.stdout
        stop = cli(root, "stop")
        assert stop.returncode == 0 and "Neo4j stopped" in stop.stdout
        assert serving_jvms(srv.home) == [] and cli(root, "status").returncode == 3
        again = cli(root, "start", *SMALL)  # and the next start works
        assert again.returncode == 0 and "started" in again.stdout, again.stderr[-1500:]
    finally:
        srv.stop()
    assert serving_jvms(srv.home) == []
