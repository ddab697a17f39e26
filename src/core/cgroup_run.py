"""Run one command inside a memory cgroup of its own (cgroup v1, as root), then report its peak.

    python -m src.core.cgroup_run --limit 2g [--report FILE] -- python3 main-neo4j-backend.py ...

Why: the memory-wall experiment needs each trainer under a real kernel limit, not a number it
is told.  The cgroup is made below this process's own memory cgroup (so whatever accounts for
the caller still accounts for it), the child joins it before it execs the command (every byte
of the command is charged), and the cgroup is removed when the command ends.  With ``--report``
one JSON line per command is appended: limit, peak usage (``memory.max_usage_in_bytes``), how
often the limit was hit (``memory.failcnt``), whether the OOM killer struck, the exit code.
``jobs/memory_capped.sh`` runs a whole launch script this way, one cgroup per Python process.
Only cgroup v1 is handled (on cgroup v2 with systemd: ``systemd-run --scope -p MemoryMax=``).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from src.core.errors import ArgumentParser, UsageError, UserError, run_cli
from src.core.memory_limit import CGROUP_ROOT, _own_cgroups

V1_MEMORY = CGROUP_ROOT / "memory"


def parse_size(text: str) -> int:
    """``2g``, ``1500m``, ``512k`` or plain bytes."""
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(t[-1:], 1)
    try:
        value = int(float(t[:-1] if scale > 1 else t) * scale)
    except ValueError:
        raise UsageError(f"--limit must be a size such as 2g or 1500m, got {text!r}") from None
    if value < 1 << 20:
        raise UsageError(f"--limit must be at least 1m, got {text!r}")
    return value


def make_cgroup(limit: int, name: str) -> Path:
    """A fresh v1 memory cgroup ``<own cgroup>/<name>`` limited to ``limit`` bytes (no swap here)."""
    own, _ = _own_cgroups()
    if own is None or not V1_MEMORY.is_dir():
        raise UserError("no cgroup v1 memory controller here (/sys/fs/cgroup/memory): on cgroup v2 run the "
                        "command under `systemd-run --scope -p MemoryMax=...`")
    folder = V1_MEMORY / own.strip("/") / name
    try:
        folder.mkdir()
        (folder / "memory.limit_in_bytes").write_text(str(limit))
    except OSError as exc:
        raise UserError(f"cannot create the memory cgroup {folder} ({exc.strerror}): run as root") from None
    return folder


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _oom_killed(folder: Path) -> bool:
    try:
        fields = dict(line.split() for line in (folder / "memory.oom_control").read_text().splitlines())
    except (OSError, ValueError):
        return False
    return int(fields.get("oom_kill", 0)) > 0


def run_capped(cmd: list[str], limit: int, report: Path | None = None) -> int:
    """``cmd`` in its own cgroup; its exit code (128 + signal when killed, as a shell says)."""
    folder = make_cgroup(limit, f"gnn-cap-{os.getpid()}-{time.monotonic_ns() % 10**6}")
    procs = str(folder / "cgroup.procs")

    def join() -> None:  # in the child, before exec: every byte of the command is charged
        with open(procs, "w") as fh:
            fh.write(str(os.getpid()))

    try:
        child = subprocess.Popen(cmd, preexec_fn=join)
    except BaseException:
        folder.rmdir()
        raise
    for sig in (signal.SIGINT, signal.SIGTERM):  # the launch script stops its ranks with these
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    rc = child.wait()
    peak = _read_int(folder / "memory.max_usage_in_bytes")
    row = {"cmd": cmd[:4], "limit": limit, "peak": peak, "failcnt": _read_int(folder / "memory.failcnt"),
           "oom_killed": _oom_killed(folder), "exit": rc}
    for _ in range(50):  # page cache charged to the group is moved to the parent on rmdir; retried while busy
        try:
            folder.rmdir()
            break
        except OSError:
            time.sleep(0.1)
    if report is not None:
        with open(report, "a") as fh:
            fh.write(json.dumps(row) + "\n")
    return 128 - rc if rc < 0 else rc


def main() -> int:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", required=True, help="memory limit of the cgroup: 2g, 1500m, bytes")
    p.add_argument("--report", default=None, help="append one JSON line (limit, peak, failcnt, OOM kill, exit)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command")
    args = p.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise UsageError("give the command after --")
    return run_capped(cmd, parse_size(args.limit), Path(args.report) if args.report else None)


if __name__ == "__main__":
    run_cli(main)
