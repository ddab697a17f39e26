"""CSR neighbour sampler: correctness on real graphs, exact uniformity, PyG loader integration."""
from __future__ import annotations

import itertools
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from torch_geometric.data import Data, FeatureStore, GraphStore, TensorAttr
from torch_geometric.loader import NodeLoader
from torch_geometric.sampler import NodeSamplerInput

from src.core import csr as csr_module
from src.core import sampling
from src.core.csr import CSRGraph, sample_hop_csr
from src.core.sampling import CSRNeighborSampler
from src.core.sampling import HopSampler, sample_multi_hop

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"  # next to the repo
if not (DATASETS / "load_npz.py").exists():
    pytest.skip(f"shipped datasets not found in {DATASETS}", allow_module_level=True)
sys.path.insert(0, str(DATASETS))
from load_npz import load  # noqa: E402

GRAPHS = ["cora", "amazon_cs"]
FANOUTS = [15, 10, 5]
DRAWS = 20_000


@lru_cache(maxsize=None)
def graph(name: str) -> tuple[dict, CSRGraph, np.ndarray]:
    """(raw arrays, CSC graph, sorted edge keys src * N + dst)."""
    d = load(str(DATASETS / f"{name}.npz"))
    n = len(d["y"])
    src, dst = d["edge_index"]
    return d, CSRGraph.from_edge_index(d["edge_index"], n), np.unique(src * n + dst)


def edges_exist(keys: np.ndarray, src: np.ndarray, dst: np.ndarray, n: int) -> bool:
    q = src * n + dst
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return bool((keys[pos] == q).all())


def groups(counts: np.ndarray) -> np.ndarray:
    """Group id (frontier position) of every output neighbour."""
    return np.repeat(np.arange(len(counts)), counts)


def seeds_input(seeds: np.ndarray) -> NodeSamplerInput:
    return NodeSamplerInput(input_id=None, node=torch.as_tensor(seeds, dtype=torch.long))


# --- CSRGraph ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GRAPHS)
def test_csr_holds_exactly_the_edges_grouped_by_destination(name: str) -> None:
    d, csr, keys = graph(name)
    n = len(d["y"])
    assert csr.num_nodes == n and csr.num_edges == d["edge_index"].shape[1]
    dst = np.repeat(np.arange(n), np.diff(csr.indptr))
    assert np.array_equal(np.sort(csr.indices * n + dst), keys)
    assert np.array_equal(csr.degree(np.arange(n)), np.bincount(d["edge_index"][1], minlength=n))


def test_csr_rejects_out_of_range_ids() -> None:
    with pytest.raises(ValueError, match="outside"):
        CSRGraph.from_edge_index(np.array([[0, 3], [1, 0]]), num_nodes=3)


# --- one hop -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GRAPHS)
@pytest.mark.parametrize("fanout", [1, 5, 15, 40, -1])
def test_hop_edges_exist_fanout_respected_without_replacement(name: str, fanout: int) -> None:
    d, csr, keys = graph(name)
    n = csr.num_nodes
    frontier = np.random.default_rng(1).permutation(n)  # every node, incl. isolated ones
    counts, nbrs = sample_hop_csr(csr, frontier, fanout, np.random.default_rng(0))
    deg = csr.degree(frontier)
    assert np.array_equal(counts, deg if fanout == -1 else np.minimum(deg, fanout))
    g = groups(counts)
    assert edges_exist(keys, nbrs, frontier[g], n)
    assert len(np.unique(g * n + nbrs)) == len(nbrs), "a neighbour was drawn twice for a node"
    # Nodes with degree <= fanout get their whole neighbourhood.
    full = np.flatnonzero(deg <= fanout) if fanout != -1 else np.arange(len(frontier))
    got = np.isin(g, full)
    want = np.concatenate([csr.indices[csr.indptr[v]:csr.indptr[v + 1]] for v in frontier[full]])
    want_g = np.repeat(full, deg[full])
    assert np.array_equal(np.sort(g[got] * n + nbrs[got]), np.sort(want_g * n + want))


def test_hop_zero_fanout_and_empty_frontier() -> None:
    _, csr, _ = graph("cora")
    counts, nbrs = sample_hop_csr(csr, np.arange(10), 0, np.random.default_rng(0))
    assert counts.tolist() == [0] * 10 and len(nbrs) == 0
    counts, nbrs = sample_hop_csr(csr, np.empty(0, np.int64), 5, np.random.default_rng(0))
    assert len(counts) == 0 and len(nbrs) == 0
    with pytest.raises(ValueError):
        sample_hop_csr(csr, np.arange(3), -2, np.random.default_rng(0))


