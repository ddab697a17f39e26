"""Trainer, flags, logs, DDP and resume: real cora, real processes, real gloo.

The multi-process tests run a small runner script (written to tmp_path) that is
``in-memory-alternative.py`` plus two test knobs on the backend: more train seeds than the split
has (an uneven shard) and a SIGKILL of its own process during a given epoch (a crash at a known
point, without any test hook in the library).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from src.core.huge_pages import huge_pages_requested
from src.train import distributed
from src.in_memory.full_graph import FullGraphBackend
from src.data.sources import load_dataset
from src.core.errors import UsageError, UserError
from src.train.cli import add_training_args, parse_training_config
from src.train.config import TrainConfig
from src.train.agreement import epoch_shard
from src.train.loop import train
from tests.subprocs import communicate_all

REPO = Path(__file__).resolve().parent.parent
PROCESS_TIMEOUT = 240  # seconds; generous because the 2-core test machine may be shared

COMMON = {"time", "rank", "world_size", "backend", "dataset"}
SCHEMA = {  # docs/ARCHITECTURE.md, "Logs"
    "run_start": {"config", "num_nodes", "num_edges", "resumed_from_epoch", "batch_sizes", "huge_pages"},
    "step": {"epoch", "step", "loss", "num_seeds", "t_wait", "t_sample", "t_fetch", "t_decode",
             "t_forward_backward", "t_allreduce", "t_step", "rss_mb", "neo4j_rss_mb"},
    "epoch": {"epoch", "loss", "train_acc", "val_acc", "test_acc", "val_f1", "test_f1", "val_auc", "test_auc",
              "metric", "val_metric", "test_metric", "epoch_time", "t_wait",
              "t_sample", "t_fetch", "t_decode", "t_forward_backward", "t_allreduce", "t_eval", "seeds_per_s",
              "rss_mb", "peak_rss_mb", "neo4j_rss_mb", "stats"},
    "summary": {"epochs", "metric", "best_val_metric", "test_metric_at_best_val", "best_val_acc",
                "test_acc_at_best_val", "best_epoch", "epochs_run", "stopped_early", "mean_epoch_time",
                "peak_rss_mb", "peak_neo4j_rss_mb"},
}
SMALL = ["--dataset", "cora", "--fanouts", "5,5", "--num_layers", "2", "--hidden_channels", "64",
         "--batch_size", "64", "--lr", "0.01", "--num_loader_threads", "1"]

RUNNER = '''
"""in-memory-alternative.py with test knobs: --train_seeds N, --kill_epoch E (SIGKILL itself)."""
import argparse, os, signal

import numpy as np
import torch

from src.in_memory.full_graph import FullGraphBackend
from src.data.sources import load_dataset
from src.core.errors import run_cli
from src.train.cli import add_training_args, configure_console_logging, parse_training_config
from src.train.loop import train


class KnobBackend(FullGraphBackend):
    def __init__(self, *args, train_seeds, kill_epoch, **kwargs):
        super().__init__(*args, **kwargs)
        seeds = super().split_nodes("train").numpy()
        if train_seeds:  # top up with nodes outside every split (cora has plenty)
            splits = [FullGraphBackend.split_nodes(self, s) for s in ("train", "val", "test")]
            used = np.concatenate([s.numpy() for s in splits])
            spare = np.setdiff1d(np.arange(self.num_nodes), used)[: train_seeds - len(seeds)]
            seeds = np.concatenate([seeds, spare])
        self.train = seeds
        self.kill_epoch, self.train_loaders = kill_epoch, 0

    def split_nodes(self, split):
        return torch.from_numpy(self.train) if split == "train" else super().split_nodes(split)

    def make_loader(self, seeds, *, shuffle, seed):
        loader = super().make_loader(seeds, shuffle=shuffle, seed=seed)
        if not np.isin(seeds.numpy(), self.train).all():
            return loader
        self.train_loaders += 1
        return self._die_after_first(loader) if self.train_loaders == self.kill_epoch else loader

    @staticmethod
    def _die_after_first(loader):
        for batch in loader:
            yield batch
            os.kill(os.getpid(), signal.SIGKILL)


def main():
    parser = add_training_args(argparse.ArgumentParser())
    parser.add_argument("--train_seeds", type=int, default=0)
    parser.add_argument("--kill_epoch", type=int, default=0)
    args = parser.parse_args()
    cfg = parse_training_config(args)
    configure_console_logging()
    backend = KnobBackend(load_dataset(cfg.dataset), fanouts=cfg.fanouts,
                          batch_size=cfg.batch_size, num_loader_threads=cfg.num_loader_threads,
                          train_seeds=args.train_seeds, kill_epoch=args.kill_epoch)
    train(backend, cfg)


run_cli(main)
'''


# ------------------------------------------------------------------------------------ helpers
def free_port() -> int:
    """A free port below the kernel's ephemeral range.

    A port from ``bind(0)`` is an ephemeral one: during the seconds the ranks need to import
    torch, any outgoing connection on this busy machine may be given it as its local port.
    """
    range_file = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(range_file.read_text().split()[0]) if range_file.exists() else 32768
    for port in random.sample(range(20000, low), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found for the test")


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind]


def cli(argv: list[str], env: dict[str, str] | None = None) -> TrainConfig:
    parser = add_training_args(argparse.ArgumentParser())
    return parse_training_config(parser.parse_args(argv), env={} if env is None else env)


def run_ranks(script: Path, tmp: Path, per_rank_args: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Start one process per rank (world = len(per_rank_args)) and wait for all of them."""
    port = free_port()
    world = len(per_rank_args)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), *args, "--num_nodes", str(world), "--node_rank", str(rank),
             "--master_addr", "127.0.0.1", "--master_port", str(port)],
            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for rank, args in enumerate(per_rank_args)
    ]
    return communicate_all(procs, PROCESS_TIMEOUT)


