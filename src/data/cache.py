"""On-disk ``.npy`` caches of generated and converted graphs (synthetic, OGB), shared by ranks.

Why a module of its own: the synthetic generator and the OGB converter are expensive (minutes to
hours at scale), so both write their arrays once into a cache folder that later runs memory-map.
A cache folder is valid only once its ``meta.json`` exists (written last, atomically) and records
the parameters it was built from, so an interrupted or outdated build is detected and redone; a
file lock keeps concurrent ranks from building the same cache twice.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from src.core.errors import one_line
from src.core.paths import DATA_DIR
from src.data import synthetic
from src.data.graph import GraphDataset

log = logging.getLogger(__name__)

DEFAULT_DATA_ROOT = DATA_DIR / "datasets"
CACHE_FORMAT = 1


def data_root(root: str | os.PathLike | None) -> Path:
    """``root``, or ``<repo>/data/datasets`` when None: where the caches live."""
    return Path(root).expanduser() if root is not None else DEFAULT_DATA_ROOT


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Exclusive inter-process lock, so parallel ranks build a cache once and then share it."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process building %s", lock_path.with_suffix(""))
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:  # zero-size arrays cannot be memory-mapped
        return np.load(path, allow_pickle=False)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _read_cache(cache_dir: Path, expect: Mapping[str, Any]) -> GraphDataset | None:
    """The cached dataset if ``meta.json`` exists, matches ``expect`` and the arrays fit; else None."""
    try:
        meta = json.loads((cache_dir / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("cache_format") != CACHE_FORMAT or meta.get("params") != _jsonable(expect):
        return None
    try:
        ds = _open_cache_arrays(cache_dir, meta)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("cache %s is damaged (%s); rebuilding it", cache_dir, one_line(exc))
        return None
    if (ds.num_edges, ds.num_classes) != (meta.get("num_edges"), meta.get("num_classes")):
        return None
    ds._fingerprint = meta.get("fingerprint")
    return ds


def _open_cache_arrays(cache_dir: Path, meta: dict[str, Any]) -> GraphDataset:
    arrays = {k: _load_array(cache_dir / f"{k}.npy") for k in synthetic.ARRAY_NAMES}
    expected = {"edge_index": np.int64, "x": np.float32, "y": np.int64}
    for k, arr in arrays.items():
        if arr.dtype != np.dtype(expected.get(k, np.int64)):
            raise ValueError(f"{k}.npy has dtype {arr.dtype}")
    x = arrays["x"]
    return GraphDataset(
        name=meta["name"],
        num_nodes=int(x.shape[0]),
        num_features=int(x.shape[1]),
        num_classes=int(meta["num_classes"]),
        meta=meta,
        **arrays,
    )


def _finish_cache(cache_dir: Path, meta: dict[str, Any]) -> GraphDataset:
    """Open the freshly written arrays, fingerprint them, then write ``meta.json`` (last, atomically)."""
    meta = {"cache_format": CACHE_FORMAT, **meta}
    ds = _open_cache_arrays(cache_dir, meta)
    meta.update(num_nodes=ds.num_nodes, num_edges=ds.num_edges, num_features=ds.num_features,
                fingerprint=ds.fingerprint())
    tmp = cache_dir / "meta.json.tmp"
    tmp.write_text(json.dumps(_jsonable(meta), indent=1, sort_keys=True))
    os.replace(tmp, cache_dir / "meta.json")
    ds.meta = _jsonable(meta)
    return ds


def build_cache(
    cache_dir: Path, expect: Mapping[str, Any], build: Callable[[Path], dict[str, Any]]
) -> GraphDataset:
    """Return the valid cache in ``cache_dir`` or (under a lock) rebuild it with ``build(dir) -> meta``."""
    ds = _read_cache(cache_dir, expect)
    if ds is not None:
        return ds
    made = [p for p in reversed(cache_dir.parents) if not p.exists()]  # removed again if the build fails
    lock_path = cache_dir.parent / f"{cache_dir.name}.lock"
    with _locked(lock_path):
        ds = _read_cache(cache_dir, expect)  # another process may have built it meanwhile
        if ds is not None:
            return ds
        if cache_dir.exists():
            log.warning("%s is incomplete or outdated; rebuilding it", cache_dir)
            shutil.rmtree(cache_dir)
        cache_dir.mkdir(parents=True)
        try:
            meta = build(cache_dir)
            return _finish_cache(cache_dir, {**meta, "params": _jsonable(expect)})
        except BaseException:
            # nothing half-written: a failed build (offline download, Ctrl-C) leaves no folder or lock
            shutil.rmtree(cache_dir, ignore_errors=True)
            lock_path.unlink(missing_ok=True)
            for folder in reversed(made):
                with suppress(OSError):
                    folder.rmdir()  # only if still empty
            raise
