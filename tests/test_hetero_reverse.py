"""``--add_reverse``: heterogeneous training with every relationship type also walked backwards (``rev_<rel>``).

One rank per backend through the entry scripts on a real Neo4j: the Neo4j and the in-memory full-graph
runs must log the very same step losses (their samplers draw the same samples over the reverse types too),
the partitioned run trains from ``<k>-parts-rev`` partitions, every run's model has a layer per reverse type,
and nothing is written to the database for them. Bad input is one line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.client import Neo4jClient
from src.data.loading import LoadConfig
from src.data.synthetic_hetero import generate_hetero
from src.neo4jdb.hetero.load import ensure_hetero_loaded
from src.neo4jdb.hetero.schema import require_hetero
from tests.test_hetero_training import REPO

FLAGS = ["--target_type", "paper", "--fanouts", "3,2", "--num_layers", "2", "--epochs", "2", "--batch_size", "128",
         "--hidden_channels", "16", "--seed", "3", "--eval_every", "2", "--max_eval_seeds", "256", "--add_reverse"]


def run_one(script: str, tmp: Path, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(REPO / script), *args, "--log_dir", str(tmp / "logs"),
                           "--checkpoint_dir", str(tmp / "ckpt")], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def graph(client: Neo4jClient):
    ds = generate_hetero(num_nodes=1500, avg_degree=6, num_features=8, num_classes=3, seed=21)
    ensure_hetero_loaded(client, ds, LoadConfig(progress=False))
    return ds


def test_reverse_types_train_alike_on_every_backend(client: Neo4jClient, graph, tmp_path: Path) -> None:
    types = ("CALL db.relationshipTypes() YIELD relationshipType AS t WHERE t STARTS WITH $name "
             "RETURN collect(t) AS t")
    before = client.read(types, name=graph.name)[0]["t"]
    runs = {"neo4j": ("main-neo4j-backend.py", []), "in_memory": ("in-memory-alternative.py", ["--full_graph"]),
            "partitioned": ("in-memory-alternative.py", ["--partition_dir", str(tmp_path / "parts")])}
    losses = {}
    for name, (script, extra) in runs.items():
        done = run_one(script, tmp_path, ["--dataset", graph.name, *FLAGS, "--run_name", name, *extra])
        assert done.returncode == 0, done.stderr[-2500:]
        events = [json.loads(line) for line in (tmp_path / "logs" / name / "rank0.jsonl").read_text().splitlines()]
        losses[name] = [e["loss"] for e in events if e["event"] == "step"]
        assert losses[name][-1] < losses[name][0], (name, losses[name])
        weights = torch.load(tmp_path / "ckpt" / name / "checkpoint.pt", weights_only=True)["model"]
        for rel in ("rev_writes", "rev_cites", "rev_publishes", "rev_written_by"):
            assert any(rel in key for key in weights), (name, rel)
    assert losses["neo4j"] == pytest.approx(losses["in_memory"], rel=1e-5)
    without = [f for f in FLAGS if f != "--add_reverse"]  # resuming the run without its reverse types: one line
    done = run_one("in-memory-alternative.py", tmp_path, ["--dataset", graph.name, *without, "--run_name", "in_memory",
                                                          "--full_graph", "--resume", "--epochs", "3"])
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error")]
    assert done.returncode == 1 and len(errors) == 1 and "add_reverse=True" in errors[0], done.stderr[-2000:]
    assert (tmp_path / "parts" / graph.name / "1-parts-rev" / "meta.json").exists()
    assert len(before) == 4 and client.read(types, name=graph.name)[0]["t"] == before  # read backwards, never written
    assert not any(r.reverse for r in require_hetero(client, graph.name).rel_types)


def test_add_reverse_bad_input_is_one_line(graph, tmp_path: Path) -> None:
    done = run_one("in-memory-alternative.py", tmp_path, ["--dataset", "cora", "--full_graph", "--add_reverse"])
    assert done.returncode == 2 and "--add_reverse applies to heterogeneous datasets" in done.stderr
    assert len([ln for ln in done.stderr.splitlines() if ln.startswith("error")]) == 1, done.stderr
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    part = subprocess.run([sys.executable, str(REPO / "partition_graph.py"), "--dataset", "cora", "--num_partitions",
                           "2", "--add_reverse", "--output_dir", str(tmp_path / "p")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert part.returncode == 2 and "is homogeneous" in part.stderr and "Traceback" not in part.stderr, part.stderr
