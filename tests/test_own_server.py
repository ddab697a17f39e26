"""A Neo4j the project did not start: the warning when it lacks the gnn.* procedures, and the documented
install (README "Your own Neo4j server": `bash jobs/neo4j.sh plugin-jar`, copy into plugins/, restart).

The second server is a stock Neo4j 5.26 started here the way its own launcher does (class path
``lib/*:plugins/*``, the entry point, a home with conf/ and plugins/), in a temp home, beside the
test server; nothing of the project's start-up (which puts the plugin first) is used.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from src.client import Neo4jClient, Neo4jSettings
from src.core.ports import free_port
from src.core.schema import GraphSchema
from src.neo4jdb import procedures
from src.neo4jdb.access import Neo4jAccess
from src.neo4jdb.local import MAIN_CLASS, LocalNeo4j
from src.neo4jdb.password import new_password

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.neo4j, pytest.mark.slow]  # two server starts: ~1-2 min on the shared machine


def _start_stock(srv: LocalNeo4j, port: int) -> subprocess.Popen:
    cmd = ["java", "-Xms256m", "-Xmx256m", "-cp", f"{srv.lib}/*:{srv.home / 'plugins'}/*", MAIN_CLASS,
           f"--home-dir={srv.home}", f"--config-dir={srv.home / 'conf'}"]
    with open(srv.home / "logs" / "console.log", "ab") as console:
        proc = subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=srv.home)
    srv._wait_ready(proc, port, timeout=240)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_plugin_installs_into_a_separately_started_server(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = subprocess.run([sys.executable, "-m", "src.neo4jdb.local", "plugin-jar"], cwd=REPO, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    jar = Path(out.stdout.strip().splitlines()[-1])
    assert jar.is_file() and jar.name == "gnn-procedures.jar"

    srv = LocalNeo4j(root=tmp_path / "other", lib=LocalNeo4j().lib)  # the same Neo4j jars, its own home
    port = free_port()
    srv._write_conf(port, "256m", "64m")
    new_password(srv.password_file)  # as LocalNeo4j.start makes one before setting it
    srv._set_initial_password()
    (srv.home / "plugins").mkdir(exist_ok=True)
    settings = Neo4jSettings(uri=f"bolt://127.0.0.1:{port}", user="neo4j", password=srv.password())
    schema = GraphSchema.for_dataset("cora")
    proc = _start_stock(srv, port)
    try:
        with Neo4jClient(settings) as client, caplog.at_level(logging.WARNING, logger="src.neo4jdb.access"):
            assert not procedures.has_procedures(client)
            access = Neo4jAccess.resolve(client, schema)
            assert not access.use_procedures
        warnings = [r.getMessage() for r in caplog.records if "gnn.* procedures" in r.getMessage()]
        assert len(warnings) == 1 and "plugin-jar" in warnings[0] and f"127.0.0.1:{port}" in warnings[0]
        _stop(proc)

        shutil.copy(jar, srv.home / "plugins" / jar.name)  # the README's install step
        proc = _start_stock(srv, port)
        caplog.clear()
        with Neo4jClient(settings) as client, caplog.at_level(logging.WARNING, logger="src.neo4jdb.access"):
            assert set(procedures.PROCEDURES) <= procedures.installed(client)
            assert Neo4jAccess.resolve(client, schema).use_procedures
            assert procedures.projections(client) == []  # a procedure call answers
        assert not [r for r in caplog.records if "gnn.* procedures" in r.getMessage()]
    finally:
        _stop(proc)
