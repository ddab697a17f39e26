"""A sequential ``.npy`` writer for arrays generated in blocks (the synthetic generators' output)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO

import numpy as np


class NpyWriter:
    """Sequentially writes a C-ordered ``.npy`` file whose shape is known up front.

    Plain file writes instead of a writable memmap, so written pages do not count towards the
    process RSS.
    """

    def __init__(self, path: Path, dtype: str, shape: tuple[int, ...]) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.expected = int(np.prod(shape, dtype=np.int64))
        self.written = 0
        self.fh: BinaryIO = open(path, "wb")
        np.lib.format.write_array_header_1_0(
            self.fh, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        )

    def write(self, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        self.fh.write(memoryview(arr).cast("B"))
        self.written += arr.size

    def copy_from(self, raw: Path) -> None:
        """Append the raw contents of ``raw`` (same dtype), streamed with a bounded buffer."""
        with open(raw, "rb") as src:
            shutil.copyfileobj(src, self.fh, 16 << 20)
        self.written += os.path.getsize(raw) // self.dtype.itemsize

    def close(self) -> None:
        self.fh.close()
        if self.written != self.expected:
            raise RuntimeError(f"{self.path}: wrote {self.written} items, expected {self.expected}")

    def __enter__(self) -> "NpyWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.fh.close()
