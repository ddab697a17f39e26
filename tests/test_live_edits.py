"""Edits made with plain Cypher are seen by the next batch on every path (issue 18, item 2).

Against the real local Neo4j: cora is loaded under a name of its own (dense rows, so the feature
cache is used) and edited through the driver; an in-memory copy of the edited graph (:class:`Truth`)
is the oracle. Samplers and feature stores are built BEFORE each edit and asked again after it:
relationships added and deleted, feature rows and labels changed, on the procedures reading the
adjacency copy or walking relationships, from the store or the projection, the Cypher fallback,
with and without the feature cache; a node created without a dense id; and an edit committed while
a 2-rank training run is going.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest

from src.client import Neo4jClient
from src.core.codecs import DENSE, encode_features
from src.core.csr import CSRGraph
from src.core.ports import free_port
from src.core.sampling import CSRNeighborSampler
from src.core.schema import GraphSchema
from src.data.loading import LoadConfig
from src.data.sources import load_dataset
from src.feature_store import Neo4jFeatureStore
from src.graph_sampler import Neo4jNeighborSampler
from src.neo4jdb import procedures
from src.neo4jdb.access import Neo4jAccess
from src.neo4jdb.live_edits import watches_writes
from src.neo4jdb.load.ensure import ensure_loaded
from src.neo4jdb.load.records import delete_dataset, dataset_record, require_loaded
from tests.conftest import REPO
from tests.backend_checks import global_edges, sample
from tests.subprocs import communicate_all
from tests.test_faults import Launch, epochs_of
from tests.test_procedures import chained_hops, floyd_reference

pytestmark = [pytest.mark.neo4j, pytest.mark.slow]

DATASET = "live_edits_cora"
ALL = [1000, 1000]  # fanouts above every cora degree: whole two-hop neighbourhoods
PATHS = {
    "procedures+adjacency": dict(use_procedures=True, adjacency=True, projection_mb=0.0),
    "procedures+relationships": dict(use_procedures=True, adjacency=False, projection_mb=0.0),
    "projection+adjacency": dict(use_procedures=True, adjacency=True, projection_mb=64.0),
    "projection+relationships": dict(use_procedures=True, adjacency=False, projection_mb=64.0),
    "cypher": dict(use_procedures=False, adjacency=False, projection_mb=0.0),
}


@dataclass
class Truth:
    """The edited graph in memory: edges in the order a fresh build would list them, rows, labels."""

    schema: GraphSchema
    adj_prop: str
    edges: list[tuple[int, int]]
    x: np.ndarray
    y: np.ndarray
    encoding: str

    def csr(self) -> CSRGraph:
        return CSRGraph.from_edge_index(np.asarray(self.edges, dtype=np.int64).T, len(self.y))

    def access(self, path: str) -> Neo4jAccess:
        p = PATHS[path]
        return Neo4jAccess(p["use_procedures"], self.adj_prop if p["adjacency"] else None, p["projection_mb"])

    # -- edits with plain Cypher, mirrored here --------------------------------------------------------
    def add_edges(self, client: Neo4jClient, pairs: list[tuple[int, int]]) -> None:
        s = self.schema
        client.write(f"UNWIND $pairs AS p MATCH (a:`{s.label}` {{id: p[0]}}), (b:`{s.label}` {{id: p[1]}}) "
                     f"CREATE (a)-[:`{s.rel_type}`]->(b)", pairs=[list(p) for p in pairs])
        self.edges.extend(pairs)

    def delete_edges(self, client: Neo4jClient, pairs: list[tuple[int, int]]) -> None:
        s = self.schema
        client.write(f"UNWIND $pairs AS p MATCH (a:`{s.label}` {{id: p[0]}})-[r:`{s.rel_type}`]->(b:`{s.label}` {{id: p[1]}}) "
                     "WITH p, head(collect(r)) AS r DELETE r", pairs=[list(p) for p in pairs])
        for p in pairs:  # the last occurrence (the plugin's rule; the pairs chosen have one)
            del self.edges[len(self.edges) - 1 - self.edges[::-1].index(p)]

    def set_rows(self, client: Neo4jClient, ids: np.ndarray, rng: np.random.Generator) -> None:
        x = rng.standard_normal((len(ids), self.x.shape[1])).astype(np.float32)
        y = rng.integers(0, 7, len(ids))
        s = self.schema
        client.write(f"UNWIND $rows AS r MATCH (n:`{s.label}` {{id: r[0]}}) SET n.x = r[1], n.y = r[2]",
                     rows=[[int(i), b, int(c)] for i, b, c in zip(ids, encode_features(x, self.encoding), y)])
        self.x[ids], self.y[ids] = x, y

    def edit_round(self, client: Neo4jClient, rng: np.random.Generator, seeds: np.ndarray) -> np.ndarray:
        """Adds and deletes edges into ``seeds`` and changes some rows; returns the nodes whose rows changed."""
        counts = Counter(self.edges)
        into = set(seeds.tolist())
        gone = [e for e in self.edges if e[1] in into and counts[e] == 1][::3][:15]
        self.delete_edges(client, gone)
        new = [(int(u), int(v)) for u, v in zip(rng.integers(0, len(self.y), len(seeds)), seeds)]
        self.add_edges(client, new)
        changed = np.unique(np.concatenate([seeds[:5], np.asarray([u for u, _ in new[:5]])]))
        self.set_rows(client, changed, rng)
        return changed


@pytest.fixture(scope="module")
def truth(client: Neo4jClient) -> Truth:
    if not watches_writes(client, GraphSchema.for_dataset(DATASET)):
        pytest.fail("the local server's plugin does not watch writes; restart it: bash jobs/neo4j.sh stop && start")
    schema = GraphSchema.for_dataset(DATASET)
    delete_dataset(client, schema.dataset, schema.label, schema.rel_type)  # edits of an earlier run
    ds = load_dataset("cora")
    ensure_loaded(client, ds, schema, LoadConfig(progress=False, feature_format="dense"))
    record = require_loaded(client, schema.dataset)
    assert record.adjacency == schema.adj_prop and record.feature_encoding == DENSE
    edges = [tuple(e) for e in np.asarray(ds.edge_index).T.tolist()]
    return Truth(schema, record.adjacency, edges, ds.features(np.arange(ds.num_nodes)).copy(),
                 np.asarray(ds.y, dtype=np.int64).copy(), record.feature_encoding)


def assert_whole_neighbourhoods_equal(sampler, truth: Truth, seeds: np.ndarray) -> None:
    got = sample(sampler, seeds)
    want = sample(CSRNeighborSampler(truth.csr(), ALL, seed=3), seeds)
    assert got.num_sampled_nodes == want.num_sampled_nodes
    assert set(got.node.tolist()) == set(want.node.tolist())
    assert global_edges(got) == global_edges(want)


@pytest.mark.parametrize("path", list(PATHS))
def test_next_batch_samples_the_edited_graph(client: Neo4jClient, truth: Truth, path: str) -> None:
    rng = np.random.default_rng(list(PATHS).index(path))
    seeds = rng.choice(len(truth.y), 12, replace=False)
    sampler = Neo4jNeighborSampler(client, truth.schema, ALL, seed=1, access=truth.access(path))
    assert_whole_neighbourhoods_equal(sampler, truth, seeds)  # before (builds the projection)
    before = set(truth.edges)
    truth.edit_round(client, rng, seeds)
    assert set(truth.edges) != before
    assert_whole_neighbourhoods_equal(sampler, truth, seeds)  # the same sampler's next batch
    if PATHS[path]["adjacency"]:  # the copy's order is a fresh CSR's: small fanouts replay exactly
        bases = rng.integers(1, 2**31 - 1, 2)
        hops = procedures.sample_hops(client, truth.schema, seeds, [3, 2], bases, adj_prop=truth.adj_prop,
                                      projection_mb=PATHS[path]["projection_mb"])
        want = chained_hops(lambda f, st, k: floyd_reference(truth.csr(), f, st, k), seeds, [3, 2], bases)
        for (c, nb), (rc, rnb) in zip(procedures.hop_neighbours(seeds, hops), want):
            np.testing.assert_array_equal(c, rc)
            np.testing.assert_array_equal(nb, rnb)


@pytest.mark.parametrize("cache_mb", [0.0, 2.0])
@pytest.mark.parametrize("path", ["procedures+adjacency", "projection+adjacency", "cypher"])
def test_next_fetch_reads_the_edited_rows(client: Neo4jClient, truth: Truth, path: str, cache_mb: float) -> None:
    rng = np.random.default_rng(100 + int(cache_mb) + list(PATHS).index(path))
    record = require_loaded(client, truth.schema.dataset)
    fs = Neo4jFeatureStore.from_record(client, record, cache_mb=cache_mb, access=truth.access(path))
    fs.warm_cache("degree")
    ids = rng.choice(len(truth.y), 400, replace=False)
    hot = fs.cache.ids[:10] if fs.cache is not None else np.zeros(0, np.int64)
    ids = np.concatenate([ids, hot])
    x, y = fs.fetch(ids)  # rows now cached (warm-up and first use)
    assert np.array_equal(x, truth.x[ids]) and np.array_equal(y, truth.y[ids])
    changed = np.unique(np.concatenate([ids[::40], hot]))
    truth.set_rows(client, changed, rng)
    x, y = fs.fetch(ids)
    assert np.array_equal(x.view(np.uint32), truth.x[ids].view(np.uint32))
    assert np.array_equal(y, truth.y[ids])
    if cache_mb:
        assert len(hot) == 10 and fs.freshness.dropped >= len(hot)  # the cached copies of changed rows went


def test_node_without_a_dense_id_is_not_sampled_on_any_path(client: Neo4jClient, truth: Truth) -> None:
    """A node created with the dataset's label but no id (not registered yet) and joined to node v is
    not v's neighbour, nor v its, on any path, until it is part of the dataset; deleting it changes nothing."""
    s = truth.schema
    v = 7
    row = encode_features(truth.x[:1], truth.encoding)[0]
    client.write(f"MATCH (v:`{s.label}` {{id: $v}}) CREATE (n:`{s.label}` {{x: $row, y: 1, note: 'new'}}) "
                 f"CREATE (n)-[:`{s.rel_type}`]->(v) CREATE (v)-[:`{s.rel_type}`]->(n)", v=v, row=row)
    try:
        for path in PATHS:
            sampler = Neo4jNeighborSampler(client, s, ALL, seed=1, access=truth.access(path))
            assert_whole_neighbourhoods_equal(sampler, truth, np.array([v, 0]))
    finally:
        client.write(f"MATCH (n:`{s.label}` {{note: 'new'}}) DETACH DELETE n")
    sampler = Neo4jNeighborSampler(client, s, ALL, seed=1, access=truth.access("procedures+adjacency"))
    assert_whole_neighbourhoods_equal(sampler, truth, np.array([v, 0]))


