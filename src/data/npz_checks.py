"""Checks of a shipped-layout ``.npz`` before and after its arrays are read.

Why a module of its own: a crafted or damaged file must end in one line naming the problem, never
in a MemoryError, a multi-terabyte allocation or a segfault inside scipy. So sizes are checked
from the ``.npy`` headers and the zip directory before any array is read (declared shape against
stored bytes, shapes against each other, the total against the machine's free memory), and the
values scipy and the model trust blindly (CSR indices, edge ids, splits, labels, ``num_classes``)
are checked before they are used. Every check raises ``ValueError`` with the gist; the caller
(:func:`src.data.sources._load_npz`) adds the file and the fix.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import psutil

# members the loader reads; any other member (e.g. train_masks) is never decompressed
KNOWN = ("edge_index", "x", "x_data", "x_indices", "x_indptr", "x_shape", "y", "train_idx", "val_idx",
         "test_idx", "meta")
SPLITS = ("train_idx", "val_idx", "test_idx")
_INTEGER = ("edge_index", "x_indices", "x_indptr", "x_shape", "y", *SPLITS)
MEMORY_SHARE = 0.8  # a file may use at most this share of the memory available when it is read
ROW_SHARE = 1 / 1024  # one dense feature row at most this share: batches densify rows, layer 1 holds F x hidden


class TooLarge(ValueError):
    """The file is consistent but does not fit this machine's memory (not a damaged file)."""


