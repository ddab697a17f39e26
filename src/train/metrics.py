"""The metrics researchers report for node classification, computed over every rank's predictions.

* ``accuracy`` and macro-F1 (``f1``) from per-class counts (true positives, predicted, actual), which
  sum over ranks exactly; macro-F1 averages over the classes that occur in the labels or the
  predictions, as scikit-learn's ``f1_score(average="macro")`` does.
* ``roc_auc`` for binary targets (tolokers, minesweeper, questions are published with it): the
  rank statistic over the positive-class probabilities of all ranks (ties count one half), as
  scikit-learn's ``roc_auc_score``.

``--metric`` selects the one that picks the best epoch and drives ``--patience``; ``auto`` takes
the dataset's default (its record's ``metric``, else ``roc_auc`` for two classes, else accuracy).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor

from src.core.errors import UsageError
from src.core.record import METRICS, default_metric
from src.train import distributed

CHOICES = ("auto",) + METRICS
SHORT = {"accuracy": "acc", "f1": "f1", "roc_auc": "auc"}  # log keys: val_acc, test_f1, val_auc


def resolve_metric(requested: str, num_classes: int, recorded: str | None = None) -> str:
    """``--metric`` with ``auto`` resolved; ROC-AUC needs a binary target (one-line error otherwise)."""
    metric = default_metric(num_classes, recorded) if requested == "auto" else requested
    if metric == "roc_auc" and num_classes != 2:
        raise UsageError(f"--metric roc_auc needs a binary target, this dataset has {num_classes} classes: "
                         "use --metric accuracy or f1")
    return metric


@dataclass
class MetricAccumulator:
    """Per-class counts (and, for binary targets, positive scores) of one rank's predictions."""

    num_classes: int
    tp: Tensor = field(init=False)
    predicted: Tensor = field(init=False)
    actual: Tensor = field(init=False)
    scores: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tp, self.predicted, self.actual = (torch.zeros(self.num_classes, dtype=torch.float64) for _ in range(3))

    def add(self, logits: Tensor, target: Tensor) -> None:
        pred = logits.argmax(dim=-1)
        self.tp += torch.bincount(target[pred == target], minlength=self.num_classes).double()
        self.predicted += torch.bincount(pred, minlength=self.num_classes).double()
        self.actual += torch.bincount(target, minlength=self.num_classes).double()
        if self.num_classes == 2:
            self.scores.append(torch.softmax(logits.detach().float(), dim=-1)[:, 1].numpy())
            self.labels.append(target.numpy())

    def reduce(self) -> dict[str, float | None]:
        """``{"acc", "f1", "auc"}`` over all ranks (auc None unless binary) (a collective: every rank calls it); None without nodes."""
        counts = distributed.all_reduce_sum(torch.stack([self.tp, self.predicted, self.actual]))
        tp, predicted, actual = counts.numpy()
        total = actual.sum()
        out: dict[str, float | None] = {"acc": None, "f1": None, "auc": None}
        if total > 0:
            out["acc"] = float(tp.sum() / total)
            present = (predicted + actual) > 0
            out["f1"] = float(np.mean(2 * tp[present] / (predicted[present] + actual[present])))
        if self.num_classes == 2:
            mine = (np.concatenate(self.scores) if self.scores else np.empty(0, np.float32),
                    np.concatenate(self.labels) if self.labels else np.empty(0, np.int64))
            parts = distributed.all_gather_objects(mine)
            out["auc"] = roc_auc(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        return out


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); None if one class is missing."""
    positive = labels == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
