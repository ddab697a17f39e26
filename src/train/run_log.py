"""Structured per-rank run logs: ``<log_dir>/<run>/rank<k>.jsonl`` plus a readable ``rank<k>.log``.

Why two files: the JSONL is what plots and benchmarks parse (one object per line, flushed per
event, so a killed run still leaves a valid prefix); the ``.log`` is for humans tailing a job.
The schema (events ``run_start``, ``step``, ``epoch``, ``summary`` and their fields) is
documented in docs/ARCHITECTURE.md, "Logs".  Secrets never reach either file: every mapping
passed in is scrubbed of keys that look like credentials, whatever the caller already did.

``--tensorboard DIR`` mirrors the same events as TensorBoard scalars (``<DIR>/<run>/rank<k>/``):
every number of a ``step`` event as ``step/<key>`` and of an ``epoch``/``summary`` event as
``epoch/<key>`` / ``summary/<key>`` (``stats`` flattened as ``epoch/stats.<key>``), whatever keys
the loop logs, at the run's global step (steps logged so far, so a resume continues the axis and
drops the events of epochs it repeats).  Written here, not in the loop, so both outputs agree.
"""
from __future__ import annotations

import json
import math
import os
import resource
import time
from pathlib import Path
from typing import Any, Mapping

import psutil

from src.core.errors import UsageError, UserError

EVENTS = ("run_start", "step", "epoch", "summary")
_SECRET_MARKERS = ("password", "secret", "token")
_MIB = 1024 * 1024
_NOT_SCALARS = frozenset({"time", "rank", "world_size", "step"})


def check_tensorboard() -> None:
    """``--tensorboard`` needs the ``tensorboard`` package (in requirements.txt): one line if absent."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise UsageError("--tensorboard needs the tensorboard package: pip install tensorboard "
                         "(or bash jobs/install.sh)") from None


def redact(value: Any) -> Any:
    """Copy of ``value`` without mapping keys containing password/secret/token (any depth)."""
    if isinstance(value, Mapping):
        return {
            k: redact(v)
            for k, v in value.items()
            if not any(m in str(k).lower() for m in _SECRET_MARKERS)
        }
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    """Make ``value`` strict JSON: non-finite floats become null, paths/others become strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy / torch scalars
        return _jsonable(value.item())
    return str(value)


