"""Crafted ``.npz`` datasets (issue 24 items 3, 11, 12, 15): one line, exit 1, nothing written.

Every file is cora's real arrays with one thing made hostile: a CSR column index beyond
``x_shape`` (scipy's ``toarray`` segfaulted on it), headers declaring 3.6 TiB or 60 GiB over a few
megabytes, a zip bomb (1.5 GB of zeros in 1.5 MB), 2^40 CSR columns, labels 99 and -7 in the train
split, ``num_classes`` 10^9 and -3, float edge ids, a train/test overlap and a short ``y``. Each is
given to the in-memory trainer (a real process for the cases that crashed or allocated, in-process
for the rest) and to the loader for the segfault case; the error line, exit code and time are
printed as the issue's table rows.
"""
from __future__ import annotations

import io
import json
import os
import runpy
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from src.core.errors import UserError
from src.data.sources import load_dataset

REPO = Path(__file__).resolve().parent.parent
CORA = REPO / "src" / "data" / "shipped" / "cora.npz"  # the same bytes as ../shared/datasets/cora.npz
TRAIN = "in-memory-alternative.py"
SMALL = ["--fanouts", "2,2", "--num_layers", "2", "--hidden_channels", "16", "--batch_size", "64",
         "--epochs", "1", "--num_loader_threads", "0", "--full_graph"]


def cora_arrays() -> dict[str, np.ndarray]:
    with np.load(CORA, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def as_csr(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """cora with x as the CSR arrays of the shipped layout (as coauthor_phy stores it)."""
    x = arrays.pop("x")
    rows, cols = np.nonzero(x)
    indptr = np.zeros(x.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=x.shape[0]), out=indptr[1:])
    return {**arrays, "x_data": x[rows, cols], "x_indices": cols.astype(np.int32), "x_indptr": indptr,
            "x_shape": np.array(x.shape, np.int64)}


def npy(array: np.ndarray, shape: tuple[int, ...] | None = None) -> bytes:
    """``array`` as .npy bytes, optionally under a header declaring another ``shape``."""
    out = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
              "shape": tuple(array.shape if shape is None else shape)}
    np.lib.format.write_array_header_1_0(out, header)
    out.write(np.ascontiguousarray(array).tobytes())
    return out.getvalue()


