"""The server caps projection budgets (issue 24 item 19): a client cannot ask the heap away.

``gnn.fetchRows(..., projectionMb=100000)`` used to kill a 512 MiB server in seconds
(ExitOnOutOfMemoryError). Now ``server.gnn.projection_max_mb`` (neo4j.conf; default half the heap)
bounds every request and larger ones are a procedure error; the server keeps serving. Checked on
this checkout's server (default cap) and on a second, 512 MiB server started with a cap of 64 MiB.
"""
from __future__ import annotations

import re
import runpy
import sys
import time

import numpy as np
import psutil
import pytest
from neo4j import exceptions as neo4j_exc

from src.client import Neo4jClient, Neo4jSettings, connect
from src.core.paths import REPO_DIR as REPO
from src.neo4jdb.local import LocalNeo4j

FETCH = "CALL gnn.fetchRows($label, 'id', 'x', 'y', $ids, $mb) YIELD x, missing RETURN size(x) AS n, missing"


@pytest.fixture(scope="module")
def cora(loaded_dataset):
    return loaded_dataset("cora")


def _fetch(client: Neo4jClient, label: str, mb: float) -> tuple[int, list]:
    row = client.read(FETCH, label=label, ids=np.arange(5, dtype="<i8").tobytes(), mb=mb)[0]
    return row["n"], row["missing"]


def _server_max_heap_mb(client: Neo4jClient) -> float:
    rows = client.read("CALL dbms.listConfig('server.memory.heap.max_size') YIELD value RETURN value")
    number, unit = re.fullmatch(r"([\d.]+)\s*([kmgt]?)i?b?", rows[0]["value"].strip().lower()).groups()
    return float(number) * {"": 2**-20, "k": 2**-10, "m": 1, "g": 2**10, "t": 2**20}[unit]


def test_default_cap_is_half_the_heap(client: Neo4jClient, cora) -> None:
    _, schema, _ = cora
    cap = int(_server_max_heap_mb(client) * 0.5)
    n, missing = _fetch(client, schema.label, cap)  # at the cap: served
    assert n > 0 and missing == []
    t0 = time.monotonic()
    for mb in (cap + 1, 100000, float("inf")):
        with pytest.raises(neo4j_exc.ClientError, match=f"exceeds this server's projection cap of {cap} MiB"):
            _fetch(client, schema.label, mb)
    print(f"refused in {time.monotonic() - t0:.2f} s")
    assert client.read("RETURN 1 AS one")[0]["one"] == 1


def test_training_with_a_budget_above_the_cap_is_one_line(client: Neo4jClient, cora, tmp_path, monkeypatch,
                                                          capfd) -> None:
    _, schema, _ = cora
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["main-neo4j-backend.py", "--dataset", schema.dataset, "--projection_mb",
                                      "100000", "--epochs", "1", "--num_loader_threads", "0"])
    capfd.readouterr()
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(REPO / "main-neo4j-backend.py"), run_name="__main__")
    err = capfd.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert exited.value.code == 2 and "Traceback" not in err, err[-2000:]
    assert len(errors) == 1 and "the server refuses --projection_mb 100000" in errors[0], err[-2000:]
    assert "server.gnn.projection_max_mb" in errors[0]
    print(errors[0])


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """A 512 MiB server (the heap the probe killed) with neo4j.conf's cap set to 64 MiB."""
    srv = LocalNeo4j(root=tmp_path_factory.mktemp("cap") / "neo4j", lib=LocalNeo4j().lib)
    try:
        st = srv.start(heap="512m", pagecache="64m", timeout=180, projection_cap_mb=64)
        info = srv.connection_info()
        with connect(Neo4jSettings(uri=info["uri"], password=info["password"])) as c:
            yield srv, st["pid"], c
    finally:
        srv.stop()


def test_cap_from_neo4j_conf_on_a_small_heap(small_server) -> None:
    srv, pid, c = small_server
    assert "server.gnn.projection_max_mb=64" in (srv.home / "conf" / "neo4j.conf").read_text()
    label = "T_cap_rows"
    c.write("CREATE CONSTRAINT IF NOT EXISTS FOR (n:T_cap_rows) REQUIRE n.id IS UNIQUE")
    c.write("UNWIND range(0, 99) AS i CREATE (:T_cap_rows {id: i, x: $x, y: i % 3})", x=bytes(16))
    assert _fetch(c, label, 64) == (5 * 16, [])
    for mb in (65, 100000):
        with pytest.raises(neo4j_exc.ClientError, match="exceeds this server's projection cap of 64 MiB"):
            _fetch(c, label, mb)
    time.sleep(1)
    assert psutil.pid_exists(pid) and c.read("RETURN 1 AS one")[0]["one"] == 1  # still serving
    assert srv.state() is not None
