"""Checks of a dataset file's arrays that a cast or a model would otherwise hide (issue 24):
float node ids (``astype(int64)`` truncates them silently), a node in two splits (train/test
overlap inflates the test accuracy), and NaN or infinite features (they train to ``loss=nan``).
Each failure is one line with the count and the fix."""
from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Mapping

import numpy as np

from src.core.errors import UserError

ID_KEYS = ("edge_index", "train_idx", "val_idx", "test_idx")
SPLITS = ("train_idx", "val_idx", "test_idx")


def check_npz_arrays(arrays: Mapping[str, np.ndarray], path: Path) -> None:
    """Raise :class:`UserError` for float ids, overlapping splits or non-finite features in ``arrays``."""
    for key in ID_KEYS:
        if key in arrays and arrays[key].size and arrays[key].dtype.kind not in "iu":
            raise UserError(f"dataset file {path}: {key} has dtype {arrays[key].dtype}, but node ids must be integers "
                            "(a cast would truncate them); write it as int64")
    for a, b in combinations([k for k in SPLITS if k in arrays], 2):
        both = np.intersect1d(arrays[a].reshape(-1), arrays[b].reshape(-1))
        if both.size:
            raise UserError(f"dataset file {path}: {both.size} nodes are in both {a} and {b} (e.g. {both[:3].tolist()}); "
                            "a node belongs to one split only: fix the split arrays")
    features = arrays["x"] if "x" in arrays else arrays.get("x_data")
    if features is not None and features.dtype.kind == "f":
        bad = features.size - int(np.count_nonzero(np.isfinite(features)))
        if bad:
            raise UserError(f"dataset file {path}: {bad} feature values are NaN or infinite; training on them gives a "
                            "NaN loss: clean or impute them (e.g. np.nan_to_num) and save the file again")
