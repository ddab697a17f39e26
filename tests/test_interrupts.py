"""An interrupted launch is never a finished one: SIGTERM to the launcher, or Ctrl-C (SIGINT to
its whole process group), mid-epoch stops every rank and exits 143 / 130 with one line saying how
to resume; the --resume run then finishes after the last checkpoint (issue 24, item 1)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.test_faults import epochs_of, error_lines, launch

EPOCHS = 30

pytestmark = [pytest.mark.slow]


def _ranks_left(tag: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and "--node_rank" in p.info["cmdline"] and any(tag in a for a in p.info["cmdline"])]


@pytest.mark.parametrize(("sig", "code", "to_group"), [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, True)],
                         ids=["sigterm-launcher", "ctrl-c-group"])
def test_interrupted_launch_exits_nonzero_and_resumes(tmp_path: Path, sig: int, code: int, to_group: bool) -> None:
    args = ["--dataset", "cora", "--partition_dir", str(tmp_path / "parts"), "--epochs", str(EPOCHS),
            "--eval_every", str(EPOCHS)]
    run = f"int-{sig.name}"
    job = launch(tmp_path, run, "in_memory", *args)
    job.wait_for_step(0, epoch=2)
    t0 = time.monotonic()
    if to_group:  # what a terminal's Ctrl-C does: every process of the foreground group gets SIGINT
        os.killpg(job.proc.pid, sig)
    else:
        os.kill(job.proc.pid, sig)
    assert job.wait(timeout=120) == code, job.stderr[-3000:]
    elapsed = time.monotonic() - t0
    errors = error_lines(job.stderr)
    print(f"{sig.name}: exit {job.proc.returncode} after {elapsed:.1f} s: {errors[-1]}")
    assert errors[-1].startswith(f"error: interrupted by {sig.name}") and f"--run_name {run} --resume" in errors[-1]
    assert "done: logs in" not in job.stdout
    assert "Traceback" not in job.stderr, job.stderr[-3000:]
    assert _ranks_left(str(tmp_path)) == []  # no rank outlives the launcher
    done = [e["epoch"] for e in epochs_of(job.events(0))]
    assert len(done) < EPOCHS, done  # it really stopped mid-run

    again = launch(tmp_path, run, "in_memory", *args, "--resume")
    assert again.wait() == 0, again.stderr[-3000:]
    events = again.events(0)
    starts = [e["resumed_from_epoch"] for e in events if e["event"] == "run_start"]
    assert starts[0] is None and len(starts) == 2
    assert [e["epoch"] for e in epochs_of(events)] == list(range(1, EPOCHS + 1))