def tails(results: list[subprocess.CompletedProcess]) -> str:
    return "\n".join(f"--- rank {k} rc={r.returncode}\n{r.stderr[-2500:]}" for k, r in enumerate(results))


def last_line(text: str) -> str:
    return [ln for ln in text.splitlines() if ln.strip()][-1]


@pytest.fixture(scope="module")
def cora_backend() -> FullGraphBackend:
    return backend_for("cora")


@pytest.fixture
def runner(tmp_path: Path) -> Path:
    path = tmp_path / "runner.py"
    path.write_text(RUNNER)
    return path


def backend_for(dataset: str) -> FullGraphBackend:
    return FullGraphBackend(load_dataset(dataset), fanouts=[5, 5], batch_size=64, num_loader_threads=1)


def small_config(tmp_path: Path, **overrides: Any) -> TrainConfig:
    base = dict(dataset="cora", fanouts=(5, 5), num_layers=2, hidden_channels=64, batch_size=64,
                lr=0.01, epochs=5, log_dir=str(tmp_path / "logs"),
                checkpoint_dir=str(tmp_path / "ckpt"), run_name="run", num_loader_threads=1)
    return TrainConfig(**{**base, **overrides})


# ------------------------------------------------------------------------- (a) flag validation
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--batch_size", "0"], "--batch_size must be > 0"),
        (["--batch_size", "-5"], "--batch_size must be > 0"),
        (["--fanouts", ""], "--fanouts is empty"),
        (["--fanouts", "10,,5", "--num_layers", "3"], "--fanouts is empty or has an empty entry"),
        (["--fanouts", "10,a", "--num_layers", "2"], "--fanouts has a non-integer entry"),
        (["--fanouts", "1.5,2", "--num_layers", "2"], "--fanouts has a non-integer entry"),
        (["--fanouts", "10,0", "--num_layers", "2"], "--fanouts entries must be > 0"),
        (["--fanouts", "10,5", "--num_layers", "3"], "--fanouts has 2 entries but --num_layers is 3"),
        (["--epochs", "0"], "--epochs must be > 0"),
        (["--lr", "0"], "--lr must be > 0"),
        (["--lr", "-0.1"], "--lr must be > 0"),
        (["--dropout", "1"], "--dropout must be in [0, 1)"),
        (["--dropout", "-0.1"], "--dropout must be in [0, 1)"),
        (["--weight_decay=-1e-4"], "--weight_decay must be >= 0"),
        (["--num_nodes", "2", "--node_rank", "2"], "--node_rank must be in 0..1"),
        (["--node_rank", "-1"], "--node_rank must be in 0..0"),
        (["--num_nodes", "0"], "--num_nodes must be >= 1"),
        (["--resume"], "--resume needs --run_name"),
    ],
)
def test_bad_flags_raise_one_line_usage_error(argv: list[str], expected: str) -> None:
    with pytest.raises(UsageError) as info:
        cli(argv)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_unwritable_log_dir_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")  # works as root too, unlike chmod
    with pytest.raises(UsageError, match="--log_dir .* is not writable"):
        cli(["--log_dir", str(blocker / "logs")])


