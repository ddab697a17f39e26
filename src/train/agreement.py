"""What the ranks of a job must agree on, checked at start, and how they split each epoch's seeds.

The seed's per-node commands give ranks different ``--batch_size``/``--num_workers``/``--concurrency``
(e.g. 8192 on one machine, 1024 on the other). Those may differ; what shapes the model, the
schedule or a collective may not, or DDP fails later inside gloo with ``collective mismatch``
and the peer blames the wrong rank. Every rank gathers every rank's settings once and stops
with the same one line if one differs.

Shards: each epoch's (seed, epoch) permutation is padded by wrapping and cut into one shard per
rank with sizes proportional to the ranks' batch sizes, ``ceil(n * b_r / sum(b))``; then every
rank runs exactly ``ceil(n / sum(b))`` steps (DDP needs equal step counts). With equal batch
sizes the shards are the plain ``ceil(n / world)`` split.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from src.core.errors import UserError
from src.train import distributed
from src.train.config import TrainConfig

# Flags every rank must share: the model, its training schedule, and every collective's shape.
MUST_MATCH = ("dataset", "model", "heads", "num_layers", "fanouts", "hidden_channels", "epochs", "lr",
              "weight_decay", "dropout", "seed", "eval_every", "max_steps_per_epoch", "max_eval_seeds",
              "normalize_features", "metric", "patience", "trim", "resume", "run_name", "num_nodes", "target_type",
              "featureless", "add_reverse")


def agree(cfg: TrainConfig) -> list[int]:
    """Check the ranks' settings match (one-line UserError on every rank if not); returns every rank's batch size."""
    mine = {key: getattr(cfg, key) for key in MUST_MATCH}
    mine["batch_size"] = cfg.batch_size
    peers = distributed.all_gather_objects(mine)
    for key in MUST_MATCH:
        values = [p[key] for p in peers]
        if any(v != values[0] for v in values[1:]):
            odd = next(r for r, v in enumerate(values) if v != values[0])
            flag = "--fanouts" if key == "fanouts" else f"--{key}"
            raise UserError(f"{flag} differs between ranks: rank 0 has {_show(values[0])}, rank {odd} has "
                            f"{_show(values[odd])}; give every rank the same {flag}")
    return [int(p["batch_size"]) for p in peers]


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else repr(value)


def epoch_shard(seeds: Tensor, *, seed: int, epoch: int, rank: int, world_size: int,
                batch_sizes: Sequence[int] | None = None) -> Tensor:
    """This rank's train seeds for ``epoch``: shards of one (seed, epoch) permutation, sized by batch size."""
    n = len(seeds)
    sizes = [1] * world_size if batch_sizes is None else [int(b) for b in batch_sizes]
    if len(sizes) != world_size:
        raise ValueError(f"{len(sizes)} batch sizes for {world_size} ranks")
    total = sum(sizes)
    shard_sizes = [-(-n * b // total) for b in sizes]
    start = sum(shard_sizes[:rank])
    order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))
    picked = order[torch.arange(start, start + shard_sizes[rank]) % max(n, 1)] if n else order
    return seeds[picked]


def steps_per_epoch(num_seeds: int, batch_sizes: Sequence[int], max_steps: int = 0) -> int:
    """The step count every rank runs (see the module docstring)."""
    steps = -(-num_seeds // sum(batch_sizes))
    return min(steps, max_steps) if max_steps else steps
