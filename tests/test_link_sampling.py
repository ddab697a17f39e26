"""Link prediction's edge split and link batches against a real Neo4j and the real cora graph.

The stored split (src/neo4jdb/edge_split.py) is what the checks read back with Cypher, so "no
held-out edge in a training batch" is checked against the database's own marks, on every sampling
path: Cypher (relationships without the marks), gnn.sampleHops over the training adjacency copy,
the same from the server's projection, and the in-memory training graph.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch_geometric.sampler import NegativeSampling

from src.core.csr import CSRGraph
from src.core.edge_split import EdgeSplitSpec, pair_keys, split_graph, training_graph, unique_pairs
from src.core.errors import UsageError, UserError
from src.core.schema import GraphSchema
from src.data.loading import LoadConfig
from src.data.sources import load_dataset
from src.in_memory.full_graph import FullGraphBackend
from src.neo4jdb.access import Neo4jAccess
from src.neo4jdb.backend import Neo4jBackend
from src.core.minstd import MINSTD_MODULUS
from src.neo4jdb import edge_split as stored_edge_split
from src.neo4jdb.edge_split import read_edge_split, write_edge_split
from src.neo4jdb.load.ensure import ensure_loaded
from src.neo4jdb.load.records import require_loaded
from tests.test_procedures import chained_hops, floyd_reference

SPEC = EdgeSplitSpec(0.85, 0.05, 0.10, seed=0)
MODES = {"cypher": Neo4jAccess.cypher(), "adjacency": Neo4jAccess(use_procedures=True, adj_prop="nbrs"),
         "projection": Neo4jAccess(use_procedures=True, adj_prop="nbrs", projection_mb=64.0)}
NEG = NegativeSampling("binary", 1.0)
EPOCHS = 1  # of all 4,486 training pairs in 71 batches per path (a second epoch measured the same, 2x slower)


@pytest.fixture(scope="module")
def cora(loaded_dataset, client):
    ds, schema, record = loaded_dataset("cora")
    write_edge_split(client, record, SPEC, progress=False)  # a no-op when this split is stored already
    return ds, schema, record


@pytest.fixture(scope="module")
def held_out_keys(cora, client) -> np.ndarray:
    """Pair keys of the relationships the database marks as validation or test (read with plain Cypher)."""
    ds, s, _ = cora
    rows = client.read(f"MATCH (a:`{s.label}`)-[r:`{s.rel_type}`]->(b:`{s.label}`) WHERE r.split IN ['val', 'test'] "
                       "RETURN a.id AS u, b.id AS v")
    keys = np.unique(pair_keys([r["u"] for r in rows], [r["v"] for r in rows], ds.num_nodes))
    assert len(keys) == int(0.05 * 5278) + int(0.10 * 5278)  # cora: 5,278 pairs, no self-loops
    return keys


@pytest.fixture(scope="module")
def cora_parallel(client):
    """cora with 400 of its undirected pairs stored twice (parallel relationships both ways), as the synthetic
    generator keeps duplicates across its pair blocks: a held-out pair must take every copy out of training,
    and every path must keep the training copies' multiplicity (a node's neighbours are drawn per relationship)."""
    base = load_dataset("cora")
    ei = np.asarray(base.edge_index)
    doubled = ei[:, ei[0] < ei[1]][:, :400]
    ds = dataclasses.replace(base, name="cora_parallel", edge_index=np.concatenate([ei, doubled, doubled[::-1]], axis=1))
    schema = GraphSchema.for_dataset("pytest_cora_parallel")
    ensure_loaded(client, ds, schema, LoadConfig(progress=False))
    record = require_loaded(client, schema.dataset)
    write_edge_split(client, record, SPEC, progress=False)
    return ds, schema, record


def neo4j_backend(client, record, access: Neo4jAccess, batch_size: int = 64) -> Neo4jBackend:
    return Neo4jBackend(client, record, fanouts=[10, 5], batch_size=batch_size, num_loader_threads=0, access=access)


def memory_backend(ds, batch_size: int = 64) -> FullGraphBackend:
    return FullGraphBackend(ds, fanouts=[10, 5], batch_size=batch_size, num_loader_threads=0)


def batch_edges(batch) -> np.ndarray:
    """Global (source, destination) of a batch's message-passing edges, ``[2, E]``."""
    return batch.n_id[batch.edge_index].numpy()


def test_stored_split_equals_the_in_memory_split(cora, client):
    ds, _, record = cora
    stored, names = read_edge_split(client, record, SPEC)
    memory = split_graph(CSRGraph.from_edge_index(np.asarray(ds.edge_index), ds.num_nodes), SPEC)
    for part in ("train", "val", "test"):
        assert np.array_equal(stored.part(part), memory.part(part)), part
    assert names.train_adj_prop == "nbrs_train"
    # undirected pairs together: no pair is in two parts
    keys = [set(pair_keys(p[:, 0], p[:, 1], ds.num_nodes).tolist()) for p in (stored.train, stored.val, stored.test)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])