def test_valid_flags_and_torchrun_environment_override(tmp_path: Path) -> None:
    argv = ["--fanouts", "15, 10,5", "--log_dir", str(tmp_path), "--node_rank", "0"]
    cfg = cli(argv)
    assert cfg.fanouts == (15, 10, 5) and cfg.num_nodes == 1 and cfg.node_rank == 0
    env = {"RANK": "3", "WORLD_SIZE": "4", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"}
    cfg = cli(argv, env)
    assert (cfg.node_rank, cfg.num_nodes, cfg.master_addr, cfg.master_port) == (3, 4, "10.0.0.1", 1234)


def test_help_documents_every_flag_with_its_default() -> None:
    parser = add_training_args(argparse.ArgumentParser())
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in flags} >= {
        "dataset", "dataset_root_dir", "master_addr", "num_nodes", "node_rank", "num_loader_threads",
        "batch_size", "num_workers", "concurrency", "master_port", "epochs", "fanouts",
        "hidden_channels", "num_layers", "lr", "weight_decay", "dropout", "eval_every", "log_dir", "run_name",
        "checkpoint_dir", "resume", "seed"}
    for action in flags:
        assert action.help and "(default: %(default)s)" in action.help, action.dest
    assert parser.parse_args([]).num_workers == 1


def test_master_port_in_use_is_a_user_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cfg = TrainConfig(num_nodes=2, node_rank=0, master_addr="127.0.0.1",
                          master_port=busy.getsockname()[1])
        with pytest.raises(UserError, match="port is in use"):
            distributed.init(cfg)
    assert not torch.distributed.is_initialized()


def test_epoch_shards_are_equal_sized_cover_all_seeds_and_agree_across_ranks() -> None:
    seeds = torch.arange(100, 241)  # 141 seeds
    shards = [epoch_shard(seeds, seed=7, epoch=3, rank=r, world_size=2) for r in range(2)]
    assert [len(s) for s in shards] == [71, 71]
    assert set(torch.cat(shards).tolist()) == set(seeds.tolist())
    again = epoch_shard(seeds, seed=7, epoch=3, rank=1, world_size=2)
    assert torch.equal(shards[1], again)
    assert not torch.equal(shards[0], epoch_shard(seeds, seed=7, epoch=4, rank=0, world_size=2))


# ------------------------------------------------------------------- (b) single-process training
def test_single_process_training_learns_and_logs_the_schema(tmp_path: Path, cora_backend) -> None:
    secrets = {"neo4j_password": "hunter2", "api_token": "hunter3", "nested": {"client_secret": "hunter4"}}
    cfg = small_config(tmp_path, epochs=4, eval_every=2, flags={"dataset": "cora", **secrets})
    summary = train(cora_backend, cfg)

    assert summary["best_val_acc"] > 0.5, summary  # chance is 1/7
    assert summary["epochs"] == 4 and summary["best_epoch"] in (2, 4)
    run_dir = tmp_path / "logs" / "run"
    events = read_events(run_dir / "rank0.jsonl")
    assert [e["event"] for e in events][0] == "run_start" and events[-1]["event"] == "summary"
    for event in events:
        assert set(event) == COMMON | {"event"} | SCHEMA[event["event"]], event["event"]
        assert (event["rank"], event["world_size"], event["backend"], event["dataset"]) == (
            0, 1, "in_memory", "cora")
    assert of(events, "run_start")[0]["num_nodes"] == 2708
    assert of(events, "run_start")[0]["huge_pages"] is huge_pages_requested()
    steps = of(events, "step")
    assert len(steps) == 4 * 3  # 140 seeds / batch 64 = 3 steps per epoch
    assert all(s["t_allreduce"] is None and s["rss_mb"] > 0 and s["t_sample"] >= 0
               and s["t_fetch"] >= 0 and s["t_forward_backward"] > 0 for s in steps)
    epochs = of(events, "epoch")
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert [e["val_acc"] is not None for e in epochs] == [False, True, False, True]
    assert all(e["peak_rss_mb"] >= e["rss_mb"] > 0 and e["stats"]["num_edges"] == 10556 for e in epochs)
    text = (run_dir / "rank0.log").read_text()
    assert len(text.splitlines()) == len(events)
    for secret in ("hunter2", "hunter3", "hunter4"):
        assert secret not in text and secret not in (run_dir / "rank0.jsonl").read_text()
    assert (tmp_path / "ckpt" / "run" / "checkpoint.pt").is_file()


