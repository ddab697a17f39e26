"""Training while ``loader --reset`` rewrites the same dataset (issue 24, item 6): the run stops
with one line saying the dataset changed under it and how to resume, not a procedure traceback;
the --resume run after the reload finishes. On this checkout's server, under a dataset name of
its own (nothing is started or stopped)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from src.core.paths import REPO_DIR as REPO

pytestmark = [pytest.mark.slow, pytest.mark.neo4j]
TRAIN = ["--fanouts", "5,5", "--num_layers", "2", "--hidden_channels", "16", "--batch_size", "32",
         "--num_loader_threads", "1", "--cache_mb", "0"]


def _loader(name: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "loaders/load_into_neo4j.py", "--dataset", "cora", "--name", name,
                           "--method", "unwind", *extra], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def _events(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_reset_under_a_running_training_is_one_line_then_resumes(tmp_path: Path, client) -> None:
    name = f"changed_{uuid.uuid4().hex[:8]}"
    assert _loader(name).returncode == 0
    args = [sys.executable, "main-neo4j-backend.py", "--dataset", name, *TRAIN, "--run_name", "chg",
            "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "ckpt")]
    try:
        err = open(tmp_path / "train.err", "w")
        train = subprocess.Popen([*args, "--epochs", "400", "--eval_every", "400"], cwd=REPO, stdout=subprocess.DEVNULL,
                                 stderr=err, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        jsonl = tmp_path / "logs" / "chg" / "rank0.jsonl"
        deadline = time.monotonic() + 300
        while sum('"event": "epoch"' in ln for ln in _events(jsonl)) < 2:  # a checkpoint to resume from
            assert train.poll() is None and time.monotonic() < deadline, (tmp_path / "train.err").read_text()[-3000:]
            time.sleep(0.2)
        t0 = time.monotonic()
        reset = _loader(name, "--reset")
        assert reset.returncode == 0, reset.stderr[-2000:]
        code = train.wait(timeout=300)
        stopped = time.monotonic() - t0
        stderr = (tmp_path / "train.err").read_text()
        lines = [ln[ln.index("error: "):] for ln in stderr.splitlines() if "error: " in ln]
        print(f"training under loader --reset: exit {code}, {stopped:.1f} s after the reset began: {lines}")
        assert code == 1 and "Traceback" not in stderr, stderr[-3000:]
        assert len(lines) == 1 and f"dataset {name!r} changed under the run" in lines[0] and "--resume" in lines[0]

        done = sum('"event": "epoch"' in ln for ln in _events(jsonl))
        total = str(done + 2)
        again = subprocess.run([*args, "--epochs", total, "--eval_every", total, "--resume"], cwd=REPO,
                               capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert sum('"event": "epoch"' in ln for ln in _events(jsonl)) == done + 2
    finally:
        if train.poll() is None:
            train.send_signal(signal.SIGKILL)
        from src.neo4jdb.load.records import delete_dataset
        from src.core.schema import GraphSchema

        schema = GraphSchema.for_dataset(name)
        delete_dataset(client, name, schema.label, schema.rel_type)
