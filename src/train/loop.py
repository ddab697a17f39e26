"""One training loop for every backend: the model zoo, mini-batches, DDP over gloo, logs, checkpoints.

Why one loop: the point of the project is to compare backends (in-memory, Neo4j, partitioned),
so everything except "where do batches come from" must be identical.  A backend only provides
the :class:`~src.backends.base.Backend` contract.

Distributed semantics: the ranks first agree on the flags that must match (src/train/agreement.py);
every rank permutes the train seeds with ``(seed, epoch)`` identically and takes a shard sized by
its batch size, so all ranks run the same number of steps (DDP would otherwise hang on the last
one). Evaluation shards val/test without padding and reduces the metrics over ranks, so every rank
reports (and early-stops on) the same numbers.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.data import Data
from tqdm import tqdm

from src.backends.base import Backend
from src.core.errors import UserError
from src.core.huge_pages import huge_pages_requested
from src.train import distributed, run_names
from src.train.agreement import agree, epoch_shard, steps_per_epoch
from src.train.checkpoint import (BEST_FILE, CHECKPOINT_FILE, Progress, load_checkpoint, mix_seeds,
                                  model_identity, restore_rank_state, save_best, save_checkpoint, seed_all)
from src.train.config import TrainConfig
from src.train.link import LinkTask, resolve_link_metric
from src.train.node_task import NodeTask
from src.train.finite import require_finite_loss, require_finite_weights
from src.train.metrics import SHORT, resolve_metric
from src.train.run_log import MemoryMonitor, RunLogger

log = logging.getLogger(__name__)

# What an epoch event says about evaluation (None in epochs without one, auc None unless binary).
EVAL_FIELDS = {f"{split}_{key}": None for split in ("val", "test") for key in ("acc", "f1", "auc")} | {
    "metric": None, "val_metric": None, "test_metric": None}


class AllreduceTimer:
    """State of :func:`timed_allreduce_hook`: the span of one step's gradient sync.

    Why a comm hook rather than timing ``backward()`` with and without ``no_sync``: that
    needs a second backward pass per step (or alternating steps) and measures a difference of
    two noisy numbers; the hook measures the sync itself, every step, at no extra cost.  The
    value is the wall-clock span from the first bucket being handed to gloo until the last
    bucket's allreduce completes, so it includes waiting for slower ranks (stragglers).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first: float | None = None
        self._last: float | None = None

    def reset(self) -> None:
        with self._lock:
            self._first = self._last = None

    @property
    def seconds(self) -> float:
        with self._lock:
            return 0.0 if self._first is None or self._last is None else self._last - self._first

    def started(self) -> None:
        now = time.perf_counter()
        with self._lock:
            self._first = now if self._first is None else self._first

    def finished(self) -> None:
        now = time.perf_counter()
        with self._lock:
            self._last = now if self._last is None else max(self._last, now)

# No annotations on bucket/return: DDP compares them with the real classes, and
# ``from __future__ import annotations`` would turn them into strings that fail the check.
def timed_allreduce_hook(timer: AllreduceTimer, bucket):  # noqa: ANN001, ANN201
    """DDP comm hook: average the bucket over ranks (as DDP's default) and time it."""
    timer.started()
    world = dist.get_world_size()
    future = dist.all_reduce(bucket.buffer().div_(world), async_op=True).get_future()

    def done(fut: torch.futures.Future[list[Tensor]]) -> Tensor:
        timer.finished()
        return fut.value()[0]

    return future.then(done)

Task = NodeTask | LinkTask


@contextmanager
def joined(cfg: TrainConfig) -> Iterator[list[int]]:
    """The job's process group with the ranks' flags checked (yields every rank's batch size).

    Entry scripts enter it before opening the backend, so a flag that must match stops every rank
    within seconds, not after each has loaded its data; a peer failing later is one line too.
    """
    if cfg.num_workers > 0:  # 0, as the seed's commands write it: torch's default thread count
        torch.set_num_threads(cfg.num_workers)
    distributed.init(cfg)
    try:
        with distributed.peer_failures_as_user_errors():
            yield agree(cfg)
    finally:
        distributed.destroy()