def fmt_bytes(n: float) -> str:
    """``3.6 TiB``: sizes in messages."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def available_memory() -> int:
    """Bytes this process can still allocate without swapping (the machine's available memory)."""
    return int(psutil.virtual_memory().available)


def member_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``name -> (shape, dtype)`` of the members the loader reads, from headers only.

    Each member's declared size must be exactly what the zip directory says it holds: a header
    claiming terabytes over a few bytes, or a few bytes over a gigabyte of zeros (a zip bomb), is
    refused before anything is decompressed beyond the header.
    """
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if key not in KNOWN:
                continue
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
                header = fh.tell()
            if dtype.hasobject:
                raise ValueError(f"{key} holds Python objects (pickles are refused)")
            declared = math.prod(int(s) for s in shape) * dtype.itemsize
            stored = info.file_size - header
            if declared != stored:
                raise ValueError(f"{key} declares shape {tuple(shape)} {dtype} = {fmt_bytes(declared)} "
                                 f"but holds {fmt_bytes(max(stored, 0))}")
            out[key] = (tuple(int(s) for s in shape), dtype)
    return out


def check_headers(headers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """Shapes and dtypes agree with each other and the total fits the machine (nothing read yet)."""
    for key in ("y", "edge_index", *SPLITS):
        if key not in headers:
            raise ValueError(f"array {key!r} is missing")
    if "x" not in headers and not all(k in headers for k in ("x_data", "x_indices", "x_indptr", "x_shape")):
        raise ValueError("neither x nor the CSR arrays x_data, x_indices, x_indptr, x_shape are present")
    for key in _INTEGER:
        if key in headers and headers[key][1].kind not in "iu":
            raise ValueError(f"{key} must hold integers, not {headers[key][1]} (e.g. float node ids)")
    for key in ("x", "x_data"):
        if key in headers and headers[key][1].kind not in "fiub":
            raise ValueError(f"{key} must hold numbers, not {headers[key][1]}")
    shape = {k: v[0] for k, v in headers.items()}
    if "x_shape" in shape and shape["x_shape"] != (2,):
        raise ValueError(f"x_shape must hold two numbers (rows, columns), got shape {shape['x_shape']}")
    if len(shape["y"]) != 1:
        raise ValueError(f"y must be one-dimensional, got shape {shape['y']}")
    n = shape["y"][0]
    if len(shape["edge_index"]) != 2 or shape["edge_index"][0] != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {shape['edge_index']}")
    if "x" in shape and len(shape["x"]) != 2:
        raise ValueError(f"x must be two-dimensional [N, F], got shape {shape['x']}")
    if "x" not in shape and len(shape["x_indptr"]) != 1:
        raise ValueError(f"x_indptr must be one-dimensional, got shape {shape['x_indptr']}")
    rows = shape["x"][0] if "x" in shape else shape["x_indptr"][0] - 1
    if rows != n:
        raise ValueError(f"y has {n} labels but x has {rows} rows: one label per node (-1 = unlabelled)")
    if "x_data" in shape and shape["x_data"] != shape["x_indices"]:
        raise ValueError(f"x_data {shape['x_data']} and x_indices {shape['x_indices']} differ in length")
    for key in SPLITS:
        if len(shape[key]) != 1 or shape[key][0] > n:
            raise ValueError(f"{key} must list at most the {n} nodes, got shape {shape[key]}")
    need = sum(math.prod(s) * headers[k][1].itemsize for k, s in shape.items())
    free = available_memory()
    if need > MEMORY_SHARE * free:
        raise TooLarge(f"its arrays need {fmt_bytes(need)} in memory but {fmt_bytes(free)} are available")


def check_feature_columns(num_features: int, num_rows: int) -> None:
    """A declared feature width the machine cannot hold as dense rows (and layer-1 weights)."""
    if num_features < 0 or num_rows < 0:
        raise ValueError(f"x_shape ({num_rows}, {num_features}) has a negative entry")
    if num_features > np.iinfo(np.int32).max:
        raise ValueError(f"x_shape declares {num_features} feature columns; sparse columns are int32 "
                         f"(at most {np.iinfo(np.int32).max})")
    row = 4 * num_features
    free = available_memory()
    if row > ROW_SHARE * free:
        raise ValueError(f"x_shape declares {num_features} feature columns: one dense row takes {fmt_bytes(row)}, "
                         f"too much for the {fmt_bytes(free)} available (batches densify rows)")


def check_csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> None:
    """CSR arrays scipy can use safely: scipy trusts them and reads out of bounds otherwise."""
    n, f = shape
    if indptr.shape != (n + 1,):
        raise ValueError(f"x_indptr has {indptr.size} entries, expected {n + 1} (rows + 1)")
    if indptr[0] != 0 or indptr[-1] != indices.size or (np.diff(indptr) < 0).any():
        raise ValueError(f"x_indptr must rise from 0 to {indices.size} (the number of stored values)")
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= f):
        bad = int(np.count_nonzero((indices < 0) | (indices >= f)))
        raise ValueError(f"x_indices has {bad} column index(es) outside 0..{f - 1} (x_shape has {f} columns)")


def check_splits(splits: dict[str, np.ndarray], n: int) -> None:
    """Split ids in range (that the splits are disjoint, src/data/integrity.py checks before)."""
    for key, idx in splits.items():
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
            bad = int(np.count_nonzero((idx < 0) | (idx >= n)))
            raise ValueError(f"{key} has {bad} node id(s) outside 0..{n - 1}")


def check_labels(y: np.ndarray, splits: dict[str, np.ndarray], meta: dict[str, Any]) -> int:
    """``num_classes`` (meta or max label + 1), checked against the labels of the split nodes."""
    n = int(y.shape[0])
    if y.size and int(y.min()) < -1:
        bad = int(np.count_nonzero(y < -1))
        raise ValueError(f"y has {bad} label(s) below -1 (e.g. {int(y.min())}); labels are 0..C-1, -1 = unlabelled")
    labelled = y[y >= 0]
    top = int(labelled.max()) + 1 if labelled.size else 0
    declared = meta.get("num_classes")
    if declared is None:
        num_classes = top
    elif not isinstance(declared, int) or isinstance(declared, bool) or not 1 <= declared <= max(n, 1):
        raise ValueError(f"meta num_classes is {declared!r}; it must be an integer in 1..{n} (the number of nodes)")
    else:
        num_classes = declared
    if top > num_classes:
        bad = int(np.count_nonzero(labelled >= num_classes))
        raise ValueError(f"y has {bad} label(s) >= num_classes {num_classes} (e.g. {top - 1})")
    for key, idx in splits.items():
        unlabelled = int(np.count_nonzero(y[idx] < 0))
        if unlabelled:
            raise ValueError(f"{unlabelled} node(s) of {key} are unlabelled (y = -1); split nodes need a label")
    return num_classes
