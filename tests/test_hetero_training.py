"""2-rank heterogeneous training on the in-memory and the Neo4j backend (entry scripts, one loop).

Each run's loss must fall; both backends must log the very same step losses (the Cypher sampler
draws the in-memory sampler's samples, rows are bit-exact, the seed fixes everything else).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.client import Neo4jClient
from src.core.ports import free_port
from src.data.loading import LoadConfig
from src.data.synthetic_hetero import generate_hetero
from src.neo4jdb.hetero.load import ensure_hetero_loaded

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {"in_memory": "in-memory-alternative.py", "neo4j": "main-neo4j-backend.py"}
FLAGS = ["--target_type", "paper", "--fanouts", "writes:4,3;written_by:3,3;cites:4,2;publishes:1,1",
         "--num_layers", "2", "--epochs", "3", "--batch_size", "128", "--hidden_channels", "32", "--seed", "1",
         "--eval_every", "3"]


def run_two_ranks(script: str, tmp: Path, args: list[str]) -> list[dict]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen([sys.executable, str(REPO / script), *args, "--num_nodes", "2", "--node_rank", str(r),
                               "--master_addr", "127.0.0.1", "--master_port", str(port), "--log_dir", str(tmp / "logs"),
                               "--checkpoint_dir", str(tmp / "ckpt")], cwd=tmp, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in range(2)]
    errs = [p.communicate(timeout=900)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-2500:] for e in errs)
    run = args[args.index("--run_name") + 1]
    return [json.loads(line) for line in (tmp / "logs" / run / "rank0.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_rank_hetero_training_loss_falls_and_backends_agree(client: Neo4jClient, tmp_path: Path) -> None:
    ds = generate_hetero(num_nodes=6000, avg_degree=6, num_features=8, num_classes=4, seed=2)
    ensure_hetero_loaded(client, ds, LoadConfig(progress=False))
    losses = {}
    for backend, script in SCRIPTS.items():
        events = run_two_ranks(script, tmp_path, ["--dataset", ds.name, *FLAGS, "--run_name", f"het-{backend}"])
        epochs = [e for e in events if e["event"] == "epoch"]
        assert epochs[-1]["loss"] < 0.8 * epochs[0]["loss"], [e["loss"] for e in epochs]
        assert epochs[-1]["test_acc"] is not None and epochs[-1]["test_acc"] > 0.5
        losses[backend] = [e["loss"] for e in events if e["event"] == "step"]
    assert losses["in_memory"] == pytest.approx(losses["neo4j"], rel=1e-5)
