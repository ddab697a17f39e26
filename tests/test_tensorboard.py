"""--tensorboard DIR: the JSONL's scalars as TensorBoard events, read back with TensorBoard's own reader."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # two short real training runs
ARGS = ["--full_graph", "--dataset", "cora", "--fanouts", "5,5", "--num_layers", "2", "--hidden_channels", "16",
        "--batch_size", "64", "--num_loader_threads", "0", "--run_name", "tb"]


def _train(tmp: Path, *extra: str) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "in-memory-alternative.py"), *ARGS, "--log_dir", str(tmp / "logs"),
                           "--checkpoint_dir", str(tmp / "ckpt"), "--tensorboard", str(tmp / "tb"), *extra],
                          cwd=tmp, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_mirrors_the_jsonl_and_continues_on_resume(tmp_path: Path) -> None:
    _train(tmp_path, "--epochs", "2")
    _train(tmp_path, "--epochs", "3", "--resume")
    events = [json.loads(ln) for ln in (tmp_path / "logs" / "tb" / "rank0.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    epochs = [e for e in events if e["event"] == "epoch"]
    tb = _scalars(tmp_path / "tb" / "tb" / "rank0")
    # every step once, on one axis across the resume, with the JSONL's values (float32 in TensorBoard)
    assert [s for s, _ in tb["step/loss"]] == list(range(1, len(steps) + 1))
    assert [v for _, v in tb["step/loss"]] == pytest.approx([e["loss"] for e in steps], rel=1e-6)
    assert [v for _, v in tb["step/t_step"]] == pytest.approx([e["t_step"] for e in steps], rel=1e-6)
    assert [v for _, v in tb["step/rss_mb"]] == pytest.approx([e["rss_mb"] for e in steps], rel=1e-6)
    assert [v for _, v in tb["epoch/epoch"]] == [1.0, 2.0, 3.0]
    for key in ("val_acc", "test_acc", "train_acc", "seeds_per_s", "epoch_time"):
        assert [v for _, v in tb[f"epoch/{key}"]] == pytest.approx([e[key] for e in epochs], rel=1e-6), key
    per_epoch = len(steps) // 3
    assert [s for s, _ in tb["epoch/loss"]] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    summary = [e for e in events if e["event"] == "summary"][-1]
    assert tb["summary/best_val_acc"][-1][1] == pytest.approx(summary["best_val_acc"], rel=1e-6)


def test_overwrite_replaces_the_tensorboard_events(tmp_path: Path) -> None:
    _train(tmp_path, "--epochs", "2")
    _train(tmp_path, "--epochs", "1", "--overwrite")
    folder = tmp_path / "tb" / "tb" / "rank0"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    assert [v for _, v in _scalars(folder)["epoch/epoch"]] == [1.0]


def test_tensorboard_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    proc = subprocess.run([sys.executable, str(REPO / "in-memory-alternative.py"), *ARGS, "--tensorboard",
                           str(tmp_path / "f" / "sub"), "--log_dir", str(tmp_path / "logs")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("error: ") == 1 and "--tensorboard" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "logs").exists()
