"""``--task link`` on the Ladybug backend: the split equals the in-memory (and Neo4j) split, no held-out pair is
ever a message-passing edge of a training batch (a full epoch against the split), and a link run trains."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.sampler import NegativeSampling

from src.core.csr import CSRGraph
from src.core.edge_split import EdgeSplitSpec, pair_keys, split_graph
from src.data.loading import LoadConfig
from src.data.sources import load_dataset
from src.ladybugdb.backend import LadybugBackend
from src.ladybugdb.client import LadybugClient
from src.ladybugdb.loader import ensure_loaded, require_loaded
from tests.conftest import REPO

SPEC = EdgeSplitSpec(0.85, 0.05, 0.10, seed=0)


@pytest.fixture(scope="module")
def db_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ladybug_link") / "cora.lbdb"
    with LadybugClient(path, read_only=False) as writer:
        assert ensure_loaded(writer, load_dataset("cora"), None, LoadConfig(progress=False)).status == "loaded"
    return path


def test_no_held_out_edge_in_any_ladybug_training_batch(db_path) -> None:
    ds = load_dataset("cora")
    with LadybugClient(db_path) as client:
        backend = LadybugBackend(client, require_loaded(client, "cora"), fanouts=[10, 5], batch_size=64,
                                 num_loader_threads=0)
        split = backend.use_edge_split(SPEC)
        memory = split_graph(CSRGraph.from_edge_index(np.asarray(ds.edge_index), ds.num_nodes), SPEC)
        for part in ("train", "val", "test"):
            assert np.array_equal(split.part(part), memory.part(part)), part
        held = split.held_out_keys()
        every = set(pair_keys(ds.edge_index[0], ds.edge_index[1], ds.num_nodes).tolist())
        pairs = torch.from_numpy(split.train[np.random.default_rng(0).permutation(len(split.train))])
        batches, edges, touching = 0, 0, 0
        for batch in backend.make_link_loader(pairs, seed=0, neg_sampling=NegativeSampling("binary", 1.0)):
            src, dst = batch.n_id[batch.edge_index].numpy()
            keys = pair_keys(src, dst, ds.num_nodes)
            assert not np.isin(keys, held).any(), "a held-out pair was a message-passing edge"
            assert set(keys.tolist()) <= every
            nodes = set(batch.n_id.tolist())
            touching += sum(1 for u, v in np.concatenate([split.val, split.test]).tolist() if u in nodes and v in nodes)
            batches, edges = batches + 1, edges + len(keys)
        assert batches == -(-len(split.train) // 64) and edges > 25_000
        assert touching > 0  # held-out pairs had both ends in batches: the filter, not chance, kept them out


def test_link_run_on_ladybug_trains(db_path, tmp_path) -> None:
    res = subprocess.run([sys.executable, str(REPO / "main-ladybug-backend.py"), "--dataset", "cora", "--ladybug_path",
                          str(db_path), "--task", "link", "--epochs", "2", "--fanouts", "10,5", "--num_layers", "2",
                          "--hidden_channels", "64", "--batch_size", "512", "--decoder", "mlp", "--run_name", "lb_link",
                          "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "ckpt")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    events = [json.loads(x) for x in (tmp_path / "logs" / "lb_link" / "rank0.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(epochs) == 2 and epochs[-1]["loss"] < epochs[0]["loss"] and epochs[-1]["val_auc"] > 0.6