def train(backend: Backend, cfg: TrainConfig, batch_sizes: list[int] | None = None) -> dict[str, Any]:
    """Train ``cfg.model`` on ``backend`` as rank ``cfg.node_rank`` of ``cfg.num_nodes``.

    Returns the summary (also logged and, on rank 0, reported via logging).  The caller owns
    and closes ``backend``; the process group is the caller's :func:`joined` (``batch_sizes`` is
    what it yielded), else it is created and destroyed here.
    """
    if batch_sizes is None:
        with joined(cfg) as sizes:
            return train(backend, cfg, sizes)
    with run_names.claim_run(cfg, backend.name) as cfg:
        return _train(backend, cfg, batch_sizes)

def _train(backend: Backend, cfg: TrainConfig, batch_sizes: list[int]) -> dict[str, Any]:
    rank, world = distributed.rank(), distributed.world_size()
    # auto resolved once: the log, the checkpoint and every batch carry the mode actually used
    task: Task = LinkTask.prepare(backend, cfg) if cfg.task == "link" else NodeTask(backend)
    metric = (resolve_link_metric(cfg.metric) if cfg.task == "link"
              else resolve_metric(cfg.metric, backend.num_classes, backend.recorded_metric()))
    cfg = dataclasses.replace(cfg, normalize_features=backend.normalize_features(cfg.normalize_features), metric=metric)
    identity = model_identity(cfg, backend.num_features, backend.num_classes)
    seed_all(cfg.seed)  # identical initial weights on every rank
    model = backend.make_model(cfg) or task.build_model(cfg, identity)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    seed_all(mix_seeds(cfg.seed, rank, 1))  # but rank-specific dropout masks
    ckpt_path = Path(cfg.checkpoint_dir) / str(cfg.run_name) / CHECKPOINT_FILE
    best_path = ckpt_path.with_name(BEST_FILE)
    state = load_checkpoint(ckpt_path, identity, model, optimizer) if cfg.resume else None
    progress, start_epoch = Progress(), 1
    if state is not None:
        model.load_state_dict(state["model"])
        require_finite_weights(model, ckpt_path)
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"]) + 1
        progress = restore_rank_state(state, rank, world)
    timer = AllreduceTimer()
    ddp_model: nn.Module = model
    if world > 1:
        ddp_model = DistributedDataParallel(model)
        ddp_model.register_comm_hook(timer, timed_allreduce_hook)

    logger = RunLogger(cfg.log_dir, str(cfg.run_name), rank, world, backend.name, cfg.dataset,
                       append=cfg.resume, tensorboard=cfg.tensorboard)
    try:
        if cfg.resume:
            dropped = logger.drop_after_epoch(start_epoch - 1)
            logger.note(f"resuming after epoch {start_epoch - 1} from {ckpt_path}; "
                        f"dropped {dropped} logged events of later epochs")
        stats = backend.stats()
        logger.log("run_start", config=_config_for_log(cfg),
                   num_nodes=stats.get("num_nodes"), num_edges=stats.get("num_edges"),
                   resumed_from_epoch=start_epoch - 1 if state is not None else None, batch_sizes=batch_sizes,
                   huge_pages=huge_pages_requested())
        monitor = MemoryMonitor(backend.server_pid())
        train_seeds = task.train_items
        if len(train_seeds) == 0:
            raise UserError(f"dataset {cfg.dataset!r} has no train {'pairs' if cfg.task == 'link' else 'nodes'}: "
                            "check its split")
        for epoch in range(start_epoch, cfg.epochs + 1):
            if progress.stopped_early:
                break
            if epoch > start_epoch and isinstance(task, NodeTask):  # node splits edited in the database
                task.train_items = _follow_split_edits(backend, task.train_items, logger)
            record = _train_epoch(ddp_model, optimizer, backend, cfg, task, batch_sizes, epoch,
                                  timer, monitor, logger)
            improved = _finish_epoch(record, model, backend, cfg, task, progress, monitor)
            logger.log("epoch", **record)
            save_checkpoint(ckpt_path, model, optimizer, epoch, identity, progress)  # first: what --resume needs
            if improved:
                save_best(best_path, model, epoch, identity, record)
            if progress.stopped_early:
                logger.note(f"early stop after epoch {epoch}: validation {cfg.metric} did not improve in "
                            f"{cfg.patience} evaluations; best epoch {progress.best_epoch} is in {best_path}")
        summary = _summary(progress, cfg)
        logger.log("summary", **summary)
    finally:
        logger.close()
    if rank == 0:
        log.info("summary of %s: %s", cfg.run_name, _format_summary(summary))
    return {**summary, "run_name": cfg.run_name}

