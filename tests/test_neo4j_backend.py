"""The Neo4j PyG backend against a real server and real shipped graphs.

Cora is loaded once per module under a unique label; the in-memory CSR sampler over the same
source arrays is the oracle. The checks themselves are shared with the Ladybug backend
(tests/backend_checks.py).
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from src.neo4jdb.backend import Neo4jBackend
from src.client import Neo4jClient
from src.core.csr import CSRGraph
from src.data.graph import GraphDataset
from src.core.errors import UserError
from src.feature_store import Neo4jFeatureStore
from src.neo4jdb.access import Neo4jAccess
from src.core.minstd import MINSTD_MODULUS
from src.graph_sampler import Neo4jNeighborSampler
from src.graph_store import Neo4jGraphStore
from src.train.model import MODELS
from tests import backend_checks as checks
from src.core.codecs import DENSE, SPARSE


@pytest.fixture(scope="module")
def cora(loaded_dataset) -> tuple[GraphDataset, object, dict]:
    return loaded_dataset("cora")


@pytest.fixture(scope="module")
def cora_dense(loaded_dataset) -> tuple[GraphDataset, object, dict]:
    """cora with its features stored dense: the feature cache holds dense rows, so cache tests use it."""
    return loaded_dataset("cora", "dense")


@pytest.fixture(scope="module")
def csr(cora) -> CSRGraph:
    ds = cora[0]
    return CSRGraph.from_edge_index(np.asarray(ds.edge_index), ds.num_nodes)


# The sampling paths: Cypher (one query per hop), the procedures walking relationships
# (gnn.sampleHops, one call per batch), the procedures reading the packed adjacency property, and
# the same from the server's in-heap projection of it.
MODES = {"cypher": {"access": Neo4jAccess.cypher()}, "procedure": {"access": Neo4jAccess(use_procedures=True)},
         "adjacency": {"access": Neo4jAccess(use_procedures=True, adj_prop="nbrs")},
         "projection": {"access": Neo4jAccess(use_procedures=True, adj_prop="nbrs", projection_mb=64.0)}}
# The feature paths: Cypher, gnn.fetchRows from the store, gnn.fetchRows from a projection.
FEATURE_MODES = {"cypher": {"access": Neo4jAccess.cypher()}, "procedure": {"access": Neo4jAccess(use_procedures=True)},
                 "projection": {"access": Neo4jAccess(use_procedures=True, projection_mb=64.0)}}


@pytest.mark.parametrize("mode", FEATURE_MODES)
@pytest.mark.parametrize(("name", "feature_format", "encoding"), [
    ("cora", "auto", SPARSE),  # 1.3% non-zero
    ("cora", "dense", DENSE),
    ("citeseer", "auto", SPARSE),  # 0.85% non-zero, 15 all-zero rows
])
def test_features_bit_exact_in_order_with_repeats(client: Neo4jClient, loaded_dataset, mode: str,
                                                  name: str, feature_format: str, encoding: str) -> None:
    ds, schema, rec = loaded_dataset(name, feature_format)
    assert rec.feature_encoding == encoding
    checks.check_features_bit_exact(Neo4jFeatureStore.from_record(client, rec, **FEATURE_MODES[mode]), ds)


def test_unknown_ids_clear_error(client: Neo4jClient, cora) -> None:
    ds, schema, rec = cora
    fs = Neo4jFeatureStore.from_record(client, rec)
    with pytest.raises(UserError, match="unknown node ids"):
        fs.fetch(np.array([0, ds.num_nodes + 5]))


def test_hot_node_cache_hits_and_stays_exact(client: Neo4jClient, cora_dense) -> None:
    ds, schema, rec = cora_dense
    checks.check_hot_node_cache(Neo4jFeatureStore.from_record(client, rec, cache_mb=64), ds)


def test_cache_full_keeps_first_rows_and_stays_exact(client: Neo4jClient, cora_dense) -> None:
    ds, schema, rec = cora_dense
    checks.check_cache_full(lambda mb: Neo4jFeatureStore.from_record(client, rec, cache_mb=mb), ds)


def test_sparse_stored_rows_get_no_cache(client: Neo4jClient, cora, caplog) -> None:
    """The cache holds dense rows, so a sparse-stored dataset runs without it (warned), rows kept sparse."""
    ds, schema, rec = cora
    assert rec.feature_encoding == SPARSE
    with caplog.at_level(logging.WARNING, logger="src.feature_store"):
        fs = Neo4jFeatureStore.from_record(client, rec, cache_mb=64)
    assert fs.cache is None and fs.sparse_rows and fs.warm_cache("degree") is None
    assert "the cache (--cache_mb 64) is off" in caplog.text
    ids = np.random.default_rng(4).permutation(ds.num_nodes)[:300]
    x, y = fs.fetch_sparse(ids)
    assert np.array_equal(x.toarray().view(np.uint32), ds.features(ids).view(np.uint32))
    assert np.array_equal(y, np.asarray(ds.y)[ids])


@pytest.mark.parametrize("cache_mb", [64, 1], ids=["fits", "fills"])
def test_cache_concurrent_fetches_exact(client: Neo4jClient, cora_dense, cache_mb: float) -> None:
    ds, schema, rec = cora_dense
    checks.check_cache_concurrent(Neo4jFeatureStore.from_record(client, rec, cache_mb=cache_mb), ds)


def test_graph_store_sizes_and_guard(client: Neo4jClient, cora) -> None:
    ds, schema, _ = cora
    gs = Neo4jGraphStore(client, schema)
    checks.check_graph_store(gs, ds)
    with pytest.raises(UserError, match="more than"):
        gs.materialise_edge_index(max_edges=100)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fanouts", [[5, 3], [15, 10, 5]])
def test_sampled_edges_real_and_fanout_respected(client: Neo4jClient, cora, csr: CSRGraph, fanouts,
                                                 mode: str) -> None:
    ds, schema, _ = cora
    sampler = Neo4jNeighborSampler(client, schema, fanouts, seed=1, **MODES[mode])
    checks.check_sampled_edges_real_and_fanout(sampler, ds, csr, fanouts)


@pytest.mark.parametrize("mode", MODES)
def test_forced_sample_equals_in_memory(client: Neo4jClient, cora, csr: CSRGraph, mode: str) -> None:
    ds, schema, _ = cora
    big = int(csr.degree(np.arange(ds.num_nodes)).max())
    neo, mem = checks.check_forced_sample_equals_in_memory(
        Neo4jNeighborSampler(client, schema, [big, big], seed=0, **MODES[mode]), ds, csr)
    if mode in ("adjacency", "projection"):  # same neighbour order as the CSR: the very same SamplerOutput
        assert torch.equal(neo.node, mem.node) and torch.equal(neo.row, mem.row) and torch.equal(neo.col, mem.col)


@pytest.mark.parametrize("mode", MODES)
def test_reproducible_under_seed(client: Neo4jClient, cora, mode: str) -> None:
    _, schema, _ = cora
    checks.check_reproducible(lambda seed: Neo4jNeighborSampler(client, schema, [5, 5], seed=seed, **MODES[mode]))


class _BiasedSampler(Neo4jNeighborSampler):
    """Deliberately broken: only a handful of random states, so a few subsets dominate."""

    def hop(self, frontier, fanout, rng):
        return super().hop(frontier, fanout, np.random.default_rng(rng.integers(0, 3)))


@pytest.mark.parametrize("batched", [False, True], ids=["hop", "batch"])
@pytest.mark.parametrize("mode", MODES)
def test_uniformity_chi_square_and_power(client: Neo4jClient, cora, csr: CSRGraph, mode: str, batched: bool) -> None:
    ds, schema, _ = cora
    node, degree = checks.degree20_node(ds, csr)
    sampler = Neo4jNeighborSampler(client, schema, [4], seed=0, **MODES[mode])
    fair = checks.draw_counts_batched(sampler, node, 10_000) if batched else checks.draw_counts(sampler, node, 10_000, 4)
    checks.check_uniform(fair, degree)
    if mode != "cypher" or batched:
        return  # the power check below is about the test, not the path: run it once
    checks.check_rejected(checks.draw_counts(_BiasedSampler(client, schema, [4], seed=0), node, 10_000, 4), degree)


@pytest.mark.parametrize("mode", MODES)
def test_low_degree_nodes_return_all_neighbours(client: Neo4jClient, cora, csr: CSRGraph, mode: str) -> None:
    ds, schema, _ = cora
    checks.check_low_degree_nodes_return_all(Neo4jNeighborSampler(client, schema, [5], seed=0, **MODES[mode]),
                                             ds, csr)


def test_minstd_states_in_range() -> None:
    assert MINSTD_MODULUS == 2**31 - 1


@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_through_nodeloader(client: Neo4jClient, cora, model: str) -> None:
    ds, schema, rec = cora
    backend = Neo4jBackend(client, rec, fanouts=[10, 10], batch_size=64, num_loader_threads=2)
    batches = checks.check_graphsage_trains(backend, ds, model=model)
    stats = backend.stats()
    assert stats["procedures"] is True  # the local server installs the gnn.* plugin
    assert stats["adjacency"] is True  # the loader writes the adjacency property
    assert stats["sampling_queries"] == batches  # one call per batch


def test_splits_read_a_range_of_ids_at_a_time_miss_no_node(client: Neo4jClient, cora, monkeypatch) -> None:
    """Splits are read one id range per query (src/backends/database.py); nodes added with Cypher outside
    ``0..num_nodes-1`` (a negative id, one far beyond) are read too, each once, as one collect sees them."""
    from src.backends import database

    _, schema, record = cora
    monkeypatch.setattr(database, "SPLIT_IDS_PER_QUERY", 300)  # cora's 2,708 ids: 10 ranges
    added = [-7, 10**12]
    client.write(f"UNWIND $ids AS i CREATE (:`{schema.label}` {{id: i, split: 'train'}})", ids=added)
    try:
        backend = Neo4jBackend(client, record, fanouts=[5], batch_size=16, num_loader_threads=1)
        for split in ("train", "val", "test"):
            want = client.read(f"MATCH (n:`{schema.label}`) WHERE n.split = $split RETURN collect(n.id) AS ids",
                               split=split)[0]["ids"]
            assert backend.split_nodes(split).tolist() == sorted(want), split
        assert set(added) <= set(backend.split_nodes("train").tolist())
    finally:
        client.write(f"MATCH (n:`{schema.label}`) WHERE n.id IN $ids DETACH DELETE n", ids=added)
