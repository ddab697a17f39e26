"""Evaluation on val/test for every backend: each rank predicts its shard, metrics over all ranks."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from src.backends.base import Backend
from src.train import distributed
from src.train.checkpoint import mix_seeds
from src.train.metrics import MetricAccumulator
from src.train.model import batch_logits


@torch.no_grad()
def evaluate(model: nn.Module, backend: Backend, split: str, *, seed: int, max_seeds: int = 0,
             subset_seed: int = 0, trim: bool = True) -> dict[str, float | None]:
    """``{"acc", "f1", "auc"}`` on ``split`` (auc None unless the target is binary) (None where the split is empty), the same on every rank.

    Uses the plain module (not the DDP wrapper): no gradient sync is needed and ranks may have
    different numbers of eval batches.  ``max_seeds`` > 0 evaluates a fixed random subset of that
    many nodes (the same on every rank, epoch and backend for one ``subset_seed``), so evaluation
    on huge graphs stays bounded.
    """
    rank, world = distributed.rank(), distributed.world_size()
    nodes = backend.split_nodes(split)
    if 0 < max_seeds < len(nodes):
        pick = np.random.default_rng([subset_seed, len(nodes)]).choice(len(nodes), max_seeds, replace=False)
        nodes = nodes[torch.from_numpy(np.sort(pick))]
    shard = nodes[rank::world]
    acc = MetricAccumulator(backend.num_classes)
    was_training = model.training
    model.eval()
    if len(shard):
        for batch in backend.make_loader(shard, shuffle=False, seed=mix_seeds(seed, rank)):
            acc.add(batch_logits(model, batch, trim), batch.y[:int(batch.batch_size)])
    model.train(was_training)
    return acc.reduce()