def test_bounded_epochs_and_eval_subset(tmp_path: Path, cora_backend, monkeypatch) -> None:
    """--max_steps_per_epoch cuts every epoch; --max_eval_seeds evaluates one fixed subset."""
    asked: list[list[int]] = []
    make_loader = cora_backend.make_loader

    def recording(seeds, **kwargs):
        asked.append(sorted(seeds.tolist()))
        return make_loader(seeds, **kwargs)

    monkeypatch.setattr(cora_backend, "make_loader", recording)
    cfg = small_config(tmp_path, epochs=2, max_steps_per_epoch=2, max_eval_seeds=100)  # 2 x 64 < 140
    train(cora_backend, cfg)
    events = read_events(tmp_path / "logs" / "run" / "rank0.jsonl")
    assert [(s["epoch"], s["step"]) for s in of(events, "step")] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(e["seeds_per_s"] > 0 for e in of(events, "epoch"))
    train_sets = [a for a in asked if len(a) == 128]
    val, test = (set(cora_backend.split_nodes(s).tolist()) for s in ("val", "test"))
    evals = [a for a in asked if len(a) == 100]
    assert len(train_sets) == 2 and len(evals) == 4  # val + test after each of the 2 epochs
    assert set(evals[0]) <= val and set(evals[1]) <= test and evals[0] == evals[2] and evals[1] == evals[3]


def test_fetch_rows_after_step_trains_the_same_steps(tmp_path: Path, cora_backend, monkeypatch) -> None:
    """--fetch_rows after_step only changes when rows are fetched: the same losses step for step; the training
    loaders are gated, the evaluation ones not."""
    loaders = []
    make_loader = cora_backend.make_loader

    def recording(seeds, **kwargs):
        loaders.append(make_loader(seeds, **kwargs))
        return loaders[-1]

    monkeypatch.setattr(cora_backend, "make_loader", recording)
    losses = {}
    for mode in ("ahead", "after_step"):
        loaders.clear()
        train(cora_backend, small_config(tmp_path, epochs=2, num_loader_threads=2, fetch_rows=mode, run_name=mode))
        losses[mode] = [s["loss"] for s in of(read_events(tmp_path / "logs" / mode / "rank0.jsonl"), "step")]
        gated = [loader.fetch_after_step for loader in loaders]
        assert gated == [mode == "after_step", False, False] * 2, gated  # train, val, test per epoch
    assert len(losses["ahead"]) == 6 and losses["ahead"] == losses["after_step"]


def test_a_failing_step_stops_the_loader_threads_at_once(tmp_path: Path, cora_backend, monkeypatch) -> None:
    """The loop closes its batches when a step raises, so the prefetch threads (one waiting for its turn to fetch,
    --fetch_rows after_step) stop then, not when the traceback lets the iterator go."""
    import threading

    from src.core.prefetch import THREAD_NAME_PREFIX
    from src.train.node_task import NodeTask

    def failing(*args: Any) -> None:
        raise RuntimeError("the step failed")

    monkeypatch.setattr(NodeTask, "step", staticmethod(failing))
    with pytest.raises(RuntimeError, match="the step failed") as caught:
        train(cora_backend, small_config(tmp_path, epochs=1, num_loader_threads=2, fetch_rows="after_step"))
    assert caught.traceback  # held while the threads are checked
    assert not [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME_PREFIX)]


def test_batches_in_flight_counts_one_fewer_after_step() -> None:
    assert TrainConfig(num_loader_threads=2).batches_in_flight() == 3
    assert TrainConfig(num_loader_threads=2, fetch_rows="after_step").batches_in_flight() == 2
    assert TrainConfig(num_loader_threads=0, fetch_rows="after_step").batches_in_flight() == 1