def write_npz(path: Path, arrays: dict[str, np.ndarray], raw: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            if key not in (raw or {}):
                zf.writestr(f"{key}.npy", npy(value))
        for key, data in (raw or {}).items():
            zf.writestr(f"{key}.npy", data)
    return path


def with_meta(arrays: dict[str, np.ndarray], **changes) -> dict[str, np.ndarray]:
    meta = {**json.loads(str(arrays["meta"])), **changes}
    return {**arrays, "meta": np.array(json.dumps(meta))}


def craft(case: str, tmp: Path) -> Path:
    a = cora_arrays()
    train, test = a["train_idx"], a["test_idx"]
    path = tmp / f"{case}.npz"
    if case == "csr-column-outside-x-shape":
        c = as_csr(a)
        c["x_indices"] = c["x_indices"].copy()
        c["x_indices"][100] = 5000  # x_shape has 1433 columns
        return write_npz(path, c)
    if case == "declared-3.6-TiB":
        return write_npz(path, a, {"x": npy(a["x"], (1_000_000, 1_000_000))})
    if case == "declared-60-GiB":
        return write_npz(path, a, {"edge_index": npy(a["edge_index"], (2, 4_026_531_840))})
    if case == "csr-2^40-columns":
        c = as_csr(a)
        return write_npz(path, {**c, "x_shape": np.array([2708, 2**40], np.int64)})
    if case == "csr-2^30-columns":
        c = as_csr(a)
        return write_npz(path, {**c, "x_shape": np.array([2708, 2**30], np.int64)})
    if case in ("label-99-in-train", "label-minus-7-in-train"):
        y = a["y"].copy()
        y[train[:3]] = 99 if case == "label-99-in-train" else -7
        return write_npz(path, {**a, "y": y})
    if case == "num-classes-10^9":
        return write_npz(path, with_meta(a, num_classes=10**9))
    if case == "num-classes-minus-3":
        return write_npz(path, with_meta(a, num_classes=-3))
    if case == "float-edge-ids":
        return write_npz(path, {**a, "edge_index": a["edge_index"].astype(np.float64) + 0.5})
    if case == "train-test-overlap":
        return write_npz(path, {**a, "test_idx": np.concatenate([test, train[:5]])})
    if case == "short-y":
        return write_npz(path, {**a, "y": a["y"][:-10]})
    raise AssertionError(case)


def zip_bomb(path: Path, member: str, arrays: dict[str, np.ndarray], zeros: int = 1_500_000_000) -> Path:
    """cora with one extra/overriding member holding ``zeros`` zero bytes (streamed: ~1.5 MB on disk)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            if key != member:
                zf.writestr(f"{key}.npy", npy(value))
        with zf.open(f"{member}.npy", "w", force_zip64=True) as fh:
            head = npy(np.zeros(0, np.float32), arrays[member].shape if member in arrays else (zeros // 4,))
            fh.write(head)
            chunk = bytes(1 << 24)
            for _ in range(zeros // len(chunk)):
                fh.write(chunk)
    return path


# id, expected phrase in the error line, whether the case crashed/allocated before (real process)
CASES = [
    ("csr-column-outside-x-shape", "x_indices has 1 column index(es) outside 0..1432", True),
    ("declared-3.6-TiB", "x declares shape (1000000, 1000000) float32 = 3.6 TiB but holds 14.8 MiB", True),
    ("declared-60-GiB", "edge_index declares shape (2, 4026531840) int64 = 60.0 GiB but holds 164.9 KiB", True),
    ("csr-2^40-columns", "x_shape declares 1099511627776 feature columns; sparse columns are int32", True),
    ("csr-2^30-columns", "one dense row takes 4.0 GiB", True),
    ("label-99-in-train", "y has 3 label(s) >= num_classes 7 (e.g. 99)", False),
    ("label-minus-7-in-train", "y has 3 label(s) below -1 (e.g. -7)", False),
    ("num-classes-10^9", "meta num_classes is 1000000000; it must be an integer in 1..2708", False),
    ("num-classes-minus-3", "meta num_classes is -3; it must be an integer in 1..2708", False),
    ("float-edge-ids", "edge_index must hold integers, not float64", False),
    ("train-test-overlap", "5 nodes are in both train_idx and test_idx", False),
    ("short-y", "y has 2698 labels but x has 2708 rows", False),
]


def check_one_line(code: int, err: str, expect: str, path: Path, tmp: Path, seconds: float, case: str) -> str:
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert "Traceback" not in err and code == 1, err[-3000:]
    assert len(errors) == 1 and expect in errors[0] and str(path) in errors[0], err[-3000:]
    assert err.strip() == errors[0], err[-3000:]  # nothing but the line
    assert sorted(p.name for p in tmp.iterdir()) == [path.name], "nothing may be written"
    return f"| {case} | {code} | {errors[0].replace(str(path), '<file>')} | {seconds:.1f} s |"


@pytest.mark.parametrize(("case", "expect", "real_process"), CASES, ids=[c[0] for c in CASES])
def test_crafted_npz_is_one_line(case: str, expect: str, real_process: bool, tmp_path: Path, monkeypatch,
                                 capfd) -> None:
    path = craft(case, tmp_path)
    argv = [*SMALL, "--dataset", str(path)]
    t0 = time.monotonic()
    if real_process:
        proc = subprocess.run([sys.executable, str(REPO / TRAIN), *argv], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        code, err = proc.returncode, proc.stderr
    else:
        capfd.readouterr()
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", [TRAIN, *argv])
        with pytest.raises(SystemExit) as exited:
            runpy.run_path(str(REPO / TRAIN), run_name="__main__")
        code, err = exited.value.code, capfd.readouterr().err
    row = check_one_line(code, err, expect, path, tmp_path, time.monotonic() - t0, case)
    with capfd.disabled():
        print(row)


def test_csr_column_outside_x_shape_in_the_loader(tmp_path: Path) -> None:
    """The loader used to segfault in the same scipy call (exit 139); it checks before connecting."""
    path = craft("csr-column-outside-x-shape", tmp_path)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(REPO / "loaders" / "load_into_neo4j.py"), "--dataset", str(path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) == 1 and "x_indices has 1 column index(es) outside 0..1432" in errors[0]
    print(f"| loader csr-column-outside-x-shape | {proc.returncode} | {errors[0]} | "
          f"{time.monotonic() - t0:.1f} s |")


def test_zip_bomb_is_refused_before_decompressing(tmp_path: Path, monkeypatch, capfd) -> None:
    """1.5 GB of zeros under cora's x header: refused from the zip directory, nothing decompressed."""
    path = zip_bomb(tmp_path / "bomb.npz", "x", cora_arrays())
    assert path.stat().st_size < 3_000_000
    t0 = time.monotonic()
    with pytest.raises(UserError, match="holds 1.4 GiB"):
        load_dataset(str(path))
    assert time.monotonic() - t0 < 2.0  # the library call alone: far less than decompressing 1.5 GB
    capfd.readouterr()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [TRAIN, *SMALL, "--dataset", str(path)])
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(REPO / TRAIN), run_name="__main__")
    row = check_one_line(exited.value.code, capfd.readouterr().err,
                         "x declares shape (2708, 1433) float32 = 14.8 MiB but holds 1.4 GiB", path, tmp_path,
                         time.monotonic() - t0, f"zip bomb ({path.stat().st_size / 1e6:.1f} MB file)")
    with capfd.disabled():
        print(row)


