"""A heterogeneous dataset in a real Neo4j: load, record, samples, rows, bad input.

The Cypher sampler must give exactly the in-memory sampler's samples (same seed, every hop and
relationship type), the rows per type must be bit for bit the source's, a fanout of 0 never
samples its type, and a re-run of the load is a no-op.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.loader import NodeLoader
from torch_geometric.sampler import NodeSamplerInput

from src.client import Neo4jClient
from src.core.errors import UserError
from src.core.hetero_fanouts import parse_fanouts
from src.core.hetero_sampling import HeteroCSR, HeteroCSRSampler
from src.core.hetero_stores import HeteroEdgeMetadata, InMemoryHeteroRows
from src.data.hetero import HeteroGraphDataset, NodeTypeData
from src.data.loading import LoadConfig
from src.data.synthetic_hetero import generate_hetero
from src.neo4jdb.hetero.load import delete_hetero, ensure_hetero_loaded
from src.neo4jdb import procedures
from src.neo4jdb.hetero.rows import Neo4jHeteroRows
from src.neo4jdb.hetero.sampler import HETERO_PROCEDURE, Neo4jHeteroSampler
from src.neo4jdb.hetero.schema import require_hetero
from tests.backend_checks import same_hetero_samples

FANOUTS = "writes:3,2;written_by:2,2;cites:4,3;publishes:1,1"


@pytest.fixture(scope="module")
def hetero(client: Neo4jClient):
    ds = generate_hetero(num_nodes=1500, avg_degree=6, num_features=8, num_classes=3, seed=11)
    ensure_hetero_loaded(client, ds, LoadConfig(progress=False, reset=True))
    yield ds, require_hetero(client, ds.name)
    delete_hetero(client, ds.name)


def test_record_describes_the_types_and_rerun_is_a_noop(client: Neo4jClient, hetero) -> None:
    ds, schema = hetero
    assert [t.name for t in schema.node_types] == ["paper", "author", "venue"]
    assert {t.name: (t.num_nodes, t.num_features, t.labelled) for t in schema.node_types} == {
        t: (d.num_nodes, d.num_features, d.y is not None) for t, d in ds.node_types.items()}
    assert schema.edge_types == ds.edge_types and schema.target_type == "paper"
    assert ensure_hetero_loaded(client, ds, LoadConfig(progress=False)).status == "already loaded"


def typed_projections(client: Neo4jClient, schema) -> dict[str, str]:
    """State of the server's per-relationship-type projections of ``schema``'s dataset, by relationship type."""
    return {p["key"].split("/typed:")[1].split("/")[0]: p["state"] for p in procedures.projections(client)
            if "/typed:" in p["key"] and p["key"].split("/")[1] in {t.label for t in schema.node_types}}


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("path", ["cypher", "store", "projection"])
def test_neo4j_samples_equal_in_memory_samples(client: Neo4jClient, hetero, seed: int, path: str) -> None:
    """The Cypher fallback, the procedure over the store and over its per-type projection: one sample."""
    ds, schema = hetero
    procedure = path != "cypher"
    if procedure and HETERO_PROCEDURE not in procedures.installed(client):
        pytest.fail("the server's gnn.* plugin has no gnn.sampleHeteroHops: restart it with the current plugin")
    fanouts = parse_fanouts(FANOUTS, ds.edge_types)
    memory = HeteroCSRSampler(HeteroCSR.from_edges(ds.edges, {t: d.num_nodes for t, d in ds.node_types.items()}),
                              fanouts, seed=seed)
    neo4j = Neo4jHeteroSampler(client, schema, fanouts, seed=seed, use_procedures=procedure,
                               projection_mb=64.0 if path == "projection" else 0.0)
    a = same_hetero_samples(memory, neo4j)
    assert sum(a.num_sampled_edges[("paper", "cites", "paper")]) > 0
    if procedure:
        assert neo4j.queries == 1  # every hop and relationship type in one call
    if path == "projection":  # every relationship type sampled from its own in-heap CSR
        assert typed_projections(client, schema) == {r.rel_type: "ready" for r in schema.rel_types}


@pytest.mark.parametrize("path", ["cypher", "store", "projection"])
def test_reverse_types_sample_the_relationships_backwards_as_the_in_memory_sampler(client: Neo4jClient, hetero,
                                                                                    path: str) -> None:
    """``rev_<rel>`` types (nothing stored: the same relationships from the other side) on every path."""
    ds, schema = hetero
    ds, schema = ds.with_reverse(), schema.with_reverse()
    assert schema.edge_types == ds.edge_types and ("author", "rev_written_by", "paper") in ds.edge_types
    fanouts = parse_fanouts(FANOUTS + ";rev_writes:3,2;rev_cites:2,2;rev_publishes:2,1", ds.edge_types,
                            default=[1, 1])
    memory = HeteroCSRSampler(HeteroCSR.from_edges(ds.edges, {t: d.num_nodes for t, d in ds.node_types.items()}),
                              fanouts, seed=3)
    neo4j = Neo4jHeteroSampler(client, schema, fanouts, seed=3, use_procedures=path != "cypher",
                               projection_mb=64.0 if path == "projection" else 0.0)
    inputs = NodeSamplerInput(input_id=None, node=torch.arange(0, 120, 3), input_type="paper")
    a, b = memory.sample_from_nodes(inputs), neo4j.sample_from_nodes(inputs)
    assert all(torch.equal(a.node[t], b.node[t]) for t in a.node)
    for e in a.row:
        assert torch.equal(a.row[e], b.row[e]) and torch.equal(a.col[e], b.col[e]), e
    assert sum(a.num_sampled_edges[("paper", "rev_publishes", "venue")]) > 0  # venues now receive messages
    if path == "projection":
        assert sum("/typed-reversed:" in p["key"] and p["state"] == "ready" for p in procedures.projections(client)) \
            == len(ds.edge_types) // 2
    rows = Neo4jHeteroRows(client, schema, use_procedures=path != "cypher", degrees=True)
    want = InMemoryHeteroRows(ds, degrees=True)
    assert rows.num_features == want.num_features == {"paper": 8, "author": 4, "venue": 2}
    ids = np.arange(0, ds.node_types["venue"].num_nodes, 3)
    assert torch.equal(rows.fetch("venue", ids, True, False)[0], want.fetch("venue", ids, True, False)[0])


def test_fanout_zero_is_never_sent_or_sampled(client: Neo4jClient, hetero) -> None:
    ds, schema = hetero
    for procedure in (False, True):
        sampler = Neo4jHeteroSampler(client, schema, parse_fanouts("cites:0,0;publishes:1,0", ds.edge_types,
                                                                   default=[2, 2]), seed=1, use_procedures=procedure)
        out = sampler.sample_from_nodes(NodeSamplerInput(None, torch.arange(50), input_type="paper"))
        assert out.num_sampled_edges[("paper", "cites", "paper")] == [0, 0]
        assert len(out.row[("paper", "cites", "paper")]) == 0
        assert out.num_sampled_edges[("venue", "publishes", "paper")][1] == 0


def test_rows_per_type_bit_exact_through_node_loader(client: Neo4jClient, hetero) -> None:
    ds, schema = hetero
    num_nodes = {t: d.num_nodes for t, d in ds.node_types.items()}
    fanouts = parse_fanouts(FANOUTS, ds.edge_types)
    for use_procedures in (True, False):
        rows = Neo4jHeteroRows(client, schema, use_procedures=None if use_procedures else False)
        stores = (rows, HeteroEdgeMetadata(num_nodes, {e: v.shape[1] for e, v in ds.edges.items()}))
        loader = NodeLoader(stores, node_sampler=Neo4jHeteroSampler(client, schema, fanouts, seed=2),
                            input_nodes=("paper", torch.arange(40)), batch_size=20)
        batch = next(iter(loader))
        paper = ds.node_types["paper"]
        ids = batch["paper"].n_id.numpy()
        assert batch["paper"].x.numpy().view(np.uint32).tobytes() == paper.x[ids].view(np.uint32).tobytes()
        assert torch.equal(batch["paper"].y, torch.from_numpy(paper.y[ids]))
        assert "x" not in batch["author"] and len(batch["author"].n_id) > 0


def test_rows_bit_exact_through_the_per_type_cache_and_a_cypher_edit_is_seen_at_once(client: Neo4jClient,
                                                                                      hetero) -> None:
    ds, schema = hetero
    rows = Neo4jHeteroRows(client, schema, cache_mb=1.0, projection_mb=16.0)
    assert set(rows.stores) == {"paper"}  # authors and venues have no stored rows to cache
    store, paper = rows.stores["paper"], ds.node_types["paper"]
    assert store.cache is not None and store.freshness is not None and store.cache.capacity >= paper.num_nodes
    ids = np.r_[np.arange(0, 300, 3), [6, 6]]
    for _ in range(2):  # misses read and admitted, then hits
        x, y = rows.fetch("paper", ids, True, True)
        assert x.numpy().view(np.uint32).tobytes() == paper.x[ids].view(np.uint32).tobytes()
        assert torch.equal(y, torch.from_numpy(paper.y[ids]))
    assert store.cache.hit_rate >= 0.49 and len(store.cache) == len(np.unique(ids))
    label, edited = schema.node("paper").label, np.full(paper.num_features, 7.5, np.float32)
    client.write(f"MATCH (n:`{label}` {{id: 9}}) SET n.x = $x, n.y = 2", x=edited.tobytes())
    try:  # the cached row 9 is dropped before the next fetch reads: it sees the edit, row 12 stays cached
        x, y = rows.fetch("paper", np.array([9, 12]), True, True)
        assert x[0].numpy().tobytes() == edited.tobytes() and int(y[0]) == 2
        assert x[1].numpy().tobytes() == paper.x[12].tobytes() and rows.cache_stats()["paper"]["dropped"] == 1
    finally:
        client.write(f"MATCH (n:`{label}` {{id: 9}}) SET n.x = $x, n.y = $y", x=paper.x[9].tobytes(),
                     y=int(paper.y[9]))
    assert rows.fetch("paper", np.array([9]), True, False)[0].numpy().tobytes() == paper.x[9].tobytes()


def test_typed_relationship_created_or_deleted_with_cypher_is_sampled_by_the_next_batch(client: Neo4jClient,
                                                                                       hetero) -> None:
    ds, schema = hetero
    writes = schema.rel(("author", "writes", "paper"))
    sampler = Neo4jHeteroSampler(client, schema, parse_fanouts("writes:-1", ds.edge_types, default=[0]), seed=0,
                                 use_procedures=True, projection_mb=64.0)

    def authors_of_paper_5() -> list[int]:
        out = sampler.sample_from_nodes(NodeSamplerInput(None, torch.tensor([5]), input_type="paper"))
        return sorted(out.node["author"][out.row[("author", "writes", "paper")]].tolist())

    before = authors_of_paper_5()
    assert typed_projections(client, schema)[writes.rel_type] == "ready"
    newcomer = next(a for a in range(ds.node_types["author"].num_nodes) if a not in before)
    author, paper = schema.node("author").label, schema.node("paper").label
    client.write(f"MATCH (a:`{author}` {{id: $a}}), (p:`{paper}` {{id: 5}}) "
                 f"CREATE (a)-[:`{writes.rel_type}` {{gnn_test: true}}]->(p)", a=newcomer)
    try:
        assert authors_of_paper_5() == sorted(before + [newcomer])
        assert typed_projections(client, schema)[writes.rel_type] == "ready"  # rebuilt after the write
    finally:
        client.write(f"MATCH ()-[r:`{writes.rel_type}` {{gnn_test: true}}]->() DELETE r")
    assert authors_of_paper_5() == before


def test_projection_over_budget_falls_back_to_the_store_and_over_the_cap_is_one_line(client: Neo4jClient,
                                                                                     hetero) -> None:
    from src.core.errors import UsageError
    from src.neo4jdb.backend import check_projection_cap

    ds, schema = hetero
    client.write("CREATE (:GnnTestWrite)")  # any write drops the projections built so far
    client.write("MATCH (t:GnnTestWrite) DELETE t")
    fanouts = parse_fanouts(FANOUTS, ds.edge_types)
    memory = HeteroCSRSampler(HeteroCSR.from_edges(ds.edges, {t: d.num_nodes for t, d in ds.node_types.items()}),
                              fanouts, seed=4)
    small = Neo4jHeteroSampler(client, schema, fanouts, seed=4, use_procedures=True, projection_mb=0.01)
    inputs = NodeSamplerInput(input_id=None, node=torch.arange(0, 200, 5), input_type="paper")
    a, b = memory.sample_from_nodes(inputs), small.sample_from_nodes(inputs)
    assert all(torch.equal(a.node[t], b.node[t]) for t in a.node)
    assert all(torch.equal(a.row[e], b.row[e]) and torch.equal(a.col[e], b.col[e]) for e in a.row)
    states = typed_projections(client, schema)
    assert states and all(v.startswith("not projected: needs more than the budget") for v in states.values()), states
    with pytest.raises(UsageError, match="refuses --projection_mb 1e[+]07: .*projection cap"):
        check_projection_cap(client, schema.type_schema("paper"), 1e7)


def test_one_cache_budget_split_across_types_by_their_row_bytes() -> None:
    from src.core.feature_cache import FeatureCache, split_budget

    whole = split_budget(100.0, {"paper": (1000, 8), "author": (4000, 2)})
    assert [FeatureCache(mb, f).capacity for mb, f in ((whole["paper"], 8), (whole["author"], 2))] == [1000, 4000]
    part = split_budget(0.05, {"paper": (1000, 8), "author": (4000, 2)})
    assert sum(part.values()) == pytest.approx(0.05)
    fractions = [FeatureCache(part["paper"], 8).capacity / 1000, FeatureCache(part["author"], 2).capacity / 4000]
    assert fractions[0] == pytest.approx(fractions[1], abs=0.01) and 0.3 < fractions[0] < 0.5


def test_relationship_endpoints_must_be_declared_node_types() -> None:
    nodes = {"paper": NodeTypeData(3, y=np.zeros(3, np.int64))}
    with pytest.raises(UserError, match="author is not a declared node type"):
        HeteroGraphDataset("bad", nodes, {("author", "writes", "paper"): np.zeros((2, 0), np.int64)}, "paper", 2)


def test_target_type_without_labels_is_one_line() -> None:
    nodes = {"paper": NodeTypeData(3, y=np.zeros(3, np.int64)), "author": NodeTypeData(2)}
    with pytest.raises(UserError, match="node type 'author' has no labels.*labelled types: paper"):
        HeteroGraphDataset("bad", nodes, {}, "author", 2)


@pytest.mark.slow
def test_procedure_draws_uniformly_per_relationship_type(client: Neo4jClient, hetero) -> None:
    """Repeated one-hop draws (new epoch each) from the best-connected paper: chi-square per type."""
    from scipy import stats

    ds, schema = hetero
    graph = HeteroCSR.from_edges(ds.edges, {t: d.num_nodes for t, d in ds.node_types.items()})
    for edge_type in (("paper", "cites", "paper"), ("author", "writes", "paper")):
        csr = graph.csr[edge_type]
        deg = csr.indptr[1:] - csr.indptr[:-1]
        node = int(np.argmax(deg))
        fanout = max(1, int(deg[node]) // 3)
        sampler = Neo4jHeteroSampler(client, schema, parse_fanouts(f"{edge_type[1]}:{fanout}", ds.edge_types,
                                                                   default=[0]), seed=3, use_procedures=None)
        counts = np.zeros(int(deg[node]))
        for rep in range(300):
            sampler.set_epoch(rep)
            out = sampler.sample_from_nodes(NodeSamplerInput(None, torch.tensor([node]), input_type="paper"))
            ids = out.node[edge_type[0]][out.row[edge_type]].numpy()
            np.add.at(counts, np.searchsorted(csr.indices[csr.indptr[node]:csr.indptr[node + 1]], ids), 1)
        assert counts.sum() == 300 * fanout
        assert stats.chisquare(counts).pvalue > 1e-3, (edge_type, counts)


def test_degree_features_equal_on_both_backends_and_count_the_typed_degrees(client: Neo4jClient, hetero) -> None:
    ds, schema = hetero
    memory = InMemoryHeteroRows(ds, degrees=True)
    e = ds.edges
    expect = {"author": np.stack([np.bincount(e[("paper", "written_by", "author")][1], minlength=ds.node_types[
        "author"].num_nodes), np.bincount(e[("author", "writes", "paper")][0], minlength=ds.node_types["author"].num_nodes)],
        axis=1), "venue": np.bincount(e[("venue", "publishes", "paper")][0],
                                      minlength=ds.node_types["venue"].num_nodes)[:, None]}
    assert memory.num_features == {"paper": 8, "author": 2, "venue": 1}
    for use_procedures in (True, False):
        rows = Neo4jHeteroRows(client, schema, use_procedures=use_procedures, degrees=True)
        assert rows.num_features == memory.num_features
        for t, want in expect.items():
            ids = np.r_[np.arange(0, ds.node_types[t].num_nodes, 7), [0, 0]]  # a repeated id is answered twice
            x, _ = rows.fetch(t, ids, True, False)
            assert torch.equal(x, memory.fetch(t, ids, True, False)[0]), t
            assert torch.equal(x, torch.from_numpy(np.log1p(want[ids].astype(np.float32)))), t
            assert want[ids].sum() > 0
        x, y = rows.fetch("paper", np.arange(5), True, True)  # featured types keep their own rows
        assert torch.equal(x, torch.from_numpy(ds.node_types["paper"].x[:5]))


@pytest.mark.slow  # keeps CI under 25 min; RUN_SLOW=1 runs it
def test_one_rank_training_with_degree_features_equal_losses_on_both_backends(client: Neo4jClient, hetero,
                                                                              tmp_path) -> None:
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    ds, schema = hetero
    losses = {}
    for backend, script, extra in (("in_memory", "in-memory-alternative.py", ["--full_graph"]),
                                   ("neo4j", "main-neo4j-backend.py", [])):
        res = subprocess.run([sys.executable, str(REPO / script), *extra, "--dataset", ds.name, "--target_type", "paper",
                              "--fanouts", FANOUTS, "--num_layers", "2", "--epochs", "2", "--batch_size", "128",
                              "--hidden_channels", "16", "--seed", "1", "--featureless", "degree", "--eval_every", "2",
                              "--run_name", f"deg-{backend}", "--log_dir", str(tmp_path / "logs"),
                              "--checkpoint_dir", str(tmp_path / "ckpt")],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]
        events = [json.loads(line) for line in (tmp_path / "logs" / f"deg-{backend}" / "rank0.jsonl").read_text()
                  .splitlines()]
        epochs = [e["loss"] for e in events if e["event"] == "epoch"]
        assert epochs[1] < epochs[0], epochs
        losses[backend] = [e["loss"] for e in events if e["event"] == "step"]
        start = next(e for e in events if e["event"] == "run_start")
        assert start["config"]["featureless"] == "degree"
    assert losses["in_memory"] == pytest.approx(losses["neo4j"], rel=1e-5)
    # predict.py for hetero runs: an .npz from the in-memory run, node properties from the Neo4j run
    out = tmp_path / "pred.npz"
    for backend, extra in (("in_memory", ["--output", str(out)]), ("neo4j", ["--write_property", "pred_deg"])):
        res = subprocess.run([sys.executable, str(REPO / "predict.py"), "--run_name", f"deg-{backend}", "--log_dir",
                              str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "ckpt"), *extra,
                              "--no_progress"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]
    n = ds.node_types["paper"].num_nodes
    memory = np.load(out)
    assert np.array_equal(memory["ids"], np.arange(n))
    label = schema.node("paper").label
    recs = client.read(f"MATCH (n:`{label}`) RETURN n.id AS i, n.pred_deg AS p ORDER BY i")
    stored = np.array([r["p"] for r in recs])
    assert len(stored) == n and (stored == memory["pred"]).mean() > 0.99
    client.write(f"MATCH (n:`{label}`) REMOVE n.pred_deg")
    client.write("MATCH (b:GnnLoadBatch {dataset: 'predict:deg-neo4j'}) DELETE b")
    client.write("MATCH (j:GnnPrediction {key: 'predict:deg-neo4j'}) DELETE j")


def test_degree_features_replace_the_embedding_tables(hetero) -> None:
    from types import SimpleNamespace

    from src.in_memory.hetero import InMemoryHeteroBackend

    ds, _ = hetero
    cfg = SimpleNamespace(num_layers=2, hidden_channels=8, dropout=0.0, featureless="degree", model="sage", heads=1)
    backend = InMemoryHeteroBackend(ds, target_type="paper", fanouts=FANOUTS, batch_size=8, num_loader_threads=1,
                                    featureless="degree")
    model = backend.make_model(cfg)
    assert not any(isinstance(m, torch.nn.Embedding) for m in model.modules())
    assert {t: m.in_features for t, m in model.inputs.items()} == {"paper": 8, "author": 2, "venue": 1}



@pytest.mark.neo4j
def test_benchmarks_read_the_load_time_of_either_kind_of_dataset(client: Neo4jClient, hetero, loaded_dataset) -> None:
    from src.neo4jdb.backend import load_seconds
    from src.neo4jdb.hetero.schema import hetero_record

    ds, _ = hetero
    _, schema, record = loaded_dataset("cora")
    assert load_seconds(schema.dataset, [], {}) == record.load_seconds > 0
    assert load_seconds(ds.name, [], {}) == float(hetero_record(client, ds.name)["load_seconds"]) > 0
    assert load_seconds("pytest_never_loaded", [], {}) is None
