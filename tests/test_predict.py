"""predict.py against the real local Neo4j: a graph created with plain Cypher, registered, trained;
predictions written back to every node, read back with Cypher (their test accuracy is the run's),
a killed write-back resumed, re-runs overwriting only the named properties, --where checked; an
in-memory run writes a file."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from src.data.sources import load_dataset
from src.neo4jdb.load.records import require_loaded
from src.neo4jdb.register.run import registration_record, unregister
from tests.conftest import REPO
from tests.subprocs import TIMEOUT, predict_cli, train_in_memory_cora
from tests.native_graph import create_native_graph, delete_graph, one_direction, user_data_checksum

FULL = "200,200"  # above cora's largest degree (168): whole neighbourhoods, so predictions do not depend on batching


def last_epoch(log_dir: Path, run: str) -> dict:
    events = [json.loads(x) for x in (log_dir / run / "rank0.jsonl").read_text().splitlines()]
    return [e for e in events if e["event"] == "epoch"][-1]


@pytest.fixture(scope="module")
def trained(client, tmp_path_factory):
    """A native Cypher cora, registered and trained for 2 epochs (1 rank); yields (label, name, run, log_dir, before)."""
    ds = load_dataset("cora")
    tag = uuid.uuid4().hex[:8]
    label, rel, name = f"Paper_{tag}", f"CITES_{tag}", f"pred_{tag}"
    create_native_graph(client, label, rel, np.asarray(ds.x), ds.y, one_direction(ds.edge_index))
    res = subprocess.run([sys.executable, str(REPO / "loaders" / "register_graph.py"), "--name", name, "--node_label",
                          label, "--rel_type", rel, "--direction", "undirected", "--features", "features", "--target",
                          "category", "--split", "random:0.6,0.2,0.2", "--no_progress"],
                         capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    tmp = tmp_path_factory.mktemp("run")
    run = f"run_{tag}"
    res = subprocess.run([sys.executable, str(REPO / "main-neo4j-backend.py"), "--dataset", name, "--epochs", "2",
                          "--fanouts", FULL, "--num_layers", "2", "--hidden_channels", "32", "--batch_size", "128",
                          "--lr", "0.01", "--run_name", run, "--log_dir", str(tmp / "logs"),
                          "--checkpoint_dir", str(tmp / "ckpt")], capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp)
    assert res.returncode == 0, res.stderr[-2000:]
    yield label, rel, name, run, tmp
    client.write("MATCH (b:GnnLoadBatch {dataset: $k}) DELETE b", k=f"predict:{run}")
    client.write("MATCH (j:GnnPrediction {key: $k}) DELETE j", k=f"predict:{run}")
    unregister(client, registration_record(client, name))
    delete_graph(client, label)


def run_flags(trained) -> list[str]:
    _, _, _, run, tmp = trained
    return ["--run_name", run, "--log_dir", str(tmp / "logs")]


def test_written_predictions_read_back_with_cypher_match_the_run(client, trained) -> None:
    label, rel, name, run, tmp = trained
    before = user_data_checksum(client, label, rel)
    res = predict_cli(*run_flags(trained), "--write_property", "pc", "--write_proba", "pp", "--write_embedding", "pe")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "predicted 2708 nodes" in res.stdout and "epoch 2" in res.stdout
    rec = require_loaded(client, name)
    s = rec.schema
    got = client.read(f"MATCH (n:`{label}`) RETURN count(n.pc) AS c, count(n.pp) AS p, min(size(n.pe)) AS e, "
                      "max(abs(reduce(t = 0.0, q IN n.pp | t + q) - 1)) AS off")[0]
    assert (got["c"], got["p"], got["e"]) == (2708, 2708, 32) and got["off"] < 1e-5
    acc = client.read(f"MATCH (n:`{label}`) WHERE n.`{s.split_prop}` = 'test' "
                      "RETURN avg(CASE WHEN n.pc = n.category THEN 1.0 ELSE 0.0 END) AS acc")[0]["acc"]
    assert acc == pytest.approx(last_epoch(tmp / "logs", run)["test_acc"], abs=1e-9)
    # only the named properties were added
    assert user_data_checksum(client, label, rel, own_prefix="gnn_") != before  # pc/pp/pe are new ...
    rows = client.read(f"MATCH (n:`{label}`) RETURN keys(n) AS k LIMIT 1")[0]["k"]
    assert {k for k in rows if not k.startswith("gnn_")} == {"features", "category", "title", "year", "pc", "pp", "pe"}


def test_rerun_overwrites_only_the_named_properties(client, trained) -> None:
    label, rel, *_ = trained
    assert predict_cli(*run_flags(trained), "--write_property", "pr").returncode == 0
    want = client.read(f"MATCH (n:`{label}`) RETURN elementId(n) AS e, n.pr AS p ORDER BY e")
    client.write(f"MATCH (n:`{label}`) WHERE n.year = 1995 SET n.pr = 'junk'")
    other = client.read(f"MATCH (n:`{label}`) RETURN sum(n.year) AS y, count(n.title) AS t")[0]
    res = predict_cli(*run_flags(trained), "--write_property", "pr")
    assert res.returncode == 0 and "already written" not in res.stdout
    assert client.read(f"MATCH (n:`{label}`) RETURN elementId(n) AS e, n.pr AS p ORDER BY e") == want
    assert client.read(f"MATCH (n:`{label}`) RETURN sum(n.year) AS y, count(n.title) AS t")[0] == other


def test_killed_write_back_resumes_without_losing_or_repeating_nodes(client, trained) -> None:
    label, rel, name, run, tmp = trained
    key = f"predict:{run}"
    proc = subprocess.Popen([sys.executable, str(REPO / "predict.py"), *run_flags(trained), "--write_property", "pk",
                             "--no_progress"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        n = client.read("MATCH (b:GnnLoadBatch {dataset: $k, kind: '--write_property=pk'}) RETURN count(b) AS c",
                        k=key)[0]["c"]
        if n >= 3 or proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert 0 < n < 22, n  # killed part-way (2708 nodes in chunks of 128: 22)
    res = predict_cli(*run_flags(trained), "--write_property", "pk")
    assert res.returncode == 0 and "already written by an interrupted run" in res.stdout, res.stdout + res.stderr[-1500:]
    markers = client.read("MATCH (b:GnnLoadBatch {dataset: $k}) RETURN count(b) AS c, sum(b.rows) AS r, "
                          "count(DISTINCT b.idx) AS d", k=key)[0]
    assert (markers["c"], markers["r"], markers["d"]) == (22, 2708, 22)
    # same values as an uninterrupted write-back
    assert predict_cli(*run_flags(trained), "--write_property", "pu").returncode == 0
    assert client.read(f"MATCH (n:`{label}`) WHERE n.pk IS NULL OR n.pk <> n.pu RETURN count(n) AS c")[0]["c"] == 0


def test_where_selects_nodes_and_non_predicates_are_refused(client, trained) -> None:
    label, *_ = trained
    res = predict_cli(*run_flags(trained), "--write_property", "pw", "--where", "n.year >= 2005 AND n.title <> 'x;y'")
    assert res.returncode == 0, res.stderr[-1500:]
    got = client.read(f"MATCH (n:`{label}`) RETURN count(n.pw) AS w, sum(CASE WHEN n.year >= 2005 THEN 1 ELSE 0 END) AS y, "
                      "sum(CASE WHEN n.pw IS NOT NULL AND n.year < 2005 THEN 1 ELSE 0 END) AS wrong")[0]
    assert got["w"] == got["y"] > 0 and got["wrong"] == 0
    for bad, expected in [("n.year > 1; MATCH (m) DETACH DELETE m", "';'"),
                          ("n.year > 1 SET n.pb = 1", "SET is not allowed"),
                          ("true CALL { MATCH (m) DELETE m }", "is not allowed"),
                          ("n.year >>> 3", "is not a valid predicate"),
                          ("n.`features` IS NOT NULL", "backticks")]:
        res = predict_cli(*run_flags(trained), "--write_property", "pb", "--where", bad)
        assert res.returncode == 2 and expected in res.stderr and res.stderr.strip().count("\n") == 0, res.stderr
    assert client.read(f"MATCH (n:`{label}`) WHERE n.pb IS NOT NULL RETURN count(n) AS c")[0]["c"] == 0


def test_bad_requests_are_one_line(trained) -> None:
    res = predict_cli("--run_name", "no_such_run_x", "--log_dir", str(trained[4] / "logs"))
    assert res.returncode == 1 and "no run 'no_such_run_x'" in res.stderr
    res = predict_cli(*run_flags(trained), "--write_property", "category")
    assert res.returncode == 2 and "stores or was built from" in res.stderr and res.stderr.strip().count("\n") == 0


def test_in_memory_run_writes_predictions_to_a_file(tmp_path: Path) -> None:
    run = "mem_pred"
    train_in_memory_cora(tmp_path, run, "--fanouts", FULL, "--num_layers", "2", "--hidden_channels", "32",
                         "--batch_size", "256")
    out = tmp_path / "pred.npz"
    res = predict_cli("--run_name", run, "--log_dir", str(tmp_path / "logs"), "--output", str(out), "--write_proba", "p")
    assert res.returncode == 0 and str(out) in res.stdout, res.stderr[-2000:]
    ds = load_dataset("cora")
    with np.load(out) as z:
        assert np.array_equal(z["ids"], np.arange(ds.num_nodes)) and z["proba"].shape == (ds.num_nodes, ds.num_classes)
        acc = float((z["pred"][ds.test_idx] == ds.y[ds.test_idx]).mean())
    assert acc == pytest.approx(last_epoch(tmp_path / "logs", run)["test_acc"], abs=1e-9)
    res = predict_cli("--run_name", run, "--log_dir", str(tmp_path / "logs"), "--where", "n.x > 1")
    assert res.returncode == 2 and "applies to Neo4j runs" in res.stderr


@pytest.mark.slow
def test_ladybug_run_writes_predictions_into_its_database_file(tmp_path: Path) -> None:
    """A Ladybug run's predictions land in the .npz and as columns of its node table; a re-run with
    other flags overwrites only the columns it names (x, y, split and the other columns unchanged)."""
    from src.ladybugdb.client import LadybugClient

    db, run = tmp_path / "cora.lbdb", "lb_pred"
    res = subprocess.run([sys.executable, str(REPO / "loaders" / "load_into_neo4j.py"), "--backend", "ladybug",
                          "--dataset", "cora", "--ladybug_path", str(db)], capture_output=True, text=True,
                         timeout=TIMEOUT, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    res = subprocess.run([sys.executable, str(REPO / "main-ladybug-backend.py"), "--dataset", "cora", "--ladybug_path",
                          str(db), "--epochs", "1", "--fanouts", FULL, "--num_layers", "2", "--hidden_channels", "32",
                          "--batch_size", "256", "--run_name", run, "--log_dir", str(tmp_path / "logs"),
                          "--checkpoint_dir", str(tmp_path / "ckpt")], capture_output=True, text=True,
                         timeout=TIMEOUT, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]

    def table() -> dict[str, list]:
        with LadybugClient(db) as c:
            cols = [r[1] for r in c.execute("CALL table_info('cora') RETURN *")]
            rows = c.execute(f"MATCH (n:cora) RETURN {', '.join(f'n.{k}' for k in cols)} ORDER BY n.id")
        return {k: [r[j] for r in rows] for j, k in enumerate(cols)}

    before = table()
    out = tmp_path / "pred.npz"
    res = predict_cli("--run_name", run, "--log_dir", str(tmp_path / "logs"), "--output", str(out),
                      "--write_proba", "lb_proba")
    assert res.returncode == 0 and "predicted_class, lb_proba to 2708 :cora nodes" in res.stdout, res.stderr[-2000:]
    first = table()
    assert all(first[k] == before[k] for k in before)  # the dataset's own columns are untouched
    ds = load_dataset("cora")
    with np.load(out) as z:
        assert first["predicted_class"] == z["pred"].tolist()
        np.testing.assert_allclose(np.asarray(first["lb_proba"]), z["proba"], rtol=1e-6)
    pred = np.asarray(first["predicted_class"])
    acc = float((pred[ds.test_idx] == ds.y[ds.test_idx]).mean())
    assert acc == pytest.approx(last_epoch(tmp_path / "logs", run)["test_acc"], abs=1e-9)
    res = predict_cli("--run_name", run, "--log_dir", str(tmp_path / "logs"), "--output", str(out),
                      "--write_property", "lb_class", "--write_embedding", "lb_emb")
    assert res.returncode == 0, res.stderr[-2000:]
    second = table()
    assert all(second[k] == first[k] for k in first)  # predicted_class and lb_proba stay as they were
    assert second["lb_class"] == first["predicted_class"] and len(second["lb_emb"][0]) == 32
    res = predict_cli("--run_name", run, "--log_dir", str(tmp_path / "logs"), "--write_property", "split")
    assert res.returncode == 2 and "column the dataset stores" in res.stderr