# --- uniformity --------------------------------------------------------------------------------

# The default routing (Floyd for fanout <= 32, else sort unless a hub), and each path forced.
PATHS = {
    "default": {},
    "sort": {"_FLOYD_MAX_FANOUT": 0, "_FLOYD_MIN_DEGREE_RATIO": 10**9},
    "hub_floyd": {"_FLOYD_MAX_FANOUT": 0, "_FLOYD_MIN_DEGREE_RATIO": 1},
}


def biased_hop(csr: CSRGraph, frontier: np.ndarray, fanout: int, rng: np.random.Generator):
    """A broken sampler: 5% of the draws return the lowest-index neighbours."""
    counts, nbrs = sample_hop_csr(csr, frontier, fanout, rng)
    rows = nbrs.reshape(len(frontier), fanout)  # every frontier node has degree > fanout here
    lazy = rng.random(len(frontier)) < 0.05
    start = csr.indptr[frontier[lazy]]
    rows[lazy] = csr.indices[start[:, None] + np.arange(fanout)]
    return counts, rows.ravel()


def subset_pvalue(hop, csr: CSRGraph, node: int, fanout: int) -> float:
    """Chi-square over all C(deg, fanout) subsets of ``node``'s neighbours, DRAWS draws."""
    frontier = np.full(DRAWS, node, dtype=np.int64)
    _, nbrs = hop(csr, frontier, fanout, np.random.default_rng(7))
    draws = np.sort(nbrs.reshape(DRAWS, fanout), axis=1)
    neigh = np.sort(csr.indices[csr.indptr[node]:csr.indptr[node + 1]])
    index = {s: i for i, s in enumerate(itertools.combinations(neigh.tolist(), fanout))}
    hits = np.bincount([index[tuple(r)] for r in draws.tolist()], minlength=len(index))
    return chisquare(hits).pvalue


def marginal_pvalue(hop, csr: CSRGraph, node: int, fanout: int) -> float:
    """Chi-square of how often each neighbour is drawn (expected DRAWS * fanout / deg each).

    Inclusion counts of a k-subset are less variable than multinomial cells, so the test is
    conservative by (deg - k) / (deg - 1); the exact subset test above covers small degrees.
    """
    frontier = np.full(DRAWS, node, dtype=np.int64)
    _, nbrs = hop(csr, frontier, fanout, np.random.default_rng(7))
    neigh = csr.indices[csr.indptr[node]:csr.indptr[node + 1]]
    hits = np.bincount(np.searchsorted(np.sort(neigh), nbrs), minlength=len(neigh))
    return chisquare(hits).pvalue


def star(deg: int) -> CSRGraph:
    """Node 0 with neighbours 1..deg, in shuffled order (no order the sampler could exploit)."""
    src = np.random.default_rng(3).permutation(np.arange(1, deg + 1))
    return CSRGraph.from_edge_index(np.stack([src, np.zeros(deg, np.int64)]), deg + 1)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("deg,fanout", [(6, 3), (8, 2), (35, 33)])
def test_every_k_subset_equally_likely(monkeypatch, path: str, deg: int, fanout: int) -> None:
    for attr, value in PATHS[path].items():
        monkeypatch.setattr(csr_module, attr, value)
    csr = star(deg)
    assert subset_pvalue(sample_hop_csr, csr, 0, fanout) > 1e-3
    assert subset_pvalue(biased_hop, csr, 0, fanout) < 1e-6


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name,fanout", [("cora", 5), ("amazon_cs", 15), ("amazon_cs", 40)])
def test_neighbours_equally_likely_on_real_hub(monkeypatch, path: str, name: str, fanout: int):
    for attr, value in PATHS[path].items():
        monkeypatch.setattr(csr_module, attr, value)
    _, csr, _ = graph(name)
    deg = csr.degree(np.arange(csr.num_nodes))
    node = int(np.argmin(np.abs(deg - 4 * fanout)))  # degree well above the fanout
    assert deg[node] > fanout
    assert marginal_pvalue(sample_hop_csr, csr, node, fanout) > 1e-3
    assert marginal_pvalue(biased_hop, csr, node, fanout) < 1e-6


# --- multi-hop driver --------------------------------------------------------------------------


