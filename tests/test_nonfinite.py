"""Crafted inputs that used to train silently (issue 24, items 2 and 3): NaN/inf features, float
edge ids and overlapping splits in an ``.npz`` are refused at load with one line and the count;
features that overflow to a non-finite loss stop the run with one line naming the epoch and step;
a checkpoint with NaN weights is refused on --resume. Both readers of a file are checked: the
loader (its Ladybug way: no server needed; the Neo4j way reads the file through the same
``load_dataset``) and the in-memory trainer."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from src.core.paths import REPO_DIR as REPO

pytestmark = [pytest.mark.slow]
CORA = REPO / "src" / "data" / "shipped" / "cora.npz"  # the same bytes as ../shared/datasets/cora.npz
TRAIN = ["--epochs", "2", "--eval_every", "2", "--fanouts", "5,5", "--num_layers", "2", "--hidden_channels", "16",
         "--batch_size", "64", "--num_loader_threads", "1", "--normalize_features", "none"]


def crafted(tmp: Path, name: str, change) -> Path:
    """A copy of cora with ``change(arrays)`` applied, as ``<tmp>/<name>.npz``."""
    with np.load(CORA, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    path = tmp / f"{name}.npz"
    np.savez(path, **arrays)
    return path


def run(*args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return out, time.monotonic() - t0


def the_error(out: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    return lines[0]


def _nan_features(a: dict) -> None:
    a["x"] = a["x"].copy()
    a["x"][[3, 50, 900], [0, 7, 11]] = np.nan
    a["x"][1000, 2] = np.inf


def _float_edges(a: dict) -> None:
    a["edge_index"] = a["edge_index"].astype(np.float64) + 0.4


def _overlap(a: dict) -> None:
    a["test_idx"] = np.concatenate([a["test_idx"][:-12], a["train_idx"][:12]])


@pytest.mark.parametrize(("change", "expected"), [
    (_nan_features, "4 feature values are NaN or infinite"),
    (_float_edges, "float"),
    (_overlap, "12 nodes are in both train_idx and test_idx"),
], ids=["nan-features", "float-edge-ids", "train-test-overlap"])
def test_crafted_npz_refused_by_trainer_and_loader(tmp_path: Path, change, expected: str) -> None:
    path = crafted(tmp_path, "crafted", change)
    trainer, t_train = run("in-memory-alternative.py", "--dataset", str(path), "--full_graph", *TRAIN,
                           "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "ckpt"))
    loader, t_load = run("loaders/load_into_neo4j.py", "--backend", "ladybug", "--dataset", str(path),
                         "--ladybug_path", str(tmp_path / "x.lbdb"))
    for name, out, secs in (("trainer", trainer, t_train), ("loader", loader, t_load)):
        line = the_error(out)
        print(f"{name}: exit {out.returncode} in {secs:.1f} s: {line}")
        assert out.returncode == 1 and expected in line and str(path) in line
    assert not (tmp_path / "x.lbdb").exists() and not (tmp_path / "ckpt").exists()  # nothing half-written


def test_overflowing_features_stop_at_the_first_nonfinite_loss(tmp_path: Path) -> None:
    """Finite features (so the load check passes) so large that the first layer overflows to inf."""
    def huge(a: dict) -> None:
        a["x"] = (a["x"] + 1.0) * np.float32(1.5e38)  # finite (< 3.4e38), the layer sums overflow

    path = crafted(tmp_path, "huge", huge)
    out, secs = run("in-memory-alternative.py", "--dataset", str(path), "--full_graph", *TRAIN,
                    "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "ckpt"))
    line = the_error(out)
    print(f"non-finite loss: exit {out.returncode} in {secs:.1f} s: {line}")
    assert out.returncode == 1 and "at epoch 1, step 1" in line and ("nan" in line or "inf" in line)
    assert not list((tmp_path / "ckpt").rglob("*.pt"))  # no checkpoint of poisoned weights


def test_checkpoint_with_nan_weights_is_refused_on_resume(tmp_path: Path) -> None:
    common = ["in-memory-alternative.py", "--dataset", "cora", "--full_graph", *TRAIN, "--run_name", "nanckpt",
              "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "ckpt")]
    first, _ = run(*common)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = tmp_path / "ckpt" / "nanckpt" / "checkpoint.pt"  # beside best.pt
    state = torch.load(ckpt, weights_only=True)
    weights = next(v for v in state["model"].values() if v.is_floating_point())
    weights.view(-1)[:3] = float("nan")
    torch.save(state, ckpt)
    again, secs = run(*common[:common.index("--epochs") + 1], "4", *common[common.index("--epochs") + 2:], "--resume")
    line = the_error(again)
    print(f"resume from NaN weights: exit {again.returncode} in {secs:.1f} s: {line}")
    assert again.returncode == 1 and "3 non-finite weights" in line and str(ckpt) in line
