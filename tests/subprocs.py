"""Waiting for a group of rank processes in tests: all of them, or none left running."""
from __future__ import annotations

import subprocess


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
