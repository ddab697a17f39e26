"""Correctness checks every in-database backend (Neo4j, Ladybug) must pass, written once.

Each check takes the backend's objects (feature store, sampler, ...) and the source dataset and
asserts against the source arrays or the in-memory CSR sampler (the oracle). The test modules
(tests/test_neo4j_backend.py, tests/test_ladybug_backend.py) only build the objects.
"""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import chisquare
from torch_geometric.data.feature_store import TensorAttr
from torch_geometric.sampler import NodeSamplerInput

from src.core.csr import CSRGraph
from src.core.sampling import CSRNeighborSampler
from src.core.sampling import HopSampler
from src.data.graph import GraphDataset
from src.core.codecs import SPARSE
from src.train.model import batch_logits, build_model


def same_hetero_samples(memory, other, seed_type: str = "paper") -> Any:
    """Both typed samplers' outputs for the same seeds (a repeated one included, sampled at each position), which
    must be equal node for node and edge for edge; returns the in-memory one."""
    seeds = torch.cat([torch.arange(3, 140, 4), torch.tensor([7, 7])])
    inputs = NodeSamplerInput(input_id=None, node=seeds, input_type=seed_type)
    a, b = memory.sample_from_nodes(inputs), other.sample_from_nodes(inputs)
    for t in a.node:
        assert torch.equal(a.node[t], b.node[t]), t
    for e in a.row:
        assert torch.equal(a.row[e], b.row[e]) and torch.equal(a.col[e], b.col[e]), e
    assert a.num_sampled_nodes == b.num_sampled_nodes and a.num_sampled_edges == b.num_sampled_edges
    return a


def sample(sampler: HopSampler, seeds: np.ndarray):
    return sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=torch.from_numpy(seeds)))


def global_edges(out) -> set[tuple[int, int]]:
    node = out.node.numpy()
    return set(zip(node[out.row.numpy()].tolist(), node[out.col.numpy()].tolist()))


def check_features_bit_exact(fs, ds: GraphDataset) -> None:
    """Rows in the order asked for, repeats allowed, float32 bit for bit; the PyG API agrees."""
    ids = np.random.default_rng(0).integers(0, ds.num_nodes, 3000)
    ids[:10] = ids[0]  # repeated ids
    zero_rows = np.flatnonzero(~ds.features(np.arange(ds.num_nodes)).any(axis=1))[:100]
    ids[10:10 + len(zero_rows)] = zero_rows  # all-zero rows (citeseer has 15)
    x, y = fs.fetch(ids)
    assert x.dtype == np.float32 and x.shape == (3000, ds.num_features)
    assert np.array_equal(x.view(np.uint32), ds.features(ids).view(np.uint32))
    assert np.array_equal(y, np.asarray(ds.y)[ids])
    xt, yt = fs.multi_get_tensor([TensorAttr(None, "x", torch.from_numpy(ids[:50])),
                                  TensorAttr(None, "y", torch.from_numpy(ids[:50]))])
    assert xt.is_sparse == fs.sparse_rows  # sparse-stored rows reach the model sparse
    assert torch.equal(xt.to_dense() if xt.is_sparse else xt, torch.from_numpy(ds.features(ids[:50])))
    assert torch.equal(yt, torch.from_numpy(np.asarray(ds.y)[ids[:50]]))
    if fs.encoding == SPARSE:
        check_sparse_rows_bit_exact(fs, ds, ids)


def check_sparse_rows_bit_exact(fs, ds: GraphDataset, ids: np.ndarray) -> None:
    """``fetch_sparse``: CSR rows in order with repeats; every stored value bit for bit, no value lost."""
    xs, y = fs.fetch_sparse(ids)
    dense = ds.features(ids)
    assert xs.shape == dense.shape and np.array_equal(y, np.asarray(ds.y)[ids])
    rows = np.repeat(np.arange(len(ids)), np.diff(xs.indptr))
    assert np.array_equal(xs.data.view(np.uint32), dense[rows, xs.indices].view(np.uint32))
    assert np.count_nonzero(dense.view(np.uint32)) == np.count_nonzero(xs.data.view(np.uint32))


