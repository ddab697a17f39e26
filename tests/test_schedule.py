"""The training schedule: ranks with their own batch sizes run equal step counts, flags that must match
are checked at start, early stopping keeps the best epoch, and the default metric follows the target."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from src.core.ports import free_port_pair
from src.data.sources import load_dataset
from src.in_memory.full_graph import FullGraphBackend
from src.train.agreement import epoch_shard, steps_per_epoch
from src.train.checkpoint import mix_seeds
from src.train.evaluate import evaluate
from src.train.loop import train
from src.train.model import model_from_identity
from tests.subprocs import communicate_all
from tests.test_trainer import PROCESS_TIMEOUT, REPO, backend_for, cli, of, read_events, small_config

SCRIPT = REPO / "in-memory-alternative.py"
BASE = ["--dataset", "cora", "--fanouts", "5,5", "--num_layers", "2", "--hidden_channels", "32", "--lr", "0.01",
        "--num_loader_threads", "1", "--log_dir", "logs", "--checkpoint_dir", "ckpt", "--run_name", "run"]


def run_ranks(tmp_path: Path, per_rank: list[list[str]]) -> list[subprocess.CompletedProcess]:
    port = free_port_pair()
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), *BASE, *args, "--num_nodes", str(len(per_rank)),
                               "--node_rank", str(r), "--master_addr", "127.0.0.1", "--master_port", str(port)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r, args in enumerate(per_rank)]
    return communicate_all(procs, PROCESS_TIMEOUT)


def test_shards_sized_by_batch_size_cover_every_seed_in_equal_step_counts() -> None:
    seeds = torch.arange(1000, 2000)
    for sizes in ([8192, 1024], [64, 16], [100, 100, 7], [5]):
        shards = [epoch_shard(seeds, seed=3, epoch=2, rank=r, world_size=len(sizes), batch_sizes=sizes)
                  for r in range(len(sizes))]
        steps = steps_per_epoch(len(seeds), sizes)
        assert [-(-len(s) // b) for s, b in zip(shards, sizes)] == [steps] * len(sizes)
        assert set(torch.cat(shards).tolist()) == set(seeds.tolist())  # padding wraps, nothing is left out
    equal = [epoch_shard(seeds, seed=3, epoch=2, rank=r, world_size=2, batch_sizes=[64, 64]) for r in range(2)]
    assert [torch.equal(e, epoch_shard(seeds, seed=3, epoch=2, rank=r, world_size=2)) for r, e in enumerate(equal)] \
        == [True, True]  # equal batch sizes: the plain split, as before per-rank batch sizes existed
    assert steps_per_epoch(1000, [64, 16], max_steps=3) == 3


def test_seed_style_per_rank_batch_sizes_train_the_partitioned_backend(tmp_path: Path) -> None:
    """The seed's in-memory commands: one rank with a large batch, the other small (8192/1024, scaled to cora)."""
    results = run_ranks(tmp_path, [["--epochs", "2", "--batch_size", "64", "--num_workers", "0", "--model", "gcn"],
                                   ["--epochs", "2", "--batch_size", "8", "--num_workers", "2", "--model", "gcn"]])
    assert [r.returncode for r in results] == [0, 0], "\n".join(r.stderr[-2000:] for r in results)
    logs = [read_events(tmp_path / "logs" / "run" / f"rank{r}.jsonl") for r in range(2)]
    steps = [of(events, "step") for events in logs]
    assert len(steps[0]) == len(steps[1]) == 2 * 2  # 140 seeds / (64 + 8) -> 2 steps per epoch on both ranks
    # shards of ceil(140 * 64 / 72) = 125 and ceil(140 * 8 / 72) = 16 seeds
    assert {s["num_seeds"] for s in steps[0]} == {64, 61} and {s["num_seeds"] for s in steps[1]} == {8}
    assert of(logs[0], "run_start")[0]["batch_sizes"] == [64, 8]
    assert of(logs[0], "epoch")[-1]["val_acc"] == of(logs[1], "epoch")[-1]["val_acc"] is not None


