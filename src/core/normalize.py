"""Feature preprocessing applied the same way on every backend: ``--normalize_features``.

Why here: raw count features (coauthor_phy: values 1..105) cost GraphSAGE 4-5 points against
the published figure, which row-normalised features reach; PyG users reach for
``T.NormalizeFeatures()`` without thinking. Every backend applies the :class:`FeatureNormalizer`
to each batch's ``x`` right after its rows are fetched or gathered (src/backends/base.py), so
all of them feed the model the same numbers.

- ``row_l1``: exactly ``torch_geometric.transforms.NormalizeFeatures``: shift by the dataset's
  global minimum, divide each row by its sum clamped at 1. A batch needs that minimum, so it
  comes from the dataset's :class:`FeatureStats`; rows stay sparse when the minimum is 0.
- ``row_l2``: each row divided by its L2 norm (``torch.nn.functional.normalize``); sparse stays sparse.
- ``standard``: ``(x - mean) / std`` per column over all nodes (population std, 1 where 0); dense.

:class:`FeatureStats` is computed once from the source (chunked, never all rows at once) by the
loaders, which store it with the dataset record, and by the in-memory backends from the rows
they hold; database trainers never read every row to get it.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

from src.core.errors import UsageError, UserError
from src.core.feature_stats import FeatureStats

log = logging.getLogger(__name__)

MODES = ("none", "row_l1", "row_l2", "standard")
CHOICES = (*MODES, "auto")


class FeatureNormalizer:
    """``x -> normalised x`` for one mode; dense stays dense, sparse COO stays sparse where the mode allows."""

    def __init__(self, mode: str, stats: FeatureStats | None) -> None:
        if mode not in MODES:
            raise UsageError(f"unknown feature normalisation {mode!r}; use one of {', '.join(CHOICES)}")
        self.mode = mode
        self.minimum = None if stats is None else torch.tensor(stats.minimum, dtype=torch.float32)
        self.mean = self.std = None
        if mode == "standard" and stats is not None:
            self.mean = torch.from_numpy(stats.mean.astype(np.float32))
            self.std = torch.from_numpy(np.where(stats.std > 0, stats.std, 1.0).astype(np.float32))

    def __call__(self, x: Tensor) -> Tensor:
        if self.mode == "none" or x.numel() == 0:
            return x
        if self.mode == "row_l1":
            if x.is_sparse and float(self.minimum) == 0.0:
                return _scale_rows(x, torch.sparse.sum(x, dim=1).to_dense().clamp(min=1.0))
            x = (x.to_dense() if x.is_sparse else x) - self.minimum
            return x / x.sum(dim=-1, keepdim=True).clamp(min=1.0)
        if self.mode == "row_l2":
            if x.is_sparse:
                norms = torch.sparse.sum(x * x, dim=1).to_dense().sqrt().clamp(min=1e-12)
                return _scale_rows(x, norms)
            return torch.nn.functional.normalize(x, p=2.0, dim=-1)
        x = x.to_dense() if x.is_sparse else x
        return (x - self.mean) / self.std


def _scale_rows(x: Tensor, divisors: Tensor) -> Tensor:
    """Sparse COO ``x`` with every value divided by its row's divisor (the pattern unchanged)."""
    x = x.coalesce()
    rows = x.indices()[0]
    return torch.sparse_coo_tensor(x.indices(), x.values() / divisors[rows], x.shape, is_coalesced=True,
                                   check_invariants=False)


def resolve(requested: str, stats: FeatureStats | None, dataset: str, fix: str) -> FeatureNormalizer:
    """The normaliser ``--normalize_features requested`` means for ``dataset``; ``fix`` says how to get
    missing statistics (a UserError names it). ``auto`` takes the dataset's recommendation and says so."""
    if requested not in CHOICES:
        raise UsageError(f"unknown --normalize_features {requested!r}; use one of {', '.join(CHOICES)}")
    mode = requested
    if requested == "auto":
        mode = stats.recommended if stats is not None else "none"
        why = ("no feature statistics stored" if stats is None else
               "features are raw counts" if stats.raw_counts else "features are not raw counts")
        log.info("--normalize_features auto: %s for %s (%s)", mode, dataset, why)
    if mode in ("row_l1", "standard") and stats is None:
        raise UserError(f"--normalize_features {mode} needs the feature statistics of {dataset!r}, which it has "
                        f"none of; {fix}")
    return FeatureNormalizer(mode, stats)
