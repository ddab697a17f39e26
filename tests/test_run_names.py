"""Run names (src/train/run_names.py) through the real entry scripts: no silent overwrite, no
escape from --log_dir, one job per run folder.

Every case trains the real in-memory backend on cora (the shipped copy when ../shared is absent)
for one or a few epochs and reads back what is on disk.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.data.sources import shipped_dir
from src.train.run_names import dataset_stem, default_run_name

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "in-memory-alternative.py"
LAUNCH = REPO / "jobs" / "launch_training_single_node.sh"
pytestmark = pytest.mark.slow  # real training runs, 10-60 s each on the shared machine
SMALL = ["--full_graph", "--fanouts", "5,5", "--num_layers", "2", "--hidden_channels", "16",
         "--batch_size", "128", "--num_loader_threads", "0"]


def _train(tmp: Path, *args: str, wait: bool = True) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    cmd = [sys.executable, str(TRAIN), *SMALL, "--log_dir", str(tmp / "logs"),
           "--checkpoint_dir", str(tmp / "ckpt"), *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=300)


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_default_names_are_unique_and_plain() -> None:
    names = {default_run_name("/abs/dir/x.npz", "neo4j") for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith("x-neo4j-") and "/" not in n for n in names)
    assert dataset_stem("ogbn-arxiv") == "ogbn-arxiv" and dataset_stem("a b/c d.NPZ") == "c_d"
    out = subprocess.run([sys.executable, "-m", "src.train.run_names", "/abs/y.npz", "ladybug"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out.startswith("y-ladybug-") and "/" not in out


def test_existing_run_is_refused_unless_resume_or_overwrite(tmp_path: Path) -> None:
    first = _train(tmp_path, "--epochs", "1", "--run_name", "r")
    assert first.returncode == 0, first.stderr[-2000:]
    log = tmp_path / "logs" / "r" / "rank0.jsonl"
    ckpt = tmp_path / "ckpt" / "r" / "checkpoint.pt"
    before, ckpt_before = log.read_bytes(), ckpt.read_bytes()

    again = _train(tmp_path, "--epochs", "1", "--run_name", "r")
    assert again.returncode == 1
    assert "run 'r' already exists" in _error_line(again.stderr) and "--overwrite" in again.stderr
    assert log.read_bytes() == before and ckpt.read_bytes() == ckpt_before  # untouched

    both = _train(tmp_path, "--run_name", "r", "--resume", "--overwrite")
    assert both.returncode == 2 and "pass one of them" in _error_line(both.stderr)

    resumed = _train(tmp_path, "--epochs", "2", "--run_name", "r", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [e["epoch"] for e in _events(log) if e["event"] == "epoch"] == [1, 2]

    replaced = _train(tmp_path, "--epochs", "1", "--run_name", "r", "--overwrite", "--seed", "7")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    events = _events(log)
    assert [e["event"] for e in events].count("run_start") == 1
    assert events[0]["config"]["seed"] == 7 and [e["epoch"] for e in events if e["event"] == "epoch"] == [1]


def test_dataset_path_default_name_stays_under_log_dir(tmp_path: Path) -> None:
    """--dataset /abs/x.npz without --run_name: logs and checkpoint under --log_dir/--checkpoint_dir."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(shipped_dir() / "cora.npz", data / "mygraph.npz")
    runs = [_train(tmp_path, "--epochs", "1", "--dataset", str(data / "mygraph.npz")) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr[-2000:]
    assert sorted(p.name for p in data.iterdir()) == ["mygraph.npz"]  # nothing next to the data
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert len(logs) == 2 and all(n.startswith("mygraph-in_memory-") for n in logs)  # two runs, two names
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == logs
    for name in logs:
        assert (tmp_path / "ckpt" / name / "checkpoint.pt").is_file()


def test_two_jobs_with_one_run_name_at_once(tmp_path: Path) -> None:
    """The second job is refused while the first holds the run folder; the first's log stays whole."""
    first = _train(tmp_path, "--epochs", "60", "--batch_size", "16", "--run_name", "same", wait=False)
    log = tmp_path / "logs" / "same" / "rank0.jsonl"
    deadline = time.monotonic() + 240
    while not (log.is_file() and '"epoch"' in log.read_text()) and first.poll() is None:
        assert time.monotonic() < deadline, "first job did not start"
        time.sleep(0.2)
    second = _train(tmp_path, "--epochs", "1", "--run_name", "same", "--overwrite")
    still_running = first.poll() is None
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert still_running, "the first job finished before the second tried: make it longer"
    assert second.returncode == 1
    line = _error_line(second.stderr)
    assert "run 'same' is in use by another job" in line and f"pid {first.pid}" in line
    events = _events(log)
    assert events[0]["event"] == "run_start" and [e["event"] for e in events].count("run_start") == 1
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == list(range(1, 61))
    assert events[-1]["event"] == "summary"


def test_launcher_default_name_from_dataset_path(tmp_path: Path) -> None:
    """The single-node launcher with --dataset <path>.npz: 2 ranks, logs under --log_dir/<name>-in_memory-..."""
    shutil.copy(shipped_dir() / "cora.npz", tmp_path / "g.npz")
    proc = subprocess.run(
        ["bash", str(LAUNCH), "--ranks", "2", "--backend", "in_memory", "--dataset", str(tmp_path / "g.npz"),
         *SMALL, "--epochs", "1", "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "ckpt")],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((tmp_path / "logs").iterdir())
    assert run.name.startswith("g-in_memory-") and f"done: logs in {tmp_path / 'logs'}/{run.name}/" in proc.stdout
    assert sorted(p.name for p in run.glob("rank*.jsonl")) == ["rank0.jsonl", "rank1.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "g.npz", "logs"]
