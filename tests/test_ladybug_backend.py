"""The Ladybug (embedded) backend against a real Ladybug database of a shipped graph.

Cora is loaded once per module into a database file under pytest's temporary directory and
reopened read-only, as training ranks do. The same correctness checks as the Neo4j backend's
(tests/backend_checks.py) run against the source arrays and the in-memory CSR oracle; on top:
Floyd in Ladybug's Cypher equals a Python reference, node ids are the source ids even when
Ladybug's internal offsets differ from them, the loader resumes and refuses, and two ranks
train from one file at once.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from src.ladybugdb.backend import LadybugBackend, LadybugFeatureStore
from src.core.csr import CSRGraph
from src.data.graph import GraphDataset
from src.data.sources import load_dataset
from src.core.errors import UserError
from src.core.minstd import MINSTD_MODULUS
from src.core.pyg_stores import CypherGraphStore
from src.ladybugdb.client import LadybugClient
from src.ladybugdb.loader import create_tables, ensure_loaded, require_loaded, write_edges, write_nodes
from src.ladybugdb.sampler import LadybugNeighborSampler
from src.data.loading import LoadConfig
from src.core.schema import GraphSchema
from src.train.model import MODELS
from tests import backend_checks as checks

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ds() -> GraphDataset:
    return load_dataset("cora")


@pytest.fixture(scope="module")
def db_path(tmp_path_factory, ds: GraphDataset) -> Path:
    path = tmp_path_factory.mktemp("ladybug") / "cora.lbdb"
    with LadybugClient(path, read_only=False) as writer:
        report = ensure_loaded(writer, ds, None, LoadConfig(progress=False))
    assert report.status == "loaded" and report.nodes_written == ds.num_nodes
    return path


@pytest.fixture(scope="module")
def lb(db_path: Path):
    """(read-only client, schema, record), as a training rank opens them."""
    client = LadybugClient(db_path)
    record = require_loaded(client, "cora")
    yield client, record.schema, record
    client.close()


@pytest.fixture(scope="module")
def csr(ds: GraphDataset) -> CSRGraph:
    return CSRGraph.from_edge_index(np.asarray(ds.edge_index), ds.num_nodes)


def _sampler(lb, fanouts: list[int], seed: int = 0) -> LadybugNeighborSampler:
    client, schema, record = lb
    return LadybugNeighborSampler(client, schema, record.num_nodes, fanouts, seed=seed)


# ------------------------------------------------------------------ the shared backend checks
def test_features_bit_exact_in_order_with_repeats(lb, ds) -> None:
    client, schema, _ = lb
    checks.check_features_bit_exact(LadybugFeatureStore(client, schema, ds.num_nodes, ds.num_features), ds)


def test_unknown_ids_clear_error(lb, ds) -> None:
    client, schema, _ = lb
    with pytest.raises(UserError, match="unknown node ids"):
        LadybugFeatureStore(client, schema, ds.num_nodes, ds.num_features).fetch(np.array([0, ds.num_nodes + 5]))
    with pytest.raises(KeyError, match="not in Ladybug"):
        _sampler(lb, [5]).hop(np.array([1, ds.num_nodes]), 5, np.random.default_rng(0))


def test_hot_node_cache_hits_and_stays_exact(lb, ds) -> None:
    client, schema, _ = lb
    checks.check_hot_node_cache(LadybugFeatureStore(client, schema, ds.num_nodes, ds.num_features, cache_mb=64), ds)


def test_degree_warm_up_holds_top_rows_within_budget(lb, ds) -> None:
    client, schema, _ = lb
    checks.check_cache_warm(lambda mb: LadybugFeatureStore(client, schema, ds.num_nodes, ds.num_features, cache_mb=mb),
                            ds)


def test_graph_store_sizes(lb, ds) -> None:
    client, schema, _ = lb
    checks.check_graph_store(CypherGraphStore(client, schema), ds)


@pytest.mark.parametrize("fanouts", [[5, 3], [15, 10, 5]])
def test_sampled_edges_real_and_fanout_respected(lb, ds, csr, fanouts) -> None:
    checks.check_sampled_edges_real_and_fanout(_sampler(lb, fanouts, seed=1), ds, csr, fanouts)


def test_forced_sample_equals_in_memory(lb, ds, csr) -> None:
    big = int(csr.degree(np.arange(ds.num_nodes)).max())
    checks.check_forced_sample_equals_in_memory(_sampler(lb, [big, big]), ds, csr)


def test_reproducible_under_seed(lb) -> None:
    checks.check_reproducible(lambda seed: _sampler(lb, [5, 5], seed=seed))


class _BiasedSampler(LadybugNeighborSampler):
    """Deliberately broken: only a handful of random states, so a few subsets dominate."""

    def hop(self, frontier, fanout, rng):
        return super().hop(frontier, fanout, np.random.default_rng(rng.integers(0, 3)))


@pytest.mark.parametrize("batched", [False, True], ids=["hop", "batch"])
def test_uniformity_chi_square_and_power(lb, ds, csr, batched: bool) -> None:
    client, schema, record = lb
    node, degree = checks.degree20_node(ds, csr)
    sampler = _sampler(lb, [4])
    fair = checks.draw_counts_batched(sampler, node, 10_000) if batched else checks.draw_counts(sampler, node, 10_000, 4)
    checks.check_uniform(fair, degree)
    if not batched:
        biased = _BiasedSampler(client, schema, record.num_nodes, [4], seed=0)
        checks.check_rejected(checks.draw_counts(biased, node, 10_000, 4), degree)


def test_low_degree_nodes_return_all_neighbours(lb, ds, csr) -> None:
    checks.check_low_degree_nodes_return_all(_sampler(lb, [5]), ds, csr)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_through_nodeloader(lb, ds, model: str) -> None:
    client, schema, record = lb
    backend = LadybugBackend(client, record, fanouts=[10, 10], batch_size=64, num_loader_threads=2)
    checks.check_graphsage_trains(backend, ds, model=model)
    assert backend.server_pid() is None


# ------------------------------------------------------------------------- Ladybug specifics
def _floyd_reference(nbrs: list[int], k: int, state: int) -> list[int]:
    """Floyd over minstd in Python, as documented in src/graph_sampler.py."""
    picks: list[int] = []
    for j in range(len(nbrs) - k, len(nbrs)):
        state = state * 48271 % MINSTD_MODULUS
        t = state % (j + 1)
        picks.append(j if t in picks else t)
    return [nbrs[i] for i in picks]


def test_floyd_in_cypher_equals_python_reference(lb, ds, csr) -> None:
    """list_reduce over INT64 lists computes exactly Floyd's picks for the client's states."""
    node, _ = checks.degree20_node(ds, csr)
    nbrs = sorted(csr.indices[csr.indptr[node]:csr.indptr[node + 1]].tolist())
    sampler = _sampler(lb, [7])
    for seed in range(5):
        rng = np.random.default_rng(seed)
        state = int(np.random.default_rng(seed).integers(1, MINSTD_MODULUS))
        counts, got = sampler.hop(np.array([node]), 7, rng)
        assert counts.tolist() == [7]
        assert got.tolist() == _floyd_reference(nbrs, 7, state)


def test_repeated_frontier_ids_are_sampled_per_position(lb, ds, csr) -> None:
    node, _ = checks.degree20_node(ds, csr)
    other = int(np.flatnonzero(csr.degree(np.arange(ds.num_nodes)) > 8)[0])
    frontier = np.array([node, other, node, node])
    counts, nbrs = _sampler(lb, [4]).hop(frontier, 4, np.random.default_rng(3))
    assert counts.tolist() == [4, 4, 4, 4]
    parts = np.split(nbrs, np.cumsum(counts)[:-1])
    real = set(csr.indices[csr.indptr[node]:csr.indptr[node + 1]].tolist())
    assert all(set(parts[i].tolist()) <= real for i in (0, 2, 3))
    assert len({tuple(parts[i].tolist()) for i in (0, 2, 3)}) > 1  # independent draws, not one copied


def test_node_ids_are_source_ids_when_internal_offsets_differ(tmp_path: Path, ds, csr) -> None:
    """Nodes written in reverse chunk order: Ladybug's offsets are not the ids, samples still are."""
    schema = GraphSchema.for_dataset("cora")
    path = tmp_path / "shuffled.lbdb"
    with LadybugClient(path, read_only=False) as writer:
        create_tables(writer, schema)
        for lo in range(ds.num_nodes - ds.num_nodes % 500, -1, -500):
            write_nodes(writer, ds, schema, lo, min(lo + 500, ds.num_nodes), 500)
        write_edges(writer, ds, schema, 0, ds.num_edges)
    with LadybugClient(path) as client:
        rows = client.execute("MATCH (n:cora) RETURN n.id, offset(id(n))")
        assert sum(int(a) != int(b) for a, b in rows) > ds.num_nodes // 2  # the pitfall is live here
        checks.check_sampled_edges_real_and_fanout(
            LadybugNeighborSampler(client, schema, ds.num_nodes, [5, 3], seed=1), ds, csr, [5, 3])
        checks.check_features_bit_exact(LadybugFeatureStore(client, schema, ds.num_nodes, ds.num_features), ds)


