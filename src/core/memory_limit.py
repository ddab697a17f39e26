"""The memory a trainer may use, and the preflight check of an estimate against it.

Why: a trainer that loads more than its memory limit is killed by the kernel without a word
(SIGKILL from the cgroup's OOM killer), after minutes of loading.  The in-memory backends know
what they will hold before they load it (features, topology, the partition's halo), so they
compare that against the limit first and refuse with one line; the Neo4j trainer checks its
own, much smaller, needs the same way.

The limit is the smallest of: this process's memory cgroup and its ancestors (cgroup v1
``memory.limit_in_bytes``, cgroup v2 ``memory.max``), and the machine's physical RAM.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from src.core.errors import UserError

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED_V1 = 1 << 62  # v1 writes "no limit" as a page-rounded 2**63 - 1
RUNTIME_MARGIN = 1.15  # allocator slack and small arrays the estimates do not list


class MemoryWall(UserError):
    """The process's memory limit is below what the run needs (said before anything is loaded)."""


@dataclass(frozen=True)
class MemoryLimit:
    """Bytes this process may use and where that number comes from."""

    bytes: int
    source: str  # e.g. "cgroup v1 /sys/fs/cgroup/memory/x/memory.limit_in_bytes" or "physical RAM"


def _own_cgroups(proc_cgroup: Path = Path("/proc/self/cgroup")) -> tuple[str | None, str | None]:
    """(v1 memory controller path, v2 unified path) of this process; None where absent."""
    v1 = v2 = None
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if "memory" in controllers.split(","):
            v1 = path
        elif controllers == "" and parts[0] == "0":
            v2 = path
    return v1, v2


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text in ("", "max"):
        return None
    value = int(text)
    return None if value >= UNLIMITED_V1 else value


def _ancestors(base: Path, rel: str) -> list[Path]:
    """``base/rel`` and each parent up to ``base``."""
    parts = [p for p in rel.strip("/").split("/") if p]
    return [base.joinpath(*parts[:k]) for k in range(len(parts), -1, -1)]


def physical_ram() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_limit(root: Path = CGROUP_ROOT) -> MemoryLimit:
    """The tightest of the cgroup limits on this process and physical RAM."""
    best = MemoryLimit(physical_ram(), "physical RAM")
    v1, v2 = _own_cgroups()
    candidates: list[Path] = []
    if v1 is not None:
        candidates += [d / "memory.limit_in_bytes" for d in _ancestors(root / "memory", v1)]
    if v2 is not None:
        unified = root if (root / "cgroup.controllers").exists() else root / "unified"
        candidates += [d / "memory.max" for d in _ancestors(unified, v2)]
    for path in candidates:
        value = _read_limit(path)
        if value is not None and value < best.bytes:
            best = MemoryLimit(value, f"cgroup {path}")
    return best


def current_rss() -> int:
    """This process's resident set now (bytes), from /proc/self/statm."""
    try:
        resident = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident * os.sysconf("SC_PAGE_SIZE")


def mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.0f} MiB"


def check_fits(what: str, parts: dict[str, int], fix: str, limit: MemoryLimit | None = None) -> int:
    """Refuse (:class:`MemoryWall`, one line) when RSS now + ``parts`` (with a margin) exceeds the limit.

    Returns the bytes needed; ``parts`` names each item, so the line says what does not fit.
    """
    limit = limit or memory_limit()
    now = current_rss()
    need = int(now + sum(parts.values()) * RUNTIME_MARGIN)
    listed = ", ".join(f"{k} {mib(v)}" for k, v in parts.items() if v)
    if need > limit.bytes:
        raise MemoryWall(f"{what} needs ~{mib(need)} ({listed}, {mib(now)} in use, +{RUNTIME_MARGIN - 1:.0%} margin) "
                         f"but the memory limit is {mib(limit.bytes)} ({limit.source}): {fix}")
    log.debug("memory preflight: %s needs ~%s of %s (%s)", what, mib(need), mib(limit.bytes), limit.source)
    return need


def hop_draws(batch_size: int, fanouts: tuple[int, ...] | list[int], num_nodes: int) -> list[int]:
    """Neighbours drawn per hop at most (hop 0: the seeds); a fanout < 0 (all) counts as the whole graph."""
    draws = [batch_size]
    for f in fanouts:
        draws.append(min(draws[-1] * int(f), num_nodes) if int(f) >= 0 else num_nodes)
    return draws


