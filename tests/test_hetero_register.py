"""loaders/register_graph.py --node_types/--relationships against the real local Neo4j: a multi-label graph
made with plain Cypher (papers with float-list features and string categories created in shuffled order,
featureless authors and venues, four relationship types, extra user properties) is registered in place as
a heterogeneous dataset; the user's data stays unchanged; what Neo4j stores equals the source graph
through the dense-id permutation; every Neo4j sampling path gives the in-memory sampler's samples over
the graph read back; training through main-neo4j-backend.py lowers the loss; bad input is one line
with nothing written."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.sampler import NodeSamplerInput

from src.client import Neo4jClient
from src.core.hetero_fanouts import parse_fanouts
from src.core.hetero_sampling import HeteroCSR, HeteroCSRSampler
from src.core.schema import DATASET_LABEL
from src.data.synthetic_hetero import generate_hetero
from src.neo4jdb.hetero.export import read_hetero
from src.neo4jdb.hetero.rows import Neo4jHeteroRows
from src.neo4jdb.hetero.sampler import Neo4jHeteroSampler
from src.neo4jdb.hetero.schema import hetero_record, require_hetero
from src.neo4jdb.register.hetero import unregister_hetero
from tests.conftest import REPO
from tests.native_graph import CATEGORIES, user_data_checksum

TIMEOUT = 600
RELS = {"writes": ("author", "paper"), "written_by": ("paper", "author"), "cites": ("paper", "paper"),
        "publishes": ("venue", "paper")}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "loaders" / "register_graph.py"), *args, "--no_progress"],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO)


def create_graph(client: Neo4jClient, ds, tag: str) -> tuple[dict[str, str], dict[str, str], dict[str, np.ndarray]]:
    """The synthetic graph as a user would store it: labels and types of their own, papers created in a
    shuffled order (so dense ids differ from the source's); returns labels, types and creation orders."""
    labels = {t: f"{t.capitalize()}_{tag}" for t in ds.node_types}
    types = {r: f"{r.upper()}_{tag}" for r in RELS}
    rng = np.random.default_rng(7)
    orders = {}
    for t, d in ds.node_types.items():
        order = rng.permutation(d.num_nodes)
        orders[t] = order
        rows = [{"k": int(i), "name": f"{t} {i}"} for i in order]
        if d.x is not None:
            for r in rows:
                r["f"], r["c"] = d.x[r["k"]].astype(float).tolist(), CATEGORIES[int(d.y[r["k"]])]
        sets = "n.features = r.f, n.category = r.c, " if d.x is not None else ""
        client.write(f"UNWIND $rows AS r CREATE (n:`{labels[t]}`) SET {sets}n.name = r.name, n.key = r.k", rows=rows)
    for (src, rel, dst), ei in ds.edges.items():
        rows = [{"a": int(a), "b": int(b)} for a, b in ei.T]
        client.write(f"UNWIND $rows AS r MATCH (a:`{labels[src]}` {{key: r.a}}) MATCH (b:`{labels[dst]}` {{key: r.b}}) "
                     f"CREATE (a)-[:`{types[rel]}` {{since: 2000 + r.a % 20}}]->(b)", rows=rows)
    return labels, types, orders


def checksums(client: Neo4jClient, labels: dict[str, str], types: dict[str, str]) -> list[str]:
    return [user_data_checksum(client, labels[t], types["cites"] if t == "paper" else types["writes"])
            for t in labels] + [user_data_checksum(client, labels["venue"], r) for r in types.values()]


def register_flags(name: str, labels: dict[str, str], types: dict[str, str]) -> list[str]:
    nodes = f"{labels['paper']}:features,{labels['author']},{labels['venue']}"
    rels = ",".join(f"{types[r]}:{labels[s]}->{labels[d]}" for r, (s, d) in RELS.items())
    return ["--name", name, "--node_types", nodes, "--relationships", rels, "--target_type", labels["paper"],
            "--target", "category", "--split", "random:0.6,0.2,0.2", "--seed", "2"]


@pytest.fixture(scope="module")
def registered(client: Neo4jClient):
    ds = generate_hetero(num_nodes=1200, avg_degree=5, num_features=6, num_classes=3, seed=4)
    tag = uuid.uuid4().hex[:8]
    labels, types, orders = create_graph(client, ds, tag)
    before = checksums(client, labels, types)
    name = f"bib_{tag}"
    res = cli(*register_flags(name, labels, types))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "registered in" in res.stdout, res.stdout
    yield ds, name, labels, types, orders, before
    unregister_hetero(client, hetero_record(client, name))
    assert not client.read(f"MATCH (n:`{labels['paper']}`) UNWIND keys(n) AS k WITH k WHERE k STARTS WITH 'gnn_' "
                           "RETURN k LIMIT 1")
    for label in labels.values():
        client.run_autocommit(f"MATCH (n:`{label}`) CALL (n) {{ DETACH DELETE n }} IN TRANSACTIONS OF 10000 ROWS")


def test_registered_in_place_matches_the_source_and_user_data_is_unchanged(client, registered) -> None:
    ds, name, labels, types, orders, before = registered
    schema = require_hetero(client, name)
    assert checksums(client, labels, types) == before
    assert [(t.label, t.num_nodes, t.num_features, t.labelled) for t in schema.node_types] == [
        (labels[t], d.num_nodes, d.num_features, d.y is not None)
        for t, d in (("paper", ds.node_types["paper"]), ("author", ds.node_types["author"]),
                     ("venue", ds.node_types["venue"]))]
    assert {r.rel: r.num_edges for r in schema.rel_types} == {
        types[e[1]]: v.shape[1] for e, v in ds.edges.items()}
    back = read_hetero(client, schema)
    # dense id -> source id, through the user's own key property
    key = {t: np.asarray(client.read(f"MATCH (n:`{labels[t]}`) RETURN n.key AS k ORDER BY n.`{schema.id_prop}`"),
                         dtype=np.int64).ravel() for t in labels}
    assert all(np.array_equal(np.sort(key[t]), np.arange(ds.node_types[t].num_nodes)) for t in labels)
    assert not np.array_equal(key["paper"], np.arange(len(key["paper"])))  # ids are not the source's order
    paper = back.node_types[labels["paper"]]
    assert np.array_equal(paper.x, ds.node_types["paper"].x[key["paper"]])  # bit for bit
    vocab = sorted(CATEGORIES[c] for c in range(ds.num_classes))
    assert [vocab[c] for c in paper.y] == [CATEGORIES[c] for c in ds.node_types["paper"].y[key["paper"]]]
    assert abs(len(paper.train_idx) / paper.num_nodes - 0.6) < 0.02
    for (src, rel, dst), ei in ds.edges.items():
        got = back.edges[(labels[src], types[rel], labels[dst])]
        mapped = np.stack([key[src][got[0]], key[dst][got[1]]])
        assert sorted(map(tuple, mapped.T.tolist())) == sorted(map(tuple, ei.T.tolist())), rel
    res = cli(*register_flags(name, labels, types))
    assert res.returncode == 0 and "already registered" in res.stdout and "nothing to do" in res.stdout


@pytest.mark.parametrize("procedure", [False, True], ids=["cypher", "gnn.sampleHeteroHops"])
def test_samples_and_rows_equal_the_in_memory_sampler_on_the_graph_read_back(client, registered,
                                                                             procedure: bool) -> None:
    ds, name, labels, types, orders, before = registered
    schema = require_hetero(client, name)
    back = read_hetero(client, schema)
    fanouts = parse_fanouts(";".join(f"{types[r]}:{k},{k - 1}" for r, k in
                                     (("writes", 3), ("written_by", 2), ("cites", 4), ("publishes", 2))),
                            schema.edge_types)
    memory = HeteroCSRSampler(HeteroCSR.from_edges(back.edges, {t: d.num_nodes for t, d in back.node_types.items()}),
                              fanouts, seed=3)
    neo4j = Neo4jHeteroSampler(client, schema, fanouts, seed=3, use_procedures=procedure)
    inputs = NodeSamplerInput(input_id=None, node=torch.arange(0, 300, 3), input_type=labels["paper"])
    a, b = memory.sample_from_nodes(inputs), neo4j.sample_from_nodes(inputs)
    for t in a.node:
        assert torch.equal(a.node[t], b.node[t]), t
    for e in a.row:
        assert torch.equal(a.row[e], b.row[e]) and torch.equal(a.col[e], b.col[e]), e
    assert sum(a.num_sampled_edges[(labels["author"], types["writes"], labels["paper"])]) > 0
    if procedure:
        assert neo4j.queries == 1
    rows = Neo4jHeteroRows(client, schema, use_procedures=procedure)
    ids = a.node[labels["paper"]].numpy()
    x, y = rows.fetch_type(labels["paper"], ids, True, True)
    assert torch.equal(x, torch.from_numpy(back.node_types[labels["paper"]].x[ids]))
    assert torch.equal(y, torch.from_numpy(back.node_types[labels["paper"]].y[ids]))
    assert checksums(client, labels, types) == before


FULL = "1000,1000"  # whole neighbourhoods: predictions do not depend on batching or the sampling seed


@pytest.fixture(scope="module")
def trained(registered, tmp_path_factory):
    """The registered graph trained for 2 epochs through main-neo4j-backend.py (1 rank)."""
    ds, name, labels, types, orders, before = registered
    tmp = tmp_path_factory.mktemp("hrun")
    fanouts = ";".join(f"{types[r]}:{FULL}" for r in RELS)
    res = subprocess.run([sys.executable, str(REPO / "main-neo4j-backend.py"), "--dataset", name, "--target_type",
                          labels["paper"], "--fanouts", fanouts, "--num_layers", "2", "--epochs", "2",
                          "--batch_size", "64", "--hidden_channels", "32", "--lr", "0.01", "--seed", "1",
                          "--featureless", "degree", "--run_name", "hreg", "--log_dir", str(tmp / "logs"),
                          "--checkpoint_dir", str(tmp / "ckpt")],
                         capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp)
    assert res.returncode == 0, res.stderr[-3000:]
    events = [json.loads(line) for line in (tmp / "logs" / "hreg" / "rank0.jsonl").read_text().splitlines()]
    return tmp, events


def test_training_on_the_registered_graph_lowers_the_loss(client, registered, trained) -> None:
    ds, name, labels, types, orders, before = registered
    tmp, events = trained
    steps = [e["loss"] for e in events if e["event"] == "step"]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(epochs) == 2 and epochs[1]["loss"] < epochs[0]["loss"], [e["loss"] for e in epochs]
    assert np.mean(steps[-3:]) < 0.9 * np.mean(steps[:3]), steps
    assert checksums(client, labels, types) == before


def test_predictions_written_back_to_the_target_type_match_the_run(client, registered, trained) -> None:
    ds, name, labels, types, orders, before = registered
    tmp, events = trained
    schema = require_hetero(client, name)
    flags = ["--run_name", "hreg", "--log_dir", str(tmp / "logs"), "--checkpoint_dir", str(tmp / "ckpt"),
             "--write_property", "pred_cat", "--write_proba", "pred_proba", "--write_embedding", "pred_emb",
             "--no_progress"]
    res = subprocess.run([sys.executable, str(REPO / "predict.py"), *flags], capture_output=True, text=True,
                         timeout=TIMEOUT, cwd=tmp)
    assert res.returncode == 0, res.stderr[-3000:]
    n = ds.node_types["paper"].num_nodes
    assert f"predicted {n} nodes" in res.stdout and f"to {n} :{labels['paper']} nodes" in res.stdout, res.stdout
    rows = client.read(f"MATCH (n:`{labels['paper']}`) RETURN n.category AS c, n.pred_cat AS p, n.pred_proba AS q, "
                       f"size(n.pred_emb) AS e, n.`{schema.split_prop}` AS s")
    assert all(isinstance(r["p"], str) and len(r["q"]) == ds.num_classes and r["e"] == 32 for r in rows)
    test = [r for r in rows if r["s"] == "test"]
    acc = sum(r["p"] == r["c"] for r in test) / len(test)
    assert acc == pytest.approx([e for e in events if e["event"] == "epoch"][-1]["test_acc"], abs=1e-9)
    assert not client.read(f"MATCH (n) WHERE n:`{labels['author']}` OR n:`{labels['venue']}` "
                           "RETURN n.pred_cat AS p LIMIT 1")[0]["p"]
    res = subprocess.run([sys.executable, str(REPO / "predict.py"), *flags[:8], "--write_property", "category",
                          "--no_progress"], capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp)
    assert res.returncode != 0 and "'category' is a property the dataset" in res.stderr.strip().splitlines()[-1]
    client.write(f"MATCH (n:`{labels['paper']}`) REMOVE n.pred_cat, n.pred_proba, n.pred_emb")
    assert checksums(client, labels, types) == before  # nothing else was touched
    client.write("MATCH (b:GnnLoadBatch {dataset: 'predict:hreg'}) DELETE b")
    client.write("MATCH (j:GnnPrediction {key: 'predict:hreg'}) DELETE j")


@pytest.fixture
def small_graph(client: Neo4jClient):
    tag = uuid.uuid4().hex[:8]
    p, a, v, w = f"P_{tag}", f"A_{tag}", f"V_{tag}", f"W_{tag}"
    client.write(f"UNWIND range(0, 9) AS i CREATE (:`{p}` {{f: [toFloat(i), 1.0], c: i % 2}})")
    client.write(f"UNWIND range(0, 4) AS i CREATE (:`{a}` {{k: i}})")
    client.write(f"CREATE (:`{v}`)")
    client.write(f"MATCH (x:`{a}`), (y:`{p}`) WHERE y.f[0] % 5 = x.k CREATE (x)-[:`{w}`]->(y)")
    yield p, a, v, w
    for label in (p, a, v):
        client.run_autocommit(f"MATCH (n:`{label}`) DETACH DELETE n")


def _flags(name: str, p: str, a: str, v: str, rels: str) -> list[str]:
    return ["--name", name, "--node_types", f"{p}:f,{a},{v}", "--relationships", rels, "--target_type", p,
            "--target", "c", "--split", "random:0.5,0.25,0.25"]


@pytest.mark.parametrize("case", ["endpoints", "two labels", "unknown label", "undeclared label", "target"])
def test_bad_input_is_one_line_and_writes_nothing(client, small_graph, case: str) -> None:
    p, a, v, w = small_graph
    name = f"bad_{uuid.uuid4().hex[:6]}"
    flags = _flags(name, p, a, v, f"{w}:{a}->{p}")
    if case == "endpoints":
        client.write(f"MATCH (x:`{v}`), (y:`{p}`) WITH x, y LIMIT 3 CREATE (x)-[:`{w}`]->(y)")
        expect = f"relationship type {w}: 3 of 13 relationships do not go between the declared labels ({a}->{p}), " \
                 f"e.g. from :{v} to :{p}"
    elif case == "two labels":
        client.write(f"MATCH (x:`{a}` {{k: 0}}) SET x:`{v}`")
        expect = "1 nodes carry more than one of the --node_types labels"
    elif case == "unknown label":
        flags = _flags(name, p, a, "NoSuchLabel_q", f"{w}:{a}->{p}")
        expect = "unknown label 'NoSuchLabel_q'"
    elif case == "undeclared label":
        flags = _flags(name, p, a, v, f"{w}:Other->{p}")
        expect = "Other is not in --node_types"
    else:
        flags = _flags(name, p, a, v, f"{w}:{a}->{p}")
        flags[flags.index("--target_type") + 1] = a
        expect = f"5 :{a} nodes lack the target property 'c'"
    res = cli(*flags)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], res.stderr
    assert not client.read(f"MATCH (d:`{DATASET_LABEL}` {{name: $n}}) RETURN d", n=name)
    assert not client.read(f"MATCH (n) WHERE n:`{p}` OR n:`{a}` OR n:`{v}` UNWIND keys(n) AS k "
                           "WITH k WHERE k STARTS WITH 'gnn_' RETURN k LIMIT 1")


