"""Edits of a graph registered in place, made with plain Cypher on the user's OWN properties, and new
nodes (issue 18, item 2), against the real local Neo4j.

The graph is created through the driver (float-list ``features``, string ``category``, a ``part``
property with train/val/test, no id); after each edit the oracle is a fresh in-memory build read
from the user's properties and relationships alone (never from the registration's copies): the next
sampled batch (fanouts above every degree) and fetched rows must equal it on every path (procedures
from the store or the projection, the Cypher fallback, with and without the feature cache). Bad
edits fail their transaction with one line and change nothing; ``--refresh`` adds new nodes at a
cost proportional to them; split and feature edits during a 2-rank run reach its next epoch.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass

import numpy as np
import pytest
from neo4j import exceptions as neo4j_exc

from src.client import Neo4jClient
from src.core.csr import CSRGraph
from src.core.ports import free_port
from src.core.record import DatasetRecord
from src.core.sampling import CSRNeighborSampler
from src.data.loading import LoadConfig
from src.feature_store import Neo4jFeatureStore
from src.graph_sampler import Neo4jNeighborSampler
from src.neo4jdb.access import Neo4jAccess
from src.neo4jdb.live_edits import SplitWatch
from src.neo4jdb.load.records import changed_since, require_loaded
from src.neo4jdb.register.run import register, registration_record, unregister
from src.neo4jdb.register.spec import RegisterSpec
from tests.backend_checks import global_edges, sample
from tests.conftest import REPO
from tests.native_graph import create_native_graph, delete_graph
from tests.subprocs import communicate_all
from tests.test_faults import Launch, epochs_of

pytestmark = pytest.mark.neo4j

N, F, CLASSES = 600, 16, ["Theory", "Case_Based", "Genetic_Algorithms", "Neural_Networks"]
ALL = [1000, 1000]
PARTS = np.array(["train", "val", "test"])
# the procedures walk relationships only for direction "in"; for this undirected graph Neo4jAccess.resolve
# takes Cypher when there is no adjacency copy, so these are every path it can take
PATHS = {"procedures": dict(use_procedures=True, adjacency=True, projection_mb=0.0),
         "projection": dict(use_procedures=True, adjacency=True, projection_mb=64.0),
         "cypher": dict(use_procedures=False, adjacency=False, projection_mb=0.0)}


@dataclass
class Graph:
    spec: RegisterSpec
    label: str
    rel: str
    client: Neo4jClient

    @property
    def record(self) -> DatasetRecord:
        return DatasetRecord.from_properties(registration_record(self.client, self.spec.name))

    def access(self, path: str) -> Neo4jAccess:
        p = PATHS[path]
        return Neo4jAccess(p["use_procedures"], self.record.schema.adj_prop if p["adjacency"] else None,
                           p["projection_mb"])

    def fresh(self) -> tuple[CSRGraph, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The graph built anew from the user's own properties and relationships (dense ids as assigned)."""
        s, rec = self.record.schema, self.record
        rows = self.client.read(f"MATCH (n:`{self.label}`) WHERE n.`{s.id_prop}` IS NOT NULL RETURN n.`{s.id_prop}` AS i, "
                                "n.features AS f, n.category AS c, n.part AS p")
        n = max(r["i"] for r in rows) + 1
        assert n == rec.num_nodes == len(rows)
        vocab = {c: k for k, c in enumerate(rec.properties["class_values"])}
        x, y, part = np.zeros((n, F), np.float32), np.full(n, -1, np.int64), np.full(n, None, object)
        for r in rows:
            x[r["i"]], y[r["i"]], part[r["i"]] = r["f"], vocab[r["c"]], r["p"]
        e = np.asarray([tuple(r) for r in self.client.read(
            f"MATCH (a:`{self.label}`)-[:`{self.rel}`]->(b:`{self.label}`) WHERE a.`{s.id_prop}` IS NOT NULL AND "
            f"b.`{s.id_prop}` IS NOT NULL RETURN a.`{s.id_prop}`, b.`{s.id_prop}`")], np.int64).T
        csr = CSRGraph.from_edge_index(np.concatenate([e, e[::-1]], axis=1), n)  # undirected
        return csr, x, y, {p: np.flatnonzero(part == p) for p in PARTS}


