"""loaders/register_graph.py against the real local Neo4j: a graph created with plain Cypher (float-list
features, string categories, no id property, own label and relationship type, extra properties) is
registered in place, trained on 2 ranks, sampled on every path, exported and compared with the
loader's copy; user data stays unchanged; bad input is one line with nothing written; a killed
registration resumes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

import tests.backend_checks as checks
from src.core.csr import CSRGraph
from src.core.errors import UsageError, UserError
from src.data.loading import LoadConfig
from src.data.sources import load_dataset
from src.feature_store import Neo4jFeatureStore
from src.graph_sampler import Neo4jNeighborSampler
from src.neo4jdb.access import Neo4jAccess
from src.neo4jdb.load.ensure import ensure_loaded
from src.neo4jdb.load.records import require_loaded
from src.core.schema import GraphSchema
from src.neo4jdb.register.run import register, registration_record, unregister
from src.neo4jdb.register.spec import RegisterSpec
from tests.conftest import REPO
from tests.native_graph import CATEGORIES, create_native_graph, delete_graph, one_direction, user_data_checksum
from tests.subprocs import communicate_all

QUIET = LoadConfig(progress=False)
TIMEOUT = 300


def spec_for(name: str, label: str, rel: str, **kw) -> RegisterSpec:
    base = dict(name=name, label=label, rel_type=rel, features=("features",), target="category",
                split_prop=None, random_split=RegisterSpec.parse_split("random:0.6,0.2,0.2")[1], direction="undirected",
                stratify=True, seed=3)
    return RegisterSpec(**{**base, **kw})


def cli(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "loaders" / "register_graph.py"), *args, "--no_progress"],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def flags(spec: RegisterSpec) -> list[str]:
    return spec.command().split()[2:]


@pytest.fixture(scope="module")
def cora_npz():
    return load_dataset("cora")


@pytest.fixture(scope="module")
def native(client, cora_npz):
    """Cora as a user would hold it in Neo4j, registered once; yields (spec, record, checksum before)."""
    tag = uuid.uuid4().hex[:8]
    label, rel = f"Paper_{tag}", f"CITES_{tag}"
    create_native_graph(client, label, rel, np.asarray(cora_npz.x), cora_npz.y, one_direction(cora_npz.edge_index))
    before = user_data_checksum(client, label, rel)
    spec = spec_for(f"papers_{tag}", label, rel)
    res = cli(*flags(spec))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "registered in" in res.stdout and "2708 nodes" in res.stdout
    yield spec, require_loaded(client, spec.name), before
    unregister(client, registration_record(client, spec.name))
    delete_graph(client, label)


def test_registered_in_place_user_data_unchanged_and_rerun_is_a_noop(client, native) -> None:
    spec, rec, before = native
    assert user_data_checksum(client, spec.label, spec.rel_type) == before
    assert rec.complete and rec.num_nodes == 2708 and rec.num_features == 1433 and rec.num_classes == 7
    assert list(rec.properties["class_values"]) == sorted(CATEGORIES)  # deterministic vocabulary
    assert rec.num_edges == 2 * one_direction(load_dataset("cora").edge_index).shape[1]  # undirected: both ways
    ids = client.read(f"MATCH (n:`{spec.label}`) RETURN collect(n.`{rec.schema.id_prop}`) AS i")[0]["i"]
    assert sorted(ids) == list(range(2708))
    # class index follows the sorted vocabulary; the random split is stratified
    rows = client.read(f"MATCH (n:`{spec.label}`) RETURN n.category AS c, n.`{rec.schema.y_prop}` AS y, "
                       f"n.`{rec.schema.split_prop}` AS s")
    assert all(sorted(CATEGORIES)[r["y"]] == r["c"] for r in rows)
    for c in CATEGORIES:
        mine = [r["s"] for r in rows if r["c"] == c]
        assert abs(mine.count("train") / len(mine) - 0.6) < 0.02
    res = cli(*flags(spec))
    assert res.returncode == 0 and "already registered" in res.stdout and "nothing to do" in res.stdout
    assert user_data_checksum(client, spec.label, spec.rel_type) == before


def test_two_rank_training_on_the_registered_graph(client, native, tmp_path: Path) -> None:
    spec, rec, before = native
    port = 29000 + os.getpid() % 1000
    common = ["--dataset", spec.name, "--epochs", "3", "--lr", "0.01", "--fanouts", "10,5", "--num_layers", "2",
              "--hidden_channels", "32", "--batch_size", "256", "--run_name", "reg2", "--log_dir", str(tmp_path / "logs"),
              "--checkpoint_dir", str(tmp_path / "ckpt"), "--num_nodes", "2", "--master_addr", "127.0.0.1",
              "--master_port", str(port)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen([sys.executable, str(REPO / "main-neo4j-backend.py"), *common, "--node_rank", str(r)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(2)]
    results = communicate_all(procs, TIMEOUT)
    assert [r.returncode for r in results] == [0, 0], results[0].stderr[-2000:] + results[1].stderr[-2000:]
    assert "test accuracy at best val" in results[0].stderr
    acc = float(results[0].stderr.split("test accuracy at best val ")[1].split(",")[0])
    assert acc > 0.6
    assert user_data_checksum(client, spec.label, spec.rel_type) == before


@pytest.fixture(scope="module")
def exported(client, native, tmp_path_factory):
    """The registered graph exported to .npz and loaded through the loader as a second copy."""
    spec, rec, _ = native
    path = tmp_path_factory.mktemp("export") / f"{spec.name}_copy.npz"
    res = cli(*flags(spec), "--export", str(path))
    assert res.returncode == 0 and "exported" in res.stdout, res.stderr[-2000:]
    ds = load_dataset(str(path))
    schema = GraphSchema.for_dataset(f"{spec.name}_loaded")
    ensure_loaded(client, ds, schema, QUIET)
    yield ds, require_loaded(client, schema.dataset)
    from src.neo4jdb.load.records import delete_dataset
    delete_dataset(client, schema.dataset, schema.label, schema.rel_type)


PATHS = {"cypher": lambda s: Neo4jAccess.cypher(),
         "adjacency": lambda s: Neo4jAccess(use_procedures=True, adj_prop=s.adj_prop),
         "projection": lambda s: Neo4jAccess(use_procedures=True, adj_prop=s.adj_prop, projection_mb=64.0)}


@pytest.mark.parametrize("path", PATHS)
def test_every_path_samples_the_registered_graph_and_reads_its_rows(client, native, exported, path: str) -> None:
    spec, rec, _ = native
    ds, _ = exported
    csr = CSRGraph.from_edge_index(ds.edge_index, ds.num_nodes)
    big = int(csr.degree(np.arange(ds.num_nodes)).max())
    access = PATHS[path](rec.schema)
    got, mem = checks.check_forced_sample_equals_in_memory(
        Neo4jNeighborSampler(client, rec.schema, [big, big], seed=0, access=access), ds, csr)
    assert torch.equal(got.node, mem.node) and torch.equal(got.col, mem.col)  # stored order = the export's
    checks.check_features_bit_exact(Neo4jFeatureStore.from_record(client, rec, access=access), ds)
    checks.check_cache_full(lambda mb: Neo4jFeatureStore.from_record(client, rec, cache_mb=mb, access=access), ds)


def test_parity_registered_in_place_vs_exported_then_loaded(client, native, exported, tmp_path: Path) -> None:
    spec, rec, _ = native
    ds, loaded = exported
    seeds = np.arange(0, ds.num_nodes, 11)
    for s, r in ((rec.schema, rec), (loaded.schema, loaded)):
        assert Neo4jAccess.resolve(client, s, r).use_adjacency
    a = checks.sample(Neo4jNeighborSampler(client, rec.schema, [10, 5], seed=7,
                                           access=Neo4jAccess.resolve(client, rec.schema, rec)), seeds)
    b = checks.sample(Neo4jNeighborSampler(client, loaded.schema, [10, 5], seed=7,
                                           access=Neo4jAccess.resolve(client, loaded.schema, loaded)), seeds)
    assert torch.equal(a.node, b.node) and torch.equal(a.row, b.row) and torch.equal(a.col, b.col)
    accs = []
    for name in (spec.name, loaded.name):
        res = subprocess.run([sys.executable, str(REPO / "main-neo4j-backend.py"), "--dataset", name, "--epochs", "3",
                              "--fanouts", "10,5", "--num_layers", "2", "--hidden_channels", "64", "--batch_size", "256",
                              "--run_name", f"parity_{name}", "--log_dir", str(tmp_path / "logs"),
                              "--checkpoint_dir", str(tmp_path / "ckpt")],
                             capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
        accs.append(float(res.stderr.split("test accuracy at best val ")[1].split(",")[0]))
    assert abs(accs[0] - accs[1]) <= 0.015, accs


def test_partitioned_baseline_partitions_the_export(exported, tmp_path: Path) -> None:
    ds, _ = exported
    res = subprocess.run([sys.executable, str(REPO / "partition_graph.py"), "--dataset", ds.meta["path"],
                          "--num_partitions", "2", "--output_dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=TIMEOUT, cwd=tmp_path)
    assert res.returncode == 0 and "partitioned" in res.stdout, res.stderr[-2000:]
    meta = json.loads(next(tmp_path.glob("*/2-parts/meta.json")).read_text())
    assert sum(p["nodes"] for p in meta["partitions"]) == ds.num_nodes and meta["num_edges"] == ds.num_edges


def test_killed_registration_resumes_and_finishes(client, cora_npz) -> None:
    tag = uuid.uuid4().hex[:8]
    label, rel = f"Paper_{tag}", f"CITES_{tag}"
    n = 2000
    x = np.asarray(cora_npz.x[:n])
    keep = (cora_npz.edge_index < n).all(axis=0)
    create_native_graph(client, label, rel, x, cora_npz.y[:n], one_direction(cora_npz.edge_index[:, keep]))
    spec = spec_for(f"killed_{tag}", label, rel, direction="in", batch_nodes=50)
    try:
        proc = subprocess.Popen([sys.executable, str(REPO / "loaders" / "register_graph.py"), *flags(spec),
                                 "--batch_nodes", "50", "--workers", "1", "--no_progress"],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            done = client.read("MATCH (b:GnnLoadBatch {dataset: $d, kind: 'rows'}) RETURN count(b) AS c", d=spec.name)
            if done[0]["c"] >= 3:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        partial = registration_record(client, spec.name)
        assert partial is not None and not partial["complete"]
        res = cli(*flags(spec), "--batch_nodes", "50")
        assert res.returncode == 0 and "resumed" in res.stdout, res.stderr[-2000:]
        rec = require_loaded(client, spec.name)
        s = rec.schema
        rows = client.read(f"MATCH (n:`{label}`) RETURN n.`{s.id_prop}` AS i, n.features AS f, n.`{s.x_prop}` AS x, "
                           f"size(n.`{s.adj_prop}`) / 8 AS d, COUNT {{ ()-[:`{rel}`]->(n) }} AS indeg")
        assert sorted(r["i"] for r in rows) == list(range(n))
        assert all(np.array_equal(np.frombuffer(r["x"], "<f4"), np.asarray(r["f"], np.float32)) for r in rows)
        assert all(r["d"] == r["indeg"] for r in rows)  # direction in: the in-neighbours
        markers = client.read("MATCH (b:GnnLoadBatch {dataset: $d}) RETURN b.kind AS k, count(*) AS c, sum(b.rows) AS r",
                              d=spec.name)
        assert {m["k"]: (m["c"], m["r"]) for m in markers} == {"rows": (40, n), "adjacency": (40, n)}
    finally:
        rec = registration_record(client, spec.name)
        if rec:
            unregister(client, rec)
        delete_graph(client, label)


# -- bad input: one line naming the problem and the fix, nothing written --------------------------
def _small(client, label: str, rel: str, rows: list[dict]) -> None:
    client.write(f"UNWIND $rows AS r CREATE (n:`{label}`) SET n = r", rows=rows)
    client.write(f"MATCH (a:`{label}`), (b:`{label}`) WHERE a.k + 1 = b.k CREATE (a)-[:`{rel}`]->(b)")


def _good_rows(n: int = 12) -> list[dict]:
    return [{"k": i, "features": [float(i), 1.0, 0.5], "category": ["A", "B"][i % 2],
             "part": ["train", "val", "test"][i % 3]} for i in range(n)]


BAD = {
    "unknown label": ({}, dict(label="NoSuchLabel_x"), "unknown label 'NoSuchLabel_x'"),
    "unknown type": ({}, dict(rel_type="NO_SUCH_TYPE_x"), "unknown relationship type 'NO_SUCH_TYPE_x'"),
    "missing features": ({3: {"features": None}, 5: {"features": None}}, {}, "2 of 12 :"),
    "unequal length": ({4: {"features": [1.0, 2.0]}}, {}, "unequal length"),
    "non-numeric": ({4: {"features": ["a", "b", "c"]}}, {}, "non-numeric"),
    "one class": ({i: {"category": "A"} for i in range(12)}, {}, "only one class ('A')"),
    "unknown split": ({2: {"part": "holdout"}}, dict(split_prop="part", random_split=None, stratify=False), "'holdout' (1 nodes)"),
    "NaN features": ({1: {"features": [float("nan"), 1.0, 1.0]}}, {}, "NaN or infinite"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_writes_nothing(client, case: str) -> None:
    edits, overrides, expected = BAD[case]
    tag = uuid.uuid4().hex[:8]
    label, rel = f"Bad_{tag}", f"BAD_{tag}"
    rows = _good_rows()
    for i, change in edits.items():
        rows[i] = {**rows[i], **change}
    _small(client, label, rel, [{k: v for k, v in r.items() if v is not None} for r in rows])
    spec = spec_for(f"bad_{tag}", overrides.pop("label", label), overrides.pop("rel_type", rel), **overrides)
    before = user_data_checksum(client, label, rel)
    try:
        with pytest.raises(UserError) as err:
            register(client, spec, QUIET)
        assert expected in str(err.value) and "\n" not in str(err.value)
        assert registration_record(client, spec.name) is None
        assert user_data_checksum(client, label, rel) == before
        assert not client.read(f"MATCH (n:`{label}`) WHERE any(k IN keys(n) WHERE k STARTS WITH 'gnn_') "
                               "RETURN n LIMIT 1")
    finally:
        delete_graph(client, label)


@pytest.mark.parametrize("flag,value", [("--node_label", "Pa`per"), ("--rel_type", "CI'TES"), ("--features", "f\"x"),
                                        ("--name", "a b")])
def test_identifiers_with_quotes_or_backticks_are_refused_before_neo4j(flag: str, value: str) -> None:
    args = {"--name": "q", "--node_label": "Paper", "--rel_type": "CITES", "--features": "features",
            "--target": "category", "--split": "random:0.6,0.2,0.2", flag: value}
    res = cli(*[x for kv in args.items() for x in kv], "--neo4j_uri", "bolt://127.0.0.1:1")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "invalid" in res.stderr, res.stderr


def test_a_name_holding_another_dataset_is_refused(client) -> None:
    tag = uuid.uuid4().hex[:8]
    label, rel = f"Bad_{tag}", f"BAD_{tag}"
    _small(client, label, rel, _good_rows())
    name = f"taken_{tag}"
    try:
        client.write("CREATE (:GnnDataset {name: $n, label: 'Other', rel_type: 'OTHER_EDGE', method: 'unwind', "
                     "source: 'npz', complete: true})", n=name)
        res = cli(*flags(spec_for(name, label, rel)))
        assert res.returncode == 1 and "already holds dataset" in res.stderr and res.stderr.count("\n") == 1
        client.write("MATCH (d:GnnDataset {name: $n}) DELETE d", n=name)
        register(client, spec_for(name, label, rel), QUIET)
        with pytest.raises(UserError, match="already holds another registration"):
            register(client, spec_for(name, label, rel, seed=9), QUIET)
        assert register(client, spec_for(name, label, rel, seed=9), QUIET, reset=True).status == "registered"
    finally:
        rec = registration_record(client, name)
        if rec:
            unregister(client, rec)
        delete_graph(client, label)
    assert not client.read(f"MATCH (n:`{label}`) RETURN n LIMIT 1")


def test_spec_refuses_contradictory_requests() -> None:
    with pytest.raises(UsageError, match="--stratify applies"):
        spec_for("x", "L", "T", random_split=None, split_prop="part")
    with pytest.raises(UsageError, match="three fractions"):
        RegisterSpec.parse_split("random:0.9,0.9,0.1")
