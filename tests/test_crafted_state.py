"""Crafted checkpoints and a full filesystem (issue 24 items 13, 14): one line, nothing half-written.

Checkpoints: a real 1-epoch cora checkpoint is rewritten by ``torch.save`` as a bare tensor, a
list, a dict without ``model``, weights and Adam moments of the wrong shapes, bad ``ranks`` and bad
``epoch``; ``--resume`` from each must be one line (exit 1) and create nothing. Full disk: a real
tmpfs mounted (as root) with room for one checkpoint but not the next, and one nearly filled for
the logs; the run stops with one line, no temporary file stays, the last good checkpoint loads, and
every JSONL line is whole.
"""
from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
TRAIN = "in-memory-alternative.py"
SMALL = ["--full_graph", "--fanouts", "2,2", "--num_layers", "2", "--hidden_channels", "16", "--batch_size", "64",
         "--num_loader_threads", "0", "--dataset", "cora"]


def run_train(argv: list[str], cwd: Path, monkeypatch, capfd) -> tuple[int, str]:
    capfd.readouterr()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [TRAIN, *argv])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(REPO / TRAIN), run_name="__main__")
    return exited.value.code, capfd.readouterr().err


def one_error(err: str) -> str:
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert "Traceback" not in err and len(errors) == 1, err[-3000:]
    others = [ln for ln in err.splitlines() if ln.strip() and ln not in errors]
    assert all(" INFO " in ln or " WARNING " in ln or "|" in ln for ln in others), err[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> dict:
    """The state of a finished 1-epoch cora run (run name 'old')."""
    tmp = tmp_path_factory.mktemp("good")
    proc = subprocess.run([sys.executable, str(REPO / TRAIN), *SMALL, "--epochs", "1", "--run_name", "old",
                           "--log_dir", "logs", "--checkpoint_dir", "ckpt"], cwd=tmp, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(tmp / "ckpt" / "old" / "checkpoint.pt", weights_only=True)


def _variant(state: dict, case: str):
    s = {**state}
    first = next(iter(state["model"]))
    if case == "bare-tensor":
        return torch.zeros(3)
    if case == "list":
        return [state["model"], state["optimizer"]]
    if case == "no-model":
        return {k: v for k, v in s.items() if k != "model"}
    if case == "wrong-weight-shape":
        return {**s, "model": {**state["model"], first: torch.zeros(5, 5)}}
    if case == "wrong-adam-shape":
        opt = {**state["optimizer"], "state": {**state["optimizer"]["state"]}}
        opt["state"][0] = {**opt["state"][0], "exp_avg": torch.zeros(3)}
        return {**s, "optimizer": opt}
    if case == "ranks-not-a-list":
        return {**s, "ranks": "rank0"}
    if case == "ranks-bad-rng":
        return {**s, "ranks": [{"rng": {"torch": torch.zeros(2)}, "progress": {}}]}
    if case == "epoch-negative":
        return {**s, "epoch": -2}
    if case == "epoch-string":
        return {**s, "epoch": "three"}
    raise AssertionError(case)


CHECKPOINT_CASES = [
    ("bare-tensor", "holds a Tensor, not a training checkpoint"),
    ("list", "holds a list, not a training checkpoint"),
    ("no-model", "has no model"),
    ("wrong-weight-shape", "of shape (5, 5), this model's is"),
    ("wrong-adam-shape", "has optimizer exp_avg of shape (3,) for a parameter of shape"),
    ("ranks-not-a-list", "has ranks that are not a non-empty list"),
    ("ranks-bad-rng", "has ranks[0].rng that is not a saved random state"),
    ("epoch-negative", "has epoch -2; it must be a positive integer"),
    ("epoch-string", "has epoch 'three'; it must be a positive integer"),
]


@pytest.mark.parametrize(("case", "expect"), CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_crafted_checkpoint_is_one_line(case: str, expect: str, good_checkpoint: dict, tmp_path: Path,
                                        monkeypatch, capfd) -> None:
    path = tmp_path / "ckpt" / "old" / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    torch.save(_variant(good_checkpoint, case), path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    t0 = time.monotonic()
    code, err = run_train([*SMALL, "--epochs", "2", "--run_name", "old", "--resume", "--checkpoint_dir", "ckpt",
                           "--log_dir", "logs"], tmp_path, monkeypatch, capfd)
    line = one_error(err)
    assert code == 1 and expect in line and str(Path("ckpt/old/checkpoint.pt")) in line, line
    assert "it is not a checkpoint of this run" in line
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before, "nothing may be written"
    with capfd.disabled():
        print(f"| checkpoint {case} | {code} | {line} | {time.monotonic() - t0:.1f} s |")


# ------------------------------------------------------------------------------ full filesystem
@pytest.fixture
def tmpfs(tmp_path: Path):
    """``mount(size)`` -> a fresh tmpfs of that many bytes (needs root); unmounted afterwards."""
    mounts: list[Path] = []

    def mount(size: int) -> Path:
        where = tmp_path / f"tmpfs{len(mounts)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs (the full-disk tests need root): {proc.stderr.strip()}")
        mounts.append(where)
        return where

    yield mount
    for where in mounts:
        subprocess.run(["umount", str(where)], check=False)


def test_full_disk_for_checkpoints_keeps_the_last_good_one(good_checkpoint: dict, tmpfs, tmp_path: Path,
                                                            monkeypatch, capfd) -> None:
    probe = tmp_path / "probe.pt"
    torch.save(good_checkpoint, probe)
    size = probe.stat().st_size
    ckpt = tmpfs(int(size * 1.5) // 4096 * 4096)  # room for one checkpoint, not for its replacement
    t0 = time.monotonic()
    code, err = run_train([*SMALL, "--epochs", "3", "--run_name", "full", "--checkpoint_dir", str(ckpt),
                           "--log_dir", "logs"], tmp_path, monkeypatch, capfd)
    line = one_error(err)
    final = ckpt / "full" / "checkpoint.pt"
    assert code == 1 and f"cannot write checkpoint {final} after epoch 2" in line, line
    assert f"the checkpoint of the last good epoch stays in {final}" in line and "--resume" in line
    left = sorted(p.name for p in (ckpt / "full").iterdir())
    assert left in (["checkpoint.pt"], ["best.pt", "checkpoint.pt"]), f"temporary file left: {left}"
    assert torch.load(final, weights_only=True)["epoch"] == 1
    with capfd.disabled():
        print(f"| full disk, checkpoints | {code} | {line} | {time.monotonic() - t0:.1f} s |")


def test_full_disk_for_logs_leaves_whole_lines(tmpfs, tmp_path: Path, monkeypatch, capfd) -> None:
    logs = tmpfs(64 * 1024)
    filler = logs / "filler"
    with open(filler, "wb", buffering=0) as fh:  # fill it up, then free three pages for the run
        try:
            while True:
                fh.write(bytes(4096))
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - 3 * 4096))
    t0 = time.monotonic()
    code, err = run_train([*SMALL, "--batch_size", "8", "--epochs", "20", "--run_name", "full",
                           "--checkpoint_dir", "ckpt", "--log_dir", str(logs)], tmp_path, monkeypatch, capfd)
    line = one_error(err)
    assert code == 1 and "cannot write run log" in line and "No space left on device" in line, line
    text = (logs / "full" / "rank0.jsonl").read_text()
    assert text.endswith("\n") and text.count("\n") >= 2
    events = [json.loads(ln) for ln in text.splitlines()]  # every line whole
    assert events[0]["event"] == "run_start" and events[-1]["event"] in ("step", "epoch")
    assert (logs / "full" / "rank0.log").read_text().endswith("\n")
    with capfd.disabled():
        print(f"| full disk, logs | {code} | {line} | {time.monotonic() - t0:.1f} s, {len(events)} whole JSONL lines |")
    shutil.rmtree(tmp_path / "ckpt", ignore_errors=True)
