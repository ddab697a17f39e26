"""One training loop for every backend: GraphSAGE, mini-batches, DDP over gloo, logs, checkpoints.

Why one loop: the point of the project is to compare backends (in-memory, Neo4j, partitioned),
so everything except "where do batches come from" must be identical.  A backend only provides
the :class:`~src.backends.base.Backend` contract.

Distributed semantics: every rank permutes the train seeds with ``(seed, epoch)`` identically,
pads the permutation by wrapping to a multiple of the world size and takes one contiguous
shard, so all ranks run the same number of steps (DDP would otherwise hang on the last one).
Evaluation shards val/test without padding and all-reduces correct/total, so every rank reports
the same accuracy.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.data import Data
from tqdm import tqdm

from src.backends.base import Backend
from src.core.errors import UserError
from src.train import distributed, run_names
from src.train.checkpoint import CHECKPOINT_FILE, Progress, load_checkpoint, mix_seeds, restore_rank_state, save_checkpoint, seed_all
from src.train.config import TrainConfig
from src.train.model import GraphSAGE
from src.train.run_log import MemoryMonitor, RunLogger

log = logging.getLogger(__name__)


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

def epoch_shard(seeds: Tensor, *, seed: int, epoch: int, rank: int, world_size: int) -> Tensor:
    """This rank's train seeds for ``epoch``: same-size shards of one (seed, epoch) permutation.

    The permutation is padded by wrapping around to ``ceil(n / world) * world`` entries, so
    every rank gets exactly ``ceil(n / world)`` seeds (a few seeds train twice per epoch).
    """
    n = len(seeds)
    order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))
    per_rank = -(-n // world_size)
    padded = order[torch.arange(per_rank * world_size) % n]
    return seeds[padded[rank * per_rank:(rank + 1) * per_rank]]

def train(backend: Backend, cfg: TrainConfig) -> dict[str, Any]:
    """Train GraphSAGE on ``backend`` as rank ``cfg.node_rank`` of ``cfg.num_nodes``.

    Returns the summary (also logged and, on rank 0, reported via logging).  The caller owns
    and closes ``backend``; the process group is created and destroyed here.
    """
    torch.set_num_threads(cfg.num_workers)
    distributed.init(cfg)
    try:
        with distributed.peer_failures_as_user_errors():
            with run_names.claim_run(cfg, backend.name) as cfg:
                return _train(backend, cfg)
    finally:
        distributed.destroy()

def _train(backend: Backend, cfg: TrainConfig) -> dict[str, Any]:
    rank, world = distributed.rank(), distributed.world_size()
    # auto resolved once: the log, the checkpoint and every batch carry the mode actually used
    cfg = dataclasses.replace(cfg, normalize_features=backend.normalize_features(cfg.normalize_features))
    identity = {
        "dataset": cfg.dataset, "num_features": int(backend.num_features),
        "num_classes": int(backend.num_classes), "hidden_channels": cfg.hidden_channels,
        "num_layers": cfg.num_layers, "normalize_features": cfg.normalize_features,
    }
    seed_all(cfg.seed)  # identical initial weights on every rank
    model = GraphSAGE(identity["num_features"], cfg.hidden_channels, identity["num_classes"],
                      cfg.num_layers, cfg.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    seed_all(mix_seeds(cfg.seed, rank, 1))  # but rank-specific dropout masks
    ckpt_path = Path(cfg.checkpoint_dir) / str(cfg.run_name) / CHECKPOINT_FILE
    state = load_checkpoint(ckpt_path, identity) if cfg.resume else None
    progress, start_epoch = Progress(), 1
    if state is not None:
        model.load_state_dict(state["model"])
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
                   resumed_from_epoch=start_epoch - 1 if state is not None else None)
        monitor = MemoryMonitor(backend.server_pid())
        train_seeds = backend.split_nodes("train")
        if len(train_seeds) == 0:
            raise UserError(f"dataset {cfg.dataset!r} has no train nodes: check its split")
        for epoch in range(start_epoch, cfg.epochs + 1):
            record = _train_epoch(ddp_model, optimizer, backend, cfg, train_seeds, epoch,
                                  timer, monitor, logger)
            _finish_epoch(record, model, backend, cfg, progress, monitor)
            logger.log("epoch", **record)
            save_checkpoint(ckpt_path, model, optimizer, epoch, identity, progress)
        summary = _summary(progress, cfg)
        logger.log("summary", **summary)
    finally:
        logger.close()
    if rank == 0:
        log.info("summary of %s: %s", cfg.run_name, _format_summary(summary))
    return {**summary, "run_name": cfg.run_name}

def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, backend: Backend,
                 cfg: TrainConfig, train_seeds: Tensor, epoch: int, timer: AllreduceTimer,
                 monitor: MemoryMonitor, logger: RunLogger) -> dict[str, Any]:
    """One epoch over this rank's shard; logs each step, returns the epoch record so far."""
    rank, world = distributed.rank(), distributed.world_size()
    shard = epoch_shard(train_seeds, seed=cfg.seed, epoch=epoch, rank=rank, world_size=world)
    if cfg.max_steps_per_epoch:  # a bounded "epoch" (scale sweeps): same count on every rank
        shard = shard[:cfg.max_steps_per_epoch * cfg.batch_size]
    num_steps = -(-len(shard) // cfg.batch_size)
    # Sums over the epoch; a field stays None if no step had it (e.g. t_allreduce, one rank).
    sums: dict[str, float | None] = dict.fromkeys(
        ("t_wait", "t_sample", "t_fetch", "t_forward_backward", "t_allreduce"))
    loss_sum, correct, total = 0.0, 0, 0
    model.train()
    start = time.perf_counter()
    batches = iter(backend.make_loader(shard, shuffle=False, seed=mix_seeds(cfg.seed, epoch, rank)))
    bar = tqdm(total=num_steps, desc=f"epoch {epoch}/{cfg.epochs}", disable=rank != 0,
               leave=False, dynamic_ncols=True)
    for step in range(1, num_steps + 1):
        t0 = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            raise _loader_mismatch(num_steps)
        t_wait = time.perf_counter() - t0
        timer.reset()
        t1 = time.perf_counter()
        bs = int(batch.batch_size)
        out = model(batch.x, batch.edge_index)[:bs]
        target = batch.y[:bs]
        loss = F.cross_entropy(out, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        t_compute = time.perf_counter() - t1
        t_allreduce = timer.seconds if world > 1 else None
        step_rec = {
            "epoch": epoch, "step": step, "loss": loss.item(), "num_seeds": bs,
            "t_wait": t_wait, "t_sample": _opt_float(batch, "t_sample"),
            "t_fetch": _opt_float(batch, "t_fetch"),
            "t_forward_backward": t_compute - (t_allreduce or 0.0), "t_allreduce": t_allreduce,
        }
        correct += int((out.argmax(dim=-1) == target).sum())
        total += bs
        loss_sum += step_rec["loss"]
        for key, value in sums.items():
            if step_rec[key] is not None:
                sums[key] = (value or 0.0) + step_rec[key]
        rss, server_rss = monitor.sample()
        step_rec.update(t_step=time.perf_counter() - t0, rss_mb=rss, neo4j_rss_mb=server_rss)
        logger.log("step", **step_rec)
        bar.update()
        bar.set_postfix(loss=f"{step_rec['loss']:.4f}")
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
        "val_acc": None, "test_acc": None,
        "epoch_time": epoch_time,
        **sums,
        "seeds_per_s": len(shard) / epoch_time,
        "rss_mb": rss, "neo4j_rss_mb": server_rss,
    }

def _finish_epoch(record: dict[str, Any], model: nn.Module, backend: Backend, cfg: TrainConfig,
                  progress: Progress, monitor: MemoryMonitor) -> None:
    """Evaluate if due, update the run bookkeeping, complete ``record`` for the epoch event."""
    epoch = record["epoch"]
    t0 = time.perf_counter()
    if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
        subset = {"max_seeds": cfg.max_eval_seeds, "subset_seed": cfg.seed}
        record["val_acc"] = evaluate(model, backend, "val", seed=mix_seeds(cfg.seed, epoch, 2), **subset)
        record["test_acc"] = evaluate(model, backend, "test", seed=mix_seeds(cfg.seed, epoch, 3), **subset)
        progress.record_eval(epoch, record["val_acc"], record["test_acc"])
    record["t_eval"] = time.perf_counter() - t0
    progress.epoch_times.append(record["epoch_time"])
    progress.peak_rss_mb = max(progress.peak_rss_mb, monitor.peak_rss_mb)
    if monitor.peak_server_mb is not None:
        progress.peak_neo4j_rss_mb = max(progress.peak_neo4j_rss_mb or 0.0, monitor.peak_server_mb)
    record["peak_rss_mb"] = progress.peak_rss_mb
    record["stats"] = backend.stats()

@torch.no_grad()
def evaluate(model: nn.Module, backend: Backend, split: str, *, seed: int,
             max_seeds: int = 0, subset_seed: int = 0) -> float | None:
    """Accuracy on ``split``: each rank predicts its shard, correct/total summed over ranks.

    Uses the plain module (not the DDP wrapper): no gradient sync is needed and ranks may
    have different numbers of eval batches.  ``max_seeds`` > 0 evaluates a fixed random
    subset of that many nodes (the same on every rank, epoch and backend for one
    ``subset_seed``), so evaluation on huge graphs stays bounded.
    """
    rank, world = distributed.rank(), distributed.world_size()
    nodes = backend.split_nodes(split)
    if 0 < max_seeds < len(nodes):
        pick = np.random.default_rng([subset_seed, len(nodes)]).choice(len(nodes), max_seeds, replace=False)
        nodes = nodes[torch.from_numpy(np.sort(pick))]
    shard = nodes[rank::world]
    correct = total = 0
    model.eval()
    if len(shard):
        for batch in backend.make_loader(shard, shuffle=False, seed=mix_seeds(seed, rank)):
            bs = int(batch.batch_size)
            pred = model(batch.x, batch.edge_index)[:bs].argmax(dim=-1)
            correct += int((pred == batch.y[:bs]).sum())
            total += bs
    counts = distributed.all_reduce_sum(torch.tensor([correct, total], dtype=torch.float64))
    return float(counts[0] / counts[1]) if counts[1] > 0 else None

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
        "best_val_acc": progress.best_val_acc,
        "test_acc_at_best_val": progress.test_acc_at_best_val,
        "best_epoch": progress.best_epoch,
        "mean_epoch_time": sum(times) / len(times) if times else None,
        "peak_rss_mb": progress.peak_rss_mb,
        "peak_neo4j_rss_mb": progress.peak_neo4j_rss_mb,
    }

def _format_summary(summary: dict[str, Any]) -> str:
    def fmt(value: Any, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    return (f"best val acc {fmt(summary['best_val_acc'], '.4f')} (epoch {summary['best_epoch']}), "
            f"test acc at best val {fmt(summary['test_acc_at_best_val'], '.4f')}, "
            f"mean epoch time {fmt(summary['mean_epoch_time'], '.3f')} s, "
            f"peak RSS {fmt(summary['peak_rss_mb'], '.0f')} MiB"
            + ("" if summary["peak_neo4j_rss_mb"] is None
               else f", peak Neo4j RSS {summary['peak_neo4j_rss_mb']:.0f} MiB"))