def check_hot_node_cache(fs, ds: GraphDataset) -> None:
    """``fs`` has a cache: repeated rows need no round trip, partial hits fetch only the misses, all exact."""
    ids = np.arange(0, 500)
    fs.fetch(ids)
    trips, fetched = fs.stats.round_trips, fs.stats.rows_fetched
    x, _ = fs.fetch(ids[::-1])
    assert fs.stats.round_trips == trips  # all from cache
    assert fs.cache.hit_rate == 0.5
    assert np.array_equal(x.view(np.uint32), ds.features(ids[::-1]).view(np.uint32))
    mixed = np.random.default_rng(0).permutation(np.arange(250, 750))  # half cached, any order, no repeats
    mixed = np.concatenate([mixed, mixed[:20]])  # ... then with repeats
    x, y = fs.fetch(mixed)
    assert fs.stats.rows_fetched == fetched + 250  # only the misses, once each
    assert fs.cache.hit_rate == (500 + 250) / 1500
    assert np.array_equal(x.view(np.uint32), ds.features(mixed).view(np.uint32))
    assert np.array_equal(y, np.asarray(ds.y)[mixed])


def check_cache_full(make_fs: Callable[[float], object], ds: GraphDataset) -> None:
    """A budget of 100 rows holds exactly 100 rows (the first admitted), stays exact past full.

    Within one batch the misses are admitted in increasing id order (the fetch path works over
    the sorted ids), so the first batch leaves its 100 smallest ids cached."""
    per_row = ds.num_features * 4 + 8 + 8 + 4
    fs = make_fs(100 * per_row / 2**20)
    assert fs.cache.capacity == 100 and fs.cache._x.nbytes + fs.cache._y.nbytes <= 100 * per_row
    ids = np.random.default_rng(1).permutation(ds.num_nodes)[:300]
    fs.fetch(ids)
    assert np.array_equal(fs.cache.ids, np.sort(ids)[:100])  # first batch, smallest ids first
    x, y = fs.fetch(ids[::-1])
    assert len(fs.cache) == 100 and fs.cache.hits == 100 and fs.stats.rows_fetched == 500
    assert np.array_equal(x.view(np.uint32), ds.features(ids[::-1]).view(np.uint32))
    assert np.array_equal(y, np.asarray(ds.y)[ids[::-1]])