def check_every_path(g: Graph, seeds: np.ndarray, samplers: dict, stores: dict) -> None:
    csr, x, y, splits = g.fresh()
    want = sample(CSRNeighborSampler(csr, ALL, seed=3), seeds)
    for path, sampler in samplers.items():
        got = sample(sampler, seeds)
        assert got.num_sampled_nodes == want.num_sampled_nodes, path
        assert set(got.node.tolist()) == set(want.node.tolist()) and global_edges(got) == global_edges(want), path
    ids = np.arange(len(y))
    for key, fs in stores.items():
        gx, gy = fs.fetch(ids)
        assert np.array_equal(gx.view(np.uint32), x.view(np.uint32)) and np.array_equal(gy, y), key
    s = g.record.schema
    for split, members in splits.items():
        got = g.client.read(f"MATCH (n:`{g.label}`) WHERE n.`{s.split_prop}` = $s RETURN n.`{s.id_prop}` AS i", s=split)
        assert sorted(r["i"] for r in got) == members.tolist(), split


@pytest.fixture(scope="module")
def graph(client: Neo4jClient) -> Graph:
    tag = uuid.uuid4().hex[:8]
    label, rel = f"EdPaper_{tag}", f"EDCITES_{tag}"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, F)).astype(np.float32)
    y = rng.integers(0, len(CLASSES), N)
    u, v = rng.integers(0, N, 3 * N), rng.integers(0, N, 3 * N)
    eids = create_native_graph(client, label, rel, x, y, np.stack([u, v])[:, u != v])
    client.write("UNWIND $rows AS r MATCH (n) WHERE elementId(n) = r[0] SET n.part = r[1]",
                 rows=[[e, str(PARTS[k % 3] if k % 10 else "train")] for k, e in enumerate(eids)])
    spec = RegisterSpec(name=f"edits_{tag}", label=label, rel_type=rel, features=("features",), target="category",
                        split_prop="part", direction="undirected", batch_nodes=250)
    register(client, spec, LoadConfig(progress=False))
    g = Graph(spec, label, rel, client)
    yield g
    unregister(client, registration_record(client, spec.name))
    delete_graph(client, label)


def test_edits_of_the_users_own_properties_reach_every_path(client: Neo4jClient, graph: Graph) -> None:
    rng = np.random.default_rng(1)
    rec = graph.record
    samplers = {p: Neo4jNeighborSampler(client, rec.schema, ALL, seed=1, access=graph.access(p)) for p in PATHS}
    stores = {(p, mb): Neo4jFeatureStore.from_record(client, rec, cache_mb=mb, access=graph.access(p))
              for p in PATHS for mb in (0.0, 1.0) if not (p == "cypher" and mb)}
    for fs in stores.values():
        fs.warm_cache("degree")
    seeds = rng.choice(N, 12, replace=False)
    check_every_path(graph, seeds, samplers, stores)  # before (fills caches, builds the projection)
    changed = np.unique(np.concatenate([rng.choice(N, 30, replace=False), seeds[:4]]))
    client.write(f"UNWIND $rows AS r MATCH (n:`{graph.label}` {{`{rec.schema.id_prop}`: r[0]}}) "
                 "SET n.features = r[1], n.category = r[2]",
                 rows=[[int(i), rng.standard_normal(F).tolist(), CLASSES[int(rng.integers(0, 4))]] for i in changed])
    client.write(f"UNWIND $rows AS r MATCH (n:`{graph.label}` {{`{rec.schema.id_prop}`: r[0]}}) SET n.part = r[1]",
                 rows=[[int(i), str(PARTS[k % 3])] for k, i in enumerate(rng.choice(N, 40, replace=False))])
    client.write(f"UNWIND $ids AS i MATCH (n:`{graph.label}` {{`{rec.schema.id_prop}`: i}}) REMOVE n.part",
                 ids=rng.choice(N, 5, replace=False).tolist())
    client.write(f"UNWIND $pairs AS p MATCH (a:`{graph.label}` {{`{rec.schema.id_prop}`: p[0]}}), "
                 f"(b:`{graph.label}` {{`{rec.schema.id_prop}`: p[1]}}) CREATE (a)-[:`{graph.rel}`]->(b)",
                 pairs=[[int(rng.integers(0, N)), int(s)] for s in seeds])
    client.write(f"MATCH (:`{graph.label}` {{`{rec.schema.id_prop}`: $s}})-[r:`{graph.rel}`]-() WITH r LIMIT 3 DELETE r",
                 s=int(seeds[5]))
    check_every_path(graph, seeds, samplers, stores)
    assert any(fs.freshness.dropped for fs in stores.values() if fs.cache is not None)