def test_edit_during_a_two_rank_run_is_seen_by_later_batches(client: Neo4jClient, truth: Truth, tmp_path) -> None:
    """Two ranks train with the adjacency copy, the projection and a warmed feature cache; at epoch 2 rows of
    cached nodes change and edges come and go. The run goes on to its end, its caches drop exactly the
    changed rows they held (logged per epoch: 0 before the edit), and the server copy it samples is the edited graph."""
    port, run = free_port(), "live"
    out, err = tmp_path / "live.out", tmp_path / "live.err"
    flags = ["--dataset", DATASET, "--epochs", "10", "--fanouts", "5,5", "--num_layers", "2", "--hidden_channels", "16",
             "--batch_size", "16", "--num_loader_threads", "1", "--seed", "1", "--cache_mb", "4",
             "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "ckpt"), "--run_name", run,
             "--num_nodes", "2", "--master_addr", "127.0.0.1", "--master_port", str(port)]
    with open(out, "ab") as fo, open(err, "ab") as fe:
        procs = [subprocess.Popen([sys.executable, "main-neo4j-backend.py", *flags, "--node_rank", str(k)],
                                  cwd=REPO,
                                  stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, start_new_session=k == 0,
                                  env={**os.environ, "PYTHONWARNINGS": "ignore"}) for k in range(2)]
    job = Launch(procs[0], out, err, tmp_path / "logs", run)
    try:
        job.wait_for_step(0, 2)
        rng = np.random.default_rng(7)
        hot = np.asarray(client.read(f"CALL gnn.hotNodes($l, $t, 'id', $a, 20, 0) YIELD ids RETURN ids",
                                     l=truth.schema.label, t=truth.schema.rel_type, a=truth.adj_prop)[0]["ids"])
        hot = np.frombuffer(hot, "<i8")[:10].copy()
        truth.set_rows(client, hot, rng)
        truth.edit_round(client, rng, rng.choice(len(truth.y), 10, replace=False))
        results = communicate_all(procs, timeout=600)
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
    assert [r.returncode for r in results] == [0, 0], err.read_text()[-3000:]
    for rank in range(2):
        epochs = epochs_of(job.events(rank))
        assert [e["epoch"] for e in epochs] == list(range(1, 11))
        dropped = [e["stats"]["cache_rows_dropped"] for e in epochs]
        assert dropped[0] == 0 and dropped[-1] >= 10, dropped  # the warmed hot rows were dropped after the edit
        assert epochs[-1]["stats"]["adjacency"] is True
    sampler = Neo4jNeighborSampler(client, truth.schema, ALL, seed=1, access=truth.access("projection+adjacency"))
    assert_whole_neighbourhoods_equal(sampler, truth, rng.choice(len(truth.y), 12, replace=False))
    assert dataset_record(client, DATASET).adjacency == truth.adj_prop