def top_degree_ids(ds: GraphDataset, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The oracle of the degree warm-up: the ``k`` nodes occurring most often as a source of an edge
    (= in a node's in-neighbour list), degree descending, ties by id ascending; and their degrees."""
    degree = np.bincount(np.asarray(ds.edge_index[0]), minlength=ds.num_nodes)
    order = np.lexsort((np.arange(ds.num_nodes), -degree))[:k]
    return order, degree[order]


def check_cache_warm(make_fs: Callable[[float], object], ds: GraphDataset) -> None:
    """A degree warm-up fills the cache with exactly the top-capacity rows, bit-exact, within the budget;
    a budget above the graph holds every node once; 'none' leaves the cache empty."""
    per_row = ds.num_features * 4 + 8 + 8 + 4
    k = ds.num_nodes // 4
    fs = make_fs(k * per_row / 2**20)
    stats = fs.warm_cache("degree")
    top, _ = top_degree_ids(ds, k)
    assert fs.cache.capacity == k and len(fs.cache) == k and stats.rows == k
    assert fs.cache._x.nbytes + fs.cache._y.nbytes <= k * per_row
    assert np.array_equal(fs.cache.ids, np.sort(top))
    hit, slots = fs.cache.lookup(top)
    x, y = fs.cache.rows(slots)
    assert hit.all() and np.array_equal(x.view(np.uint32), ds.features(top).view(np.uint32))
    assert np.array_equal(y, np.asarray(ds.y)[top])
    ids = np.random.default_rng(4).permutation(ds.num_nodes)[:ds.num_nodes // 2]
    x, y = fs.fetch(ids)  # full: misses are read, not admitted, and the warmed rows stay
    assert np.array_equal(x.view(np.uint32), ds.features(ids).view(np.uint32)) and np.array_equal(y, np.asarray(ds.y)[ids])
    assert np.array_equal(fs.cache.ids, np.sort(top))
    everything = make_fs((ds.num_nodes + 50) * per_row / 2**20)
    assert everything.warm_cache("degree").rows == ds.num_nodes
    assert np.array_equal(everything.cache.ids, np.arange(ds.num_nodes))
    cold = make_fs(k * per_row / 2**20)
    assert cold.warm_cache("none") is None and len(cold.cache) == 0


def check_cache_concurrent(fs, ds: GraphDataset, threads: int = 4) -> None:
    """Threads fetching overlapping batches while the cache fills all get exact rows; no id cached twice."""
    rng = np.random.default_rng(2)
    batches = [rng.permutation(ds.num_nodes)[:800] for _ in range(4 * threads)]
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(fs.fetch, batches))
    for ids, (x, y) in zip(batches, results):
        assert np.array_equal(x.view(np.uint32), ds.features(ids).view(np.uint32))
        assert np.array_equal(y, np.asarray(ds.y)[ids])
    cached = fs.cache.ids
    assert len(cached) == min(fs.cache.capacity, len(np.unique(np.concatenate(batches))))
    assert (np.diff(cached) > 0).all()  # sorted, no duplicates
    x, _ = fs.fetch(cached)
    assert fs.cache.hits >= len(cached) and np.array_equal(x, ds.features(cached))


def check_graph_store(gs, ds: GraphDataset) -> None:
    assert gs.num_nodes == ds.num_nodes and gs.num_edges == ds.num_edges
    ei = gs.materialise_edge_index()
    src = np.asarray(ds.edge_index)
    order = np.lexsort((src[1], src[0]))
    assert np.array_equal(ei.numpy(), src[:, order])


def check_sampled_edges_real_and_fanout(sampler: HopSampler, ds: GraphDataset, csr: CSRGraph,
                                        fanouts: list[int]) -> None:
    """Seeds first, ids are source ids, every edge real, no edge twice, min(fanout, degree) per node and hop."""
    seeds = np.random.default_rng(2).choice(ds.num_nodes, 256, replace=False)
    out = sample(sampler, seeds)
    node = out.node.numpy()
    assert np.array_equal(node[:256], seeds)
    assert len(np.unique(node)) == len(node)
    src = np.asarray(ds.edge_index)
    real = set(zip(src[0].tolist(), src[1].tolist()))
    edges = global_edges(out)
    assert edges <= real
    assert len(edges) == len(out.row)  # without replacement: no duplicate edge
    col = out.col.numpy()
    start, e0 = 0, 0
    for hop, k in enumerate(fanouts):
        n_front = out.num_sampled_nodes[hop]
        frontier_local = np.arange(start, start + n_front)
        hop_cols = col[e0:e0 + out.num_sampled_edges[hop]]
        counts = np.bincount(hop_cols - start, minlength=n_front)
        assert np.array_equal(counts, np.minimum(csr.degree(node[frontier_local]), k))
        start += n_front
        e0 += out.num_sampled_edges[hop]


def check_forced_sample_equals_in_memory(sampler: HopSampler, ds: GraphDataset, csr: CSRGraph):
    """``sampler`` has fanouts >= the max degree: its samples are whole neighbourhoods, as the oracle's.

    Returns both outputs (callers may assert more, e.g. identical order).
    """
    seeds = np.arange(0, ds.num_nodes, 37)
    got = sample(sampler, seeds)
    mem = sample(CSRNeighborSampler(csr, sampler.fanouts, seed=5), seeds)
    assert got.num_sampled_nodes == mem.num_sampled_nodes
    assert got.num_sampled_edges == mem.num_sampled_edges
    assert set(got.node.tolist()) == set(mem.node.tolist())
    assert global_edges(got) == global_edges(mem)
    return got, mem


def check_reproducible(make: Callable[[int], HopSampler]) -> None:
    """``make(seed)`` gives a [5, 5] sampler: same seed, same sample; another seed, another."""
    seeds = np.arange(100, 400)
    a, b, c = (sample(make(s), seeds) for s in (7, 7, 8))
    assert torch.equal(a.node, b.node) and torch.equal(a.row, b.row) and torch.equal(a.col, b.col)
    assert not torch.equal(a.node, c.node)


def degree20_node(ds: GraphDataset, csr: CSRGraph) -> tuple[int, int]:
    """A node of degree 20 (else the max-degree node) and its degree: the uniformity subject."""
    deg = csr.degree(np.arange(ds.num_nodes))
    node = int(np.flatnonzero(deg == 20)[0]) if (deg == 20).any() else int(np.argmax(deg))
    return node, int(deg[node])


def draw_counts(sampler: HopSampler, node: int, draws: int, fanout: int) -> np.ndarray:
    """How often each neighbour of ``node`` is drawn in ``draws`` hops (500 per call)."""
    rng = np.random.default_rng(11)
    counts: Counter[int] = Counter()
    for _ in range(draws // 500):
        _, nbrs = sampler.hop(np.full(500, node, dtype=np.int64), fanout, rng)
        counts.update(nbrs.tolist())
    return np.array(list(counts.values()))


def draw_counts_batched(sampler: HopSampler, node: int, draws: int) -> np.ndarray:
    """As :func:`draw_counts`, through whole batches (``sample_from_nodes``): 500 copies of one seed each."""
    counts: Counter[int] = Counter()
    for epoch in range(draws // 500):
        sampler.set_epoch(epoch)
        out = sample(sampler, np.full(500, node, dtype=np.int64))
        counts.update(out.node[out.row].tolist())
    return np.array(list(counts.values()))


def check_uniform(counts: np.ndarray, degree: int) -> None:
    """Every neighbour drawn, and chi-square accepts equal frequencies."""
    assert len(counts) == degree
    assert chisquare(counts).pvalue > 1e-3


def check_rejected(counts: np.ndarray, degree: int) -> None:
    """Chi-square rejects these counts (run on a deliberately biased sampler: the test has power)."""
    assert chisquare(np.pad(counts, (0, degree - len(counts)))).pvalue < 1e-6


def check_low_degree_nodes_return_all(sampler: HopSampler, ds: GraphDataset, csr: CSRGraph) -> None:
    deg = csr.degree(np.arange(ds.num_nodes))
    low = np.flatnonzero((deg > 0) & (deg <= 3))[:50]
    counts, nbrs = sampler.hop(low, 5, np.random.default_rng(0))
    assert np.array_equal(counts, deg[low])
    expect = np.concatenate([np.sort(csr.indices[csr.indptr[v]:csr.indptr[v + 1]]) for v in low])
    got = np.concatenate([np.sort(part) for part in np.split(nbrs, np.cumsum(counts)[:-1])])
    assert np.array_equal(got, expect)


def check_graphsage_trains(backend, ds: GraphDataset, *, database: bool = True, model: str = "sage") -> int:
    """The backend's train split is the source's, batches carry the source's rows, and the model's
    (GraphSAGE unless told) trimmed loss falls through NodeLoader (6 epochs, GIN 12); a ``database`` backend
    counted its queries. Returns the number of batches."""
    train = backend.split_nodes("train")
    assert np.array_equal(np.sort(train.numpy()), np.sort(np.asarray(ds.train_idx)))
    torch.manual_seed(0)
    net = build_model(model, ds.num_features, 64, ds.num_classes, num_layers=2, dropout=0.0, heads=2)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    losses = []
    # GIN's batch norms (and their noisy statistics over a shard's last, small batch) make it learn more slowly
    for epoch in range(12 if model == "gin" else 6):
        for batch in backend.make_loader(train, shuffle=True, seed=epoch):
            assert batch.t_sample >= 0 and batch.t_fetch >= 0
            x = batch.x.to_dense() if batch.x.is_sparse else batch.x  # sparse-stored rows stay sparse
            assert torch.equal(x.view(torch.int32), torch.from_numpy(ds.features(batch.n_id.numpy())).view(torch.int32))
            opt.zero_grad()
            out = batch_logits(net, batch)
            loss = F.cross_entropy(out, batch.y[: batch.batch_size])
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    if database:
        stats = backend.stats()
        assert stats["sampling_queries"] > 0 and stats["feature_round_trips"] > 0
    return len(losses)