def test_degree_features_read_what_neo4j_holds_now(client, registered) -> None:
    """A relationship added with plain Cypher shows in the next fetch's degree features; removed, it goes."""
    ds, name, labels, types, orders, before = registered
    schema = require_hetero(client, name)
    rows = Neo4jHeteroRows(client, schema, use_procedures=False, degrees=True)
    author = labels["author"]
    cols = [(e[1], way) for e, way in rows.degrees[author]]
    assert cols == [(types["written_by"], "in"), (types["writes"], "out")]
    ids = np.array([0, 1, 2])
    x0 = rows.fetch(author, ids, True, False)[0]
    eid = client.write(f"MATCH (a:`{author}` {{`{schema.id_prop}`: 1}}), (p:`{labels['paper']}` "
                       f"{{`{schema.id_prop}`: 0}}) CREATE (a)-[r:`{types['writes']}`]->(p) RETURN elementId(r) AS e")[0]["e"]
    try:
        x1 = rows.fetch(author, ids, True, False)[0]
        assert torch.equal(x1[[0, 2]], x0[[0, 2]]) and torch.equal(x1[1, 0], x0[1, 0])
        assert torch.equal(x1[1, 1], torch.log1p(torch.expm1(x0[1, 1]).round() + 1))
    finally:
        client.write("MATCH ()-[r]->() WHERE elementId(r) = $e DELETE r", e=eid)
    assert torch.equal(rows.fetch(author, ids, True, False)[0], x0)
    assert checksums(client, labels, types) == before


@pytest.mark.parametrize("extra, expect", [
    (["--node_label", "X"], "--node_label do not apply to a heterogeneous registration"),
    (["--export", "x.npz"], "--export do not apply to a heterogeneous registration"),
    (["--relationships", "W:A->P,W:A->P"], "--relationships names W more than once"),
    (["--relationships", "W:A=>P"], "--relationships entry 'W:A=>P': write [NAME=]TYPE:SourceLabel->DestinationLabel"),
])
def test_bad_flags_are_one_line_before_neo4j(extra: list[str], expect: str) -> None:
    flags = ["--name", "n1", "--node_types", "P:f,A", "--relationships", "W:A->P", "--target_type", "P",
             "--target", "c", "--split", "random:0.5,0.25,0.25"]
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in flags:
            flags[flags.index(flag) + 1] = value
        else:
            flags += [flag, value]
    res = cli(*flags, "--neo4j_uri", "bolt://127.0.0.1:1")  # nothing may talk to Neo4j
    assert res.returncode == 2, res.stderr
    assert expect in res.stderr.strip().splitlines()[-1], res.stderr