def reference_relabel(seeds: np.ndarray, hops: list[tuple[np.ndarray, np.ndarray, np.ndarray]]):
    """Plain-Python PyG semantics from the recorded (frontier, counts, neighbours) per hop."""
    local: dict[int, int] = {}
    nodes = [int(s) for s in seeds]
    for i, s in enumerate(nodes):
        local.setdefault(s, i)
    frontier_local = list(range(len(nodes)))
    rows, cols, frontiers = [], [], []
    for frontier, counts, nbrs in hops:
        frontiers.append([nodes[i] for i in frontier_local])
        new_local = []
        for dst_local, u in zip(np.repeat(frontier_local, counts), nbrs.tolist()):
            if u not in local:
                local[u] = len(nodes)
                nodes.append(u)
                new_local.append(local[u])
            rows.append(local[u])
            cols.append(int(dst_local))
        frontier_local = new_local
    return nodes, rows, cols, frontiers


@pytest.mark.parametrize("name", GRAPHS)
@pytest.mark.parametrize("fanouts", [FANOUTS, [-1, -1], [3, 0, 2]])
def test_multi_hop_matches_pyg_semantics(name: str, fanouts: list[int]) -> None:
    d, csr, keys = graph(name)
    n = csr.num_nodes
    seeds = np.random.default_rng(2).choice(n, 64 if -1 in fanouts else 512, replace=False)
    rng = np.random.default_rng(0)
    recorded = []

    def hop_fn(frontier, fanout, hop):
        counts, nbrs = sample_hop_csr(csr, frontier, fanout, rng)
        recorded.append((frontier.copy(), counts, nbrs))
        return counts, nbrs

    out = sample_multi_hop(hop_fn, seeds, fanouts)
    node, row, col = out.node.numpy(), out.row.numpy(), out.col.numpy()
    ref_nodes, ref_rows, ref_cols, ref_frontiers = reference_relabel(seeds, recorded)
    assert node.tolist() == ref_nodes and row.tolist() == ref_rows and col.tolist() == ref_cols
    assert [f.tolist() for f, _, _ in recorded] == ref_frontiers
    assert out.edge is None and out.batch is None
    assert np.array_equal(node[: len(seeds)], seeds) and len(np.unique(node)) == len(node)
    assert len(out.num_sampled_nodes) == 1 + len(fanouts)
    assert sum(out.num_sampled_nodes) == len(node)
    assert out.num_sampled_edges == [len(nb) for _, _, nb in recorded]
    assert edges_exist(keys, node[row], node[col], n)
    # Per hop: destinations are the previous hop's new nodes, each with min(fanout, degree).
    node_end = np.cumsum(out.num_sampled_nodes)
    edge_end = np.cumsum([0] + out.num_sampled_edges)
    for hop, fanout in enumerate(fanouts):
        lo, hi = (0 if hop == 0 else node_end[hop - 1]), node_end[hop]
        hop_col = col[edge_end[hop]:edge_end[hop + 1]]
        per_dst = np.bincount(hop_col - lo, minlength=hi - lo)
        deg = csr.degree(node[lo:hi])
        assert np.array_equal(per_dst, deg if fanout == -1 else np.minimum(deg, fanout))
        assert row[edge_end[hop]:edge_end[hop + 1]].max(initial=0) < node_end[hop + 1]
    assert len(np.unique(row * len(node) + col)) == len(row)


@pytest.mark.parametrize("high", [50, 2**55])  # packed-key sort, and np.unique fallback
def test_unique_first_matches_numpy(high: int) -> None:
    ids = np.random.default_rng(0).integers(0, high, 5000)
    ids[::7] = ids[0]
    for got, want in zip(sampling._unique_first(ids),
                         np.unique(ids, return_index=True, return_inverse=True)):
        assert np.array_equal(got, want)


def test_multi_hop_duplicate_seeds_and_contract_check() -> None:
    # Toy graph 0<-1, 0<-2, 1<-2, 2<-3 through a deterministic "take all" hop_fn.
    csr = CSRGraph.from_edge_index(np.array([[1, 2, 2, 3], [0, 0, 1, 2]]), 4)

    def take_all(frontier, fanout, hop):
        return sample_hop_csr(csr, frontier, -1, np.random.default_rng(0))

    out = sample_multi_hop(take_all, np.array([0, 2, 0]), [1, 1])
    assert out.node.tolist() == [0, 2, 0, 1, 3]
    # Hop 0 samples every seed position; a neighbour equal to a seed maps to its first position.
    assert out.row.tolist() == [3, 1, 4, 3, 1, 1] and out.col.tolist() == [0, 0, 1, 2, 2, 3]
    assert out.num_sampled_nodes == [3, 2, 0] and out.num_sampled_edges == [5, 1]
    with pytest.raises(ValueError, match="hop_fn returned"):
        sample_multi_hop(lambda f, k, h: (np.ones(len(f)), np.empty(0)), np.array([0]), [1])
    with pytest.raises(ValueError, match="negative"):
        sample_multi_hop(lambda f, k, h: (np.ones(len(f)), -np.ones(len(f))), np.array([0]), [1])


