"""Batch tensors on transparent huge pages (src/core/huge_pages.py): importing ``src`` before torch turns them on."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")

# Allocate and touch a 64 MiB tensor, then report the process's anonymous huge pages (kB).
PROBE = """
import {first}, {second}, torch
x = torch.ones(16 * 2**20)
print(next(int(l.split()[1]) for l in open('/proc/self/smaps_rollup') if l.startswith('AnonHugePages')))
"""


def _huge_kb(first: str, second: str, **env: str) -> int:
    environ = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"} | env
    out = subprocess.run([sys.executable, "-c", PROBE.format(first=first, second=second)], cwd=ROOT, env=environ,
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


needs_thp = pytest.mark.skipif(not THP.is_file() or "[never]" in THP.read_text(),
                               reason="the kernel has transparent huge pages off")


@needs_thp
def test_src_before_torch_puts_large_tensors_on_huge_pages() -> None:
    assert _huge_kb("src", "os") >= 32 * 1024  # most of the 64 MiB tensor


@needs_thp
def test_the_user_can_turn_it_off_and_torch_first_is_left_alone() -> None:
    if "[always]" in THP.read_text():
        pytest.skip("the kernel gives every process huge pages")
    assert _huge_kb("src", "os", THP_MEM_ALLOC_ENABLE="0") == 0
    assert _huge_kb("torch", "src") == 0  # torch read the variable before src could set it