@pytest.mark.parametrize("edit,message", [
    ("SET n.features = [1.0, 2.0]", "holds 2 values, the dataset has 16 features"),
    ("SET n.features = ['a', 'b']", "not a list of numbers"),
    ("SET n.features = [x IN range(1, 16) | 0.0/0.0]", "NaN or infinite"),
    ("SET n.category = 'Quantum'", "class 'Quantum' of category is not one of the 4 classes"),
    ("SET n.part = 'holdout'", "holds holdout, not train/val/test"),
    ("REMOVE n.features", "its feature property features was removed"),
    ("REMOVE n.category", "its target property category was removed"),
])
def test_a_bad_edit_fails_its_transaction_with_one_line(client: Neo4jClient, graph: Graph, edit: str,
                                                        message: str) -> None:
    s = graph.record.schema
    read = (f"MATCH (n:`{graph.label}` {{`{s.id_prop}`: 7}}) RETURN n.features AS f, n.category AS c, n.part AS p, "
            f"n.`{s.x_prop}` AS x, n.`{s.y_prop}` AS y, n.`{s.split_prop}` AS sp")
    before = dict(client.read(read)[0])
    with pytest.raises(neo4j_exc.ClientError) as err:
        client.write(f"MATCH (n:`{graph.label}` {{`{s.id_prop}`: 7}}) {edit}")
    text = err.value.message
    assert text.startswith("gnn: :") and message in text and "\n" not in text, text
    assert dict(client.read(read)[0]) == before  # rolled back: the user's value and the copies