# --- CSRNeighborSampler ------------------------------------------------------------------------


def sample_arrays(sampler: CSRNeighborSampler, seeds: np.ndarray) -> list[np.ndarray]:
    out = sampler.sample_from_nodes(seeds_input(seeds))
    return [out.node.numpy(), out.row.numpy(), out.col.numpy()]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_sampler_reproducible_per_seed_epoch_and_order_independent() -> None:
    _, csr, _ = graph("amazon_cs")
    a, b = np.arange(0, 1024), np.arange(5000, 6024)
    s = CSRNeighborSampler(csr, FANOUTS, seed=11)
    first_a, first_b = sample_arrays(s, a), sample_arrays(s, b)
    assert same(sample_arrays(s, a), first_a), "repeated call differs"
    other = CSRNeighborSampler(csr, FANOUTS, seed=11)
    assert same(sample_arrays(other, b), first_b) and same(sample_arrays(other, a), first_a)
    assert not same(sample_arrays(CSRNeighborSampler(csr, FANOUTS, seed=12), a), first_a)
    s.set_epoch(1)
    assert not same(sample_arrays(s, a), first_a)
    unseeded = CSRNeighborSampler(csr, FANOUTS)
    assert not same(sample_arrays(unseeded, a), sample_arrays(CSRNeighborSampler(csr, FANOUTS), a))


def test_backends_plug_in_through_hop_sampler() -> None:
    _, csr, _ = graph("cora")

    class FirstNeighbours(HopSampler):
        """A deterministic backend: the lowest-position neighbours (a full hop when -1)."""

        def hop(self, frontier, fanout, rng):
            deg = csr.degree(frontier)
            counts = deg if fanout == -1 else np.minimum(deg, fanout)
            starts = csr.indptr[frontier]
            pos = np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts)])
            return counts, csr.indices[pos.astype(np.int64)]

    with pytest.raises(TypeError):
        HopSampler([5])  # abstract: a backend must provide hop()
    seeds = np.arange(100, 140)
    assert same(sample_arrays(FirstNeighbours([-1, -1], seed=0), seeds),
                sample_arrays(CSRNeighborSampler(csr, [-1, -1], seed=3), seeds))


def test_sampler_rejects_bad_arguments() -> None:
    _, csr, _ = graph("cora")
    with pytest.raises(ValueError):
        CSRNeighborSampler(csr, [])
    with pytest.raises(ValueError):
        CSRNeighborSampler(csr, [5, -3])
    with pytest.raises(ValueError):
        CSRNeighborSampler(csr, [5], seed=-1)
    s = CSRNeighborSampler(csr, [5], seed=0)
    with pytest.raises(NotImplementedError):
        s.sample_from_nodes(NodeSamplerInput(None, torch.arange(3), time=torch.zeros(3)))
    assert s.edge_permutation is None


def cora_data() -> Data:
    d, _, _ = graph("cora")
    return Data(x=torch.from_numpy(d["x"]), y=torch.from_numpy(d["y"]),
                edge_index=torch.from_numpy(d["edge_index"]))


def check_batch(batch: Data, data_x: torch.Tensor, data_y: torch.Tensor, input_nodes, keys, n):
    n_id = batch.n_id
    assert batch.edge_index.min() >= 0 and batch.edge_index.max() < batch.num_nodes == len(n_id)
    assert torch.equal(batch.x, data_x[n_id]) and torch.equal(batch.y, data_y[n_id])
    assert torch.equal(n_id[: batch.batch_size], input_nodes[batch.input_id])
    src, dst = n_id[batch.edge_index].numpy()
    assert edges_exist(keys, src, dst, n)


