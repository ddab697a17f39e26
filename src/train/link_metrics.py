"""The metrics link prediction is reported with, from the scores of positive pairs and their negatives.

* ``auc`` (ROC-AUC) and ``ap`` (average precision) of each positive against one negative (the
  first of its fixed negatives): the GAE protocol (Kipf & Welling 2016), 1:1 positives/negatives.
* ``mrr`` and ``hits`` (Hits@K) of each positive ranked against its K fixed negatives (OGB's
  ranking protocol): rank = 1 + #negatives scoring higher (+ half the ties).
"""
from __future__ import annotations

import numpy as np

from src.train.metrics import roc_auc


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean of the precision at each positive, positives ranked by score (as scikit-learn's, ties aside)."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order] == 1
    if not hits.any():
        return None
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def link_metrics(pos: np.ndarray, neg: np.ndarray, hits_k: int) -> dict[str, float | None]:
    """``pos`` [P] scores of the positives, ``neg`` [P, K] of their negatives."""
    if len(pos) == 0:
        return {"auc": None, "ap": None, "mrr": None, "hits": None}
    scores = np.concatenate([pos, neg[:, 0]])
    labels = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(pos), np.int64)])
    rank = 1 + (neg > pos[:, None]).sum(1) + 0.5 * (neg == pos[:, None]).sum(1)
    return {"auc": roc_auc(scores, labels), "ap": average_precision(scores, labels),
            "mrr": float((1.0 / rank).mean()), "hits": float((rank <= hits_k).mean())}
