"""The gloo process group of a training job, and the few collectives the trainer needs.

Why a module: every failure mode of a multi-machine job (port taken, master unreachable, a rank
that died or hangs) must end as a one-line :class:`UserError` naming the problem within
the job's timeout (``--collective_timeout_s``, default 60 s) instead of a hang or a C++ stack
trace.  With one rank no process group is created
and every helper is a local no-op, so single-process runs need no networking at all.
"""
from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Iterator

import torch
import torch.distributed as dist

from src.core.errors import UserError, first_line

if TYPE_CHECKING:
    from src.train.config import TrainConfig

log = logging.getLogger(__name__)

TIMEOUT = timedelta(seconds=60)
"""Default rendezvous and collective timeout: how long a rank waits for a dead or stuck peer.
A crashed peer is noticed at once (its connections close); the timeout bounds a hung one."""
_timeout = TIMEOUT  # the current job's (set by init)


def timeout_s() -> float:
    """The current job's collective timeout in seconds (RPC requests use the same bound)."""
    return _timeout.total_seconds()

_PEER_FAILURE_MARKERS = ("Connection closed by peer", "Connection reset", "Timed out", "timed out",
                         "Broken pipe", "gloo")


def init(cfg: TrainConfig) -> None:
    """Join the job's gloo group (no-op for one rank); UserError if the rendezvous fails."""
    global _timeout
    if cfg.num_nodes == 1 or dist.is_initialized():
        return
    _timeout = timedelta(seconds=cfg.collective_timeout_s)
    where = f"{cfg.master_addr}:{cfg.master_port}"
    log.info("rank %d/%d: joining gloo group at %s", cfg.node_rank, cfg.num_nodes, where)
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://{where}",
            rank=cfg.node_rank,
            world_size=cfg.num_nodes,
            timeout=_timeout,
        )
    except (RuntimeError, ValueError) as exc:
        raise UserError(_rendezvous_message(cfg, str(exc))) from None


def destroy() -> None:
    """Leave the process group if one exists (safe to call twice or with one rank).

    Runs in ``finally`` blocks, often because a peer died: a failure here is only logged, so
    it cannot replace the error that explains why the job stopped.
    """
    if not dist.is_initialized():
        return
    try:
        dist.destroy_process_group()
    except RuntimeError as exc:
        log.warning("leaving the gloo group failed (%s)", first_line(exc, 200))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place and return it (identity with one rank)."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (picklable objects; identity with one rank)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any, dst: int = 0) -> list[Any] | None:
    """List of every rank's ``obj`` on rank ``dst`` (None elsewhere); ``[obj]`` with one rank."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank; ``[obj]`` with one rank."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


@contextlib.contextmanager
def peer_failures_as_user_errors() -> Iterator[None]:
    """Turn a collective failing because another rank died or hangs into a one-line UserError."""
    try:
        yield
    except RuntimeError as exc:
        if not dist.is_initialized() or not _is_peer_failure(exc):
            raise
        raise UserError(
            f"rank {rank()}: a collective failed ({_reason(exc)}); {_peers()} probably crashed or "
            f"hangs (timeout {timeout_s():.0f} s): check its log"
        ) from None


def _reason(exc: BaseException) -> str:
    """The gist of a gloo error (its text is a long C++ message with source paths)."""
    text = str(exc)
    for marker in _PEER_FAILURE_MARKERS[:-1]:
        if marker in text:
            return marker.lower()
    return first_line(exc, 160)


def _peers() -> str:
    """The rank(s) this one depends on in a collective: with two ranks, the other one by number."""
    others = [r for r in range(world_size()) if r != rank()]
    if len(others) == 1:
        return f"rank {others[0]}"
    return f"another rank (one of {', '.join(map(str, others))})"


def _is_peer_failure(exc: BaseException) -> bool:
    return isinstance(exc, dist.DistError) or any(m in str(exc) for m in _PEER_FAILURE_MARKERS)


def _rendezvous_message(cfg: TrainConfig, detail: str) -> str:
    where = f"{cfg.master_addr}:{cfg.master_port}"
    secs = int(timeout_s())
    if "EADDRINUSE" in detail or "address already in use" in detail:
        return (f"rank 0 cannot listen on {where}: the port is in use (another job?); "
                "pick a free --master_port")
    if "failed to listen" in detail or "EADDRNOTAVAIL" in detail:
        return (f"rank 0 cannot listen on {where}: --master_addr must be an address of this "
                "machine (e.g. its hostname or IP)")
    if "Ping failed" in detail:
        return (f"rank {cfg.node_rank}: {where} answered but is not this job's rank 0; "
                "--master_addr must name rank 0's machine and --master_port a port free there")
    if cfg.node_rank == 0 and ("waiting for clients" in detail or "Timed out" in detail):
        return (f"rank 0: not all {cfg.num_nodes} ranks joined at {where} within {secs} s; "
                "start every rank with the same --master_addr/--master_port/--num_nodes")
    if "timed out" in detail.lower() or "refused" in detail.lower():
        return (f"rank {cfg.node_rank}: cannot reach rank 0 at {where} within {secs} s; is rank 0 "
                "running, and are --master_addr/--master_port right and the port open?")
    first = detail.strip().splitlines()[0] if detail.strip() else "unknown error"
    return f"rank {cfg.node_rank}: joining the gloo group at {where} failed: {first[:200]}"