def test_node_loader_with_data() -> None:
    _, csr, keys = graph("cora")
    data = cora_data()
    train = torch.arange(0, 1000)
    loader = NodeLoader(data, node_sampler=CSRNeighborSampler(csr, [10, 5], seed=0),
                        input_nodes=train, batch_size=128, shuffle=True)
    sizes = []
    for batch in loader:
        check_batch(batch, data.x, data.y, train, keys, csr.num_nodes)
        sizes.append(batch.batch_size)
    assert sum(sizes) == len(train) and len(sizes) == len(loader)


class DictFeatureStore(FeatureStore):
    """Minimal in-memory feature store: one tensor per attribute name, gathered by index."""

    def __init__(self) -> None:
        super().__init__()
        self.tensors: dict[tuple, torch.Tensor] = {}

    def _put_tensor(self, tensor, attr: TensorAttr) -> bool:
        self.tensors[(attr.group_name, attr.attr_name)] = tensor
        return True

    def _get_tensor(self, attr: TensorAttr):
        tensor = self.tensors[(attr.group_name, attr.attr_name)]
        return tensor if attr.index is None else tensor[attr.index]

    def _remove_tensor(self, attr: TensorAttr) -> bool:
        return self.tensors.pop((attr.group_name, attr.attr_name), None) is not None

    def _get_tensor_size(self, attr: TensorAttr):
        return self.tensors[(attr.group_name, attr.attr_name)].size()

    def get_all_tensor_attrs(self) -> list[TensorAttr]:
        return [TensorAttr(group, name) for group, name in self.tensors]


class DictGraphStore(GraphStore):
    """Minimal in-memory graph store (COO only): the sampler's CSR is built from it."""

    def __init__(self) -> None:
        super().__init__()
        self.edges: dict[tuple, tuple] = {}

    def _put_edge_index(self, edge_index, edge_attr) -> bool:
        self.edges[(edge_attr.edge_type, edge_attr.layout.value)] = edge_index
        return True

    def _get_edge_index(self, edge_attr):
        return self.edges.get((edge_attr.edge_type, edge_attr.layout.value))

    def _remove_edge_index(self, edge_attr) -> bool:
        return self.edges.pop((edge_attr.edge_type, edge_attr.layout.value), None) is not None

    def get_all_edge_attrs(self):
        raise NotImplementedError("not needed by NodeLoader with a custom sampler")


def test_node_loader_with_feature_and_graph_store() -> None:
    d, _, keys = graph("cora")
    n = len(d["y"])
    data = cora_data()
    fs, gs = DictFeatureStore(), DictGraphStore()
    fs.put_tensor(data.x, group_name=None, attr_name="x", index=None)
    fs.put_tensor(data.y, group_name=None, attr_name="y", index=None)
    gs.put_edge_index((data.edge_index[0], data.edge_index[1]), edge_type=None, layout="coo",
                      size=(n, n))
    row, col = gs.get_edge_index(edge_type=None, layout="coo")
    csr = CSRGraph.from_edge_index(torch.stack([row, col]).numpy(), n)
    train = torch.from_numpy(d["train_idx"])
    loader = NodeLoader((fs, gs), node_sampler=CSRNeighborSampler(csr, [10, 5], seed=0),
                        input_nodes=train, batch_size=32)
    batches = list(loader)
    assert sum(b.batch_size for b in batches) == len(train)
    for batch in batches:
        check_batch(batch, data.x, data.y, train, keys, n)


@pytest.fixture
def one_torch_thread():
    """Tiny matmuls: intra-op threads only add spin-waiting (and minutes on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_graphsage_loss_falls_on_cora(one_torch_thread) -> None:
    from torch_geometric.nn import SAGEConv

    torch.manual_seed(0)
    d, csr, _ = graph("cora")
    data = cora_data()

    class SAGE(torch.nn.Module):
        def __init__(self, f: int, h: int, c: int):
            super().__init__()
            self.conv1, self.conv2 = SAGEConv(f, h), SAGEConv(h, c)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    model = SAGE(data.num_features, 64, int(data.y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = NodeLoader(data, node_sampler=CSRNeighborSampler(csr, [10, 10], seed=0),
                        input_nodes=torch.from_numpy(d["train_idx"]), batch_size=35,
                        shuffle=True, generator=torch.Generator().manual_seed(0))
    losses = []
    while len(losses) < 32:
        for batch in loader:
            opt.zero_grad()
            out = model(batch.x, batch.edge_index)[: batch.batch_size]
            loss = torch.nn.functional.cross_entropy(out, batch.y[: batch.batch_size])
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4]), losses
