"""Compressed dense feature rows: float16, bfloat16 and 8-bit codes with a per-column scale and offset.

Why: a batch's feature rows are most of the bytes a fetch moves over Bolt (amazon_cs: 12k rows of
767 float32, 37 MB per batch), so halving or quartering a row shortens the fetch the trainer waits
for. Rows are stored narrow and decoded to float32 in the trainer (``decode_lossy``), the same bits
on every reader; src/core/codecs.py's ``encode_rows``/``decode_rows`` dispatch here, so they stay
the one place that encodes and the one that decodes.

* ``float16-le``: IEEE half, round to nearest even (numpy's cast); finite values beyond 65504
  do not fit and are refused (they would be stored as infinities). Decoded by torch's cast (numpy's
  half -> float32 is slower; the same bits for every value encoding produces: only a signalling
  NaN, which the encoder never writes, comes back quietened).
* ``bfloat16-le``: the upper 16 bits of the float32, rounded to nearest even (NaN stays NaN);
  float32's range, 8 bits of mantissa.
* ``uint8-affine``: ``x = offset[c] + scale[c] * q`` with ``q`` in 0..255, ``offset`` the column's
  minimum and ``scale`` its range / 255 (:class:`ColumnAffine`, stored with the dataset record);
  decoded in float32 as ``q * scale + offset``. A constant column decodes exactly. Non-finite
  values do not fit. One outlier stretches its column's range, so the error is measured on a
  sample before loading (:func:`relative_error`).
"""
from __future__ import annotations

from dataclasses import dataclass
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

FLOAT16 = "float16-le"  # F little-endian IEEE half floats, 2*F bytes per node
BFLOAT16 = "bfloat16-le"  # F little-endian bfloat16 (upper half of a float32), 2*F bytes per node
UINT8_AFFINE = "uint8-affine"  # F uint8 codes, F bytes per node; per-column scale and offset in the record

LOSSY_ENCODINGS = (FLOAT16, BFLOAT16, UINT8_AFFINE)
BYTES_PER_VALUE = {FLOAT16: 2, BFLOAT16: 2, UINT8_AFFINE: 1}
FLOAT16_MAX = 65504.0
LEVELS = 255  # uint8 codes 0..255


@dataclass(frozen=True, eq=False)
class ColumnAffine:
    """Per-column ``scale`` and ``offset`` (float32 ``[F]``) of ``uint8-affine`` rows."""

    scale: np.ndarray
    offset: np.ndarray

    def to_bytes(self) -> bytes:
        """One ``bytes`` record property: F float32 scales then F float32 offsets, little-endian."""
        return np.asarray(self.scale, "<f4").tobytes() + np.asarray(self.offset, "<f4").tobytes()

    @classmethod
    def from_bytes(cls, raw: bytes, num_features: int) -> ColumnAffine:
        if len(raw) != 8 * num_features:
            raise ValueError(f"the record's quantisation holds {len(raw)} bytes, expected {8 * num_features} "
                             f"(scale and offset of {num_features} columns)")
        v = np.frombuffer(raw, dtype="<f4")
        return cls(scale=v[:num_features].astype(np.float32), offset=v[num_features:].astype(np.float32))

    @classmethod
    def fit(cls, x: Any, chunk_rows: int = 65_536) -> ColumnAffine:
        """Offset = column minimum, scale = column range / 255, from all rows of ``x`` in chunks
        (ndarray, memmap or scipy sparse: an implicit zero counts); non-finite values are a ValueError."""
        lo, hi, finite = column_range(x, chunk_rows)
        if not finite:
            raise ValueError("the features hold NaN or infinite values, which 8-bit codes cannot store")
        return cls.from_range(lo, hi)

    @classmethod
    def from_range(cls, lo: np.ndarray, hi: np.ndarray) -> ColumnAffine:
        """Offset ``lo``, scale ``(hi - lo) / 255`` (float32) of columns ranging over ``[lo, hi]``."""
        scale = ((hi.astype(np.float64) - lo) / LEVELS).astype(np.float32)
        return cls(scale=scale, offset=np.asarray(lo, np.float32))


def column_range(x: Any, chunk_rows: int = 65_536) -> tuple[np.ndarray, np.ndarray, bool]:
    """Column minima and maxima of the finite values of ``x`` (float32 ``[F]`` each; zeros for no rows),
    in chunks of rows, and whether every value is finite."""
    n, f = x.shape
    lo, hi, finite = np.full(f, np.inf, np.float32), np.full(f, -np.inf, np.float32), True
    for start in range(0, n, chunk_rows):
        block = _dense(x[start:start + chunk_rows])
        ok = np.isfinite(block)
        if not ok.all():
            finite = False
            block = np.where(ok, block, np.float32(0))
        np.minimum(lo, block.min(axis=0, initial=np.inf), out=lo)
        np.maximum(hi, block.max(axis=0, initial=-np.inf), out=hi)
    if n == 0:
        lo, hi = np.zeros(f, np.float32), np.zeros(f, np.float32)
    return lo, hi, finite


