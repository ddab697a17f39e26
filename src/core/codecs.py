"""Byte codecs of what the databases store per node: feature rows and packed adjacency.

Formats (README "Storage model"): dense rows are F little-endian float32; sparse rows the
non-zeros as (int32 column, float32 value) pairs; compressed dense rows (``--feature_format
float16|bfloat16|int8``) F half floats, bfloat16 or 8-bit codes with a per-column scale and offset
(src/core/lossy_codecs.py); adjacency the in-neighbour ids as int64. Both loaders write these
bytes (:func:`encode_rows`) and every reader decodes them here (:func:`decode_rows`), bit for bit.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp

from src.core.arrays import put_rows
from src.core.errors import UserError
from src.core.lossy_codecs import (BFLOAT16, BYTES_PER_VALUE, FLOAT16, LOSSY_ENCODINGS, UINT8_AFFINE, ColumnAffine,
                                   decode_lossy, encode_lossy)
from src.core.schema import GraphSchema

# How feature rows ``x`` are stored (the dataset record's ``feature_encoding``).
DENSE = "float32-le"  # F little-endian float32, 4*F bytes per node

SPARSE = "sparse-int32-float32-le"  # (int32 column, float32 value) pairs of the non-zeros, 8 bytes each

FEATURE_ENCODINGS = (DENSE, SPARSE, *LOSSY_ENCODINGS)
# --feature_format names of the encodings (auto picks DENSE or SPARSE by density)
FORMAT_ENCODINGS = {"dense": DENSE, "sparse": SPARSE, "float16": FLOAT16, "bfloat16": BFLOAT16,
                    "int8": UINT8_AFFINE}

# auto stores rows sparse below this fraction of non-zeros: 8 bytes per non-zero instead of 4 per
# column, so 10% is at least 5x smaller (coauthor_phy, 0.4%: ~120x).
SPARSE_MAX_DENSITY = 0.1

DENSITY_SAMPLE = 4096  # rows of a dense matrix inspected to estimate its density


def encode_adjacency(indptr: np.ndarray, indices: np.ndarray) -> list[bytes]:
    """Each node's neighbour ids ``indices[indptr[v]:indptr[v + 1]]`` as packed little-endian int64 bytes."""
    return split_rows(np.ascontiguousarray(indices, dtype="<i8").tobytes(), 8 * np.diff(np.asarray(indptr, np.int64)))

def feature_density(x: Any) -> float:
    """Fraction of non-zero feature values (exact for scipy sparse, from a row sample for dense)."""
    n, f = x.shape
    if n == 0 or f == 0:
        return 1.0
    if sp.issparse(x):
        return x.count_nonzero() / (n * f)
    rows = np.unique(np.linspace(0, n - 1, min(n, DENSITY_SAMPLE)).astype(np.int64))
    sample = np.ascontiguousarray(x[rows], dtype="<f4")
    return np.count_nonzero(sample.view(np.uint32)) / sample.size

def choose_feature_encoding(density: float, requested: str = "auto") -> str:
    """``requested`` (auto, a :data:`FORMAT_ENCODINGS` name or an encoding) -> the encoding; auto by ``density``."""
    if requested == "auto":
        return SPARSE if density < SPARSE_MAX_DENSITY else DENSE
    encoding = FORMAT_ENCODINGS.get(requested, requested)
    if encoding not in FEATURE_ENCODINGS:
        raise ValueError(f"unknown feature encoding {requested!r}; use auto, {', '.join(FORMAT_ENCODINGS)}")
    return encoding

def row_bytes(encoding: str, num_features: int, density: float | None = None) -> int:
    """Expected stored bytes per node: sizes batches of writes and fetches (``density`` None: dense)."""
    if encoding == SPARSE:
        return 8 * max(1, int(np.ceil((1.0 if density is None else density) * num_features)))
    return BYTES_PER_VALUE.get(encoding, 4) * num_features