def test_scalar_features_and_an_unlabelled_node(client: Neo4jClient) -> None:
    """Several numeric scalar properties as features, --missing_target unlabelled, a random split."""
    tag = uuid.uuid4().hex[:8]
    label, rel = f"Acct_{tag}", f"PAYS_{tag}"
    client.write(f"UNWIND range(0, 39) AS i CREATE (:`{label}` {{age: i, income: i * 1.5, score: -i, k: i % 3}})")
    client.write(f"MATCH (a:`{label}`), (b:`{label}`) WHERE b.age = (a.age + 1) % 40 CREATE (a)-[:`{rel}`]->(b)")
    spec = RegisterSpec(name=f"acct_{tag}", label=label, rel_type=rel, features=("age", "income", "score"), target="k",
                        random_split=RegisterSpec.parse_split("random:0.5,0.25,0.25")[1], missing_target="unlabelled")
    register(client, spec, LoadConfig(progress=False))
    rec = require_loaded(client, spec.name)
    fs = Neo4jFeatureStore.from_record(client, rec)
    s = rec.schema
    try:
        node = client.read(f"MATCH (n:`{label}` {{age: 5}}) RETURN n.`{s.id_prop}` AS i, n.`{s.split_prop}` AS sp")[0]
        i = node["i"]
        client.write(f"MATCH (n:`{label}` {{age: 5}}) SET n.income = 100, n.k = 2")
        x, y = fs.fetch(np.array([i]))
        assert x[0].tolist() == [5.0, 100.0, -5.0] and y.tolist() == [2]
        assert client.read(f"MATCH (n:`{label}` {{age: 5}}) RETURN n.`{s.split_prop}` AS sp")[0]["sp"] == node["sp"]
        client.write(f"MATCH (n:`{label}` {{age: 5}}) REMOVE n.k")  # unlabelled: class -1, in no split
        assert fs.fetch(np.array([i]))[1].tolist() == [-1]
        client.write(f"MATCH (n:`{label}` {{age: 5}}) SET n.k = 1")  # labelled again: a drawn split is not redrawn
        assert fs.fetch(np.array([i]))[1].tolist() == [1]
        assert client.read(f"MATCH (n:`{label}` {{age: 5}}) RETURN n.`{s.split_prop}` AS sp")[0]["sp"] is None
        with pytest.raises(neo4j_exc.ClientError, match="holds a non-number"):
            client.write(f"MATCH (n:`{label}` {{age: 6}}) SET n.income = 'rich'")
    finally:
        unregister(client, registration_record(client, spec.name))
        delete_graph(client, label)


def cli_refresh(name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "loaders" / "register_graph.py"), "--name", name, "--refresh",
                           "--no_progress"], capture_output=True, text=True, timeout=300, cwd=REPO)


def test_refresh_adds_new_nodes_at_a_cost_proportional_to_them(client: Neo4jClient, graph: Graph) -> None:
    s, before = graph.record.schema, graph.record
    new = [{"f": [float(k)] * F, "c": CLASSES[k % 4], "p": str(PARTS[k % 3]), "to": [k, 100 + k]} for k in range(5)]
    client.write(f"UNWIND $rows AS r CREATE (n:`{graph.label}` {{features: r.f, category: r.c, part: r.p, fresh: true}}) "
                 f"WITH n, r UNWIND r.to AS t MATCH (m:`{graph.label}` {{`{s.id_prop}`: t}}) CREATE (n)-[:`{graph.rel}`]->(m)",
                 rows=new)
    client.write(f"MATCH (a:`{graph.label}` {{fresh: true}}), (b:`{graph.label}` {{fresh: true}}) WHERE a.category = "
                 f"'{CLASSES[0]}' AND b.category = '{CLASSES[1]}' CREATE (a)-[:`{graph.rel}`]->(b)")
    seeds = np.array([0, 1, 100, 101, 300])
    sampler = Neo4jNeighborSampler(client, s, ALL, seed=1, access=graph.access("procedures"))
    check_every_path(graph, seeds, {"procedures": sampler}, {})  # not part of the dataset yet
    bad = client.write(f"CREATE (n:`{graph.label}` {{features: [1.0], category: 'Theory'}}) RETURN elementId(n) AS e")[0]["e"]
    res = cli_refresh(graph.spec.name)
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "1 new" in res.stderr and "not 16 numbers" in res.stderr and "nothing was written" in res.stderr
    assert graph.record.num_nodes == before.num_nodes
    client.write("MATCH (n) WHERE elementId(n) = $e DELETE n", e=bad)
    res = cli_refresh(graph.spec.name)
    assert res.returncode == 0, res.stderr[-2000:]
    owners = 5 + 10  # the new nodes and the ten they point to (undirected: each is the other's neighbour)
    assert f"5 new nodes, {owners} adjacency lists rewritten" in res.stdout, res.stdout
    after = graph.record
    assert after.num_nodes == before.num_nodes + 5
    assert "--refresh` added 5 nodes" in changed_since(client, before)  # a run started before stops, naming it
    ids = client.read(f"MATCH (n:`{graph.label}` {{fresh: true}}) RETURN n.`{s.id_prop}` AS i ORDER BY i")
    assert [r["i"] for r in ids] == list(range(before.num_nodes, before.num_nodes + 5))
    assert after.num_edges - before.num_edges == 2 * (10 + 2)  # sampled edges the new relationships add, both ways
    seeds = np.concatenate([seeds, np.arange(before.num_nodes, after.num_nodes)])
    samplers = {p: Neo4jNeighborSampler(client, s, ALL, seed=1, access=graph.access(p)) for p in PATHS}
    check_every_path(graph, seeds, samplers, {p: Neo4jFeatureStore.from_record(client, after, access=graph.access(p))
                                              for p in PATHS})
    again = cli_refresh(graph.spec.name)
    assert again.returncode == 0 and "no new nodes: nothing to do" in again.stdout


