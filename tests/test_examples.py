"""examples/: the README's "Use it from your own PyG code" script trains against the real Neo4j."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.neo4j, pytest.mark.slow]


def test_own_pyg_gat_example_trains(loaded_dataset, tmp_path: Path) -> None:
    """Run from another folder (as a user's script would be), on cora loaded by the shared fixture."""
    _, schema, _ = loaded_dataset("cora")
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "own_pyg_gat.py"), "--dataset", schema.dataset,
                           "--epochs", "3"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    epochs = [tuple(map(float, m)) for m in re.findall(r"epoch \d+: loss ([\d.]+), train acc ([\d.]+)", proc.stdout)]
    assert len(epochs) == 3, proc.stdout
    assert epochs[-1][0] < epochs[0][0], "the loss must fall"
    assert epochs[-1][1] > 0.5, "cora's 7 classes: well above chance after 3 epochs"
