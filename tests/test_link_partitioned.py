"""``--task link`` on the partitioned in-memory backend, 2 ranks on cora: every rank computes the split the
in-memory backend computes, and over a full epoch of link batches (each rank its half of the training pairs,
hops crossing partitions) no held-out pair is ever a message-passing edge."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from src.core.csr import CSRGraph
from src.core.edge_split import EdgeSplitSpec, split_graph, training_graph
from src.core.ports import free_port_pair
from src.data.sources import load_dataset
from tests.conftest import REPO
from tests.subprocs import communicate_all

PROBE = '''
import sys
import numpy as np
import torch
from torch_geometric.sampler import NegativeSampling
from src.core.edge_split import EdgeSplitSpec, pair_keys
from src.in_memory.partitioned import open_partitioned_backend
from src.train import distributed
from src.train.config import TrainConfig

rank, port, parts, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
cfg = TrainConfig(dataset="cora", num_nodes=2, node_rank=rank, master_addr="127.0.0.1", master_port=port,
                  fanouts=(10, 5), batch_size=64, num_loader_threads=1, concurrency=2, task="link")
with open_partitioned_backend(cfg, parts) as backend:
    split = backend.use_edge_split(EdgeSplitSpec())
    held, n = split.held_out_keys(), backend.num_nodes
    batches = leaks = edges = remote = 0
    for batch in backend.make_link_loader(torch.from_numpy(split.train[rank::2]), seed=rank,
                                          neg_sampling=NegativeSampling("binary", 1.0)):
        src, dst = batch.n_id[batch.edge_index].numpy()
        leaks += int(np.isin(pair_keys(src, dst, n), held).sum())
        batches, edges = batches + 1, edges + len(src)
    degrees = backend.training_degrees().numpy()
    np.savez(out, train=split.train, val=split.val, test=split.test, batches=batches, leaks=leaks, edges=edges,
             remote=backend.stats()["remote_sampled_frontier"], degrees=degrees)
distributed.destroy()
'''


def test_no_held_out_edge_in_two_rank_partitioned_link_batches(tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    port = free_port_pair()
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(port), str(tmp_path / "parts"),
                               str(tmp_path / f"rank{r}.npz")], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
             for r in range(2)]
    for proc in communicate_all(procs, 400):
        assert proc.returncode == 0, proc.stderr[-3000:]
    ds = load_dataset("cora")
    csr = CSRGraph.from_edge_index(np.asarray(ds.edge_index), ds.num_nodes)
    memory = split_graph(csr, EdgeSplitSpec())
    outs = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]
    for out in outs:
        for part in ("train", "val", "test"):
            assert np.array_equal(out[part], memory.part(part)), part
        assert out["leaks"] == 0 and out["edges"] > 10_000 and out["remote"] > 0  # hops crossed partitions
    assert [int(o["batches"]) for o in outs] == [-(-len(memory.train[r::2]) // 64) for r in range(2)]
    want = np.bincount(training_graph(csr, memory).indices, minlength=ds.num_nodes)
    assert all(np.array_equal(o["degrees"], want) for o in outs)  # degree-biased negatives: global training degrees
