"""``--task link`` through the one training loop: flags, logs, checkpoints, DDP, both backends' parity of setup."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.sampler import NegativeSampling

from src.core.edge_split import EdgeSplitSpec, pair_keys
from src.core.errors import UsageError, UserError
from src.train.link_metrics import average_precision, link_metrics
from src.train.loop import train
from src.data.sources import load_dataset
from src.in_memory.full_graph import FullGraphBackend
from tests.test_trainer import REPO, backend_for, cli, run_ranks, small_config, tails

LINK = dict(task="link", epochs=3, batch_size=256, decoder="mlp", eval_negatives=50, hits_k=10)


def link_backend() -> FullGraphBackend:
    return FullGraphBackend(load_dataset("cora"), fanouts=[5, 5], batch_size=256, num_loader_threads=1)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--task", "link", "--neg_ratio", "0"], "--neg_ratio must be > 0"),
    (["--task", "link", "--edge_split", "0.9,0.2,0.1"], "sum to 1.2, more than 1"),
    (["--task", "link", "--edge_split", "0.9,0.1"], "not TRAIN,VAL,TEST"),
    (["--task", "link", "--hits_k", "200"], "--hits_k must be in 1..--eval_negatives (100)"),
])
def test_bad_link_flags_are_one_line(argv: list[str], expected: str) -> None:
    with pytest.raises(UsageError, match=expected.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        cli(argv)


def test_link_metrics_on_known_scores() -> None:
    pos = np.array([3.0, 1.0, 0.0])
    neg = np.array([[0.0, 4.0], [2.0, 0.5], [1.0, -1.0]])
    m = link_metrics(pos, neg, hits_k=1)
    assert m["auc"] == pytest.approx(5 / 9)  # pos [3, 1, 0] vs first negatives [0, 2, 1]: 4 wins, 2 ties of 9
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 2) / 3) and m["hits"] == 0.0
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)


def test_training_batches_never_show_their_own_positive_pairs(tmp_path: Path) -> None:
    backend = backend_for("cora")
    split = backend.use_edge_split(EdgeSplitSpec())
    n = backend.num_nodes
    for batch in backend.make_link_loader(torch.from_numpy(split.train[:1024]), seed=0,
                                          neg_sampling=NegativeSampling("binary", 1.0), exclude_targets=True):
        targets = batch.n_id[batch.edge_label_index[:, batch.edge_label == 1]].numpy()
        src, dst = batch.n_id[batch.edge_index].numpy()
        assert not np.isin(pair_keys(src, dst, n), pair_keys(targets[0], targets[1], n)).any()
        assert sum(batch.num_sampled_edges) == batch.edge_index.size(1)


def test_link_training_learns_logs_and_resumes(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, **LINK)
    summary = train(link_backend(), cfg)
    assert summary["metric"] == "roc_auc" and summary["best_val_metric"] > 0.75
    events = [json.loads(line) for line in (tmp_path / "logs" / "run" / "rank0.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(epochs) == 3 and all(e["test_ap"] is not None and 0 <= e["test_hits"] <= 1 for e in epochs)
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == 3 * -(-4486 // 256) and steps[0]["num_seeds"] == 256  # positive pairs per step
    again = train(link_backend(), small_config(tmp_path, **{**LINK, "epochs": 4}, resume=True))
    assert again["epochs_run"] == 4
    with pytest.raises(UserError, match="task=link.*task=node"):
        train(link_backend(), small_config(tmp_path, epochs=5, batch_size=256, resume=True))


@pytest.mark.slow
def test_link_training_on_two_ranks(tmp_path: Path) -> None:
    args = ["--dataset", "cora", "--full_graph", "--task", "link", "--epochs", "2", "--fanouts", "5,5", "--num_layers", "2",
            "--hidden_channels", "64", "--batch_size", "256", "--run_name", "ddp", "--log_dir", str(tmp_path / "logs"),
            "--checkpoint_dir", str(tmp_path / "ckpt")]
    results = run_ranks(REPO / "in-memory-alternative.py", tmp_path, [args, args])
    assert all(r.returncode == 0 for r in results), tails(results)
    last = [[json.loads(x) for x in (tmp_path / "logs" / "ddp" / f"rank{k}.jsonl").read_text().splitlines()
             if '"epoch"' in x][-1] for k in range(2)]
    assert last[0]["test_auc"] == last[1]["test_auc"] and last[0]["loss"] == last[1]["loss"]
