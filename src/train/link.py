"""``--task link`` in the one training loop: what differs from node classification, and nothing else.

The loop (src/train/loop.py) asks a task for the items it shards per epoch, a loader over a shard,
the loss of a batch, the model and the evaluation. For link prediction (PyG's ``LinkLoader``
protocol over every backend's sampler, src/core/link_sampling.py):
- items: the training pairs of the stored (Neo4j) or computed (in-memory) edge split; the backend
  samples only its training graph from then on (validation and test pairs are never
  message-passing edges, src/core/edge_split.py);
- loss: binary cross-entropy of the decoder's logits (src/train/link_model.py) against
  ``edge_label`` (positives 1, ``--neg_ratio`` negatives per positive 0, uniform or ``--neg_sampling
  degree``);
- evaluation: every rank embeds its share of the nodes the val/test pairs touch (a node-sampled
  pass over the training graph), the embeddings are summed over ranks, and every rank scores the
  same pairs: ROC-AUC and AP against one negative per positive, MRR and Hits@K against the
  ``--eval_negatives`` fixed negatives per positive (src/train/link_metrics.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.sampler import NegativeSampling

from src.backends.base import Backend
from src.core.edge_split import HELD_OUT, EdgeSplit, EdgeSplitSpec, eval_negatives
from src.core.errors import UsageError
from src.core.prefetch import PrefetchLoader
from src.train import distributed
from src.train.checkpoint import mix_seeds
from src.train.config import TrainConfig
from src.train.link_metrics import link_metrics
from src.train.link_model import build_link_model

LINK_KEYS = ("auc", "ap", "mrr", "hits")
SCORE_CHUNK = 65_536  # pairs scored at once in evaluation (bounds the [chunk, H] products to ~64 MiB)


def resolve_link_metric(requested: str) -> str:
    if requested not in ("auto", "roc_auc"):
        raise UsageError(f"--task link selects the best epoch by ROC-AUC (AP, MRR and Hits@K are logged too): "
                         f"use --metric auto or roc_auc, not {requested}")
    return "roc_auc"


@dataclass
class LinkTask:
    """The edge split, the negative sampling of training and the fixed negatives of evaluation."""

    split: EdgeSplit
    neg_sampling: NegativeSampling
    negatives: dict[str, np.ndarray]  # part -> [P, K] fixed negative tails of each positive (u, v)
    hits_k: int

    @classmethod
    def prepare(cls, backend: Backend, cfg: TrainConfig) -> LinkTask:
        spec = EdgeSplitSpec.parse(cfg.edge_split, cfg.edge_split_seed)
        split = backend.use_edge_split(spec)
        weight = backend.training_degrees().double() if cfg.neg_sampling == "degree" else None
        neg = NegativeSampling("binary", cfg.neg_ratio, src_weight=weight, dst_weight=weight)
        negatives = {part: eval_negatives(split.part(part), backend.num_nodes, cfg.eval_negatives,
                                          mix_seeds(spec.seed, i)) for i, part in enumerate(HELD_OUT)}
        return cls(split, neg, negatives, cfg.hits_k)

    # -- what the loop asks of a task ----------------------------------------------------------
    @staticmethod
    def eval_fields() -> dict[str, None]:
        return {f"{split}_{key}": None for split in HELD_OUT for key in LINK_KEYS}

    @property
    def train_items(self) -> Tensor:
        return torch.arange(len(self.split.train))

    def loader(self, backend: Backend, shard: Tensor, seed: int) -> PrefetchLoader:
        return backend.make_link_loader(torch.from_numpy(self.split.train[shard.numpy()]), seed=seed,
                                        neg_sampling=self.neg_sampling, exclude_targets=True)

    @staticmethod
    def build_model(cfg: TrainConfig, identity: dict[str, Any]) -> nn.Module:
        return build_link_model(cfg.model, int(identity["num_features"]), cfg.hidden_channels, cfg.num_layers, cfg.dropout, cfg.heads,
                                cfg.decoder, cfg.trim)

    @staticmethod
    def step(model: nn.Module, batch: Data, trim: bool) -> tuple[Tensor, int, int, int]:
        """(loss, correct, labelled pairs, positive pairs = the step's ``num_seeds``)."""
        logits = model(batch)
        target = batch.edge_label.float()
        loss = F.binary_cross_entropy_with_logits(logits, target)
        correct = int(((logits > 0).float() == target).sum())
        return loss, correct, len(target), int((target == 1).sum())

    def evaluate(self, model: nn.Module, backend: Backend, cfg: TrainConfig, epoch: int) -> dict[str, Any]:
        """``val_*``/``test_*`` of :data:`LINK_KEYS`, identical on every rank (a collective)."""
        inner = getattr(model, "module", model)
        needed = np.unique(np.concatenate([np.concatenate([self.split.part(p).ravel(), self.negatives[p].ravel()])
                                           for p in HELD_OUT]))
        emb = self._embed(inner, backend, needed, cfg, epoch)
        out: dict[str, Any] = {}
        with torch.no_grad():
            for part in HELD_OUT:
                pos, neg = self.split.part(part), self.negatives[part]
                u, v = np.searchsorted(needed, pos[:, 0]), np.searchsorted(needed, pos[:, 1])
                w = np.searchsorted(needed, neg)
                pos_scores = self._score(inner, emb, u, v)
                neg_scores = self._score(inner, emb, np.repeat(u, neg.shape[1]), w.ravel()).reshape(neg.shape)
                values = link_metrics(pos_scores, neg_scores, self.hits_k)
                out.update({f"{part}_{key}": value for key, value in values.items()})
        inner.train()
        return out

    @staticmethod
    def _embed(inner: nn.Module, backend: Backend, needed: np.ndarray, cfg: TrainConfig, epoch: int) -> Tensor:
        """Embeddings of ``needed`` nodes: this rank computes every world-th one, the sum over ranks holds all."""
        rank, world = distributed.rank(), distributed.world_size()
        mine = needed[rank::world]
        emb = torch.zeros(len(needed), cfg.hidden_channels)
        inner.eval()
        with torch.no_grad():
            for batch in backend.make_loader(torch.from_numpy(mine), shuffle=False, seed=mix_seeds(cfg.seed, epoch, 2)):
                bs = int(batch.batch_size)
                emb[torch.from_numpy(np.searchsorted(needed, batch.n_id[:bs].numpy()))] = inner.embed(batch)
        return distributed.all_reduce_sum(emb)

    @staticmethod
    def _score(inner: nn.Module, emb: Tensor, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        parts = [inner.decoder(emb[torch.from_numpy(src[i:i + SCORE_CHUNK])], emb[torch.from_numpy(dst[i:i + SCORE_CHUNK])])
                 for i in range(0, len(src), SCORE_CHUNK)]
        return torch.cat(parts).numpy() if parts else np.zeros(0, np.float32)
