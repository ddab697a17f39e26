"""Subprocesses in tests: a group of rank processes (all of them, or none left running), and the one-rank
in-memory run and the predict.py call the write-back tests start."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

TIMEOUT = 300


def communicate_all(procs: list[subprocess.Popen], timeout: float) -> list[subprocess.CompletedProcess]:
    """Collect each process's output; on a timeout kill the whole group (no orphaned rank) and re-raise."""
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def predict_cli(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """``predict.py`` with ``args``, without progress bars."""
    return subprocess.run([sys.executable, str(REPO / "predict.py"), *args, "--no_progress"],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def train_in_memory_cora(tmp_path: Path, run: str, *flags: str) -> None:
    """One epoch on cora's full graph in memory under ``tmp_path`` (logs/, ckpt/), named ``run``."""
    res = subprocess.run([sys.executable, str(REPO / "in-memory-alternative.py"), "--dataset", "cora", "--full_graph",
                          "--epochs", "1", *flags, "--run_name", run, "--log_dir", str(tmp_path / "logs"),
                          "--checkpoint_dir", str(tmp_path / "ckpt")], capture_output=True, text=True,
                         timeout=TIMEOUT, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
