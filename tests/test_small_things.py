"""Issue 23's small things, each through the real script: help without side effects, nothing
half-written offline, messages that name the user's dataset, the seed's script path, and a flag
that does not apply to a backend said once."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}  # a closed port: no route out


def _run(cmd: list[str], tmp: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=tmp or REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_quickstart_help_prints_help_and_installs_nothing() -> None:
    start = time.monotonic()
    proc = _run(["bash", str(REPO / "jobs" / "quickstart.sh"), "--help"], env={"PYTHON": "/nonexistent/python"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("First run on a fresh machine") and "bash jobs/quickstart.sh" in proc.stdout
    assert "install:" not in proc.stdout and time.monotonic() - start < 5


def test_multi_node_help_has_no_script_lines_and_offers_ladybug() -> None:
    proc = _run(["bash", str(REPO / "jobs" / "launch_training_multi_node.sh"), "--help"])
    assert proc.returncode == 0
    assert "set -euo" not in proc.stdout and 'cd "$(dirname' not in proc.stdout
    assert "neo4j|ladybug|in_memory" in proc.stdout and "Ladybug" in proc.stdout


def test_seed_script_path_runs_the_partitioner() -> None:
    proc = _run([sys.executable, "src/partition_graph.py", "--help"])
    assert proc.returncode == 0 and "--num_partitions" in proc.stdout, proc.stderr


@pytest.mark.slow
def test_offline_ogb_download_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    proc = _run([sys.executable, str(REPO / "partition_graph.py"), "--dataset", "ogbn-products", "--num_partitions", "2",
                 "--dataset_root_dir", str(root), "--output_dir", str(tmp_path / "parts")], tmp_path, env=OFFLINE)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "ogbn-products" in errors[0] and "products.zip" in errors[0], proc.stderr
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == []  # no folder, no .lock
    assert not (tmp_path / "parts").exists()


def test_ladybug_missing_file_names_the_dataset(tmp_path: Path) -> None:
    proc = _run([sys.executable, str(REPO / "main-ladybug-backend.py"), "--dataset", "citeseer",
                 "--ladybug_path", str(tmp_path / "absent.lbdb"), "--log_dir", str(tmp_path / "logs")], tmp_path)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr
    assert "--dataset citeseer" in errors[0] and "<name>" not in errors[0]
    assert not (tmp_path / "logs").exists()


@pytest.mark.neo4j
@pytest.mark.slow
def test_root_dir_on_a_database_backend_is_said_once(loaded_dataset, tmp_path: Path) -> None:
    _, schema, _ = loaded_dataset("cora")
    (tmp_path / "root").mkdir()
    proc = _run([sys.executable, str(REPO / "main-neo4j-backend.py"), "--dataset", schema.dataset,
                 "--dataset_root_dir", str(tmp_path / "root"), "--epochs", "1", "--fanouts", "5,5", "--num_layers", "2",
                 "--hidden_channels", "16", "--batch_size", "128", "--log_dir", str(tmp_path / "logs"),
                 "--checkpoint_dir", str(tmp_path / "ckpt")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = [ln for ln in proc.stderr.splitlines() if "--dataset_root_dir does not apply" in ln]
    assert len(said) == 1 and "neo4j backend" in said[0] and "load_into_neo4j.py" in said[0]