def _follow_split_edits(backend: Backend, train_seeds: Tensor, logger: RunLogger) -> Tensor:
    """Splits edited in the database take effect at the next epoch: rank 0 asks, every rank takes its answer."""
    splits = backend.reread_splits() if distributed.rank() == 0 and backend.splits_changed() else None
    splits = distributed.broadcast_object(splits)
    if splits is None:
        return train_seeds
    backend.use_splits(splits)
    if len(splits["train"]) == 0:
        raise UserError("every train node left the train split during the run: mark some nodes train again, "
                        "then rerun with --resume")
    if not torch.equal(splits["train"], train_seeds):
        logger.note(f"the split changed in the database: {len(splits['train'])} train seeds from now on "
                    f"(were {len(train_seeds)}); val {len(splits['val'])}, test {len(splits['test'])}")
    return splits["train"]


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, backend: Backend,
                 cfg: TrainConfig, task: Task, batch_sizes: list[int], epoch: int,
                 timer: AllreduceTimer, monitor: MemoryMonitor, logger: RunLogger) -> dict[str, Any]:
    """One epoch over this rank's shard; logs each step, returns the epoch record so far."""
    rank, world = distributed.rank(), distributed.world_size()
    train_seeds = task.train_items
    shard = epoch_shard(train_seeds, seed=cfg.seed, epoch=epoch, rank=rank, world_size=world,
                        batch_sizes=batch_sizes)
    num_steps = steps_per_epoch(len(train_seeds), batch_sizes, cfg.max_steps_per_epoch)
    shard = shard[:num_steps * cfg.batch_size]  # bounded "epochs" (scale sweeps): same count on every rank
    # Sums over the epoch; a field stays None if no step had it (e.g. t_allreduce, one rank).
    sums: dict[str, float | None] = dict.fromkeys(
        ("t_wait", "t_sample", "t_fetch", "t_decode", "t_forward_backward", "t_allreduce"))
    loss_sum, correct, total = 0.0, 0, 0
    model.train()
    start = time.perf_counter()
    loader = task.loader(backend, shard, mix_seeds(cfg.seed, epoch, rank))
    loader.fetch_after_step = cfg.fetch_rows == "after_step"
    batches = iter(loader)
    bar = tqdm(total=num_steps, desc=f"epoch {epoch}/{cfg.epochs}", disable=rank != 0,
               leave=False, dynamic_ncols=True)
    try:
        for step in range(1, num_steps + 1):
            t0 = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                raise _loader_mismatch(num_steps)
            t_wait = time.perf_counter() - t0
            timer.reset()
            t1 = time.perf_counter()
            loss, batch_correct, labelled, bs = task.step(model, batch, cfg.trim)
            loss_value = require_finite_loss(loss, epoch, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            t_compute = time.perf_counter() - t1
            t_allreduce = timer.seconds if world > 1 else None
            step_rec = {
                "epoch": epoch, "step": step, "loss": loss_value, "num_seeds": bs,
                "t_wait": t_wait, "t_sample": _opt_float(batch, "t_sample"),
                "t_fetch": _opt_float(batch, "t_fetch"),
                "t_decode": _opt_float(batch, "t_decode"),  # part of t_wait: rows decoded as the step took them
                "t_forward_backward": t_compute - (t_allreduce or 0.0), "t_allreduce": t_allreduce,
            }
            correct += batch_correct
            total += labelled
            loss_sum += step_rec["loss"]
            for key, value in sums.items():
                if step_rec[key] is not None:
                    sums[key] = (value or 0.0) + step_rec[key]
            rss, server_rss = monitor.sample()
            step_rec.update(t_step=time.perf_counter() - t0, rss_mb=rss, neo4j_rss_mb=server_rss)
            logger.log("step", **step_rec)
            bar.update()
            bar.set_postfix(loss=f"{step_rec['loss']:.4f}")
            del batch, loss  # not held while the next batch's rows are fetched
    except BaseException:
        batches.close()  # its threads stop now, not whenever a traceback holding it lets go
        raise
    bar.close()
    _expect_exhausted(batches, num_steps)
    epoch_time = time.perf_counter() - start
    totals = distributed.all_reduce_sum(
        torch.tensor([loss_sum, num_steps, correct, total], dtype=torch.float64))
    rss, server_rss = monitor.sample()
    return {
        "epoch": epoch,
        "loss": float(totals[0] / totals[1]),
        "train_acc": float(totals[2] / totals[3]),
        **EVAL_FIELDS, **task.eval_fields(),
        "epoch_time": epoch_time,
        **sums,
        "seeds_per_s": len(shard) / epoch_time,
        "rss_mb": rss, "neo4j_rss_mb": server_rss,
    }

def _finish_epoch(record: dict[str, Any], model: nn.Module, backend: Backend, cfg: TrainConfig, task: Task,
                  progress: Progress, monitor: MemoryMonitor) -> bool:
    """Evaluate if due, update the run bookkeeping, complete ``record`` for the epoch event.

    Returns whether the validation metric improved (the caller keeps that epoch's weights)."""
    epoch = record["epoch"]
    t0 = time.perf_counter()
    improved = False
    if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
        record.update(task.evaluate(model, backend, cfg, epoch))
        key = SHORT[cfg.metric]
        record.update(metric=cfg.metric, val_metric=record.get(f"val_{key}"), test_metric=record.get(f"test_{key}"))
        improved = progress.record_eval(epoch, record, cfg.patience)
    record["t_eval"] = time.perf_counter() - t0
    progress.epoch_times.append(record["epoch_time"])
    progress.peak_rss_mb = max(progress.peak_rss_mb, monitor.peak_rss_mb)
    if monitor.peak_server_mb is not None:
        progress.peak_neo4j_rss_mb = max(progress.peak_neo4j_rss_mb or 0.0, monitor.peak_server_mb)
    record["peak_rss_mb"] = progress.peak_rss_mb
    record["stats"] = backend.stats()
    return improved

def _expect_exhausted(batches: Any, num_steps: int) -> None:
    """The loader must yield exactly ceil(shard / batch_size) batches, or ranks desynchronise."""
    if next(batches, None) is not None:
        raise _loader_mismatch(num_steps)

def _loader_mismatch(num_steps: int) -> RuntimeError:
    return RuntimeError(f"backend loader did not yield exactly {num_steps} batches: "
                        "its batch size must equal --batch_size")

def _opt_float(batch: Data, key: str) -> float | None:
    value = getattr(batch, key, None)
    return None if value is None else float(value)

def _config_for_log(cfg: TrainConfig) -> dict[str, Any]:
    """Raw flags (backend ones included) overlaid with the resolved config values."""
    resolved = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "flags"}
    return {**cfg.flags, **resolved, "fanouts": list(cfg.fanouts)}