def test_split_watch_sees_only_split_changes(client: Neo4jClient, graph: Graph) -> None:
    s = graph.record.schema
    watch = SplitWatch(client, s)
    splits = {p: m for p, m in graph.fresh()[3].items()}
    assert watch.changed(splits) is False
    client.write(f"MATCH (n:`{graph.label}` {{`{s.id_prop}`: 3}}) SET n.title = 'renamed'")  # not a split change
    assert watch.changed(splits) is False
    node = int(splits["test"][0])
    client.write(f"MATCH (n:`{graph.label}` {{`{s.id_prop}`: $i}}) SET n.part = 'train'", i=node)
    assert watch.changed(splits) is True


@pytest.mark.slow
def test_split_and_feature_edits_during_a_two_rank_run(client: Neo4jClient, graph: Graph, tmp_path) -> None:
    """Two ranks train (feature cache on); during epoch 1 a third of the test nodes become train and
    rows change. The run goes on; from epoch 2 every rank trains on the new train split (more steps,
    a note in the log) and its caches dropped the changed rows."""
    s = graph.record.schema
    port, run = free_port(), "split_edit"
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    flags = ["--dataset", graph.spec.name, "--epochs", "4", "--fanouts", "5,5", "--num_layers", "2",
             "--hidden_channels", "16", "--batch_size", "16", "--num_loader_threads", "1", "--seed", "1",
             "--cache_mb", "1", "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "ckpt"),
             "--run_name", run, "--num_nodes", "2", "--master_addr", "127.0.0.1", "--master_port", str(port)]
    with open(out, "ab") as fo, open(err, "ab") as fe:
        procs = [subprocess.Popen([sys.executable, "main-neo4j-backend.py", *flags, "--node_rank", str(k)], cwd=REPO,
                                  stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, start_new_session=k == 0,
                                  env={**os.environ, "PYTHONWARNINGS": "ignore"}) for k in range(2)]
    job = Launch(procs[0], out, err, tmp_path / "logs", run)
    try:
        job.wait_for_step(0, 1)
        test_nodes = graph.fresh()[3]["test"]
        moved = test_nodes[::3]
        client.write(f"UNWIND $ids AS i MATCH (n:`{graph.label}` {{`{s.id_prop}`: i}}) SET n.part = 'train', "
                     "n.features = [v IN n.features | v + 1.0]", ids=moved.tolist())
        results = communicate_all(procs, timeout=600)
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
    assert [r.returncode for r in results] == [0, 0], err.read_text()[-3000:]
    train_after = len(graph.fresh()[3]["train"])
    for rank in range(2):
        steps = {}
        for e in job.events(rank):
            if e["event"] == "step":
                steps[e["epoch"]] = steps.get(e["epoch"], 0) + 1
        assert steps[4] == -(-train_after // 32) > steps[1], steps  # 2 ranks x batch 16
        assert [e["epoch"] for e in epochs_of(job.events(rank))] == [1, 2, 3, 4]
    log = (tmp_path / "logs" / run / "rank0.log").read_text()
    assert f"the split changed in the database: {train_after} train seeds" in log