# --------------------------------------------------------------------------- (c) two-rank gloo
@pytest.mark.slow
def test_two_ranks_uneven_seeds_same_steps_and_same_accuracy(tmp_path: Path, runner: Path) -> None:
    args = [*SMALL, "--epochs", "2", "--train_seeds", "141", "--run_name", "ddp"]
    results = run_ranks(runner, tmp_path, [args, args])
    assert [r.returncode for r in results] == [0, 0], tails(results)
    logs = [read_events(tmp_path / "logs" / "ddp" / f"rank{k}.jsonl") for k in range(2)]
    for rank, events in enumerate(logs):
        steps = of(events, "step")
        # 141 seeds over 2 ranks: 71 each (one wrapped), batch 64 -> steps of 64 and 7 seeds
        assert [(s["epoch"], s["step"], s["num_seeds"]) for s in steps] == [
            (1, 1, 64), (1, 2, 7), (2, 1, 64), (2, 2, 7)], rank
        for s in steps:
            assert s["world_size"] == 2 and s["rank"] == rank
            assert s["t_allreduce"] is not None and s["t_allreduce"] >= 0
            for key in ("t_wait", "t_sample", "t_fetch", "t_forward_backward", "t_step", "rss_mb"):
                assert s[key] is not None and s[key] >= 0, key
        for e in of(events, "epoch"):
            assert e["t_allreduce"] >= 0 and e["rss_mb"] > 0 and e["peak_rss_mb"] > 0
    accuracy = [[(e["val_acc"], e["test_acc"], e["loss"]) for e in of(ev, "epoch")] for ev in logs]
    assert accuracy[0] == accuracy[1]
    assert of(logs[0], "summary")[0]["test_acc_at_best_val"] == of(logs[1], "summary")[0]["test_acc_at_best_val"]
    assert "summary of ddp" in results[0].stderr and "summary of ddp" not in results[1].stderr


# ---------------------------------------------------------------------------------- (d) resume
@pytest.mark.slow
def test_killed_run_resumes_without_losing_or_repeating_epochs(tmp_path: Path, runner: Path) -> None:
    args = [*SMALL, "--epochs", "4", "--eval_every", "2", "--run_name", "crash"]
    first = run_ranks(runner, tmp_path, [[*args, "--kill_epoch", "3"], args])
    # rank 0 died; the surviving rank fails fast with one clear line instead of hanging
    assert [r.returncode for r in first] == [-signal.SIGKILL, 1], tails(first)
    assert "rank 0 probably crashed" in last_line(first[1].stderr), tails(first)
    ckpt = tmp_path / "data" / "checkpoints" / "crash" / "checkpoint.pt"
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    before = read_events(tmp_path / "logs" / "crash" / "rank0.jsonl")
    assert [e["epoch"] for e in of(before, "epoch")] == [1, 2]
    assert any(s["epoch"] == 3 for s in of(before, "step"))  # it died during epoch 3

    second = run_ranks(runner, tmp_path, [[*args, "--resume"], [*args, "--resume"]])
    assert [r.returncode for r in second] == [0, 0], tails(second)
    for rank in range(2):
        events = read_events(tmp_path / "logs" / "crash" / f"rank{rank}.jsonl")
        starts = of(events, "run_start")
        assert [s["resumed_from_epoch"] for s in starts] == [None, 2]
        epochs = of(events, "epoch")
        assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
        step_ids = [(s["epoch"], s["step"]) for s in of(events, "step")]
        assert step_ids == [(e, s) for e in (1, 2, 3, 4) for s in (1, 2)]
        summary = of(events, "summary")[0]
        vals = {e["epoch"]: e["val_acc"] for e in epochs if e["val_acc"] is not None}
        assert set(vals) == {2, 4}
        assert summary["best_val_acc"] == max(vals.values())  # bookkeeping survived the kill
        assert summary["mean_epoch_time"] == pytest.approx(sum(e["epoch_time"] for e in epochs) / 4)
        assert "resuming after epoch 2" in (tmp_path / "logs" / "crash" / f"rank{rank}.log").read_text()


# ------------------------------------------------------------------ (e) incompatible checkpoint
@pytest.fixture(scope="module")
def cora_checkpoint(tmp_path_factory, cora_backend) -> Path:
    """A finished 1-epoch cora run with hidden_channels=16 under run name 'old'."""
    tmp = tmp_path_factory.mktemp("old")
    train(cora_backend, small_config(tmp, hidden_channels=16, epochs=1, run_name="old"))
    return tmp


@pytest.mark.parametrize(
    ("dataset", "hidden", "expected"),
    [("cora", 32, "hidden_channels=16 but this run has hidden_channels=32"),
     ("citeseer", 16, "dataset=cora, num_features=1433, num_classes=7 but this run has dataset=citeseer")],
)
def test_resume_from_incompatible_checkpoint_is_one_line_user_error(
    cora_checkpoint: Path, dataset: str, hidden: int, expected: str
) -> None:
    backend = backend_for(dataset)
    cfg = small_config(cora_checkpoint, dataset=dataset, hidden_channels=hidden, epochs=2,
                       run_name="old", resume=True)
    with pytest.raises(UserError) as info:
        train(backend, cfg)
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert "--run_name" in message  # says how to fix it


