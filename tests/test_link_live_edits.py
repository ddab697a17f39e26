"""A stored edge split stays current under plain-Cypher edits (src/neo4jdb/edge_split.py, the plugin's LiveSplit).

Against the real local Neo4j and cora loaded under a name of its own, with its 0.85/0.05/0.10 split: a
relationship pair created after the split is a training edge (both directions, as cora is stored), one
created between a held-out pair joins that pair's part, a deleted training pair leaves ``nbrs_train``, a
deleted test pair leaves the split (its count read back one lower, never stale). After the edits every
node's ``nbrs_train`` equals the relationships without held-out marks, and training batches on every
sampling path see the new edge, never the deleted one and never a held-out pair.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.sampler import NegativeSampling

from src.core.edge_split import EdgeSplitSpec, pair_keys
from src.core.schema import GraphSchema
from src.data.loading import LoadConfig
from src.data.sources import load_dataset
from src.neo4jdb.access import Neo4jAccess
from src.neo4jdb.backend import Neo4jBackend
from src.neo4jdb.edge_split import read_edge_split, stored_split, write_edge_split
from src.neo4jdb.live_edits import watches_writes
from src.neo4jdb.load.ensure import ensure_loaded
from src.neo4jdb.load.records import delete_dataset, require_loaded
from tests.backend_checks import global_edges, sample

DATASET = "link_edits_cora"
SPEC = EdgeSplitSpec(0.85, 0.05, 0.10, seed=0)
ALL = [1000, 1000]  # above every cora degree: whole neighbourhoods
PATHS = {"adjacency": Neo4jAccess(use_procedures=True, adj_prop="nbrs"),
         "projection": Neo4jAccess(use_procedures=True, adj_prop="nbrs", projection_mb=64.0),
         "cypher": Neo4jAccess.cypher()}


@pytest.fixture(scope="module")
def edited(client):
    """The dataset, split, then edited with Cypher; yields (schema, record, split before, the edits)."""
    schema = GraphSchema.for_dataset(DATASET)
    if not watches_writes(client, schema):
        pytest.fail("the local server's plugin does not watch writes; restart it: bash jobs/neo4j.sh stop && start")
    delete_dataset(client, schema.dataset, schema.label, schema.rel_type)
    ds = load_dataset("cora")
    ensure_loaded(client, ds, schema, LoadConfig(progress=False))
    record = require_loaded(client, schema.dataset)
    write_edge_split(client, record, SPEC, progress=False)
    before, _ = read_edge_split(client, record, SPEC)
    linked = set(pair_keys(ds.edge_index[0], ds.edge_index[1], ds.num_nodes).tolist())
    rng = np.random.default_rng(7)
    new = next((int(a), int(b)) for a, b in rng.integers(0, ds.num_nodes, (100, 2))
               if a != b and int(pair_keys([a], [b], ds.num_nodes)[0]) not in linked)
    gone_train, gone_test, joins_val = (tuple(int(i) for i in before.train[5]), tuple(int(i) for i in before.test[3]),
                                        tuple(int(i) for i in before.val[2]))
    s = schema
    match = f"MATCH (a:`{s.label}` {{id: $u}}), (b:`{s.label}` {{id: $v}}) "
    client.write(match + f"CREATE (a)-[:`{s.rel_type}`]->(b), (b)-[:`{s.rel_type}`]->(a)", u=new[0], v=new[1])
    client.write(match + f"CREATE (a)-[:`{s.rel_type}`]->(b)", u=joins_val[0], v=joins_val[1])
    delete = f"MATCH (a:`{s.label}` {{id: $u}})-[r:`{s.rel_type}`]-(b:`{s.label}` {{id: $v}}) DELETE r"
    client.write(delete, u=gone_train[0], v=gone_train[1])
    one_way = f"MATCH (a:`{s.label}` {{id: $u}})-[r:`{s.rel_type}`]->(b:`{s.label}` {{id: $v}}) DELETE r"
    client.write(one_way, u=gone_test[0], v=gone_test[1])
    mid = stored_split(client, s.dataset)  # one direction of the test pair left: still a test pair
    client.write(one_way, u=gone_test[1], v=gone_test[0])
    yield schema, record, before, dict(new=new, gone_train=gone_train, gone_test=gone_test, joins_val=joins_val, mid=mid)
    delete_dataset(client, schema.dataset, schema.label, schema.rel_type)


def test_counts_follow_the_edits_and_the_split_is_not_stale(client, edited) -> None:
    schema, record, before, e = edited
    assert e["mid"]["num_test"] == len(before.test)
    after, _ = read_edge_split(client, record, SPEC)  # raises when stale or when counts disagree with the marks
    assert (len(after.train), len(after.val), len(after.test)) == (len(before.train), len(before.val), len(before.test) - 1)
    n = record.num_nodes
    key = lambda p: int(pair_keys([p[0]], [p[1]], n)[0])  # noqa: E731
    assert key(e["new"]) in set(pair_keys(after.train[:, 0], after.train[:, 1], n).tolist())
    assert key(e["gone_train"]) not in set(pair_keys(after.train[:, 0], after.train[:, 1], n).tolist())
    assert key(e["gone_test"]) not in set(pair_keys(after.test[:, 0], after.test[:, 1], n).tolist())
    s = schema
    marks = client.read(f"MATCH (a:`{s.label}` {{id: $u}})-[r:`{s.rel_type}`]-(b:`{s.label}` {{id: $v}}) "
                        "RETURN collect(r.split) AS m", u=e["joins_val"][0], v=e["joins_val"][1])[0]["m"]
    assert marks == ["val"] * 3  # the pair's two relationships and the new one, kept together
    assert stored_split(client, s.dataset)["rel_count"] == client.count_relationships(s.rel_type)


def test_every_training_copy_equals_the_relationships_without_held_out_marks(client, edited) -> None:
    s = edited[0]
    rows = client.read(f"MATCH (n:`{s.label}`) OPTIONAL MATCH (n)<-[r:`{s.rel_type}`]-(m:`{s.label}`) "
                       "WHERE NOT coalesce(r.split, '') IN ['val', 'test'] "
                       "RETURN n.id AS id, n.nbrs_train AS t, collect(m.id) AS want ORDER BY id")
    wrong = [r["id"] for r in rows if sorted(np.frombuffer(r["t"] or b"", "<i8").tolist()) != sorted(r["want"])]
    assert not wrong, wrong[:10]


@pytest.mark.parametrize("path", list(PATHS))
def test_training_batches_see_the_edit_and_never_a_held_out_edge(client, edited, path) -> None:
    schema, record, _, e = edited
    backend = Neo4jBackend(client, record, fanouts=ALL, batch_size=64, num_loader_threads=0, access=PATHS[path])
    split = backend.use_edge_split(SPEC)
    n = record.num_nodes
    sampler = backend._make_sampler(0)
    edges = global_edges(sample(sampler, np.asarray([e["new"][0], e["gone_train"][0], e["gone_test"][0]])))
    assert (e["new"][1], e["new"][0]) in edges  # the new training edge is a message-passing edge
    assert (e["gone_train"][1], e["gone_train"][0]) not in edges
    held = split.held_out_keys()
    marked = client.read(f"MATCH (a:`{schema.label}`)-[r:`{schema.rel_type}`]->(b) WHERE r.split IN ['val', 'test'] "
                         "RETURN a.id AS u, b.id AS v")
    assert np.array_equal(np.unique(pair_keys([r["u"] for r in marked], [r["v"] for r in marked], n)), held)
    pairs = torch.from_numpy(split.train[np.random.default_rng(1).permutation(len(split.train))[:640]])
    seen = 0
    for batch in backend.make_link_loader(pairs, seed=1, neg_sampling=NegativeSampling("binary", 1.0)):
        src, dst = batch.n_id[batch.edge_index].numpy()
        assert not np.isin(pair_keys(src, dst, n), held).any(), "a held-out pair was a message-passing edge"
        seen += len(src)
    assert seen > 10_000
