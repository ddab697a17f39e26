"""Run names: a unique default, no silent reuse of an existing run, one job per run folder at a time.

Why: a run's logs and checkpoint live in ``<log_dir>/<run>/`` and ``<checkpoint_dir>/<run>/``, so
a name used twice replaces the first run's results without a word, and two jobs under one name
at once interleave their JSONL and overwrite each other's checkpoint.  Here: the default name is
unique (dataset name, backend, time, random suffix) and made from the dataset's *name*, never
its path (``--dataset /abs/x.npz`` must not put logs at ``/abs/x.npz-<time>/``); an existing run
is refused unless ``--resume`` continues it or ``--overwrite`` replaces it; and every rank holds
an exclusive ``flock`` on a lock file in the run folder (rank 0 also in the checkpoint folder)
for as long as it runs; the lock files, and folders left empty, go when it ends.  Every rank takes part in one decision, so a refused job writes nothing.

``python -m src.train.run_names DATASET BACKEND`` prints a default name (the launch scripts use it).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator

from src.core.errors import UserError

if TYPE_CHECKING:  # torch stays out of `python -m src.train.run_names` (the launch scripts' call)
    from src.train.config import TrainConfig

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def dataset_stem(dataset: str) -> str:
    """The dataset's name for run names: ``/abs/x.npz`` -> ``x``, ``ogbn-arxiv`` unchanged."""
    name = Path(str(dataset).rstrip("/\\")).name or "dataset"
    if name.lower().endswith(".npz"):
        name = name[:-4]
    return _NAME_CHARS.sub("_", name).strip("._") or "dataset"


def default_run_name(dataset: str, backend: str | None = None) -> str:
    """``<dataset name>[-<backend>]-<YYYYmmdd-HHMMSS>-<4 hex>``: unique even for runs started in one second."""
    parts = [dataset_stem(dataset), *([backend] if backend else []), time.strftime("%Y%m%d-%H%M%S"),
             secrets.token_hex(2)]
    return "-".join(parts)


@contextlib.contextmanager
def claim_run(cfg: TrainConfig, backend: str | None = None) -> Iterator[TrainConfig]:
    """``cfg`` with its run name resolved (rank 0's default for all), the run folders locked.

    Raises :class:`UserError` on every rank when any rank finds the run in use or already
    written (without ``--resume``/``--overwrite``); with ``--overwrite`` the old files go first.
    """
    from src.train import distributed

    name = cfg.run_name or distributed.broadcast_object(default_run_name(cfg.dataset, backend))
    cfg = dataclasses.replace(cfg, run_name=name)
    rank = distributed.rank()
    held: list[tuple[Path, IO[str]]] = []
    made: list[Path] = []  # folders this call created: removed again if they end up empty
    try:
        problem = _claim(cfg, rank, held, made)
        problems = distributed.gather_objects(problem)
        first = distributed.broadcast_object(next((p for p in problems or [] if p), None))
        if first:
            raise UserError(first)
        yield cfg
    finally:
        for path, fh in held:
            path.unlink(missing_ok=True)  # while still locked; nobody waits on these (non-blocking)
            fh.close()
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: a run that wrote nothing leaves nothing


def _claim(cfg: TrainConfig, rank: int, held: list[tuple[Path, IO[str]]], made: list[Path]) -> str | None:
    """This rank's part: lock, then check or clear; the problem as one line, or None."""
    from src.train.checkpoint import CHECKPOINT_FILE

    log_run = Path(cfg.log_dir) / str(cfg.run_name)
    ckpt_run = Path(cfg.checkpoint_dir) / str(cfg.run_name)
    try:
        held.append(_lock(log_run / f".rank{rank}.lock", cfg.run_name, made))
        if rank == 0:
            held.append(_lock(ckpt_run / ".lock", cfg.run_name, made))
    except UserError as exc:
        return str(exc)
    mine = [log_run / f"rank{rank}.jsonl", log_run / f"rank{rank}.log"]
    if rank == 0:  # also a former run's other ranks and its checkpoint
        mine += sorted(log_run.glob("rank*.jsonl")) + sorted(log_run.glob("rank*.log")) + [ckpt_run / CHECKPOINT_FILE]
    if cfg.tensorboard is not None:  # an overwritten run's old events would be drawn beside the new ones
        mine += sorted((Path(cfg.tensorboard) / str(cfg.run_name) / f"rank{rank}").glob("events.out.tfevents.*"))
    existing = [p for p in dict.fromkeys(mine) if p.exists()]
    if not existing or cfg.resume:
        return None
    if not cfg.overwrite:
        return (f"run {cfg.run_name!r} already exists ({existing[0]}): pass --resume to continue it, "
                f"--overwrite to replace it, or another --run_name")
    for path in existing:
        path.unlink(missing_ok=True)
    return None


def _lock(path: Path, run_name: str | None, made: list[Path]) -> tuple[Path, IO[str]]:
    """An exclusive, non-blocking ``flock`` on ``path`` (created, with the folders it needs)."""
    made += [p for p in reversed(path.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise UserError(f"run {run_name!r} is in use by another job (pid {holder}, lock {path}): "
                        "wait for it to finish or pick another --run_name") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return path, fh


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m src.train.run_names DATASET [BACKEND]")
    print(default_run_name(*sys.argv[1:]))