def distinct_nodes(draws: int, num_nodes: int) -> int:
    """Expected distinct nodes among ``draws`` uniform draws from ``num_nodes`` (``N (1 - e^(-draws/N))``).

    Why not ``min(draws, N)``: a batch of products' shape (1024 seeds, fanouts 15,10,5: 938k draws) reaches
    ~0.6M of a 1M-node graph, not 0.94M; the bare bound refused runs that fit."""
    if num_nodes <= 0:
        return 0
    return int(num_nodes * -math.expm1(-draws / num_nodes))


def batch_bytes(batch_size: int, fanouts: tuple[int, ...] | list[int], num_nodes: int, num_features: int,
                in_flight: int, copies: int = 1, feature_itemsize: int = 4) -> int:
    """What the mini-batches in flight hold (``in_flight``: the prefetch threads' batches plus the one
    training): every sampled row's features ``copies`` times (2 for rows that arrive as bytes and are
    decoded) and its ids, for the distinct nodes a batch is expected to reach."""
    return in_flight * _batch_rows(batch_size, fanouts, num_nodes) * (copies * num_features * feature_itemsize + 3 * 8)


def _batch_rows(batch_size: int, fanouts: tuple[int, ...] | list[int], num_nodes: int) -> int:
    """The distinct nodes a batch is expected to reach (its rows), at least its seeds."""
    return max(batch_size, distinct_nodes(sum(hop_draws(batch_size, fanouts, num_nodes)), num_nodes))


def sampled_batch_bytes(batch_size: int, fanouts: tuple[int, ...] | list[int], num_nodes: int, batches: int) -> int:
    """Batches sampled but without their rows yet (``--fetch_rows after_step``: the one waiting for its turn): the
    ids of their distinct nodes and their edges (two int64 per sampled edge)."""
    edges = sum(hop_draws(batch_size, fanouts, num_nodes)[1:])
    return batches * (_batch_rows(batch_size, fanouts, num_nodes) * 3 * 8 + edges * 2 * 8)


def step_bytes(batch_size: int, fanouts: tuple[int, ...] | list[int], num_nodes: int, num_features: int,
               hidden_channels: int, chunk_edges: int = 0) -> int:
    """The training step's activations (trimmed GraphSAGE-like) at the higher of its two peaks.

    Unchunked (PyG's layers, which keep their input): the first layer's forward, one input row per sampled edge
    beside its kept input and its hidden-wide outputs for the nodes within ``L - 1`` hops; the backward from the
    second layer to the first, those outputs, their gradient and its copy through ReLU + dropout, and one
    hidden-wide gradient row per edge of hops ``1..L-1``. Chunked (``chunk_edges`` > 0, GraphSAGE over dense or
    encoded rows, src/train/chunked_layer.py): one chunk of input rows in the first layer, one chunk of hidden
    rows in the second (forward and backward), the first layer's neighbour mean (kept for backward; its own rows
    are read again from the batch), the outputs or their gradient (one, masked in place), not both, and the second
    layer's gradients for its own outputs."""
    draws = hop_draws(batch_size, fanouts, num_nodes)
    edges = sum(draws[1:])
    outputs = distinct_nodes(sum(draws[:-1]), num_nodes)
    hidden_row, input_row = hidden_channels * 4, num_features * 4
    if chunk_edges > 0:
        mean = outputs * input_row
        first = min(edges, chunk_edges) * input_row + mean + outputs * hidden_row
        hidden_chunk = min(sum(draws[1:-1]), chunk_edges) * hidden_row
        # + the second layer's gradients for its own outputs (mean, root, per destination), and ReLU's bits
        own = 3 * distinct_nodes(sum(draws[:-2]), num_nodes) * hidden_row + outputs * hidden_channels // 8
        second = mean + outputs * hidden_row + hidden_chunk + own if len(fanouts) > 1 else 0
        return max(first, second)
    first = edges * input_row + outputs * input_row + outputs * hidden_row
    second = outputs * input_row + (3 * outputs + sum(draws[1:-1])) * hidden_row if len(fanouts) > 1 else 0
    return max(first, second)