def _summary(progress: Progress, cfg: TrainConfig) -> dict[str, Any]:
    times = progress.epoch_times
    return {
        "epochs": cfg.epochs,
        "metric": cfg.metric,
        "best_val_metric": progress.best_val_metric,
        "test_metric_at_best_val": progress.test_metric_at_best_val,
        "best_val_acc": progress.best_val_acc,
        "test_acc_at_best_val": progress.test_acc_at_best_val,
        "best_epoch": progress.best_epoch,
        "epochs_run": len(times),
        "stopped_early": progress.stopped_early,
        "mean_epoch_time": sum(times) / len(times) if times else None,
        "peak_rss_mb": progress.peak_rss_mb,
        "peak_neo4j_rss_mb": progress.peak_neo4j_rss_mb,
    }

def _format_summary(summary: dict[str, Any]) -> str:
    def fmt(value: Any, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    name = summary["metric"]
    return (f"best val {name} {fmt(summary['best_val_metric'], '.4f')} (epoch {summary['best_epoch']}"
            f"{', stopped early' if summary['stopped_early'] else ''}), "
            f"test {name} at best val {fmt(summary['test_metric_at_best_val'], '.4f')}, "
            f"mean epoch time {fmt(summary['mean_epoch_time'], '.3f')} s, "
            f"peak RSS {fmt(summary['peak_rss_mb'], '.0f')} MiB"
            + ("" if summary["peak_neo4j_rss_mb"] is None
               else f", peak Neo4j RSS {summary['peak_neo4j_rss_mb']:.0f} MiB"))
