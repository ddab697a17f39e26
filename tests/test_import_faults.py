"""The offline import (``--method import``) killed for real, on a server in a temporary home of
its own (issue 24, items 8 and 9): SIGKILL after the importer finished, SIGKILL while it runs,
SIGTERM while it runs, and two import loaders at once. A re-run finishes or restarts the load,
no importer JVM outlives the loader, no ``import-*`` folder or side store is left, and one
tracked server serves the home."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.core.paths import REPO_DIR as REPO
from src.neo4jdb.load.bulk_import import IMPORT_DATABASE, IMPORTER_CLASS, PENDING_FILE
from src.neo4jdb.local import LocalNeo4j
from src.neo4jdb.processes import cmdline, pid_alive, serving_jvms
from tests.test_server_lifecycle import SMALL, cli, own_root

pytestmark = [pytest.mark.slow]
NAME = "imp_cora"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    if LocalNeo4j().importer_jar() is None:  # built into this checkout's jar cache, then linked
        pytest.skip("the bulk importer needs Maven and a JDK")
    root = own_root(tmp_path_factory.mktemp("import"))
    assert cli(root, "start", *SMALL).returncode == 0
    yield root
    cli(root, "stop")


@pytest.fixture
def empty(root: Path) -> LocalNeo4j:
    out = cli(root, "reset")
    assert out.returncode == 0, out.stderr
    assert cli(root, "start", *SMALL).returncode == 0
    return LocalNeo4j(root=root)


def started(root: Path) -> None:
    out = cli(root, "start", *SMALL)
    assert out.returncode == 0, out.stderr[-3000:]


def loader(root: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")}
    env.update(GNN_NEO4J_DIR=str(root), PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "loaders/load_into_neo4j.py", "--dataset", "cora", "--name", NAME,
                             "--method", "import"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def importer_jvms(srv: LocalNeo4j) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
            and IMPORTER_CLASS in cmdline(int(p.name)) and f"--home={srv.home}" in cmdline(int(p.name))
            and pid_alive(int(p.name))]


def wait_for(what, timeout: float = 300.0, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the loader ended first (exit {proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError("timed out")


def phase(srv: LocalNeo4j) -> str | None:
    try:
        return json.loads((srv.root / PENDING_FILE).read_text())["phase"]
    except (OSError, ValueError, KeyError):
        return None


def assert_loaded_and_clean(srv: LocalNeo4j, rerun: subprocess.Popen, label: str) -> None:
    t0 = time.monotonic()
    out, err = rerun.communicate(timeout=600)
    took = time.monotonic() - t0
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    print(f"{label}: re-run exit {rerun.returncode} in {took:.1f} s: {summary}")
    assert rerun.returncode == 0, err[-3000:]
    from src.client import Neo4jSettings, connect
    from src.neo4jdb.load.records import require_loaded

    info = srv.connection_info()
    with connect(Neo4jSettings(uri=info["uri"], password=info["password"])) as c:
        rec = require_loaded(c, NAME)
        assert rec.complete and rec.num_nodes == 2708 and c.count_nodes(rec.label) == 2708
        assert c.count_relationships(rec.rel_type) == 10556
    assert not (srv.root / PENDING_FILE).exists() and not list(srv.root.glob("import-*"))
    assert not (srv.home / "data" / "databases" / IMPORT_DATABASE).exists()
    assert importer_jvms(srv) == [] and len(serving_jvms(srv.home)) == 1


def test_sigkill_after_the_importer_finished_then_rerun_finishes(empty: LocalNeo4j) -> None:
    load = loader(empty.root)
    wait_for(lambda: phase(empty) == "replaced", proc=load)  # the imported store is in place, no record yet
    load.send_signal(signal.SIGKILL)
    load.wait()
    print("killed in phase 'replaced'; server running:", empty.state() is not None)
    started(empty.root)  # (running again already, or started now)
    assert_loaded_and_clean(empty, loader(empty.root), "SIGKILL after the import")


def test_sigkill_during_the_import_kills_the_importer_then_rerun_loads(empty: LocalNeo4j) -> None:
    load = loader(empty.root)
    jvm = wait_for(lambda: importer_jvms(empty), proc=load)
    load.send_signal(signal.SIGKILL)
    load.wait()
    t0 = time.monotonic()
    wait_for(lambda: not any(pid_alive(p) for p in jvm), timeout=30)
    print(f"importer JVM gone {time.monotonic() - t0:.2f} s after the loader's SIGKILL")
    started(empty.root)
    assert_loaded_and_clean(empty, loader(empty.root), "SIGKILL during the import")


def test_sigterm_during_the_import_cleans_up_and_restarts_the_server(empty: LocalNeo4j) -> None:
    load = loader(empty.root)
    wait_for(lambda: importer_jvms(empty), proc=load)
    t0 = time.monotonic()
    load.send_signal(signal.SIGTERM)
    _, err = load.communicate(timeout=300)
    took = time.monotonic() - t0
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    print(f"SIGTERM during the import: exit {load.returncode} after {took:.1f} s: {lines}")
    assert load.returncode == 130 and lines == ["error: interrupted"] and "Traceback" not in err
    assert empty.state() is not None and importer_jvms(empty) == []  # the server is back, the importer gone
    assert not (empty.root / PENDING_FILE).exists() and not list(empty.root.glob("import-*"))
    assert_loaded_and_clean(empty, loader(empty.root), "after SIGTERM")


def test_two_import_loaders_at_once_load_once(empty: LocalNeo4j) -> None:
    t0 = time.monotonic()
    loads = [loader(empty.root) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in loads]
    print(f"two import loaders at once ({time.monotonic() - t0:.1f} s):",
          [(p.returncode, o[0].strip().splitlines()[-1:]) for p, o in zip(loads, outs)])
    assert [p.returncode for p in loads] == [0, 0], [o[1][-2000:] for o in outs]
    assert sum("already loaded" in o[0] for o in outs) == 1
    jvms = serving_jvms(empty.home)
    assert len(jvms) == 1 and empty.state()["pid"] == jvms[0]
    status = cli(empty.root, "status")
    assert status.returncode == 0 and f"pid      {jvms[0]}" in status.stdout
    assert_loaded_and_clean(empty, loader(empty.root), "after two at once")


def test_maven_build_dies_with_a_killed_start(tmp_path: Path) -> None:
    """A home without the built plugin builds it with Maven at start; SIGKILL to the start while
    Maven runs takes Maven with it (it used to run on, orphaned)."""
    root = own_root(tmp_path)
    for built in root.glob("plugin-*"):
        built.unlink()  # this home builds its own plugin
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")}
    env["GNN_NEO4J_DIR"] = str(root)
    start = subprocess.Popen([sys.executable, "-m", "src.neo4jdb.local", "start", *SMALL], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def maven() -> list[int]:
        return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                and f"-Dgnn.buildDir={root}" in cmdline(int(p.name)) and pid_alive(int(p.name))]

    builders = wait_for(maven, timeout=120, proc=start)
    start.send_signal(signal.SIGKILL)
    start.wait()
    t0 = time.monotonic()
    wait_for(lambda: not any(pid_alive(p) for p in builders), timeout=30)
    print(f"Maven ({len(builders)} process) gone {time.monotonic() - t0:.2f} s after the start's SIGKILL")
    assert serving_jvms(LocalNeo4j(root=root).home) == []
