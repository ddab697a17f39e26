"""Node classification, the default ``--task node``: what the training loop asks of a task.

:class:`src.train.link.LinkTask` is the other task; the loop only calls what both provide.
"""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data

from src.backends.base import Backend
from src.core.prefetch import PrefetchLoader
from src.train.checkpoint import mix_seeds
from src.train.config import TrainConfig
from src.train.evaluate import evaluate
from src.train.model import batch_logits, build_model


class NodeTask:
    """Train seeds, cross-entropy, accuracy/F1/AUC on the val and test splits."""

    def __init__(self, backend: Backend) -> None:
        self.train_items = backend.split_nodes("train")

    @staticmethod
    def eval_fields() -> dict[str, None]:
        return {}

    @staticmethod
    def loader(backend: Backend, shard: Tensor, seed: int) -> PrefetchLoader:
        return backend.make_loader(shard, shuffle=False, seed=seed)

    @staticmethod
    def build_model(cfg: TrainConfig, identity: dict[str, Any]) -> nn.Module:
        return build_model(cfg.model, identity["num_features"], cfg.hidden_channels, identity["num_classes"],
                           cfg.num_layers, cfg.dropout, cfg.heads)

    @staticmethod
    def step(model: nn.Module, batch: Data, trim: bool) -> tuple[Tensor, int, int, int]:
        """(loss, correct, labelled, seeds) of one batch."""
        bs = int(batch.batch_size)
        out = batch_logits(model, batch, trim)
        target = batch.y[:bs]
        return F.cross_entropy(out, target), int((out.argmax(dim=-1) == target).sum()), bs, bs

    @staticmethod
    def evaluate(model: nn.Module, backend: Backend, cfg: TrainConfig, epoch: int) -> dict[str, Any]:
        subset = {"max_seeds": cfg.max_eval_seeds, "subset_seed": cfg.seed, "trim": cfg.trim}
        val = evaluate(model, backend, "val", seed=mix_seeds(cfg.seed, epoch, 2), **subset)
        test = evaluate(model, backend, "test", seed=mix_seeds(cfg.seed, epoch, 3), **subset)
        return {f"{split}_{key}": value for split, values in (("val", val), ("test", test)) for key, value in values.items()}