def test_a_flag_that_must_match_fails_both_ranks_within_seconds_in_one_line(tmp_path: Path) -> None:
    start = time.monotonic()
    results = run_ranks(tmp_path, [["--full_graph", "--model", "sage"], ["--full_graph", "--model", "gat"]])
    assert time.monotonic() - start < 60
    for r in results:
        assert r.returncode == 1, r.stderr[-2000:]
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
        assert errors == ["error: --model differs between ranks: rank 0 has 'sage', rank 1 has 'gat'; "
                          "give every rank the same --model"], r.stderr[-2000:]


def test_patience_stops_and_best_checkpoint_holds_the_best_epoch(tmp_path: Path) -> None:
    backend = backend_for("cora")
    cfg = small_config(tmp_path, epochs=40, patience=2, lr=0.05)
    summary = train(backend, cfg)
    assert summary["stopped_early"] and summary["epochs_run"] < 40
    assert summary["epochs_run"] == summary["best_epoch"] + 2  # two evaluations without improvement
    events = read_events(tmp_path / "logs" / "run" / "rank0.jsonl")
    vals = {e["epoch"]: e["val_metric"] for e in of(events, "epoch")}
    assert summary["metric"] == "accuracy" and summary["best_val_metric"] == max(vals.values())
    assert vals[summary["best_epoch"]] == summary["best_val_metric"]
    best = torch.load(tmp_path / "ckpt" / "run" / "best.pt", weights_only=True)
    assert best["epoch"] == summary["best_epoch"] and best["metrics"]["val_metric"] == summary["best_val_metric"]
    model = model_from_identity(best["identity"])
    model.load_state_dict(best["model"])  # the best epoch's weights evaluate to its logged number
    again = evaluate(model, backend, "val", seed=mix_seeds(cfg.seed, best["epoch"], 2))
    assert again["acc"] == summary["best_val_metric"]
    last = torch.load(tmp_path / "ckpt" / "run" / "checkpoint.pt", weights_only=True)
    assert last["epoch"] == summary["epochs_run"] > best["epoch"]


def test_resume_keeps_the_best_checkpoint_of_the_earlier_part(tmp_path: Path) -> None:
    backend = backend_for("cora")
    first = train(backend, small_config(tmp_path, epochs=3))
    best_path = tmp_path / "ckpt" / "run" / "best.pt"
    assert torch.load(best_path, weights_only=True)["epoch"] == first["best_epoch"]
    second = train(backend, small_config(tmp_path, epochs=6, resume=True))
    assert torch.load(best_path, weights_only=True)["epoch"] == second["best_epoch"]
    assert second["best_val_metric"] >= first["best_val_metric"]


def test_binary_target_defaults_to_roc_auc_and_logs_every_metric(tmp_path: Path) -> None:
    backend = FullGraphBackend(load_dataset("tolokers"), fanouts=[5, 5], batch_size=1024, num_loader_threads=1)
    summary = train(backend, small_config(tmp_path, dataset="tolokers", epochs=1, batch_size=1024, max_steps_per_epoch=2))
    assert summary["metric"] == "roc_auc" and 0.4 < summary["best_val_metric"] <= 1.0
    (epoch,) = of(read_events(tmp_path / "logs" / "run" / "rank0.jsonl"), "epoch")
    assert epoch["val_metric"] == epoch["val_auc"] and None not in (epoch["val_f1"], epoch["test_auc"])
    with pytest.raises(Exception, match="--metric roc_auc needs a binary target"):
        train(backend_for("cora"), small_config(tmp_path, metric="roc_auc", run_name="r2"))


def test_num_workers_zero_means_the_default_thread_count(tmp_path: Path) -> None:
    assert cli(["--num_workers", "0", "--log_dir", str(tmp_path), "--checkpoint_dir", str(tmp_path)]).num_workers == 0
    meta = json.dumps(cli(["--model", "gat", "--heads", "4", "--log_dir", str(tmp_path),
                           "--checkpoint_dir", str(tmp_path)]).flags)
    assert '"heads": 4' in meta
