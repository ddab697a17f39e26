"""The in-memory heterogeneous sampler (src/core/hetero_sampling.py) on the synthetic hetero graph.

Checks: every sampled edge is a real edge of its type, counts are min(fanout, degree) per
(node, relationship type), no neighbour drawn twice, a fanout of 0 never samples its type, the
draw is uniform per relationship type (chi-square), reproducible under the seed, equal to a
scalar replay of the Cypher query's Floyd/minstd arithmetic, and usable by NodeLoader.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch_geometric.loader import NodeLoader
from torch_geometric.sampler import NodeSamplerInput

from src.core.errors import UserError
from src.core.hetero_fanouts import parse_fanouts
from src.core.hetero_sampling import HeteroCSR, HeteroCSRSampler, minstd_floyd
from src.core.hetero_stores import HeteroEdgeMetadata, InMemoryHeteroRows
from src.core.minstd import MINSTD_MODULUS
from src.data.synthetic_hetero import generate_hetero

FANOUTS = "writes:3,2;written_by:2,2;cites:4,0;publishes:1,1"


@pytest.fixture(scope="module")
def ds():
    return generate_hetero(num_nodes=3000, avg_degree=8, num_features=8, num_classes=4, seed=3)


@pytest.fixture(scope="module")
def graph(ds) -> HeteroCSR:
    return HeteroCSR.from_edges(ds.edges, {t: d.num_nodes for t, d in ds.node_types.items()})


def sample(ds, graph, seeds, fanouts=FANOUTS, seed=7):
    sampler = HeteroCSRSampler(graph, parse_fanouts(fanouts, ds.edge_types), seed=seed)
    inputs = NodeSamplerInput(input_id=None, node=torch.as_tensor(seeds), input_type="paper")
    return sampler.sample_from_nodes(inputs)


def test_sampled_edges_are_real_and_counts_are_min_fanout_degree(ds, graph) -> None:
    seeds = np.arange(0, 400, 3)
    out = sample(ds, graph, seeds)
    fanouts = parse_fanouts(FANOUTS, ds.edge_types)
    for edge_type, ei in ds.edges.items():
        src, _, dst = edge_type
        real = set(zip(ei[0].tolist(), ei[1].tolist()))
        rows, cols = out.node[src][out.row[edge_type]], out.node[dst][out.col[edge_type]]
        assert all((int(u), int(v)) in real for u, v in zip(rows, cols))
        # per destination: distinct neighbours (the generator keeps no parallel edges), min(fanout, degree)
        csr = graph.csr[edge_type]
        start = 0
        for hop, count in enumerate(out.num_sampled_edges[edge_type]):
            c = out.col[edge_type][start:start + count]
            r = out.row[edge_type][start:start + count]
            for v in torch.unique(c).tolist():
                picked = r[c == v]
                assert len(torch.unique(picked)) == len(picked)
                assert len(picked) == min(fanouts[edge_type][hop], int(csr.degree([int(out.node[dst][v])])[0]))
            start += count


def test_fanout_zero_never_samples_its_type(ds, graph) -> None:
    out = sample(ds, graph, np.arange(200), "writes:3,2;written_by:2,2;cites:0,0;publishes:1,0")
    cites = ("paper", "cites", "paper")
    assert out.num_sampled_edges[cites] == [0, 0] and len(out.row[cites]) == 0
    assert out.num_sampled_edges[("venue", "publishes", "paper")][1] == 0


def test_reproducible_under_seed_and_different_across_seeds(ds, graph) -> None:
    seeds = np.arange(50, 150)
    a, b, c = sample(ds, graph, seeds), sample(ds, graph, seeds), sample(ds, graph, seeds, seed=8)
    for t in a.node:
        assert torch.equal(a.node[t], b.node[t])
    assert any(not torch.equal(a.node[t], c.node[t]) for t in a.node)


def test_uniform_per_relationship_type(ds, graph) -> None:
    """Repeated one-hop draws from one node per type: every neighbour equally often (chi-square)."""
    for edge_type in (("paper", "cites", "paper"), ("author", "writes", "paper")):
        csr = graph.csr[edge_type]
        deg = csr.indptr[1:] - csr.indptr[:-1]
        node = int(np.flatnonzero(deg == deg.max())[0]) if edge_type[1] == "writes" else int(np.argmax(deg))
        fanout = max(1, int(deg[node]) // 3)
        counts = np.zeros(int(deg[node]))
        sampler = HeteroCSRSampler(graph, parse_fanouts(f"{edge_type[1]}:{fanout}", ds.edge_types, default=[0]), seed=1)
        for rep in range(3000):
            sampler.set_epoch(rep)
            out = sampler.sample_from_nodes(NodeSamplerInput(None, torch.tensor([node]), input_type="paper"))
            ids = out.node[edge_type[0]][out.row[edge_type]].numpy()
            offsets = np.searchsorted(csr.indices[csr.indptr[node]:csr.indptr[node + 1]], ids)
            np.add.at(counts, offsets, 1)
        assert counts.sum() == 3000 * fanout
        assert stats.chisquare(counts).pvalue > 1e-3, (edge_type, counts)


def test_minstd_floyd_equals_the_cypher_arithmetic() -> None:
    rng = np.random.default_rng(0)
    deg = rng.integers(6, 40, 200)
    states = rng.integers(1, MINSTD_MODULUS, 200)
    got = minstd_floyd(deg, 5, states)
    for d, s, row in zip(deg, states, got):
        st, picks = int(s), []
        for j in range(d - 5, d):
            st = st * 48271 % MINSTD_MODULUS
            t = st % (j + 1)
            picks.append(j if t in picks else t)
        assert row.tolist() == picks


def test_node_loader_batches_with_typed_rows(ds, graph) -> None:
    num_nodes = {t: d.num_nodes for t, d in ds.node_types.items()}
    stores = (InMemoryHeteroRows(ds), HeteroEdgeMetadata(num_nodes, {e: v.shape[1] for e, v in ds.edges.items()}))
    sampler = HeteroCSRSampler(graph, parse_fanouts(FANOUTS, ds.edge_types), seed=0)
    loader = NodeLoader(stores, node_sampler=sampler, input_nodes=("paper", torch.arange(64)), batch_size=32)
    batch = next(iter(loader))
    paper = ds.node_types["paper"]
    assert batch["paper"].batch_size == 32
    assert torch.equal(batch["paper"].x, torch.from_numpy(paper.x[batch["paper"].n_id.numpy()]))
    assert torch.equal(batch["paper"].y, torch.from_numpy(paper.y[batch["paper"].n_id.numpy()]))
    assert "x" not in batch["author"] and len(batch["author"].n_id) > 0


@pytest.mark.parametrize("text, message", [
    ("writes:3,2;likes:1,1", "unknown relationship type 'likes'"),
    ("writes:3,2;cites:1", "one entry per hop"),
    ("writes:3,2", "no fanouts for relationship type"),
])
def test_bad_fanouts_are_one_line(ds, text, message) -> None:
    with pytest.raises(UserError, match=message):
        parse_fanouts(text, ds.edge_types)


@pytest.mark.parametrize("target, message", [
    ("author", "node type 'author' has no labels, so it cannot be the --target_type; labelled types: paper"),
    ("book", "--target_type names unknown node type 'book'"),
])
def test_bad_target_type_is_one_line(ds, target, message) -> None:
    from src.in_memory.hetero import InMemoryHeteroBackend

    with pytest.raises(UserError, match=message):
        InMemoryHeteroBackend(ds, target_type=target, fanouts="2,2", batch_size=8, num_loader_threads=1)