def test_resume_keeps_the_feature_normalisation_of_the_checkpoint(cora_checkpoint: Path) -> None:
    """The checkpoint records --normalize_features (the run's was none); resuming with another is refused in
    one line."""
    cfg = small_config(cora_checkpoint, hidden_channels=16, epochs=2, run_name="old", resume=True,
                       normalize_features="row_l1")
    with pytest.raises(UserError) as info:
        train(backend_for("cora"), cfg)
    message = str(info.value)
    assert "normalize_features=none but this run has normalize_features=row_l1" in message and "\n" not in message


def test_normalised_run_logs_its_mode_and_resumes_with_it(tmp_path: Path) -> None:
    summary = train(backend_for("coauthor_phy"), small_config(tmp_path, dataset="coauthor_phy", epochs=1,
                                                               normalize_features="auto"))
    assert summary["test_acc_at_best_val"] is not None
    starts = [json.loads(line) for line in (tmp_path / "logs" / "run" / "rank0.jsonl").open()]
    assert starts[0]["config"]["normalize_features"] == "row_l1"  # auto, resolved: raw counts
    again = train(backend_for("coauthor_phy"), small_config(tmp_path, dataset="coauthor_phy", epochs=2,
                                                            normalize_features="row_l1", resume=True))
    assert again["epochs"] == 2


@pytest.mark.slow
def test_entry_script_reports_incompatible_checkpoint_in_one_line(cora_checkpoint: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "in-memory-alternative.py"), *SMALL, "--hidden_channels", "32",
         "--epochs", "2", "--run_name", "old", "--resume",
         "--log_dir", str(cora_checkpoint / "logs"), "--checkpoint_dir", str(cora_checkpoint / "ckpt")],
        cwd=cora_checkpoint, env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True, text=True, timeout=PROCESS_TIMEOUT,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert last_line(proc.stderr).startswith("error: checkpoint ")
    assert "hidden_channels=16 but this run has hidden_channels=32" in last_line(proc.stderr)


# ------------------------------------------------------------------ (f) a checkpoint from before the restructure
def test_checkpoint_written_before_the_restructure_resumes_to_the_same_epoch(tmp_path: Path) -> None:
    """tests/fixtures/pre_restructure_checkpoint.pt was written by the code before src/ moved into rooms
    (commit 8d5f6e0: `in-memory-alternative.py --full_graph --dataset cora --epochs 1 --hidden_channels 4
    --num_layers 2 --fanouts 5,5 --batch_size 64 --run_name pre-restructure`); that code, resumed to
    epoch 2, logged the epoch-2 numbers below. Today's code must continue it to the very same epoch (untrimmed:
    a trimmed layer draws its dropout mask over fewer rows, a different random stream)."""
    ckpt = tmp_path / "ckpt" / "pre-restructure"
    ckpt.mkdir(parents=True)
    (ckpt / "checkpoint.pt").write_bytes((REPO / "tests" / "fixtures" / "pre_restructure_checkpoint.pt").read_bytes())
    proc = subprocess.run(
        [sys.executable, str(REPO / "in-memory-alternative.py"), "--full_graph", "--dataset", "cora", "--epochs", "2",
         "--hidden_channels", "4", "--num_layers", "2", "--fanouts", "5,5", "--batch_size", "64",
         "--run_name", "pre-restructure", "--resume", "--master_port", str(free_port()), "--no_trim",
         "--checkpoint_dir", str(tmp_path / "ckpt"), "--log_dir", str(tmp_path / "logs")],
        cwd=REPO, capture_output=True, text=True, timeout=PROCESS_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in (tmp_path / "logs" / "pre-restructure" / "rank0.jsonl").open()]
    assert [e["resumed_from_epoch"] for e in events if e["event"] == "run_start"] == [1]
    (epoch2,) = [e for e in events if e["event"] == "epoch"]
    assert (epoch2["epoch"], epoch2["loss"], epoch2["train_acc"], epoch2["val_acc"], epoch2["test_acc"]) == (
        2, 1.89178470770518, 0.22142857142857142, 0.186, 0.179)