def rss_mb(pid: int | None = None) -> float | None:
    """Resident set size of ``pid`` (default: this process) in MiB; None if it is gone."""
    try:
        proc = psutil.Process(pid) if pid is not None else psutil.Process()
        return proc.memory_info().rss / _MIB
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def max_rss_mb() -> float:
    """High-water mark of this process's RSS in MiB (kernel-tracked, catches short spikes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class MemoryMonitor:
    """Samples this process's RSS and, if given, a server process's RSS; keeps both peaks."""

    def __init__(self, server_pid: int | None = None):
        self.server_pid = server_pid
        self.peak_server_mb: float | None = None
        self._peak_sampled_mb = 0.0

    def sample(self) -> tuple[float | None, float | None]:
        """``(rss_mb, server_rss_mb)`` now; the server value is None without a server."""
        server = rss_mb(self.server_pid) if self.server_pid is not None else None
        if server is not None:
            self.peak_server_mb = max(server, self.peak_server_mb or 0.0)
        mine = rss_mb()
        self._peak_sampled_mb = max(self._peak_sampled_mb, mine or 0.0)
        return mine, server

    @property
    def peak_rss_mb(self) -> float:
        """Kernel high-water mark, or a higher sample (the kernel updates it lazily)."""
        return max(max_rss_mb(), self._peak_sampled_mb)


class RunLogger:
    """Writes schema events for one rank of one run; call close() when done.

    ``append=True`` (resume) keeps the existing files; otherwise they are started afresh.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        run_name: str,
        rank: int,
        world_size: int,
        backend: str,
        dataset: str,
        *,
        append: bool = False,
        tensorboard: str | os.PathLike | None = None,
    ):
        self.dir = Path(log_dir) / run_name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.dir / f"rank{rank}.jsonl"
        self.text_path = self.dir / f"rank{rank}.log"
        self._common = {"rank": rank, "world_size": world_size, "backend": backend, "dataset": dataset}
        mode = "ab" if append else "wb"
        self._jsonl = open(self.jsonl_path, mode, buffering=0)  # unbuffered: a line is on disk or not at all
        self._text = open(self.text_path, mode, buffering=0)
        self._tb_dir = Path(tensorboard) / run_name / f"rank{rank}" if tensorboard is not None else None
        self._tb: Any = None  # SummaryWriter, opened at the first event (after a resume's drop)
        self._append = append
        self._global_step = 0

    def drop_after_epoch(self, epoch: int) -> int:
        """Remove step/epoch events of epochs > ``epoch`` from the JSONL; return how many.

        Used on resume: events of an epoch that the checkpoint does not contain (a run killed
        mid-epoch, or between logging an epoch and checkpointing it) would otherwise appear twice.
        """
        self._jsonl.close()
        lines = self.jsonl_path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [ln for ln in lines if not _is_after(ln, epoch)]
        tmp = self.jsonl_path.with_suffix(".jsonl.tmp")
        try:
            tmp.write_text("".join(kept), encoding="utf-8")
            os.replace(tmp, self.jsonl_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _write_error(self.jsonl_path, exc) from None
        finally:
            self._jsonl = open(self.jsonl_path, "ab", buffering=0)
            self._global_step = sum(_event_of(ln) == "step" for ln in kept)
        return len(lines) - len(kept)

    def log(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one event (common fields added, secrets removed) to both files; return it."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; expected one of {EVENTS}")
        record = _jsonable({"event": event, "time": time.time(), **self._common, **redact(fields)})
        _append_whole(self._jsonl, json.dumps(record, allow_nan=False) + "\n")
        _append_whole(self._text, _human_line(record) + "\n")
        if self._tb_dir is not None:
            self._write_scalars(record)
        return record

    def _write_scalars(self, record: Mapping[str, Any]) -> None:
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            # a resume drops the TensorBoard events of the epochs it runs again, as in the JSONL
            purge = self._global_step + 1 if self._append else None
            self._tb = SummaryWriter(log_dir=str(self._tb_dir), purge_step=purge, flush_secs=10)
        event = record["event"]
        if event == "step":
            self._global_step += 1
        prefix = "step" if event == "step" else event
        for key, value in _scalars(record):
            self._tb.add_scalar(f"{prefix}/{key}", value, self._global_step, walltime=record["time"])
        if event != "step":
            self._tb.flush()

    def note(self, message: str) -> None:
        """A free-text line in the readable log only (resume notices and the like)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        _append_whole(self._text, f"{stamp} rank{self._common['rank']} note {message}\n")

    def close(self) -> None:
        self._jsonl.close()
        self._text.close()
        if self._tb is not None:
            self._tb.close()


def _scalars(record: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The finite numbers of an event (``stats`` flattened one level), for TensorBoard."""
    items = [(k, v) for k, v in record.items() if k not in _NOT_SCALARS and k != "stats"]
    stats = record.get("stats")
    if isinstance(stats, Mapping):
        items += [(f"stats.{k}", v) for k, v in stats.items()]
    return [(k, float(v)) for k, v in items
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


def _event_of(line: str) -> Any:
    try:
        return json.loads(line).get("event")
    except (json.JSONDecodeError, AttributeError):
        return None


def _append_whole(fh: Any, text: str) -> None:
    """Append ``text`` to the unbuffered file ``fh`` entirely or not at all.

    Why: on a full disk a line would otherwise be torn (a prefix written), and the next reader
    of the JSONL meets half an object; the file is cut back to where it was and the run stops
    with one line (:class:`UserError`).
    """
    data = memoryview(text.encode("utf-8"))
    start = os.fstat(fh.fileno()).st_size
    try:
        while data:
            data = data[fh.write(data):]
    except OSError as exc:
        try:
            os.ftruncate(fh.fileno(), start)
        except OSError:
            pass  # cutting back only frees space; the error below is what matters
        raise _write_error(Path(fh.name), exc) from None


def _write_error(path: Path, exc: OSError) -> UserError:
    return UserError(f"cannot write run log {path} ({exc.strerror or exc}); the lines written so far are "
                     "intact: free space in (or fix) --log_dir, then --resume")


def _is_after(line: str, epoch: int) -> bool:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return True  # a line torn by a kill: drop it
    return rec.get("event") in ("step", "epoch") and int(rec.get("epoch", 0)) > epoch


def _human_line(record: Mapping[str, Any]) -> str:
    """``2026-01-01 12:00:00 rank0 epoch epoch=1 loss=1.2345 ...`` (config/stats as JSON)."""
    skip = {"event", "time", "rank", "world_size", "backend", "dataset"}
    parts = []
    for key, value in record.items():
        if key in skip:
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, separators=(",", ":"))
        parts.append(f"{key}={value}")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["time"]))
    return f"{stamp} rank{record['rank']} {record['event']} " + " ".join(parts)