def test_split_written_and_read_in_pages(cora, client, monkeypatch):
    """Pages and batches smaller than the graph (cora's 2,708 nodes in pages of 1,000, as 1M-node graphs are
    read) store and read back the same split and the same training adjacency copy as the in-memory split."""
    ds, _, record = cora
    monkeypatch.setattr(stored_edge_split, "PAGE_NODES", 1000)
    monkeypatch.setattr(stored_edge_split, "BATCH_ROWS", 1000)
    write_edge_split(client, record, SPEC, reset=True, progress=False)
    stored, names = read_edge_split(client, record, SPEC)
    csr = CSRGraph.from_edge_index(np.asarray(ds.edge_index), ds.num_nodes)
    memory = split_graph(csr, SPEC)
    for part in ("train", "val", "test"):
        assert np.array_equal(stored.part(part), memory.part(part)), part
    copy, expected = stored_edge_split.read_adjacency(client, record, names.train_adj_prop), training_graph(csr, memory)
    assert np.array_equal(copy.indptr, expected.indptr) and np.array_equal(copy.indices, expected.indices)


def test_parallel_relationships_split_together(cora_parallel, client):
    """Every copy of a held-out pair is marked in the database, and the training adjacency copy keeps every copy
    of a training pair: it equals the in-memory training graph, multiplicities included."""
    ds, s, record = cora_parallel
    ei, n = np.asarray(ds.edge_index), ds.num_nodes
    csr = CSRGraph.from_edge_index(ei, n)
    memory = split_graph(csr, SPEC)
    marked = client.read(f"MATCH (:`{s.label}`)-[r:`{s.rel_type}`]->(:`{s.label}`) WHERE r.split IN ['val', 'test'] "
                         "RETURN count(r) AS c")[0]["c"]
    assert marked == int(np.isin(pair_keys(ei[0], ei[1], n), memory.held_out_keys()).sum())
    stored, names = read_edge_split(client, record, SPEC)
    for part in ("train", "val", "test"):
        assert np.array_equal(stored.part(part), memory.part(part)), part
    copy, expected = stored_edge_split.read_adjacency(client, record, names.train_adj_prop), training_graph(csr, memory)
    assert np.array_equal(copy.indptr, expected.indptr) and np.array_equal(copy.indices, expected.indices)
    rows = np.repeat(np.arange(n), np.diff(expected.indptr))
    keys = rows * n + expected.indices
    assert len(keys) - len(np.unique(keys)) > 300  # most doubled pairs are training pairs, kept twice


