"""A heterogeneous dataset in a real Ladybug file: load, samples, rows, a 2-rank run, bad input.

The typed Ladybug sampler must give exactly the in-memory sampler's samples (same seed, every hop and
relationship type), rows and degree features per type must be the source's bit for bit, and a 2-rank run
must log the in-memory full graph's very step losses.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.loader import NodeLoader
from torch_geometric.sampler import NodeSamplerInput

from src.core.errors import UserError
from src.core.hetero_fanouts import parse_fanouts
from src.core.hetero_sampling import HeteroCSR, HeteroCSRSampler
from src.core.hetero_stores import HeteroEdgeMetadata, InMemoryHeteroRows
from src.data.loading import LoadConfig
from src.data.synthetic_hetero import generate_hetero
from src.ladybugdb.client import LadybugClient
from src.ladybugdb.hetero_loader import ensure_hetero_loaded, require_hetero
from src.ladybugdb.hetero_sampler import LadybugHeteroRows, LadybugHeteroSampler
from tests.backend_checks import same_hetero_samples
from tests.test_hetero_training import FLAGS, REPO, run_two_ranks

FANOUTS = "writes:3,2;written_by:2,2;cites:4,3;publishes:1,1"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    ds = generate_hetero(num_nodes=1500, avg_degree=6, num_features=8, num_classes=3, seed=11)
    path = tmp_path_factory.mktemp("ladybug") / "h.lbdb"
    with LadybugClient(path, read_only=False, buffer_mb=64) as client:
        assert ensure_hetero_loaded(client, ds, LoadConfig(progress=False)).status == "loaded"
        assert ensure_hetero_loaded(client, ds, LoadConfig(progress=False)).status == "already loaded"
        other = generate_hetero(num_nodes=1500, avg_degree=6, num_features=8, num_classes=3, seed=12)
        other.name = ds.name
        with pytest.raises(UserError, match="already holds a different dataset"):
            ensure_hetero_loaded(client, other, LoadConfig(progress=False))
    client = LadybugClient(path, read_only=True, buffer_mb=64)
    yield ds, client, require_hetero(client, ds.name)
    client.close()


@pytest.mark.parametrize("seed", [0, 5])
def test_ladybug_samples_equal_in_memory_samples(loaded, seed: int) -> None:
    ds, client, spec = loaded
    fanouts = parse_fanouts(FANOUTS, ds.edge_types)
    memory = HeteroCSRSampler(HeteroCSR.from_edges(ds.edges, {t: d.num_nodes for t, d in ds.node_types.items()}),
                              fanouts, seed=seed)
    ladybug = LadybugHeteroSampler(client, spec, fanouts, seed=seed)
    a = same_hetero_samples(memory, ladybug)
    assert sum(a.num_sampled_edges[("paper", "cites", "paper")]) > 0


def test_reverse_types_equal_the_in_memory_reversed_graph(loaded) -> None:
    """``add_reverse``: rev_<rel> types walk the stored rel tables backwards, sampled and counted (degree features)
    exactly as the in-memory sampler and rows over the graph with its edges flipped."""
    ds, client, spec = loaded
    rev = ds.with_reverse()
    fanouts = parse_fanouts(FANOUTS + ";rev_writes:2,2;rev_cites:2,1;rev_publishes:2,1", rev.edge_types, default=[1, 1])
    memory = HeteroCSRSampler(HeteroCSR.from_edges(rev.edges, {t: d.num_nodes for t, d in rev.node_types.items()}),
                              fanouts, seed=4)
    a = same_hetero_samples(memory, LadybugHeteroSampler(client, spec, fanouts, seed=4, add_reverse=True))
    assert sum(a.num_sampled_edges[("paper", "rev_publishes", "venue")]) > 0  # venues receive messages now
    rows, oracle = LadybugHeteroRows(client, spec, degrees=True, add_reverse=True), InMemoryHeteroRows(rev, degrees=True)
    for t in ("author", "venue"):
        ids = np.arange(0, ds.node_types[t].num_nodes, 7)
        assert rows.num_features[t] == oracle.num_features[t] > LadybugHeteroRows(client, spec, degrees=True).num_features[t]
        assert torch.equal(rows.fetch(t, ids, True, False)[0], oracle.fetch(t, ids, True, False)[0]), t


def test_fanout_zero_is_never_sampled(loaded) -> None:
    ds, client, spec = loaded
    sampler = LadybugHeteroSampler(client, spec, parse_fanouts("cites:0,0;publishes:1,0", ds.edge_types,
                                                               default=[2, 2]), seed=1)
    out = sampler.sample_from_nodes(NodeSamplerInput(None, torch.arange(50), input_type="paper"))
    assert out.num_sampled_edges[("paper", "cites", "paper")] == [0, 0]
    assert out.num_sampled_edges[("venue", "publishes", "paper")][1] == 0
    assert sampler.queries == 3  # hop 1: writes, publishes (cites is 0); hop 2: written_by (no new papers)


def test_rows_and_degrees_per_type_bit_exact_through_node_loader(loaded) -> None:
    ds, client, spec = loaded
    num_nodes = {t: d.num_nodes for t, d in ds.node_types.items()}
    rows = LadybugHeteroRows(client, spec, degrees=True)
    stores = (rows, HeteroEdgeMetadata(num_nodes, {e: v.shape[1] for e, v in ds.edges.items()}))
    loader = NodeLoader(stores, node_sampler=LadybugHeteroSampler(client, spec, parse_fanouts(FANOUTS, ds.edge_types),
                                                                  seed=2),
                        input_nodes=("paper", torch.arange(40)), batch_size=20)
    batch = next(iter(loader))
    paper = ds.node_types["paper"]
    ids = batch["paper"].n_id.numpy()
    assert batch["paper"].x.numpy().view(np.uint32).tobytes() == paper.x[ids].view(np.uint32).tobytes()
    assert torch.equal(batch["paper"].y, torch.from_numpy(paper.y[ids]))
    oracle = InMemoryHeteroRows(ds, degrees=True)
    for t in ("author", "venue"):
        n_id = batch[t].n_id.numpy()
        assert len(n_id) and torch.equal(batch[t].x, oracle.fetch(t, n_id, True, False)[0]), t


@pytest.mark.slow
def test_two_rank_ladybug_run_loss_falls_and_equals_in_memory(tmp_path: Path) -> None:
    ds = generate_hetero(num_nodes=6000, avg_degree=6, num_features=8, num_classes=4, seed=2)
    path = tmp_path / "h.lbdb"
    with LadybugClient(path, read_only=False, buffer_mb=64) as client:
        ensure_hetero_loaded(client, ds, LoadConfig(progress=False))
    losses = {}
    for run, script, extra in (("ladybug", "main-ladybug-backend.py", ["--ladybug_path", str(path)]),
                               ("memory", "in-memory-alternative.py", ["--full_graph"])):
        events = run_two_ranks(script, tmp_path, ["--dataset", ds.name, *FLAGS, "--run_name", run, *extra])
        epochs = [e for e in events if e["event"] == "epoch"]
        assert epochs[-1]["loss"] < 0.8 * epochs[0]["loss"], [e["loss"] for e in epochs]
        assert epochs[-1]["test_acc"] is not None and epochs[-1]["test_acc"] > 0.5
        losses[run] = [e["loss"] for e in events if e["event"] == "step"]
    assert losses["ladybug"] == pytest.approx(losses["memory"], rel=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--fanouts", "4,3"], "is heterogeneous: pass --target_type paper"),
    (["--target_type", "paper", "--fanouts", FANOUTS, "--cache_mb", "16"], "--cache_mb applies to homogeneous"),
])
def test_bad_input_is_one_line(loaded, tmp_path: Path, args: list[str], message: str) -> None:
    ds, client, _ = loaded
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, str(REPO / "main-ladybug-backend.py"), "--dataset", ds.name, "--epochs", "1",
                          "--num_layers", "2", "--ladybug_path", str(client.path), *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode in (1, 2) and message in lines[-1] and "Traceback" not in out.stderr, out.stderr[-2000:]