def test_split_edit_of_a_loaded_dataset_reaches_the_backend(client: Neo4jClient, truth: Truth) -> None:
    """A node moved to another split with plain Cypher: the backend says so (what the loop asks before
    each epoch) and its splits read again hold it; an edit of anything else is not a split change."""
    from src.neo4jdb.backend import Neo4jBackend

    s = truth.schema
    backend = Neo4jBackend(client, require_loaded(client, s.dataset), fanouts=[5], batch_size=16,
                           num_loader_threads=1)  # not closed: it shares the module's client
    before = {p: backend.split_nodes(p).numpy().copy() for p in ("train", "val", "test")}
    assert backend.splits_changed() is False
    node = int(before["test"][0])
    client.write(f"MATCH (n:`{s.label}` {{id: $i}}) SET n.note = 'x'", i=node)
    assert backend.splits_changed() is False
    client.write(f"MATCH (n:`{s.label}` {{id: $i}}) SET n.split = 'train'", i=node)
    try:
        assert backend.splits_changed() is True
        after = backend.reread_splits()
        assert node in after["train"].tolist() and node not in after["test"].tolist()
        assert len(after["train"]) == len(before["train"]) + 1
    finally:
        client.write(f"MATCH (n:`{s.label}` {{id: $i}}) SET n.split = 'test' REMOVE n.note", i=node)
