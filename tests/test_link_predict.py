"""predict.py on a --task link run against the real local Neo4j and the real cora graph: the top-k links it
writes as relationships equal a direct computation from the checkpoint, a killed write-back resumes writing
each link once, a changed request replaces only its own relationships, the user's relationship types are
refused, pairs from a read-only query or a file are scored, and bad input is one line each."""
from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from src.core.edge_split import EdgeSplitSpec
from src.data.sources import load_dataset
from src.in_memory.full_graph import FullGraphBackend
from src.neo4jdb.edge_split import write_edge_split
from src.train.checkpoint import CHECKPOINT_FILE
from src.train.link_model import build_link_model
from tests.conftest import REPO
from tests.subprocs import TIMEOUT, predict_cli, train_in_memory_cora

FULL = [200, 200]  # above cora's largest degree (168): whole neighbourhoods, so embeddings do not depend on batching
K = 5
CHUNKS = -(-2708 // 128)  # the run's batch size: query nodes per written chunk


@pytest.fixture(scope="module")
def trained(loaded_dataset, client, tmp_path_factory):
    """pytest_cora with its 0.85/0.05/0.10 edge split, a 1-epoch link run (MLP decoder); yields (schema, run, tmp)."""
    ds, schema, record = loaded_dataset("cora")
    write_edge_split(client, record, EdgeSplitSpec(), progress=False)
    tmp = tmp_path_factory.mktemp("linkrun")
    run = f"lp_{uuid.uuid4().hex[:8]}"
    res = subprocess.run([sys.executable, str(REPO / "main-neo4j-backend.py"), "--dataset", schema.dataset, "--task", "link",
                          "--decoder", "mlp", "--epochs", "1", "--fanouts", ",".join(map(str, FULL)), "--num_layers", "2",
                          "--hidden_channels", "32", "--batch_size", "128", "--lr", "0.01", "--run_name", run,
                          "--log_dir", str(tmp / "logs"), "--checkpoint_dir", str(tmp / "ckpt")],
                         capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp)
    assert res.returncode == 0, res.stderr[-2000:]
    yield schema, run, tmp
    for job in client.read("MATCH (j:GnnPrediction) WHERE j.run = $run RETURN j.key AS k, j.rel_type AS t", run=run):
        client.run_autocommit(f"MATCH ()-[r:`{job['t']}`]->() CALL (r) {{ DELETE r }} IN TRANSACTIONS OF 10000 ROWS")
        client.write("MATCH (b:GnnLoadBatch {dataset: $k}) DELETE b", k=job["k"])
        client.write("MATCH (j:GnnPrediction {key: $k}) DELETE j", k=job["k"])


def user_data_checksum(client, label: str, rel_type: str) -> str:
    """Hash of the dataset's relationships (ends, properties) and of its nodes' ids, keys, labels and splits."""
    rels = client.read(f"MATCH (a:`{label}`)-[r:`{rel_type}`]->(b:`{label}`) RETURN elementId(r) AS e, a.id AS u, "
                       "b.id AS v, properties(r) AS p ORDER BY e")
    nodes = client.read(f"MATCH (n:`{label}`) RETURN n.id AS i, labels(n) AS l, keys(n) AS k, n.y AS y, n.split AS s, "
                        "n.x AS x, n.nbrs AS a ORDER BY i")
    return hashlib.sha256(repr([list(r.values()) for r in rels + nodes]).encode()).hexdigest()


def run_flags(trained) -> list[str]:
    _, run, tmp = trained
    return ["--run_name", run, "--log_dir", str(tmp / "logs")]


@pytest.fixture(scope="module")
def direct(trained):
    """(decoder, [N, H] embeddings, neighbour sets) computed from the checkpoint in memory, without predict.py."""
    _, run, tmp = trained
    config = next(json.loads(x) for x in (tmp / "logs" / run / "rank0.jsonl").read_text().splitlines()
                  if json.loads(x)["event"] == "run_start")["config"]
    ds = load_dataset("cora")
    backend = FullGraphBackend(ds, fanouts=FULL, batch_size=512, num_loader_threads=0)
    backend.normalize_features(config["normalize_features"])
    model = build_link_model("sage", ds.num_features, 32, 2, 0.0, 1, "mlp")
    model.load_state_dict(torch.load(tmp / "ckpt" / run / CHECKPOINT_FILE, weights_only=True)["model"])
    model.eval()
    emb = torch.zeros(ds.num_nodes, 32)
    with torch.no_grad():
        for batch in backend.make_loader(torch.arange(ds.num_nodes), shuffle=False, seed=0):
            emb[batch.n_id[:batch.batch_size]] = model.embed(batch)
    src, dst = np.asarray(ds.edge_index)
    linked = [set() for _ in range(ds.num_nodes)]
    for u, v in zip(src.tolist(), dst.tolist()):
        linked[u].add(v)
        linked[v].add(u)
    return model.decoder, emb, linked


def direct_top_k(direct, k: int, include_neighbours: bool) -> tuple[np.ndarray, np.ndarray]:
    decoder, emb, linked = direct
    n = len(emb)
    with torch.no_grad():
        logits = torch.stack([decoder(emb[u].expand(n, -1), emb) for u in range(n)]).numpy()
    for u in range(n):
        logits[u, u] = -np.inf
        if not include_neighbours:
            logits[u, list(linked[u])] = -np.inf
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return order, 1 / (1 + np.exp(-np.take_along_axis(logits, order, 1).astype(np.float64)))


def written(client, schema, rel_type: str) -> list[dict]:
    return client.read(f"MATCH (a:`{schema.label}`)-[r:`{rel_type}`]->(b:`{schema.label}`) "
                       f"RETURN a.`{schema.id_prop}` AS u, b.`{schema.id_prop}` AS v, r.score AS s, r.rank AS k "
                       "ORDER BY u, k")


def as_arrays(rows: list[dict], n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    dst, score = np.full((n, k), -1), np.zeros((n, k))
    for r in rows:
        dst[r["u"], r["k"] - 1], score[r["u"], r["k"] - 1] = r["v"], r["s"]
    return dst, score


def assert_same_top_k(got_dst, got_score, want_dst, want_score) -> None:
    """Scores equal per rank; candidates equal except where the direct scores (one rank beyond k included) tie
    within float noise (the written embeddings come through Neo4j's batches, the direct ones from memory)."""
    k = got_dst.shape[1]
    np.testing.assert_allclose(got_score, want_score[:, :k], atol=1e-5)
    differ = got_dst != want_dst[:, :k]
    assert differ.mean() < 0.01, differ.sum()  # ties only: a handful of places at most
    gaps = np.abs(np.diff(want_score, axis=1, prepend=np.inf))
    near_tie = (gaps[:, :k] < 1e-5) | (gaps[:, 1:] < 1e-5)
    assert not (differ & ~near_tie).any(), np.argwhere(differ & ~near_tie)[:5]


@pytest.mark.parametrize("include", [False, True])
def test_written_top_k_equal_a_direct_computation_from_the_checkpoint(client, trained, direct, include) -> None:
    schema = trained[0]
    rel = "PL_INCL" if include else "PL"
    before = user_data_checksum(client, schema.label, schema.rel_type)
    res = predict_cli(*run_flags(trained), "--top_k", str(K), "--write_relationship", rel,
                      *(["--include_neighbours"] if include else []))
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"wrote {2708 * K:,} :{rel} relationships" in res.stdout, res.stdout
    rows = written(client, schema, rel)
    got_dst, got_score = as_arrays(rows, 2708, K)
    want_dst, want_score = direct_top_k(direct, K + 1, include)
    assert_same_top_k(got_dst, got_score, want_dst, want_score)
    linked = direct[2]
    on_edges = sum(r["v"] in linked[r["u"]] for r in rows)
    assert (on_edges > 0) if include else (on_edges == 0)
    assert all(r["u"] != r["v"] for r in rows)
    assert user_data_checksum(client, schema.label, schema.rel_type) == before  # the dataset's own data is untouched


def test_killed_write_back_resumes_writing_each_link_once(client, trained) -> None:
    schema, run, _ = trained
    key = f"links:{run}:PK"
    proc = subprocess.Popen([sys.executable, str(REPO / "predict.py"), *run_flags(trained), "--top_k", str(K),
                             "--write_relationship", "PK", "--no_progress"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline, n = time.time() + 180, 0
    while time.time() < deadline:
        n = client.read("MATCH (b:GnnLoadBatch {dataset: $k}) RETURN count(b) AS c", k=key)[0]["c"]
        if n >= 2 or proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert 0 < n < CHUNKS, n
    partial = client.count_relationships("PK")
    assert 0 < partial < 2708 * K
    res = predict_cli(*run_flags(trained), "--top_k", str(K), "--write_relationship", "PK")
    assert res.returncode == 0 and "already written by an interrupted run" in res.stdout, res.stdout + res.stderr[-1500:]
    markers = client.read("MATCH (b:GnnLoadBatch {dataset: $k}) RETURN count(b) AS c, sum(b.rows) AS r, "
                          "count(DISTINCT b.idx) AS d", k=key)[0]
    assert (markers["c"], markers["r"], markers["d"]) == (CHUNKS, 2708 * K, CHUNKS)
    twice = client.read("MATCH (a)-[r:PK]->(b) WITH a, b, count(r) AS c WHERE c > 1 RETURN count(*) AS n")[0]["n"]
    assert twice == 0 and client.count_relationships("PK") == 2708 * K
    # the same links as an uninterrupted write-back
    assert predict_cli(*run_flags(trained), "--top_k", str(K), "--write_relationship", "PU").returncode == 0
    key_of = lambda rows: sorted((r["u"], r["v"], r["k"]) for r in rows)  # noqa: E731
    assert key_of(written(client, schema, "PK")) == key_of(written(client, schema, "PU"))


def test_a_changed_request_replaces_only_its_own_relationships(client, trained) -> None:
    schema = trained[0]
    assert predict_cli(*run_flags(trained), "--top_k", "3", "--write_relationship", "PR").returncode == 0
    assert client.count_relationships("PR") == 2708 * 3
    before = user_data_checksum(client, schema.label, schema.rel_type)
    others = client.count_relationships("PU")
    res = predict_cli(*run_flags(trained), "--top_k", "2", "--where", "n.id < 100", "--write_relationship", "PR")
    assert res.returncode == 0 and "already written" not in res.stdout, res.stderr[-1500:]
    rows = written(client, schema, "PR")
    assert len(rows) == 200 and {r["u"] for r in rows} == set(range(100)) and {r["k"] for r in rows} == {1, 2}
    assert user_data_checksum(client, schema.label, schema.rel_type) == before
    assert client.count_relationships("PU") == others  # another job's links stay


def test_pairs_from_a_read_only_query_and_from_a_file_are_scored(client, trained, direct, tmp_path) -> None:
    schema = trained[0]
    query = (f"MATCH (a:{schema.label})-[r:{schema.rel_type}]->(b:{schema.label}) WHERE r.split = 'test' "
             "RETURN a, b.id ORDER BY a.id, b.id")
    res = predict_cli(*run_flags(trained), "--pairs_query", query, "--write_relationship", "PS")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = client.read(f"MATCH (a:{schema.label})-[r:PS]->(b) RETURN a.id AS u, b.id AS v, r.score AS s, "
                       "r.rank AS k ORDER BY u, v")
    pairs = np.asarray([(r["u"], r["v"]) for r in rows])
    assert len(rows) == 2 * 527 and all(r["k"] is None for r in rows)  # test pairs, stored both ways
    decoder, emb, _ = direct
    with torch.no_grad():
        want = torch.sigmoid(decoder(emb[pairs[:, 0]], emb[pairs[:, 1]]).double()).numpy()
    np.testing.assert_allclose([r["s"] for r in rows], want, atol=1e-5)
    csv = tmp_path / "pairs.csv"
    csv.write_text("source,target\n" + "\n".join(f"{u},{v}" for u, v in pairs[:50]) + "\n")
    res = predict_cli(*run_flags(trained), "--pairs_file", str(csv), "--write_relationship", "PF")
    assert res.returncode == 0, res.stderr[-2000:]
    got = client.read(f"MATCH (a:{schema.label})-[r:PF]->(b) RETURN a.id AS u, b.id AS v, r.score AS s ORDER BY u, v")
    np.testing.assert_allclose([r["s"] for r in got], want[:50], atol=1e-5)


def test_relationship_types_of_the_user_are_refused(client, trained) -> None:
    schema, run, _ = trained
    user_type = f"USER_{uuid.uuid4().hex[:8]}"
    client.write(f"CREATE (:UserThing_{user_type})-[:{user_type}]->(:UserThing_{user_type})")
    try:
        res = predict_cli(*run_flags(trained), "--write_relationship", user_type)
        assert res.returncode == 2 and res.stderr.strip().count("\n") == 0, res.stderr
        assert "already has 1 relationships of that type that predict.py did not write" in res.stderr
        assert "--write_relationship PREDICTED_" in res.stderr  # names the fix
        assert client.count_relationships(user_type) == 1
        res = predict_cli(*run_flags(trained), "--write_relationship", schema.rel_type)
        assert res.returncode == 2 and "is the relationship type of dataset" in res.stderr
    finally:
        client.write(f"MATCH (n:UserThing_{user_type}) DETACH DELETE n")


@pytest.mark.parametrize(("extra", "expected"), [
    (["--pairs_query", "MATCH (a:pytest_cora) CREATE (a)-[:X]->(a) RETURN a, a"], "CREATE is not allowed"),
    (["--pairs_query", "MATCH (a:pytest_cora) RETURN a, a; MATCH (m) DETACH DELETE m"], "cannot hold ';'"),
    (["--pairs_query", "CALL db.labels() YIELD label RETURN label, label"], "CALL is not allowed"),
    (["--pairs_query", "MATCH (a:pytest_cora) RETURN a LIMIT 3"], "returns 1 columns"),
    (["--pairs_query", "MATCH (a:pytest_cora) RETURN a.id, a.idd LIMIT 3"], "returned NoneType"),
    (["--pairs_query", "MATCH (a:pytest_cora) RETURN a.id, a.id + 5000 LIMIT 3"], "ids outside 0..2707"),
    (["--pairs_query", "MATCH (a:pytest_cora) RETURN a.id AS u, a.id AS v LIMIT 0"], "non-empty list"),
    (["--pairs_query", "MATCH (a:pytest_cora RETURN a, a"], "not a valid read query"),
    (["--top_k", "0"], "--top_k must be >= 1"),
    (["--write_relationship", "bad-name"], "--write_relationship"),
    (["--write_proba", "p"], "writes node predictions"),
    (["--pairs_file", "x.txt"], "give a .npy [P, 2] array or a .csv"),
    (["--pairs_file", "x.csv", "--top_k", "3"], "do not apply to --pairs_query/--pairs_file"),
])
def test_bad_link_requests_are_one_line(client, trained, extra, expected) -> None:
    res = predict_cli(*run_flags(trained), *extra)
    assert res.returncode == 2 and expected in res.stderr and res.stderr.strip().count("\n") == 0, res.stderr
    assert client.count_relationships("PREDICTED_LINK") == 0


@pytest.mark.slow  # keeps CI under 25 min; RUN_SLOW=1 runs it
def test_in_memory_link_run_writes_top_k_to_a_file(tmp_path: Path) -> None:
    run = "mem_links"
    train_in_memory_cora(tmp_path, run, "--task", "link", "--fanouts", "5,5", "--num_layers", "2",
                         "--hidden_channels", "16", "--batch_size", "512")
    out = tmp_path / "links.npz"
    res = predict_cli("--run_name", run, "--log_dir", str(tmp_path / "logs"), "--output", str(out), "--top_k", "4")
    assert res.returncode == 0 and str(out) in res.stdout, res.stderr[-2000:]
    ds = load_dataset("cora")
    linked = set(zip(*np.asarray(ds.edge_index).tolist()))
    with np.load(out) as z:
        assert len(z["src"]) == 4 * ds.num_nodes and np.array_equal(np.bincount(z["rank"]), [0] + [ds.num_nodes] * 4)
        assert not any((u, v) in linked or (v, u) in linked or u == v for u, v in zip(z["src"], z["dst"]))
        assert np.all(np.diff(z["score"].reshape(-1, 4), axis=1) <= 0)
    res = predict_cli("--run_name", run, "--log_dir", str(tmp_path / "logs"), "--write_relationship", "X")
    assert res.returncode == 2 and "applies to Neo4j runs" in res.stderr