def test_unused_bomb_member_is_never_read(tmp_path: Path) -> None:
    """A 1.5 GB extra member nobody uses (like train_masks) is skipped, not decompressed."""
    a = cora_arrays()
    path = zip_bomb(tmp_path / "extra.npz", "junk", a)
    t0 = time.monotonic()
    ds = load_dataset(str(path))
    assert ds.num_nodes == 2708 and time.monotonic() - t0 < 5.0


def sparse_zip64(path: Path, members: dict[str, bytes], big: str, big_header: bytes, hole: int) -> Path:
    """A stored (uncompressed) ZIP64 archive whose member ``big`` is ``big_header`` then ``hole`` zero
    bytes left as a hole: an honest multi-GB member that takes no disk space (its CRC is left 0; no
    reader that refuses it in time gets to the end)."""
    import struct
    import zlib

    central, offset = [], 0
    with open(path, "wb") as fh:
        for name, data in [*members.items(), (big, big_header)]:
            size = len(data) + (hole if name == big else 0)
            crc = 0 if name == big else zlib.crc32(data)
            raw = f"{name}.npy".encode()
            extra = struct.pack("<HHQQ", 1, 16, size, size)
            fh.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                                 len(raw), len(extra)) + raw + extra + data)
            if name == big:
                fh.seek(hole, os.SEEK_CUR)
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF,
                                       0xFFFFFFFF, len(raw), len(extra), 0, 0, 0, 0, offset) + raw + extra)
            offset = fh.tell()
        cd = b"".join(central)
        fh.write(cd)
        end64 = offset + len(cd)
        n = len(central)
        fh.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(cd), offset))
        fh.write(struct.pack("<IIQI", 0x07064B50, 0, end64, 1))
        fh.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(cd), 0xFFFFFFFF, 0))
    return path


def test_arrays_larger_than_the_machine_are_refused_before_allocating(tmp_path: Path, monkeypatch, capfd) -> None:
    """x honestly holds twice the machine's whole memory (a sparse file): refused from the headers."""
    import psutil

    a = cora_arrays()
    free = psutil.virtual_memory().total
    columns = 2 * free // (4 * 2708) + 1
    head = npy(np.zeros(0, np.float32), (2708, columns))
    small = {k: npy(v) for k, v in a.items() if k not in ("x", "meta")}
    path = sparse_zip64(tmp_path / "huge.npz", small, "x", head, 4 * 2708 * columns)
    assert path.stat().st_size > 2 * free and path.stat().st_blocks * 512 < 10_000_000  # a hole, not data
    capfd.readouterr()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [TRAIN, *SMALL, "--dataset", str(path)])
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(REPO / TRAIN), run_name="__main__")
    row = check_one_line(exited.value.code, capfd.readouterr().err, "GiB are available", path, tmp_path,
                         time.monotonic() - t0, "arrays > free memory (sparse ZIP64)")
    assert "is too large for this machine" in row
    assert "its arrays need" in row
    with capfd.disabled():
        print(row)