def encode_rows(x: Any, encoding: str = DENSE, quant: ColumnAffine | None = None) -> tuple[bytes, np.ndarray]:
    """Rows of ``x`` (float32 ndarray or scipy CSR) as concatenated bytes + int64 byte length per row.

    ``quant``: the column scale and offset of ``uint8-affine`` rows (the dataset record's). Compressed
    rows whose values do not fit the encoding (float16 beyond 65504, non-finite 8-bit) are a ValueError.

    Sparse rows list their non-zeros by ascending column; zeros are found on the bit pattern, so
    ``-0.0`` and NaN survive bit for bit. An all-zero row is the single pair ``(0, +0.0)``, never
    an empty array (stored rows keep one format whichever way they were loaded).
    """
    if encoding == DENSE:
        dense = np.ascontiguousarray(x.toarray() if sp.issparse(x) else x, dtype="<f4")
        return dense.tobytes(), np.full(dense.shape[0], 4 * dense.shape[1], dtype=np.int64)
    if encoding in LOSSY_ENCODINGS:
        n, f = x.shape
        return encode_lossy(x, encoding, quant), np.full(n, BYTES_PER_VALUE[encoding] * f, dtype=np.int64)
    if encoding != SPARSE:
        raise ValueError(f"unknown feature encoding {encoding!r}")
    n, f = x.shape
    if sp.issparse(x):
        csr = sp.csr_matrix(x, dtype=np.float32, copy=True)
        csr.sum_duplicates()  # sorted columns, one entry per column (as toarray() would sum them)
        bits = csr.data.view(np.uint32)
        rows = np.repeat(np.arange(n), np.diff(csr.indptr))
        keep = bits != 0  # explicit +0.0 entries are zeros of the dense matrix
        rows, cols, bits = rows[keep], csr.indices[keep].astype(np.int64), bits[keep]
    else:
        dense_bits = np.ascontiguousarray(x, dtype="<f4").view(np.uint32)
        flat = np.flatnonzero(dense_bits)
        rows, cols = np.divmod(flat, f)
        bits = dense_bits.reshape(-1)[flat]
    counts = np.bincount(rows, minlength=n)
    empty = np.flatnonzero(counts == 0)
    if len(empty):  # (0, +0.0) for all-zero rows, merged in row order
        at = np.searchsorted(rows, empty)
        rows, cols = np.insert(rows, at, empty), np.insert(cols, at, 0)
        bits = np.insert(bits, at, np.uint32(0))
        counts[empty] = 1
    pairs = np.empty((len(rows), 2), dtype="<u4")
    pairs[:, 0], pairs[:, 1] = cols, bits
    return pairs.tobytes(), 8 * counts.astype(np.int64)

def split_rows(raw: bytes, lengths: np.ndarray) -> list[bytes]:
    """Concatenated rows back to one ``bytes`` per node (the per-node property values)."""
    ends = np.cumsum(lengths).tolist()
    return [raw[a:b] for a, b in zip([0, *ends[:-1]], ends)]

def encode_features(x: Any, encoding: str = DENSE, quant: ColumnAffine | None = None) -> list[bytes]:
    """Rows of ``x`` as one ``bytes`` value per node in ``encoding`` (see :func:`encode_rows`)."""
    return split_rows(*encode_rows(x, encoding, quant))

