"""The gnn.* procedures against a real Neo4j and real data (cora), checked against the Cypher sampler.

The main checks: for the same per-node minstd states, ``gnn.sampleHop`` walking relationships
returns exactly what the Cypher hop query of :mod:`src.graph_sampler` returns (same neighbour
order, same Floyd draws); reading the adjacency property it returns exactly the Floyd/minstd
replay over the source edges (:func:`floyd_reference`); ``gnn.sampleHops`` equals those single
hops chained with the frontier rule of ``sample_multi_hop`` and the derived per-node states.
cora is the shared ``pytest_cora`` of the loader; the hand-made edge-case graph gets its own
``T_<uuid>`` label and is deleted at the end.
"""
from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import pytest
from neo4j import exceptions as neo4j_exc

from src.client import Neo4jClient
from src.core.errors import UserError
from src.core.minstd import MINSTD_MODULUS
from src.graph_sampler import hop_query
from src.neo4jdb.local import LocalNeo4j
from src.core.csr import CSRGraph
from src.core.sampling import sample_multi_hop, sampler_output
from src.neo4jdb.procedures import (
    CALL_BYTES,
    MAX_ROWS_PER_CALL,
    ROWS_PER_CALL,
    fetch_rows,
    has_procedures,
    hop_neighbours,
    hop_states,
    projections,
    rows_per_call,
    sample_hop,
    sample_hops,
)
from src.core.codecs import DENSE, SPARSE, encode_adjacency, encode_features
from src.core.schema import GraphSchema

pytestmark = pytest.mark.neo4j

PROJECTION_MB = 64.0  # server heap budget of the in-heap projections the tests build
FANOUTS = (0, 1, 5, 15, 200, -1)  # 200 > cora's largest in-degree (168): every node takes all


# -- helpers --------------------------------------------------------------------------------------
def load_graph(client: Neo4jClient, label: str, x: np.ndarray, y: list[int | None],
               edges: list[tuple[int, int]], encoding: str = DENSE) -> GraphSchema:
    """Store a small hand-made graph in the storage model (``None`` in ``y`` leaves ``y`` unset)."""
    schema = GraphSchema.for_dataset(label, label=label)
    client.write(f"CREATE CONSTRAINT `{schema.constraint_name}` FOR (n:`{label}`) REQUIRE n.`{schema.id_prop}` IS UNIQUE")
    rows = [{"id": i, "x": row, "y": y[i]} for i, row in enumerate(encode_features(x, encoding))]
    client.write(f"UNWIND $rows AS r CREATE (:`{label}` {{id: r.id, x: r.x, y: r.y}})", rows=rows)
    client.write(f"UNWIND $rows AS r MATCH (a:`{label}` {{id: r[0]}}) MATCH (b:`{label}` {{id: r[1]}}) "
                 f"CREATE (a)-[:`{schema.rel_type}`]->(b)", rows=[list(e) for e in edges])
    return schema


def drop_graph(client: Neo4jClient, schema: GraphSchema) -> None:
    client.write(f"MATCH (n:`{schema.label}`) DETACH DELETE n")
    client.write(f"DROP CONSTRAINT `{schema.constraint_name}` IF EXISTS")


