"""Degree warm-up of the feature cache against a real Neo4j: ``gnn.hotNodes``, its Cypher twin and
the warm-up itself, checked against out-degrees counted in numpy from the source edges.

Graphs: the shared ``pytest_cora`` (undirected: out-degree = in-degree) and a small directed,
skewed graph with loops, parallel edges and isolated nodes under its own ``T_<uuid>`` name
(there out- and in-degree differ, so counting the wrong direction fails), deleted at the end.
"""
from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch

from src.neo4jdb.backend import Neo4jBackend
from src.client import Neo4jClient
from src.data.graph import GraphDataset
from src.core.errors import UsageError
from src.feature_store import Neo4jFeatureStore
from src.neo4jdb.access import Neo4jAccess
from src.core.hot_nodes import cypher_query
from src.neo4jdb.procedures import has_hot_nodes, hot_nodes
from src.data.loading import LoadConfig
from src.neo4jdb.load.ensure import ensure_loaded
from src.neo4jdb.load.records import delete_dataset, require_loaded
from src.core.schema import GraphSchema
from tests import backend_checks as checks

pytestmark = pytest.mark.neo4j


@pytest.fixture(scope="module")
def cora(loaded_dataset):
    return loaded_dataset("cora")


@pytest.fixture(scope="module")
def directed(client: Neo4jClient):
    """A directed power-law-ish graph: 400 nodes, targets uniform, sources skewed; loops, repeats, isolated."""
    rng = np.random.default_rng(5)
    n, e = 400, 3000
    src = np.minimum((rng.pareto(1.2, e) * 10).astype(np.int64), n - 41)  # nodes n-40.. have no out-edges
    dst = rng.integers(0, n, e)
    src[:5], dst[:5] = 7, 7  # self-loops
    src[5:10], dst[5:10] = 3, 11  # a parallel edge
    x = rng.standard_normal((n, 8)).astype(np.float32)
    name = f"T_{uuid.uuid4().hex[:12]}"
    ds = GraphDataset(name, n, 8, 3, np.vstack([src, dst]), x, rng.integers(0, 3, n),
                      np.arange(200), np.arange(200, 300), np.arange(300, 400))
    schema = GraphSchema.for_dataset(name)
    ensure_loaded(client, ds, schema, LoadConfig(progress=False))
    yield ds, schema, require_loaded(client, schema.dataset)
    delete_dataset(client, schema.dataset, schema.label, schema.rel_type)


@pytest.mark.parametrize("graph", ["cora", "directed"])
@pytest.mark.parametrize("projection_mb", [0.0, 512.0], ids=["store", "projection"])
@pytest.mark.parametrize("adjacency", [True, False], ids=["adjacency", "relationships"])
def test_hot_nodes_equal_numpy_top_k(client: Neo4jClient, request, graph: str, projection_mb: float,
                                     adjacency: bool) -> None:
    ds, schema, _ = request.getfixturevalue(graph)
    assert has_hot_nodes(client)
    adj = schema.adj_prop if adjacency else None
    want_ids, want_deg = checks.top_degree_ids(ds, ds.num_nodes)
    ids, deg, projected = hot_nodes(client, schema, ds.num_nodes + 10, adj_prop=adj, projection_mb=projection_mb)
    assert projected == (projection_mb > 0)
    assert np.array_equal(ids, want_ids) and np.array_equal(deg, want_deg)  # every node, ties by id
    k = ds.num_nodes // 7
    ids_k, deg_k, _ = hot_nodes(client, schema, k, adj_prop=adj, projection_mb=projection_mb)
    assert np.array_equal(ids_k, want_ids[:k]) and np.array_equal(deg_k, want_deg[:k])
    assert len(hot_nodes(client, schema, 0, adj_prop=adj, projection_mb=projection_mb)[0]) == 0


@pytest.mark.parametrize("graph", ["cora", "directed"])
def test_cypher_hot_nodes_equal_numpy_top_k(client: Neo4jClient, request, graph: str) -> None:
    ds, schema, _ = request.getfixturevalue(graph)
    k = ds.num_nodes // 3
    for count_subquery in (True, False):
        got = client.read_tx(lambda tx: tx.run(cypher_query(schema, count_subquery=count_subquery), k=k).value("id"))
        assert np.array_equal(np.asarray(got), checks.top_degree_ids(ds, k)[0])


def test_hot_nodes_rejects_negative_k(client: Neo4jClient, cora) -> None:
    _, schema, _ = cora
    with pytest.raises(ValueError, match="k must be >= 0"):
        hot_nodes(client, schema, -1)


@pytest.mark.parametrize("use_procedures", [True, False], ids=["procedure", "cypher"])
def test_warm_cache_holds_top_rows_within_budget(client: Neo4jClient, directed, use_procedures: bool) -> None:
    ds, schema, rec = directed
    checks.check_cache_warm(lambda mb: Neo4jFeatureStore.from_record(
        client, rec, cache_mb=mb,
        access=Neo4jAccess(use_procedures, schema.adj_prop if use_procedures else None, 512.0)),
        ds)


def test_warm_cache_unknown_policy(client: Neo4jClient, cora) -> None:
    _, schema, rec = cora
    with pytest.raises(UsageError, match="unknown cache warm-up policy"):
        Neo4jFeatureStore.from_record(client, rec, cache_mb=1).warm_cache("lru")


def _batches(backend: Neo4jBackend, n: int = 3) -> list:
    seeds = backend.split_nodes("train")
    out = []
    for batch in backend.make_loader(seeds, shuffle=True, seed=3):
        out.append((batch.x.to_dense() if batch.x.is_sparse else batch.x, batch.y, batch.edge_index, batch.n_id))
        if len(out) == n:
            break
    return out


def test_warmed_cache_gives_the_same_batches(client: Neo4jClient, loaded_dataset) -> None:
    """x, y and the sampled subgraph are the same with a warmed cache, a cache filled by use, and none."""
    _, schema, rec = loaded_dataset("cora", "dense")  # the cache holds dense rows: sparse-stored cora gets none
    runs = {}
    for name, cache_mb, warm in [("none", 0.0, "degree"), ("use", 2.0, "none"), ("degree", 2.0, "degree")]:
        backend = Neo4jBackend(client, rec, fanouts=[10, 5], batch_size=256, num_loader_threads=1,
                               cache_mb=cache_mb, cache_warm=warm,
                               access=Neo4jAccess.resolve(client, schema, rec, projection_mb=512))
        runs[name] = _batches(backend)
        runs[name + "_stats"] = backend.stats()
    warm = runs["degree_stats"]["cache_warm"]
    assert runs["none_stats"]["cache_warm"] is None and runs["use_stats"]["cache_warm"] is None
    assert warm["policy"] == "degree" and warm["rows"] == Neo4jFeatureStore.from_record(
        client, rec, cache_mb=2.0).cache.capacity
    for other in ("use", "degree"):
        for a, b in zip(runs["none"], runs[other]):
            for ta, tb in zip(a, b):
                assert torch.equal(ta, tb)
    assert runs["degree_stats"]["cache_hit_rate"] > runs["use_stats"]["cache_hit_rate"]