@pytest.mark.parametrize("mode", [*MODES, "in_memory"])
def test_no_held_out_edge_in_any_training_batch(cora, client, held_out_keys, mode):
    ds, _, record = cora
    backend = memory_backend(ds) if mode == "in_memory" else neo4j_backend(client, record, MODES[mode])
    split = backend.use_edge_split(SPEC)
    every = set(pair_keys(ds.edge_index[0], ds.edge_index[1], ds.num_nodes).tolist())
    batches, edges = 0, 0
    for epoch in range(EPOCHS):
        pairs = torch.from_numpy(split.train[np.random.default_rng(epoch).permutation(len(split.train))])
        for batch in backend.make_link_loader(pairs, seed=epoch, neg_sampling=NEG):
            src, dst = batch_edges(batch)
            keys = pair_keys(src, dst, ds.num_nodes)
            assert not np.isin(keys, held_out_keys).any(), "a held-out pair was a message-passing edge"
            assert set(keys.tolist()) <= every  # and every message-passing edge is an edge of the graph
            batches, edges = batches + 1, edges + len(keys)
    assert batches == EPOCHS * -(-len(split.train) // 64) and edges > EPOCHS * 25_000


@pytest.mark.parametrize("graph", ["cora", "cora_parallel"])
@pytest.mark.parametrize("mode", ["adjacency", "projection"])
def test_link_batches_equal_between_neo4j_and_in_memory(request, client, graph, mode):
    """Same seed, same batches: positives, negatives, seeds and labels are equal; the neighbourhood the
    server drew from its training copy is exactly the procedures' Floyd/minstd draw replayed over the
    in-memory training graph (the in-memory sampler's own draw uses another generator, as for nodes), parallel
    relationships included."""
    ds, _, record = request.getfixturevalue(graph)
    neo, mem = neo4j_backend(client, record, MODES[mode]), memory_backend(ds)
    split = neo.use_edge_split(SPEC)
    mem.use_edge_split(SPEC)
    pairs = torch.from_numpy(split.train[:640])
    neo_loader = neo.make_link_loader(pairs, seed=3, neg_sampling=NEG)
    batches = 0
    for a, b in zip(neo_loader, mem.make_link_loader(pairs, seed=3, neg_sampling=NEG), strict=True):
        seeds = a.n_id[:a.num_sampled_nodes[0]]
        assert torch.equal(seeds, b.n_id[:b.num_sampled_nodes[0]])
        for key in ("edge_label_index", "edge_label", "input_id"):
            assert torch.equal(getattr(a, key), getattr(b, key)), key
        sampler = neo._samplers[0]
        bases = sampler.batch_rng(seeds.numpy()).integers(1, MINSTD_MODULUS, size=2, dtype=np.int64)
        want = chained_hops(lambda f, st, k: floyd_reference(mem.csr, f, st, k), seeds.numpy(), [10, 5], bases)
        src, dst = batch_edges(a)
        frontier, seen, at = seeds.numpy(), set(seeds.tolist()), 0
        for (counts, nbrs), n_edges in zip(want, a.num_sampled_edges, strict=True):
            assert np.array_equal(src[at:at + n_edges], nbrs)
            assert np.array_equal(dst[at:at + n_edges], np.repeat(frontier, counts))
            frontier = np.array([u for u in dict.fromkeys(nbrs.tolist()) if u not in seen], np.int64)
            seen.update(frontier.tolist())
            at += n_edges
        assert torch.equal(a.y, torch.as_tensor(np.asarray(ds.y), dtype=torch.long)[a.n_id])
        batches += 1
    assert batches == 10 and neo.sampling_queries() == 10  # one gnn.sampleHops call per batch


def test_link_batch_layout_and_reproducibility(cora):
    ds = cora[0]
    backend = memory_backend(ds, batch_size=100)
    split = backend.use_edge_split(SPEC)
    pairs = torch.from_numpy(split.train[:300])
    first = list(backend.make_link_loader(pairs, seed=7, neg_sampling=NegativeSampling("binary", 2.0)))
    again = list(backend.make_link_loader(pairs, seed=7, neg_sampling=NegativeSampling("binary", 2.0)))
    for i, (batch, same) in enumerate(zip(first, again)):
        assert torch.equal(batch.edge_label_index, same.edge_label_index) and torch.equal(batch.n_id, same.n_id)
        label_index = batch.n_id[batch.edge_label_index]
        assert torch.equal(label_index[:, :100].t(), pairs[100 * i:100 * (i + 1)])  # positives first, in order
        assert batch.edge_label.tolist() == [1.0] * 100 + [0.0] * 200  # ratio 2
        assert int(batch.edge_label_index.max()) < batch.num_sampled_nodes[0]  # endpoints are the seeds


def test_negatives_are_counted_against_the_graph(cora):
    """Negatives are drawn without checking the graph (as PyG does); how many are edges is small and measured."""
    ds = cora[0]
    backend = memory_backend(ds, batch_size=256)
    split = backend.use_edge_split(SPEC)
    every = pair_keys(ds.edge_index[0], ds.edge_index[1], ds.num_nodes)
    negatives = hits = 0
    for batch in backend.make_link_loader(torch.from_numpy(split.train), seed=0, neg_sampling=NEG):
        neg = batch.n_id[batch.edge_label_index[:, batch.edge_label == 0]].numpy()
        negatives += neg.shape[1]
        hits += int(np.isin(pair_keys(neg[0], neg[1], ds.num_nodes), every).sum())
    assert negatives == len(split.train)
    assert hits / negatives < 0.005  # cora: 2 * 5,278 / 2,708^2 = 0.14% of uniform pairs are edges


def test_degree_biased_negatives_follow_the_training_degrees(cora, client):
    ds, _, record = cora
    neo, mem = neo4j_backend(client, record, MODES["adjacency"]), memory_backend(ds)
    split = neo.use_edge_split(SPEC)
    mem.use_edge_split(SPEC)
    degrees = mem.training_degrees()
    assert torch.equal(neo.training_degrees(), degrees)
    # the training graph: training pairs and the 2 pairs no part got (0.85 of 5,278 rounds down), both directions
    assert int(degrees.sum()) == 2 * (len(split.train) + 5278 - 4486 - 263 - 527) == 8976
    biased = NegativeSampling("binary", 1.0, src_weight=degrees.float(), dst_weight=degrees.float())
    ends = np.concatenate([b.n_id[b.edge_label_index[:, b.edge_label == 0]].numpy().ravel()
                           for b in mem.make_link_loader(torch.from_numpy(split.train), seed=0, neg_sampling=biased)])
    assert (degrees[torch.from_numpy(ends)] > 0).all()  # never a node without training edges


def test_bad_edge_splits_are_one_line(cora, client, loaded_dataset):
    with pytest.raises(UsageError, match="sum to 1.2, more than 1"):
        EdgeSplitSpec.parse("0.9,0.2,0.1")
    with pytest.raises(UsageError, match="leaves test empty"):
        EdgeSplitSpec(0.9, 0.1, 0.0).sizes(5278)
    with pytest.raises(UsageError, match="not TRAIN,VAL,TEST"):
        EdgeSplitSpec.parse("0.9,0.1")
    _, _, unsplit = loaded_dataset("cora", "dense")
    with pytest.raises(UserError, match="no stored edge split; make one with `python loaders/edge_split.py"):
        read_edge_split(client, unsplit, SPEC)
    with pytest.raises(UserError, match=r"has edge split 0.85,0.05,0.1 \(seed 0\), not --edge_split 0.8,0.1,0.1"):
        read_edge_split(client, cora[2], EdgeSplitSpec(0.8, 0.1, 0.1))
    assert len(unique_pairs(np.asarray(cora[0].edge_index), cora[0].num_nodes)) == 5278