def neighbour_hops(client: Neo4jClient, schema: GraphSchema, seeds: np.ndarray, *args, **kwargs
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`sample_hops` as ``[(counts, neighbour ids)]`` per hop, the form the references answer."""
    return hop_neighbours(seeds, sample_hops(client, schema, seeds, *args, **kwargs))


def cypher_hop(client: Neo4jClient, schema: GraphSchema, frontier: np.ndarray, states: np.ndarray,
               fanout: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: the Cypher sampler's query, rows put back in frontier order."""
    params = {"ids": frontier.tolist(), "states": states.tolist(), "fanout": int(fanout)}
    rec = client.read_tx(lambda tx: tx.run(hop_query(schema), params).single(strict=True))
    by_pos = dict(zip(rec["pos"], rec["nbr"]))
    assert len(by_pos) == len(frontier), "the Cypher query lost frontier nodes"
    lists = [by_pos[k] for k in range(len(frontier))]
    return np.array([len(v) for v in lists], np.int64), np.array([u for v in lists for u in v], np.int64)


def floyd_reference(csr: CSRGraph, frontier: np.ndarray, states: np.ndarray, fanout: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The procedures' Floyd/minstd draw, in Python, over the neighbours in source edge order."""
    counts, out = [], []
    for v, r in zip(frontier.tolist(), states.tolist()):
        nbrs = csr.indices[csr.indptr[v]:csr.indptr[v + 1]]
        d = len(nbrs)
        if fanout < 0 or d <= fanout:
            counts.append(d)
            out.extend(nbrs.tolist())
            continue
        picks: list[int] = []
        for j in range(d - fanout, d):
            r = r * 48271 % MINSTD_MODULUS
            t = r % (j + 1)
            picks.append(j if t in picks else t)
        counts.append(fanout)
        out.extend(nbrs[picks].tolist())
    return np.array(counts, np.int64), np.array(out, np.int64)


def chained_hops(hop, seeds: np.ndarray, fanouts: list[int], bases: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``hop(frontier, states, fanout)`` chained as gnn.sampleHops must: hop k samples the nodes new in
    hop k-1 (first appearance order), position i of hop k with ``hop_states(bases[k], n)[i]``."""
    seen, frontier, result = set(seeds.tolist()), seeds, []
    for base, fanout in zip(bases.tolist(), fanouts):
        counts, nbrs = hop(frontier, hop_states(base, len(frontier)), fanout)
        result.append((counts, nbrs))
        new = [u for u in dict.fromkeys(nbrs.tolist()) if u not in seen]
        seen.update(new)
        frontier = np.array(new, np.int64)
    return result


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def procs(client: Neo4jClient, neo4j_settings) -> None:
    """The procedures must be there on the local server (it installs them at start)."""
    if not has_procedures(client):
        if neo4j_settings.local:
            pytest.fail("the local server has no gnn.* procedures; restart it: bash jobs/neo4j.sh stop && bash jobs/neo4j.sh start")
        pytest.skip("NEO4J_URI server without gnn-procedures.jar in its plugins folder")


@pytest.fixture(scope="module")
def cora(loaded_dataset, procs) -> tuple[GraphSchema, dict]:
    """cora as src/neo4jdb/load/ stores it (the shared ``pytest_cora``, sparse rows), with its source arrays."""
    ds, schema, rec = loaded_dataset("cora")
    return schema, {"x": ds.features(np.arange(ds.num_nodes)), "y": np.asarray(ds.y),
                    "edge_index": np.asarray(ds.edge_index), "encoding": rec.feature_encoding}


@pytest.fixture(scope="module")
def cora_csr(cora) -> CSRGraph:
    return CSRGraph.from_edge_index(cora[1]["edge_index"], len(cora[1]["y"]))


@pytest.fixture(scope="module")
def odd_graph(client: Neo4jClient, procs) -> GraphSchema:
    """Self-loops, parallel edges, a dense hub (in-degree 80 > Neo4j's dense threshold 50),
    a node without in-edges and nodes without ``y``."""
    n = 90
    edges = [(1, 1), (2, 1), (2, 1), (3, 1), (4, 4), (4, 4)] + [(u, 0) for u in range(5, 85)] + [(0, 0), (7, 0)]
    y = [None if i % 3 == 0 else i % 5 for i in range(n)]
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3) / 7
    schema = load_graph(client, f"T_{uuid.uuid4().hex[:12]}", x, y, edges)
    csr = CSRGraph.from_edge_index(np.array(edges).T, n)
    rows = [{"id": i, "b": b} for i, b in enumerate(encode_adjacency(csr.indptr, csr.indices))]
    client.write(f"UNWIND $rows AS r MATCH (n:`{schema.label}` {{id: r.id}}) SET n.`{schema.adj_prop}` = r.b", rows=rows)
    yield schema
    drop_graph(client, schema)


def _states(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, MINSTD_MODULUS, size=n, dtype=np.int64)


# -- detection ------------------------------------------------------------------------------------
def test_has_procedures_on_local_server(client: Neo4jClient, procs) -> None:
    assert has_procedures(client) is True
    assert has_procedures(client) is True  # cached


def test_install_plugin_is_idempotent_and_cached(tmp_path) -> None:
    """Server homes sharing a jar cache reuse the built jar (no second Maven run), each gets a copy."""
    lib = LocalNeo4j().lib
    first = LocalNeo4j(root=tmp_path / "a", lib=lib).install_plugin()
    assert first is not None, "no JDK/Maven: the plugin could not be built"
    cached = lib.with_name(f"plugin-{LocalNeo4j().version}") / first.name
    built_at = cached.stat().st_mtime_ns
    assert LocalNeo4j(root=tmp_path / "a", lib=lib).install_plugin() == first
    second = LocalNeo4j(root=tmp_path / "b", lib=lib).install_plugin()
    assert second == tmp_path / "b" / "home" / "plugins" / "gnn-procedures.jar"
    assert first.read_bytes() == second.read_bytes() == cached.read_bytes()
    assert cached.stat().st_mtime_ns == built_at


def test_has_procedures_false_without_plugin() -> None:
    class Record(dict):
        pass

    class Tx:
        def run(self, query: str):
            assert "SHOW PROCEDURES" in query
            return type("Result", (), {"single": lambda self, strict: Record(names=["gnn.other"])})()

    class NoPluginClient:  # a server whose gnn.* namespace lacks our procedures
        settings = type("S", (), {"uri": "bolt://elsewhere:7687"})()

        def read_tx(self, work):
            return work(Tx())

    assert has_procedures(NoPluginClient()) is False


# -- sampling -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fanout", FANOUTS)
def test_sample_hop_equals_cypher(client: Neo4jClient, cora, fanout: int) -> None:
    schema, d = cora
    frontier = np.random.default_rng(fanout + 10).permutation(len(d["y"]))  # every node, shuffled
    frontier = np.concatenate([frontier, frontier[:100]])  # repeats sample independently
    states = _states(len(frontier), seed=fanout + 100)
    counts, nbrs = sample_hop(client, schema, frontier, states, fanout)
    ref_counts, ref_nbrs = cypher_hop(client, schema, frontier, states, fanout)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_array_equal(nbrs, ref_nbrs)
    assert counts.flags.writeable and nbrs.flags.writeable


@pytest.mark.parametrize("fanout", FANOUTS)
def test_sample_hop_draws_real_in_neighbours(client: Neo4jClient, cora, fanout: int) -> None:
    schema, d = cora
    src, dst = d["edge_index"]
    in_nbrs = {v: Counter() for v in range(len(d["y"]))}
    for u, v in zip(src.tolist(), dst.tolist()):
        in_nbrs[v][u] += 1
    frontier = np.arange(len(d["y"]), dtype=np.int64)
    counts, nbrs = sample_hop(client, schema, frontier, _states(len(frontier), seed=7), fanout)
    assert counts.sum() == len(nbrs)
    degree = np.array([sum(in_nbrs[v].values()) for v in frontier.tolist()])
    np.testing.assert_array_equal(counts, degree if fanout < 0 else np.minimum(degree, fanout))
    for v, sample in zip(frontier.tolist(), np.split(nbrs, np.cumsum(counts)[:-1])):
        got = Counter(sample.tolist())
        assert not got - in_nbrs[v], f"node {v}: {got - in_nbrs[v]} are not in-neighbours"
        if fanout < 0 or counts[v] == degree[v]:
            assert got == in_nbrs[v]


def test_sample_hop_is_spread_uniformly(client: Neo4jClient, cora) -> None:
    """Many draws of 5 from the hub: each neighbour position is picked close to 5/d of the time."""
    schema, d = cora
    hub = int(np.bincount(d["edge_index"][1]).argmax())
    frontier = np.full(4000, hub, dtype=np.int64)
    counts, nbrs = sample_hop(client, schema, frontier, _states(len(frontier), seed=3), 5)
    freq = np.bincount(nbrs) / len(frontier)
    deg = int((d["edge_index"][1] == hub).sum())
    hit = freq[np.unique(d["edge_index"][0][d["edge_index"][1] == hub])]
    assert np.abs(hit - 5 / deg).max() < 0.02 and len(np.unique(nbrs)) == deg


@pytest.mark.parametrize("fanout", (0, 1, 2, 3, 50, 79, 81, -1))
def test_sample_hop_equals_cypher_on_loops_parallel_edges_and_dense_nodes(client: Neo4jClient, odd_graph,
                                                                          fanout: int) -> None:
    frontier = np.array([0, 1, 4, 2, 0, 89, 0, 1], np.int64)
    states = _states(len(frontier), seed=5)
    counts, nbrs = sample_hop(client, odd_graph, frontier, states, fanout)
    ref_counts, ref_nbrs = cypher_hop(client, odd_graph, frontier, states, fanout)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_array_equal(nbrs, ref_nbrs)
    if fanout < 0:
        assert counts.tolist() == [82, 4, 2, 0, 82, 0, 82, 4]  # self-loop counted once, parallel edges twice


def test_sample_hop_unknown_id_raises_key_error(client: Neo4jClient, cora) -> None:
    schema, _ = cora
    with pytest.raises(KeyError, match="999999"):
        sample_hop(client, schema, np.array([0, 999999, 1]), _states(3, 1), 5)


def test_sample_hop_rejects_states_outside_minstd_range(client: Neo4jClient, cora) -> None:
    schema, _ = cora
    with pytest.raises(neo4j_exc.ClientError, match="minstd range"):
        sample_hop(client, schema, np.array([0, 1]), np.array([5, 0]), 1)


def test_sample_hop_empty_frontier(client: Neo4jClient, cora) -> None:
    counts, nbrs = sample_hop(client, cora[0], np.zeros(0, np.int64), np.zeros(0, np.int64), 5)
    assert counts.shape == (0,) and nbrs.shape == (0,)


def test_label_without_id_index_is_a_clear_error(client: Neo4jClient, procs) -> None:
    label = f"T_{uuid.uuid4().hex[:12]}"
    schema = GraphSchema.for_dataset(label, label=label)
    client.write(f"CREATE (:`{label}` {{id: 0}})")
    try:
        with pytest.raises(neo4j_exc.ClientError, match="no index on"):
            sample_hop(client, schema, np.array([0]), np.array([1]), 1)
    finally:
        client.write(f"MATCH (n:`{label}`) DELETE n")


# -- adjacency property and gnn.sampleHops --------------------------------------------------------
def test_adjacency_property_bit_exact(client: Neo4jClient, cora, cora_csr: CSRGraph) -> None:
    """The loader's packed in-neighbour ids equal the source edges, in source order, for EVERY node."""
    schema, _ = cora
    recs = client.read(f"MATCH (n:`{schema.label}`) RETURN n.`{schema.id_prop}` AS id, n.`{schema.adj_prop}` AS b "
                       "ORDER BY id")
    assert [r["id"] for r in recs] == list(range(cora_csr.num_nodes))
    got = [np.frombuffer(r["b"], "<i8") for r in recs]
    want = np.split(cora_csr.indices, cora_csr.indptr[1:-1])
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    rec = client.read("MATCH (d:GnnDataset {name: $n}) RETURN d.adjacency AS a", n=schema.dataset)
    assert rec[0]["a"] == schema.adj_prop


@pytest.mark.parametrize("fanout", FANOUTS)
def test_sample_hop_adjacency_equals_reference(client: Neo4jClient, cora, cora_csr: CSRGraph, fanout: int) -> None:
    schema, d = cora
    frontier = np.random.default_rng(fanout + 20).permutation(len(d["y"]))
    frontier = np.concatenate([frontier, frontier[:100]])
    states = _states(len(frontier), seed=fanout + 200)
    counts, nbrs = sample_hop(client, schema, frontier, states, fanout, adj_prop=schema.adj_prop)
    ref_counts, ref_nbrs = floyd_reference(cora_csr, frontier, states, fanout)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_array_equal(nbrs, ref_nbrs)


@pytest.mark.parametrize("fanout", (0, 1, 3, 81, -1))
def test_sample_hop_adjacency_on_loops_parallel_edges_and_dense_nodes(client: Neo4jClient, odd_graph,
                                                                      fanout: int) -> None:
    """Same multiset of neighbours as the relationships give when everything is taken; same counts always."""
    frontier = np.array([0, 1, 4, 2, 0, 89, 0, 1], np.int64)
    states = _states(len(frontier), seed=6)
    counts, nbrs = sample_hop(client, odd_graph, frontier, states, fanout, adj_prop=odd_graph.adj_prop)
    ref_counts, ref_nbrs = cypher_hop(client, odd_graph, frontier, states, fanout)
    np.testing.assert_array_equal(counts, ref_counts)
    if fanout < 0 or fanout >= 82:
        for a, b in zip(np.split(nbrs, np.cumsum(counts)[:-1]), np.split(ref_nbrs, np.cumsum(ref_counts)[:-1])):
            assert sorted(a.tolist()) == sorted(b.tolist())


@pytest.mark.parametrize("fanouts", ([15, 10, 5], [2, -1], [200, 3]))
def test_sample_hops_equals_chained_cypher_hops(client: Neo4jClient, cora, fanouts: list[int]) -> None:
    """Relationship mode: one gnn.sampleHops call == the Cypher query hop by hop with the derived states."""
    schema, d = cora
    seeds = np.random.default_rng(len(fanouts)).choice(len(d["y"]), 300, replace=False)
    seeds = np.concatenate([seeds, seeds[:7]])  # a repeated seed is sampled at every position
    bases = _states(len(fanouts), seed=fanouts[0])
    got = neighbour_hops(client, schema, seeds, fanouts, bases)
    want = chained_hops(lambda f, st, k: cypher_hop(client, schema, f, st, k), seeds, fanouts, bases)
    assert len(got) == len(want) == len(fanouts)
    for (c, nb), (rc, rnb) in zip(got, want):
        np.testing.assert_array_equal(c, rc)
        np.testing.assert_array_equal(nb, rnb)


@pytest.mark.parametrize("fanouts", ([15, 10, 5], [2, -1], [200, 3]))
def test_sample_hops_adjacency_equals_chained_reference(client: Neo4jClient, cora, cora_csr: CSRGraph,
                                                        fanouts: list[int]) -> None:
    schema, d = cora
    seeds = np.random.default_rng(len(fanouts) + 5).choice(len(d["y"]), 300, replace=False)
    seeds = np.concatenate([seeds, seeds[:7]])
    bases = _states(len(fanouts), seed=fanouts[0] + 1)
    got = neighbour_hops(client, schema, seeds, fanouts, bases, adj_prop=schema.adj_prop)
    want = chained_hops(lambda f, st, k: floyd_reference(cora_csr, f, st, k), seeds, fanouts, bases)
    for (c, nb), (rc, rnb) in zip(got, want):
        np.testing.assert_array_equal(c, rc)
        np.testing.assert_array_equal(nb, rnb)


@pytest.mark.parametrize("projection_mb", (0.0, PROJECTION_MB))
def test_server_relabelling_equals_client_relabelling(client: Neo4jClient, cora, projection_mb: float) -> None:
    """The SamplerOutput assembled from gnn.sampleHops' local indices equals sample_multi_hop's
    relabelling of the same neighbour ids: nodes, rows, cols and per-hop sizes (repeated seeds too)."""
    schema, d = cora
    seeds = np.random.default_rng(31).choice(len(d["y"]), 400, replace=False)
    seeds = np.concatenate([seeds, seeds[:9]])
    fanouts, bases = [10, 5, 3], _states(3, seed=32)
    hops = sample_hops(client, schema, seeds, fanouts, bases, adj_prop=schema.adj_prop, projection_mb=projection_mb)
    neighbours = hop_neighbours(seeds, hops)
    want = sample_multi_hop(lambda frontier, fanout, hop: neighbours[hop], seeds, fanouts)
    got = sampler_output(seeds, hops)
    for attr in ("node", "row", "col"):
        assert torch.equal(getattr(got, attr), getattr(want, attr)), attr
    assert got.num_sampled_nodes == want.num_sampled_nodes and got.num_sampled_edges == want.num_sampled_edges
    assert got.num_sampled_edges[0] > 400


def test_sample_hops_unknown_seed_and_missing_adjacency(client: Neo4jClient, cora, procs) -> None:
    schema, _ = cora
    with pytest.raises(KeyError, match="999999"):
        sample_hops(client, schema, np.array([0, 999999]), [3], np.array([5]), adj_prop=schema.adj_prop)
    with pytest.raises(neo4j_exc.ClientError, match="no node has the adjacency property"):
        sample_hops(client, schema, np.array([0]), [3], np.array([5]), adj_prop=f"nope_{uuid.uuid4().hex[:8]}")
    with pytest.raises(neo4j_exc.ClientError, match="hopStates"):
        sample_hops(client, schema, np.array([0]), [3, 2], np.array([5]))


@pytest.mark.parametrize("projection_mb", (0.0, 64.0))
def test_cached_node_references_follow_deletes_and_reloads(client: Neo4jClient, procs, projection_mb: float) -> None:
    """The server caches id -> node reference (and, with a budget, projects the graph) across calls; a
    deleted or re-created node must not be served stale."""
    label = f"T_{uuid.uuid4().hex[:12]}"
    schema = load_graph(client, label, np.zeros((4, 1), np.float32), [0, 0, 0, 0], [(0, 1), (2, 1), (3, 2)])
    try:
        frontier, states = np.array([1, 2]), _states(2, 0)
        counts = sample_hop(client, schema, frontier, states, -1, projection_mb=projection_mb)[0]
        assert counts.tolist() == [2, 1]  # refs of 1 and 2 now cached
        assert list(held(client, schema).values()) == (["ready"] if projection_mb else [])
        client.write(f"MATCH (n:`{label}` {{id: 1}}) DETACH DELETE n")
        with pytest.raises(KeyError, match=r"\[1\]"):
            sample_hop(client, schema, frontier, states, -1, projection_mb=projection_mb)
        client.write(f"CREATE (:`{label}` {{id: 1}})")  # same id, new node (and reference), no in-edges
        client.write(f"MATCH (a:`{label}` {{id: 3}}), (b:`{label}` {{id: 1}}) CREATE (a)-[:`{schema.rel_type}`]->(b)")
        counts, nbrs = sample_hop(client, schema, frontier, states, -1, projection_mb=projection_mb)
        assert counts.tolist() == [1, 1] and nbrs.tolist() == [3, 3]
        got = neighbour_hops(client, schema, np.array([1]), [-1], np.array([9]), projection_mb=projection_mb)
        assert got[0][1].tolist() == [3]
    finally:
        drop_graph(client, schema)


def test_hop_states_mirror_java_and_stay_in_range() -> None:
    """Values printed by GnnProcedures.hopState(12345, 0..2) and (2^31-2, 0..1); the range holds for any base."""
    assert hop_states(12345, 3).tolist() == [840375045, 1221553288, 2068828432]
    assert hop_states(MINSTD_MODULUS - 1, 2).tolist() == [1623229157, 1853409998]
    many = hop_states(1, 100_000)
    assert many.min() >= 1 and many.max() <= MINSTD_MODULUS - 1 and len(np.unique(many)) > 99_990


# -- feature rows ---------------------------------------------------------------------------------
def test_fetch_rows_bit_exact_in_order_with_repeats(client: Neo4jClient, cora) -> None:
    schema, d = cora
    ids = np.random.default_rng(0).integers(0, len(d["y"]), size=ROWS_PER_CALL + 1808)  # two calls
    x, y = fetch_rows(client, schema, ids, num_features=d["x"].shape[1], encoding=d["encoding"])
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (len(ids), d["x"].shape[1])
    assert x.flags.writeable and y.flags.writeable  # torch.from_numpy needs writable memory
    np.testing.assert_array_equal(x.view(np.uint32), d["x"][ids].view(np.uint32))
    np.testing.assert_array_equal(y, d["y"][ids])


def test_fetch_rows_into_scattered_rows(client: Neo4jClient, cora, odd_graph) -> None:
    """``out``/``at``: each row lands in its place of a bigger batch array (sparse rows over two calls,
    dense rows), labels too, and no other row of the batch is touched."""
    schema, d = cora
    f = d["x"].shape[1]
    ids = np.random.default_rng(5).integers(0, len(d["y"]), size=ROWS_PER_CALL + 100)
    at = np.random.default_rng(6).permutation(len(ids) + 50)[:len(ids)]  # 50 rows not addressed
    x, y = np.full((len(ids) + 50, f), 7.0, dtype=np.float32), np.full(len(ids) + 50, -9, dtype=np.int64)
    got = fetch_rows(client, schema, ids, num_features=f, encoding=d["encoding"], out=(x, y), at=at)
    assert got[0] is x and got[1] is y
    np.testing.assert_array_equal(x[at].view(np.uint32), d["x"][ids].view(np.uint32))
    np.testing.assert_array_equal(y[at], d["y"][ids])
    untouched = np.setdiff1d(np.arange(len(x)), at)
    assert (x[untouched] == 7.0).all() and (y[untouched] == -9).all()
    x, y = np.zeros((6, 3), dtype=np.float32), np.zeros(6, dtype=np.int64)
    fetch_rows(client, odd_graph, np.array([89, 4]), num_features=3, out=(x, y), at=np.array([5, 1]))
    want = np.arange(90 * 3, dtype=np.float32).reshape(90, 3) / 7
    np.testing.assert_array_equal(x[[5, 1]], want[[89, 4]])
    assert y.tolist() == [0, 4, 0, 0, 0, 4] and not x[[0, 2, 3, 4]].any()
    with pytest.raises(ValueError, match="num_features is needed"):
        fetch_rows(client, odd_graph, np.array([1]), out=(x, y), at=np.array([0]))


def test_fetch_rows_calls_sized_by_row_bytes(client: Neo4jClient, cora) -> None:
    """Known row sizes give calls of about CALL_BYTES (capped); rows still come back whole and in order."""
    assert rows_per_call(None) == ROWS_PER_CALL
    assert rows_per_call(256) == MAX_ROWS_PER_CALL  # 64 float32: the row cap, not the bytes, binds
    assert rows_per_call(4 * 8415) == CALL_BYTES // (4 * 8415)  # wide dense rows: the bytes bind
    schema, d = cora
    ids = np.random.default_rng(3).integers(0, len(d["y"]), size=2500)
    x, y = fetch_rows(client, schema, ids, num_features=d["x"].shape[1], encoding=d["encoding"],
                      row_bytes=CALL_BYTES // 1000)  # 1000 rows per call: three calls
    np.testing.assert_array_equal(x.view(np.uint32), d["x"][ids].view(np.uint32))
    np.testing.assert_array_equal(y, d["y"][ids])


def test_fetch_rows_absent_y_is_minus_one(client: Neo4jClient, odd_graph) -> None:
    x, y = fetch_rows(client, odd_graph, np.array([3, 4, 0, 89]))
    assert y.tolist() == [-1, 4, -1, 4]
    np.testing.assert_array_equal(x, np.arange(90 * 3, dtype=np.float32).reshape(90, 3)[[3, 4, 0, 89]] / 7)


def test_fetch_rows_missing_ids_raise(client: Neo4jClient, cora) -> None:
    schema, _ = cora
    with pytest.raises(UserError, match=r"\[123456, -5\].*missing"):
        fetch_rows(client, schema, np.array([1, 123456, 2, -5]))


@pytest.mark.parametrize("ids", [[1, 2], b"\x01" * 12], ids=["list", "ragged-bytes"])
def test_procedures_take_ids_as_packed_int64_bytes(client: Neo4jClient, cora, ids) -> None:
    """A list (the pre-bytes form) or bytes that are not whole int64 values get a clear error."""
    schema, _ = cora
    query = "CALL gnn.fetchRows($label, $id_prop, 'x', 'y', $ids) YIELD x RETURN x"
    with pytest.raises(neo4j_exc.ClientError, match="ids must be packed int64 little-endian bytes"):
        client.read(query, label=schema.label, id_prop=schema.id_prop, ids=ids)


def test_fetch_rows_wrong_width_raises(client: Neo4jClient, cora) -> None:
    schema, d = cora
    with pytest.raises(UserError, match="does not hold .* rows of 100 features.*beyond 100"):
        fetch_rows(client, schema, np.array([1, 2]), num_features=100, encoding=d["encoding"])
    with pytest.raises(UserError, match="does not hold float32-le rows.*expected 400"):
        fetch_rows(client, schema, np.array([1, 2]), num_features=100)  # sparse rows read as dense


def test_fetch_rows_variable_length_rows(client: Neo4jClient, procs) -> None:
    """Sparse rows of different lengths, an all-zero row, -0.0, NaN and a subnormal, bit for bit."""
    x = np.zeros((6, 40), dtype=np.float32)
    x[0, [3, 39]] = [1.5, -2.0]
    x[2, :] = np.arange(40) + 1  # a full row
    x[3, 0], x[4, 7], x[5, 1] = -0.0, np.nan, np.float32(1e-42)  # row 1 stays all zero
    schema = load_graph(client, f"T_{uuid.uuid4().hex[:12]}", x, list(range(6)), [], encoding=SPARSE)
    try:
        ids = np.array([5, 1, 2, 1, 0, 4, 3])
        got, y = fetch_rows(client, schema, ids, num_features=40, encoding=SPARSE)
        np.testing.assert_array_equal(got.view(np.uint32), x[ids].view(np.uint32))
        assert y.tolist() == ids.tolist()
    finally:
        drop_graph(client, schema)


def test_fetch_rows_empty(client: Neo4jClient, cora) -> None:
    x, y = fetch_rows(client, cora[0], np.zeros(0, np.int64), num_features=1433)
    assert x.shape == (0, 1433) and y.shape == (0,)


# -- in-heap projections (projection_mb > 0) ------------------------------------------------------


def held(client: Neo4jClient, schema: GraphSchema) -> dict[str, str]:
    """State of the server's projections of ``schema``'s label, by what they hold."""
    return {p["key"].split("/", 3)[3]: p["state"] for p in projections(client)
            if p["key"].split("/")[1] == schema.label}


@pytest.mark.parametrize("adjacency", (True, False))
def test_projection_samples_equal_store_samples(client: Neo4jClient, cora, adjacency: bool) -> None:
    """Same states, same neighbour order, same Floyd draws: the projection answers as the store does."""
    schema, d = cora
    adj = schema.adj_prop if adjacency else None
    seeds = np.random.default_rng(11).choice(len(d["y"]), 500, replace=False)
    bases = _states(3, seed=12)
    store = neighbour_hops(client, schema, seeds, [15, 10, -1], bases, adj_prop=adj)
    projected = neighbour_hops(client, schema, seeds, [15, 10, -1], bases, adj_prop=adj, projection_mb=PROJECTION_MB)
    source = f"adjacency:{schema.adj_prop}" if adjacency else f"relationships:{schema.rel_type}"
    assert held(client, schema).get(source) == "ready"
    for (c, nb), (pc, pnb) in zip(store, projected):
        np.testing.assert_array_equal(c, pc)
        np.testing.assert_array_equal(nb, pnb)
    frontier = np.concatenate([seeds, [999999]])
    states = _states(len(frontier), seed=13)
    with pytest.raises(KeyError, match="999999"):
        sample_hop(client, schema, frontier, states, 5, adj_prop=adj, projection_mb=PROJECTION_MB)
    got = sample_hop(client, schema, frontier[:-1], states[:-1], 5, adj_prop=adj, projection_mb=PROJECTION_MB)
    want = sample_hop(client, schema, frontier[:-1], states[:-1], 5, adj_prop=adj)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_projection_with_gapped_shuffled_ids_equals_store(client: Neo4jClient, procs) -> None:
    """Ids that are not the scan positions 0..n-1 (gaps, created out of order) take the projection's
    slot-array path (cora takes the slot == id path): samples and rows still equal the store's."""
    rng = np.random.default_rng(21)
    n = 300
    ids = rng.permutation(np.arange(n) * 3 + 1)  # 1, 4, 7, ... created in random order
    label = f"T_{uuid.uuid4().hex[:12]}"
    schema = GraphSchema.for_dataset(label, label=label)
    client.write(f"CREATE CONSTRAINT `{schema.constraint_name}` FOR (n:`{label}`) REQUIRE n.id IS UNIQUE")
    x = rng.standard_normal((n, 5)).astype(np.float32)
    client.write(f"UNWIND $rows AS r CREATE (:`{label}` {{id: r.id, x: r.x, y: r.y}})",
                 rows=[{"id": int(i), "x": row, "y": int(i) % 7} for i, row in zip(ids, encode_features(x))])
    edges = rng.choice(ids, size=(2000, 2))
    client.write(f"UNWIND $rows AS r MATCH (a:`{label}` {{id: r[0]}}) MATCH (b:`{label}` {{id: r[1]}}) "
                 f"CREATE (a)-[:`{schema.rel_type}`]->(b)", rows=edges.tolist())
    try:
        seeds, bases = rng.choice(ids, 40, replace=False), _states(3, seed=22)
        store = neighbour_hops(client, schema, seeds, [5, 3, 2], bases)
        projected = neighbour_hops(client, schema, seeds, [5, 3, 2], bases, projection_mb=PROJECTION_MB)
        assert held(client, schema).get(f"relationships:{schema.rel_type}") == "ready"
        assert sum(len(nb) for _, nb in store) > 40
        for (c, nb), (pc, pnb) in zip(store, projected):
            np.testing.assert_array_equal(c, pc)
            np.testing.assert_array_equal(nb, pnb)
        asked = np.concatenate([rng.choice(ids, 100), [2]])  # 2 is in a gap
        with pytest.raises(UserError, match=r"\[2\].*missing"):
            fetch_rows(client, schema, asked, projection_mb=PROJECTION_MB)
        got, y = fetch_rows(client, schema, asked[:-1], projection_mb=PROJECTION_MB)
        slot = {int(i): k for k, i in enumerate(ids)}
        want = x[[slot[int(i)] for i in asked[:-1]]]
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
        np.testing.assert_array_equal(y, asked[:-1] % 7)
    finally:
        drop_graph(client, schema)


def test_projection_rows_equal_store_rows(client: Neo4jClient, cora) -> None:
    schema, d = cora
    ids = np.random.default_rng(1).integers(0, len(d["y"]), size=3000)
    kw = {"num_features": d["x"].shape[1], "encoding": d["encoding"]}
    x, y = fetch_rows(client, schema, ids, projection_mb=PROJECTION_MB, **kw)
    assert held(client, schema).get(f"rows:{schema.x_prop}/{schema.y_prop}") == "ready"
    np.testing.assert_array_equal(x.view(np.uint32), d["x"][ids].view(np.uint32))
    np.testing.assert_array_equal(y, d["y"][ids])
    with pytest.raises(UserError, match=r"\[123456, -5\].*missing"):
        fetch_rows(client, schema, np.array([1, 123456, 2, -5]), projection_mb=PROJECTION_MB, **kw)


def test_projection_over_budget_reads_the_store(client: Neo4jClient, odd_graph) -> None:
    """A dataset bigger than the budget is served from the store (and says why); answers are unchanged."""
    frontier, states = np.array([0, 1, 4, 2]), _states(4, seed=8)
    got = sample_hop(client, odd_graph, frontier, states, 3, adj_prop=odd_graph.adj_prop, projection_mb=1e-4)
    want = sample_hop(client, odd_graph, frontier, states, 3, adj_prop=odd_graph.adj_prop)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    assert held(client, odd_graph)[f"adjacency:{odd_graph.adj_prop}"].startswith("not projected: needs more than")
    x, y = fetch_rows(client, odd_graph, np.array([3, 4, 0, 89]), projection_mb=PROJECTION_MB)
    assert y.tolist() == [-1, 4, -1, 4]  # absent y is -1 from the projection too
    np.testing.assert_array_equal(x, np.arange(90 * 3, dtype=np.float32).reshape(90, 3)[[3, 4, 0, 89]] / 7)


def test_projection_follows_writes(client: Neo4jClient, procs) -> None:
    """Any committed write drops the projections of its database: the next call sees new neighbours and rows."""
    label = f"T_{uuid.uuid4().hex[:12]}"
    schema = load_graph(client, label, np.eye(4, dtype=np.float32), [0, 1, 2, 3], [(0, 1), (2, 1), (3, 2)])
    adj = schema.adj_prop
    try:
        rows = [{"id": i, "b": encode_adjacency(np.array([0, len(v)]), np.array(v, np.int64))[0]}
                for i, v in enumerate([[], [0, 2], [3], []])]
        client.write(f"UNWIND $rows AS r MATCH (n:`{label}` {{id: r.id}}) SET n.`{adj}` = r.b", rows=rows)
        frontier, states = np.array([1, 2]), _states(2, 0)
        assert sample_hop(client, schema, frontier, states, -1, adj_prop=adj,
                          projection_mb=PROJECTION_MB)[1].tolist() == [0, 2, 3]
        x, _ = fetch_rows(client, schema, np.array([2]), projection_mb=PROJECTION_MB)
        assert x.tolist() == [[0, 0, 1, 0]] and set(held(client, schema).values()) == {"ready"}
        client.write(f"MATCH (n:`{label}` {{id: 2}}) SET n.`{adj}` = $b, n.x = $x",
                     b=np.array([1, 0], "<i8").tobytes(), x=np.full(4, 7, "<f4").tobytes())
        assert held(client, schema) == {}
        assert sample_hop(client, schema, frontier, states, -1, adj_prop=adj,
                          projection_mb=PROJECTION_MB)[1].tolist() == [0, 2, 1, 0]
        x, _ = fetch_rows(client, schema, np.array([2]), projection_mb=PROJECTION_MB)
        assert x.tolist() == [[7, 7, 7, 7]]
    finally:
        drop_graph(client, schema)


def test_projection_built_once_for_concurrent_callers(client: Neo4jClient, cora) -> None:
    """Ranks asking at once share one build and get the store's answer."""
    schema, d = cora
    client.write("CREATE (n:GnnProjectionTestWrite) DELETE n")  # any write: start from no projection
    seeds = np.arange(200, dtype=np.int64)
    bases = _states(2, seed=4)
    want = neighbour_hops(client, schema, seeds, [10, 5], bases, adj_prop=schema.adj_prop)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: neighbour_hops(client, schema, seeds, [10, 5], bases, adj_prop=schema.adj_prop,
                                                     projection_mb=PROJECTION_MB), range(4)))
    assert all(np.array_equal(a, b) for g in got for hop, ref in zip(g, want) for a, b in zip(hop, ref))
    assert list(held(client, schema).values()) == ["ready"]