def _dense(x: Any) -> np.ndarray:
    return np.ascontiguousarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)


def encode_lossy(x: Any, encoding: str, quant: ColumnAffine | None = None) -> bytes:
    """Rows of ``x`` (float32 ndarray or scipy sparse) as concatenated ``encoding`` bytes (each row
    ``BYTES_PER_VALUE * F`` bytes). Values that do not fit are a ValueError."""
    dense = _dense(x)
    if encoding == FLOAT16:
        finite = dense[np.isfinite(dense)]
        if finite.size and np.abs(finite).max() > FLOAT16_MAX:
            raise ValueError(f"a feature value ({float(np.abs(finite).max()):.6g}) is beyond float16's "
                             f"{FLOAT16_MAX:g}")
        return dense.astype("<f2").tobytes()
    if encoding == BFLOAT16:
        return _to_bfloat16_bits(dense).tobytes()
    if encoding == UINT8_AFFINE:
        if quant is None:
            raise ValueError("uint8-affine rows need the column scale and offset")
        if not np.isfinite(dense).all():
            raise ValueError("a feature value is NaN or infinite, which 8-bit codes cannot store")
        step = np.where(quant.scale > 0, quant.scale, np.float32(1))
        q = np.rint((dense - quant.offset) / step)
        return np.clip(q, 0, LEVELS).astype(np.uint8).tobytes()
    raise ValueError(f"unknown feature encoding {encoding!r}")


def _to_bfloat16_bits(dense: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even; NaN kept as a quiet NaN."""
    bits = dense.view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
    nan = np.isnan(dense)
    if nan.any():
        rounded[nan] = (bits[nan] >> np.uint32(16)) | np.uint32(0x0040)
    return rounded.astype("<u2")


def decode_lossy(raw: bytes | memoryview, n: int, num_features: int, encoding: str,
                 quant: ColumnAffine | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """``n`` concatenated ``encoding`` rows -> float32 ``[n, F]`` (into ``out``, a float32 ``[n, F]``
    view, when given). The caller checked the row lengths."""
    if out is None:
        out = np.empty((n, num_features), dtype=np.float32)
    if encoding == FLOAT16:
        _half_to_float(np.frombuffer(raw, dtype="<f2").reshape(n, num_features), out)
    elif encoding == BFLOAT16:
        bits = np.frombuffer(raw, dtype="<u2").reshape(n, num_features)
        np.left_shift(bits, 16, out=out.view(np.uint32), dtype=np.uint32)
    elif encoding == UINT8_AFFINE:
        if quant is None:
            raise ValueError("uint8-affine rows need the column scale and offset (the dataset record's feature_quant)")
        if len(quant.scale) != num_features:
            raise ValueError(f"the quantisation has {len(quant.scale)} columns, expected {num_features}")
        q = np.frombuffer(raw, dtype=np.uint8).reshape(n, num_features)
        np.multiply(q, quant.scale, out=out, dtype=np.float32)
        out += quant.offset
    else:
        raise ValueError(f"unknown feature encoding {encoding!r}")
    return out


def _half_to_float(half: np.ndarray, out: np.ndarray) -> None:
    """float16 ``half`` into float32 ``out`` through torch's cast (a read-only buffer is only read).

    torch is imported here: the loaders and the partitioner use these codecs and stay torch-free."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns that ``half`` is not writable
        src = torch.from_numpy(half)
    torch.from_numpy(out).copy_(src)


def relative_error(sample: np.ndarray, encoding: str, quant: ColumnAffine | None = None) -> float:
    """RMS error of encoding then decoding ``sample`` (float32 rows), relative (0: exact; 0.01: 1%).

    Floating formats round each value relative to itself: relative to the RMS of the values. 8-bit
    codes err by a column's step: relative to a typical column's spread, robust to the outliers
    that stretch the range (1.4826 x its median absolute deviation, the std of a normal column; its
    std where that is 0, as in mostly-zero bag-of-words columns)."""
    sample = _dense(sample)
    if sample.size == 0:
        return 0.0
    got = decode_lossy(encode_lossy(sample, encoding, quant), len(sample), sample.shape[1], encoding, quant)
    finite = np.isfinite(sample)
    err = np.sqrt(np.mean(np.square(np.where(finite, got.astype(np.float64) - sample, 0.0))))
    x64 = sample.astype(np.float64)
    if encoding != UINT8_AFFINE:
        scale = np.sqrt(np.mean(np.square(x64[np.isfinite(x64)])))
        return float(err / scale) if scale > 0 else 0.0
    mad = 1.4826 * np.median(np.abs(x64 - np.median(x64, axis=0)), axis=0)
    spread = np.sqrt(np.mean(np.square(np.where(mad > 0, mad, x64.std(axis=0)))))
    return float(err / spread) if spread > 0 else (0.0 if err == 0 else float("inf"))