@contextlib.contextmanager
def stored_rows_errors(schema: GraphSchema, encoding: str, num_features: int) -> Iterator[None]:
    """Stored ``x`` bytes that do not decode as ``encoding`` rows of ``num_features`` are a one-line
    :class:`UserError` (reload the dataset), whichever reader met them."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise UserError(f"feature property {schema.x_prop!r} of dataset {schema.dataset!r} does not hold "
                        f"{encoding} rows of {num_features} features ({exc}); reload the dataset") from None

def decode_rows(raw: bytes, lengths: np.ndarray, num_features: int, encoding: str = DENSE,
                out: np.ndarray | None = None, at: np.ndarray | slice | None = None,
                quant: ColumnAffine | None = None) -> np.ndarray:
    """Concatenated stored rows with their byte lengths -> dense writable float32 ``[len(lengths), F]``.

    Vectorised: one ``np.frombuffer`` over all rows and, for sparse rows, one scatter. ``out``
    (float32 ``[len(lengths), F]``, C-contiguous) receives the rows instead of a new array: one copy
    less per batch on the feature-fetch path. With ``at`` (row indices, or a slice, of ``out``: one
    row per stored row), row ``i`` goes to ``out[at][i]`` instead, ``out`` being any float32
    ``[m, F]``: rows land straight in their place in a batch. Raises ``ValueError`` when the bytes
    do not fit ``encoding`` and ``num_features``. Compressed rows decode to float32 here
    (src/core/lossy_codecs.py; ``quant``: the record's column scale and offset for ``uint8-affine``).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if out is None:
        if at is not None:
            raise ValueError("at addresses rows of out; pass out too")
        out = np.empty((n, num_features), dtype=np.float32)
    if out.dtype != np.float32 or out.ndim != 2 or out.shape[1] != num_features:
        raise ValueError(f"out is {out.dtype} {out.shape}, expected float32 rows of {num_features} features")
    if at is None:
        at = slice(None)  # all of out
    addressed = len(range(len(out))[at]) if isinstance(at, slice) else len(at)
    if addressed != n:
        raise ValueError(f"out has {addressed} rows addressed for {n} stored rows")
    if encoding == DENSE:
        _check_widths(lengths, 4 * num_features, f"{num_features} float32")
        _put_at(out, at, np.frombuffer(raw, dtype="<f4").reshape(n, num_features))
        return out
    if encoding in LOSSY_ENCODINGS:
        _check_widths(lengths, BYTES_PER_VALUE[encoding] * num_features, f"{num_features} {encoding} values")
        if isinstance(at, slice) and out[at].flags.c_contiguous:
            decode_lossy(raw, n, num_features, encoding, quant, out=out[at])
        else:
            put_rows(out, np.arange(len(out))[at] if isinstance(at, slice) else at,
                     decode_lossy(raw, n, num_features, encoding, quant))
        return out
    if encoding != SPARSE:
        raise ValueError(f"unknown feature encoding {encoding!r}")
    counts, cols, bits = _sparse_pairs(raw, lengths, num_features)
    out[at] = 0
    row_of = np.arange(len(out))[at] if isinstance(at, slice) else at
    out.view(np.uint32)[np.repeat(row_of, counts), cols] = bits  # bit for bit
    return out

def place_rows(raw: bytes, lengths: np.ndarray, num_features: int, encoding: str, out: np.ndarray,
               at: np.ndarray | slice | None = None, quant: ColumnAffine | None = None) -> np.ndarray:
    """Stored rows into ``out`` (at ``at``, as in :func:`decode_rows`): decoded when ``out`` is float32, kept
    as the stored bytes when it is uint8 ``[m, stored width]`` (a compressed batch whose rows are decoded
    when the training step takes it, :func:`decode_stored`: a prefetched batch then holds 1-2 bytes per value,
    not 4)."""
    if out.dtype != np.uint8:
        return decode_rows(raw, lengths, num_features, encoding, out=out, at=at, quant=quant)
    width = stored_width(encoding, num_features)
    lengths = np.asarray(lengths, dtype=np.int64)
    if out.ndim != 2 or out.shape[1] != width:
        raise ValueError(f"out is uint8 {out.shape}, expected stored rows of {width} bytes")
    _check_widths(lengths, width, f"{num_features} {encoding} values")
    _put_at(out, slice(None) if at is None else at, np.frombuffer(raw, dtype=np.uint8).reshape(len(lengths), width))
    return out

def _check_widths(lengths: np.ndarray, width: int, what: str) -> None:
    """Every stored row of a fixed-width encoding holds ``width`` bytes (``what``: what they are), else a ValueError."""
    if len(lengths) and (lengths != width).any():
        bad = int(lengths[lengths != width][0])
        raise ValueError(f"a row holds {bad} bytes, expected {width} ({what})")

def _put_at(out: np.ndarray, at: np.ndarray | slice, rows: np.ndarray) -> None:
    """``out[at] = rows``: a slice assigned, row indices through :func:`put_rows`."""
    if isinstance(at, slice):
        out[at] = rows
    else:
        put_rows(out, at, rows)

def stored_width(encoding: str, num_features: int) -> int:
    """Bytes of one stored row of a fixed-width (compressed) encoding; a ValueError for float32 and sparse rows,
    which are not kept encoded (float32 rows are already decoded, sparse ones are not fixed-width)."""
    if encoding not in LOSSY_ENCODINGS:
        raise ValueError(f"{encoding} rows are not kept encoded in a batch; only {', '.join(LOSSY_ENCODINGS)} are")
    return BYTES_PER_VALUE[encoding] * num_features

def decode_stored(codes: np.ndarray, num_features: int, encoding: str, quant: ColumnAffine | None = None) -> np.ndarray:
    """A batch's stored rows kept by :func:`place_rows` (uint8 ``[n, stored width]``) -> float32 ``[n, F]``,
    bit for bit what :func:`decode_rows` gives for the same rows."""
    codes = np.ascontiguousarray(codes)
    if codes.ndim != 2 or codes.shape[1] != stored_width(encoding, num_features):
        raise ValueError(f"stored rows are {codes.shape}, expected [n, {stored_width(encoding, num_features)}]")
    return decode_lossy(memoryview(codes).cast("B"), len(codes), num_features, encoding, quant)

def decode_rows_csr(raw: bytes, lengths: np.ndarray, num_features: int) -> sp.csr_matrix:
    """Concatenated sparse rows with their byte lengths -> ``scipy.sparse`` CSR ``[len(lengths), F]``.

    Why: densifying bag-of-words rows costs F floats per node (coauthor_phy: 33 KB per row, about
    1 GB per evaluation batch) only for the first layer to sparsify them again; CSR keeps the
    stored pairs as they are. Values are bit for bit those stored (all-zero rows keep their
    explicit ``(0, +0.0)`` entry, which is harmless to every product).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    counts, cols, bits = _sparse_pairs(raw, lengths, num_features)
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return sp.csr_matrix((bits.view(np.float32), cols, indptr), shape=(len(lengths), num_features))

def _sparse_pairs(raw: bytes, lengths: np.ndarray, num_features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked ``(pairs per row, int64 columns, uint32 value bits)`` of concatenated sparse rows."""
    if (lengths % 8).any() or int(lengths.sum()) != len(raw):
        raise ValueError("sparse rows must be whole (int32 column, float32 value) pairs of 8 bytes")
    pairs = np.frombuffer(raw, dtype="<u4").reshape(-1, 2)
    cols = pairs[:, 0].astype(np.int64)
    if len(cols) and cols.max() >= num_features:
        raise ValueError(f"a sparse row has column {int(cols.max())}, beyond {num_features} features")
    return lengths // 8, cols, pairs[:, 1].copy()

def decode_features(rows: list[bytes], num_features: int, encoding: str = DENSE,
                    quant: ColumnAffine | None = None) -> np.ndarray:
    """Stored rows (one ``bytes`` per node) back to a dense float32 ``[len(rows), F]`` array."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    return decode_rows(b"".join(rows), lengths, num_features, encoding, quant=quant)