class _CrashingClient:
    """Passes queries to a real client but dies on the ``crash_at``-th relationship COPY."""

    def __init__(self, client: LadybugClient, crash_at: int) -> None:
        self.client, self.crash_at, self.copies = client, crash_at, 0

    def execute(self, query: str, **params):
        if query.startswith("COPY"):
            self.copies += 1
            if self.copies == self.crash_at:
                raise KeyboardInterrupt("simulated crash")
        return self.client.execute(query, **params)

    def __getattr__(self, name: str):
        return getattr(self.client, name)


def test_loader_resumes_an_interrupted_load_and_refuses_another_graph(tmp_path: Path, ds) -> None:
    path = tmp_path / "resume.lbdb"
    config = LoadConfig(progress=False, batch_size=2000)
    with LadybugClient(path, read_only=False) as writer:
        with pytest.raises(KeyboardInterrupt):
            ensure_loaded(_CrashingClient(writer, crash_at=3), ds, None, config)
        assert writer.count_relationships("cora_EDGE") == 4000  # two committed COPY batches
        with pytest.raises(UserError, match="only partly loaded"):
            require_loaded(writer, "cora")
        report = ensure_loaded(writer, ds, None, config)
        assert report.status == "resumed"
        assert (report.nodes_written, report.relationships_written) == (0, ds.num_edges - 4000)
        assert ensure_loaded(writer, ds, None, config).status == "already loaded"
        with pytest.raises(UserError, match="different graph"):
            ensure_loaded(writer, load_dataset("citeseer"), GraphSchema.for_dataset("cora"), config)
    with pytest.raises(UserError, match="no Ladybug database"):
        LadybugClient(tmp_path / "missing.lbdb")


@pytest.mark.slow
def test_two_ranks_train_from_one_read_only_file(tmp_path: Path, db_path: Path) -> None:
    """Embedded, no server: both ranks open the same file read-only and train together."""
    from tests.test_trainer import run_ranks, tails

    args = ["--dataset", "cora", "--ladybug_path", str(db_path), "--epochs", "1", "--hidden_channels", "16",
            "--fanouts", "5,5", "--num_layers", "2", "--batch_size", "128", "--log_dir", str(tmp_path / "logs"), "--run_name", "lb"]
    results = run_ranks(REPO / "main-ladybug-backend.py", tmp_path, [args, args])
    assert [r.returncode for r in results] == [0, 0], tails(results)
    summaries = [json.loads((tmp_path / "logs" / "lb" / f"rank{k}.jsonl").read_text().splitlines()[-1])
                 for k in range(2)]
    assert [s["backend"] for s in summaries] == ["ladybug", "ladybug"]
    assert summaries[0]["epochs"] == summaries[1]["epochs"] == 1
    assert summaries[0]["test_acc_at_best_val"] == summaries[1]["test_acc_at_best_val"] is not None
