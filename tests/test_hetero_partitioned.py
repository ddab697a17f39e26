"""The partitioned in-memory backend over a heterogeneous graph: partitions, samples, a 2-rank run, bad input.

Every node type is partitioned; a partition's in-lists, owned and halo rows per type must be bit for bit
the dataset's, its owners' samples must put together the whole graph's sample, and a 2-rank run (rank 0
partitions on its own, the ranks route hops and rows over RPC) must log the full graph's very step losses.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from src.core.hetero_sampling import HeteroCSR, sample_typed_hop
from src.core.minstd import hop_states
from src.data.synthetic_hetero import generate_hetero
from src.in_memory.hetero_partition_format import load_hetero_partition
from src.in_memory.partition import PartitionConfig, partition_dataset
from src.in_memory.router import by_owner, in_frontier_order
from tests.test_hetero_training import FLAGS, REPO, run_two_ranks

PARAMS = dict(num_nodes=3000, avg_degree=6, num_features=8, num_classes=4, seed=3)


@pytest.fixture(scope="module")
def dataset():
    return generate_hetero(**PARAMS)


@pytest.fixture(scope="module", params=["metis", "random"])
def parts(request, dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"parts-{request.param}")
    result = partition_dataset(PartitionConfig(dataset=dataset.name, num_partitions=3, method=request.param,
                                               output_dir=str(out)))
    assert result.meta["hetero"] and result.created
    again = partition_dataset(PartitionConfig(dataset=dataset.name, num_partitions=3, method=request.param,
                                              output_dir=str(out)))
    assert not again.created  # the same settings: reused
    return [load_hetero_partition(result.root, p) for p in range(3)]


def test_halo_and_owned_rows_per_type_are_bit_exact(dataset, parts) -> None:
    graph = HeteroCSR.from_edges(dataset.edges, {t: d.num_nodes for t, d in dataset.node_types.items()})
    for t, d in dataset.node_types.items():
        owned = np.concatenate([p.rows[t].nodes for p in parts])
        assert np.array_equal(np.sort(owned), np.arange(d.num_nodes)), t  # each node owned exactly once
        for p in parts:
            rows = p.rows[t]
            assert np.array_equal(p.node_map[t][rows.nodes], np.full(len(rows.nodes), p.index))
            halo = [csr.indices[csr.indptr[v]:csr.indptr[v + 1]] for e, csr in graph.csr.items() if e[0] == t
                    for v in p.rows[e[2]].nodes]
            halo = np.unique(np.concatenate(halo + [np.zeros(0, np.int64)]))
            assert np.array_equal(rows.halo, halo[p.node_map[t][halo] != p.index]), t
            held = np.concatenate([rows.nodes, rows.halo])
            x, y = p.typed_rows(p.node_types.index(t), held)
            if d.x is None:
                assert x.shape == (len(held), 0) and rows.x is None
            else:
                assert x.view(np.uint32).tobytes() == d.x[held].astype(np.float32).view(np.uint32).tobytes(), t
            assert np.array_equal(y, d.y[held] if d.y is not None else np.full(len(held), -1)), t
    for e, csr in graph.csr.items():  # every in-list once, with the destination's owner, in the graph's order
        for p in parts:
            mine = p.csr[e]
            for local, v in enumerate(p.rows[e[2]].nodes[:50]):
                assert np.array_equal(mine.indices[mine.indptr[local]:mine.indptr[local + 1]],
                                      csr.indices[csr.indptr[v]:csr.indptr[v + 1]]), e
        assert sum(p.csr[e].num_edges for p in parts) == csr.num_edges
    target = dataset.node_types[dataset.target_type]
    for split in ("train", "val", "test"):
        got = np.sort(np.concatenate([p.splits[split] for p in parts]))
        assert np.array_equal(got, np.sort(getattr(target, f"{split}_idx"))), split


@pytest.mark.parametrize("fanout", [1, 3, -1])
def test_owners_samples_put_together_the_whole_graphs_sample(dataset, parts, fanout: int) -> None:
    graph = HeteroCSR.from_edges(dataset.edges, {t: d.num_nodes for t, d in dataset.node_types.items()})
    rng = np.random.default_rng(0)
    for i, e in enumerate(parts[0].edge_types):
        frontier = rng.integers(0, dataset.node_types[e[2]].num_nodes, 200)
        states = hop_states(12345 + i, len(frontier))
        groups = by_owner(parts[0].node_map[e[2]][frontier], len(parts))
        answers = {r: parts[r].typed_sample(i, frontier[pos], fanout, states[pos]) for r, pos in groups}
        got = in_frontier_order(len(frontier), groups, answers)
        want = sample_typed_hop(graph.csr[e], frontier, fanout, states)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), e


@pytest.mark.slow
def test_two_rank_partitioned_run_loss_falls_and_equals_the_full_graph(tmp_path: Path) -> None:
    ds = generate_hetero(num_nodes=6000, avg_degree=6, num_features=8, num_classes=4, seed=2)
    losses = {}
    for run, extra in (("part", []), ("full", ["--full_graph"])):
        events = run_two_ranks("in-memory-alternative.py", tmp_path, ["--dataset", ds.name, *FLAGS,
                                                                      "--run_name", run, *extra])
        epochs = [e for e in events if e["event"] == "epoch"]
        assert epochs[-1]["loss"] < 0.8 * epochs[0]["loss"], [e["loss"] for e in epochs]
        losses[run] = [e["loss"] for e in events if e["event"] == "step"]
        if run == "part":
            stats = epochs[-1]["stats"]
            assert stats["remote_requests"] > 0 and stats["halo_nodes"]["author"] > 0
            assert (tmp_path / "data" / "partitions" / ds.name / "2-parts" / "meta.json").is_file()  # made by rank 0
    assert losses["part"] == pytest.approx(losses["full"], rel=1e-6)


def _one_rank(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(REPO / "in-memory-alternative.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--target_type", "paper", "--featureless", "degree"], "--featureless degree needs every relationship"),
    (["--fanouts", "4,3", "--num_layers", "2"], "is heterogeneous: pass --target_type paper"),
    (["--target_type", "author"], "--target_type author is not the partitioned dataset's target type"),
])
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    name = generate_hetero(**PARAMS).name
    out = _one_rank(["--dataset", name, "--epochs", "1", "--partition_dir", str(tmp_path / "parts"), *args], tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode in (1, 2) and message in lines[-1] and "Traceback" not in out.stderr, out.stderr[-2000:]


def test_partition_graph_refuses_a_bare_hetero_name_in_one_line(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(REPO / "partition_graph.py"), "--dataset", "synthetic_hetero",
                          "--num_partitions", "2", "--output_dir", str(tmp_path)], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "synthetic_hetero_n10000" in out.stderr, out.stderr
