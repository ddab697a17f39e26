"""One record type (:class:`GraphDataset`) for every graph source, and :func:`load_dataset`.

Sources:

* shipped real graphs: ``<name>.npz`` in ``root`` (if given), then in the shared folder
  (``$GNN_SHARED_DATASETS``, else ``<repo>/../shared/datasets``; layout described in its
  README.md).  Edges are kept exactly as stored (the files are already symmetric); sparse
  features stay scipy CSR and only the requested rows are densified.
* OGB node-property graphs (``ogbn-arxiv``, ``ogbn-products``, ``ogbn-papers100M``) read by the
  ``ogb`` package (which downloads into ``<root>/ogbn_*`` when online), converted by
  :func:`from_ogb` and cached as ``.npy`` files under ``<root>/ogb_converted/<ogbn_name>/`` so
  later runs memory-map them instead of holding the graph in RAM.
* ``synthetic``: power-law, homophilous graphs of any size generated out of core by
  :mod:`src.data.synthetic`, cached under ``<root>/synthetic/n{N}_d{D}_f{F}_c{C}_s{seed}/``.
  The generated graph's full name ``synthetic_n{N}_d{D}_f{F}_c{C}_s{seed}`` is accepted as a
  name too (that is how training scripts, which have no synthetic flags, pick a size).

``root`` defaults to ``<repo>/data/datasets`` for the OGB and synthetic caches.  A cache
directory is valid only once its ``meta.json`` exists (written last), so an interrupted run is
detected and redone; a file lock keeps concurrent ranks from generating the same cache twice.
"""
from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import re
import shutil
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import scipy.sparse as sp

from src.data import synthetic
from src.core.errors import UsageError, UserError
from src.core.paths import DATA_DIR, REPO_DIR

log = logging.getLogger(__name__)


DEFAULT_DATA_ROOT = DATA_DIR / "datasets"
SHARED_ENV = "GNN_SHARED_DATASETS"
SYNTHETIC = "synthetic"
OGB_DATASETS = ("ogbn-arxiv", "ogbn-products", "ogbn-papers100M")
_OGB_NUM_CLASSES = {"ogbn-arxiv": 40, "ogbn-products": 47, "ogbn-papers100M": 172}
# directed citation graphs: symmetrised like PyG's ToUndirected (products is already symmetric)
_OGB_DIRECTED = frozenset({"ogbn-arxiv", "ogbn-papers100M"})
_OGB_CONVERTER_VERSION = 1
CACHE_FORMAT = 1

SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "num_nodes": 100_000,
    "avg_degree": 20,
    "num_features": 64,
    "num_classes": 10,
    "seed": 0,
}
_SYNTHETIC_EXTRA_OPTIONS = ("progress",)

_HASH_CHUNK = 1 << 22  # elements per hashed chunk (32 MB of int64)
_FINGERPRINT_FEATURE_ROWS = 1024


# --------------------------------------------------------------------------------------------
# the record
# --------------------------------------------------------------------------------------------
@dataclass(eq=False, repr=False)
class GraphDataset:
    """A node-classification graph; arrays may be memmaps so graphs larger than RAM work.

    ``edge_index`` int64 [2, E] (row 0 = source, row 1 = target; undirected graphs hold both
    directions), ``x`` float32 [N, F] (ndarray, memmap or scipy CSR), ``y`` int64 [N]
    (-1 = unlabelled), split index arrays int64, ``meta`` a JSON-serialisable dict.
    """

    name: str
    num_nodes: int
    num_features: int
    num_classes: int
    edge_index: np.ndarray
    x: Any  # np.ndarray | np.memmap | sp.csr_matrix
    y: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    _fingerprint: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # cheap shape checks only: catches malformed sources early with a clear message
        if sp.issparse(self.x) and self.x.format != "csr":
            self.x = sp.csr_matrix(self.x)
        n, f = int(self.num_nodes), int(self.num_features)
        self.num_nodes, self.num_features, self.num_classes = n, f, int(self.num_classes)
        if self.edge_index.ndim != 2 or self.edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {tuple(self.edge_index.shape)}")
        if tuple(self.x.shape) != (n, f):
            raise ValueError(f"x must have shape [{n}, {f}], got {tuple(self.x.shape)}")
        if tuple(self.y.shape) != (n,):
            raise ValueError(f"y must have shape [{n}], got {tuple(self.y.shape)}")
        for split in ("train_idx", "val_idx", "test_idx"):
            if getattr(self, split).ndim != 1:
                raise ValueError(f"{split} must be one-dimensional")

    def __repr__(self) -> str:
        kind = "csr" if sp.issparse(self.x) else type(self.x).__name__
        return (
            f"GraphDataset(name={self.name!r}, num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
            f"num_features={self.num_features}, num_classes={self.num_classes}, x={kind}, "
            f"split={len(self.train_idx)}/{len(self.val_idx)}/{len(self.test_idx)})"
        )

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def features(self, ids: Any) -> np.ndarray:
        """Dense float32 rows ``x[ids]`` (shape [len(ids), F]) for dense, memmapped or CSR x.

        Memmaps are read in sorted order (sequential disk access), CSR rows are densified only
        for the requested ids.
        """
        ids = np.asarray(ids).reshape(-1)
        if ids.size == 0:
            return np.empty((0, self.num_features), dtype=np.float32)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"node ids must be integers, got dtype {ids.dtype}")
        ids = ids.astype(np.int64, copy=False)
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.num_nodes:
            raise IndexError(f"node id out of range [0, {self.num_nodes}): {lo if lo < 0 else hi}")
        x = self.x
        if sp.issparse(x):
            return np.asarray(x[ids].toarray(), dtype=np.float32)
        if isinstance(x, np.memmap) and ids.size > 1:
            order = np.argsort(ids, kind="stable")
            out = np.empty((ids.size, self.num_features), dtype=np.float32)
            out[order] = x[ids[order]]
            return out
        return np.asarray(x[ids], dtype=np.float32)

    def split_codes(self) -> np.ndarray:
        """int8 [N]: 0 train, 1 val, 2 test, -1 in no split (the Neo4j ``split`` property)."""
        codes = np.full(self.num_nodes, -1, dtype=np.int8)
        for code, idx in enumerate((self.train_idx, self.val_idx, self.test_idx)):
            codes[np.asarray(idx)] = code
        return codes

    def iter_node_chunks(self, chunk_size: int) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` node ranges covering 0..N-1, to stream x / y in bounded memory."""
        return _ranges(self.num_nodes, chunk_size)

    def iter_edge_chunks(self, chunk_size: int) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` edge ranges covering 0..E-1; read ``edge_index[:, start:stop]``."""
        return _ranges(self.num_edges, chunk_size)

    def fingerprint(self) -> str:
        """Stable 16-hex-digit digest of the graph's content (cached on the instance).

        Covers N, E, F, C, all of ``edge_index``, ``y`` and the split, and a fixed sample of
        ``_FINGERPRINT_FEATURE_ROWS`` feature rows.  Arrays are hashed in chunks (memmapped pages
        are released after each), so a 10M-node graph never has to be in RAM at once.
        """
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=8, person=b"GraphDataset.v1")
            h.update(json.dumps([self.num_nodes, self.num_edges, self.num_features, self.num_classes]).encode())
            for row in (0, 1):
                for start, stop in self.iter_edge_chunks(_HASH_CHUNK):
                    h.update(_le_bytes(self.edge_index[row, start:stop], "<i8"))
                    _release_pages(self.edge_index)
            for start, stop in self.iter_node_chunks(_HASH_CHUNK):
                h.update(_le_bytes(self.y[start:stop], "<i8"))
            _release_pages(self.y)
            h.update(_le_bytes(self.split_codes(), "i1"))
            for idx in (self.train_idx, self.val_idx, self.test_idx):
                _release_pages(idx)
            ids = _sample_ids(self.num_nodes, _FINGERPRINT_FEATURE_ROWS)
            for start in range(0, ids.size, 64):
                h.update(_le_bytes(self.features(ids[start:start + 64]), "<f4"))
                _release_pages(self.x)  # mmap read-around maps far more than the sampled rows
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def _ranges(total: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    if int(chunk_size) <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    for start in range(0, total, int(chunk_size)):
        yield start, min(start + int(chunk_size), total)


def _le_bytes(arr: np.ndarray, dtype: str) -> memoryview:
    """Platform-independent bytes of ``arr`` (little endian), without copying when possible."""
    return memoryview(np.ascontiguousarray(arr, dtype=np.dtype(dtype))).cast("B")


def _release_pages(arr: Any) -> None:
    """Drop a read-only/shared memmap's pages from this process (they stay in the page cache).

    Why: streaming over a multi-GB memmap otherwise leaves it all counted in our RSS.
    Best effort; private (copy-on-write) mappings are left alone since that would lose writes.
    """
    mm = getattr(arr, "_mmap", None)
    if mm is None or getattr(arr, "mode", None) not in ("r", "r+", "readonly", "readwrite"):
        return
    try:
        mm.madvise(mmap.MADV_DONTNEED)
    except (AttributeError, OSError, ValueError):
        pass


def _sample_ids(n: int, k: int) -> np.ndarray:
    if n <= k:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def to_undirected(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """Add reverse edges, drop self loops and duplicates; sorted by (src, dst) like PyG.

    Same result as ``shared/datasets/load_npz.py:to_undirected``.  Needs ~4 int64 copies of the
    edges in RAM (fine for arxiv; papers100M needs a machine sized for ogb's own loader anyway).
    """
    src = np.asarray(edge_index[0], dtype=np.int64)
    dst = np.asarray(edge_index[1], dtype=np.int64)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    n = np.int64(num_nodes)
    key = synthetic.sorted_unique(np.concatenate([src * n + dst, dst * n + src]))
    return np.stack([key // n, key % n]).astype(np.int64)


# --------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------
def shared_datasets_dir() -> Path:
    """The read-only folder of shipped graphs: ``$GNN_SHARED_DATASETS`` or ``<repo>/../shared/datasets``."""
    env = os.environ.get(SHARED_ENV, "").strip()
    return Path(env).expanduser() if env else REPO_DIR.parent / "shared" / "datasets"


def available_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """Shipped ``.npz`` names (root, then shared folder), then ``synthetic``, then the OGB names."""
    names: set[str] = set()
    for folder in _npz_folders(root):
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.npz") if p.is_file())
    return sorted(names) + [SYNTHETIC, *OGB_DATASETS]


def load_dataset(name: str, root: str | os.PathLike | None = None, **synthetic_options: Any) -> GraphDataset:
    """Load a graph by name (see module docstring); ``synthetic_options`` only for ``synthetic``.

    A path to an ``.npz`` file in the shipped layout is accepted as ``name`` too.
    """
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"dataset name must be a non-empty string; available: {', '.join(available_datasets(root))}")
    key = name.strip()
    low = key.lower()
    if low == SYNTHETIC:
        return _load_synthetic(root, synthetic_options)
    named = synthetic_params_from_name(key)
    if named is not None and not synthetic_options:
        return _load_synthetic(root, named)
    if synthetic_options:
        raise UsageError(
            f"option(s) {', '.join(sorted(synthetic_options))} only apply to the '{SYNTHETIC}' dataset, not {name!r}"
        )
    ogb_name = {n.lower(): n for n in OGB_DATASETS}.get(low.replace("_", "-"))
    if ogb_name is not None:
        return _load_ogb(ogb_name, root)
    if low.endswith(".npz") and Path(key).expanduser().is_file():
        path = Path(key).expanduser()
        return _load_npz(path, path.stem)
    path = _find_npz(key, root)
    if path is None:
        shared = shared_datasets_dir()
        listing = ", ".join(available_datasets(root))
        if not shared.is_dir():
            raise UserError(
                f"unknown dataset {name!r}: the shared dataset folder {shared} does not exist "
                f"(set {SHARED_ENV} or pass a root holding <name>.npz); available: {listing}"
            )
        raise UsageError(f"unknown dataset {name!r}; available: {listing}")
    return _load_npz(path, path.stem)


# --------------------------------------------------------------------------------------------
# shipped .npz graphs
# --------------------------------------------------------------------------------------------
def _npz_folders(root: str | os.PathLike | None) -> list[Path]:
    folders = [Path(root).expanduser()] if root is not None else []
    return folders + [shared_datasets_dir()]


def _find_npz(name: str, root: str | os.PathLike | None) -> Path | None:
    if "/" in name or "\\" in name or name in (".", ".."):
        return None
    candidates = dict.fromkeys([name, name.lower(), name.lower().replace("-", "_")])
    for folder in _npz_folders(root):
        for cand in candidates:
            path = folder / f"{cand}.npz"
            if path.is_file():
                return path
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_npz(path: Path, name: str) -> GraphDataset:
    """Read a shipped-layout ``.npz`` (allow_pickle=False); damaged files raise :class:`UserError`."""
    fix = f"replace it with an intact copy (the originals are in {shared_datasets_dir()}, see README.md there)"
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta"))) if "meta" in arrays else {}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise UserError(f"dataset file {path} is truncated or corrupt ({_one_line(exc)}); {fix}") from exc
    try:
        return _npz_to_dataset(arrays, meta, name, path)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise UserError(f"dataset file {path} is malformed ({_one_line(exc)}); {fix}") from exc


def _npz_to_dataset(arrays: dict[str, np.ndarray], meta: dict[str, Any], name: str, path: Path) -> GraphDataset:
    y = arrays["y"].astype(np.int64, copy=False)
    n = int(y.shape[0])
    if "x" in arrays:
        x: Any = arrays["x"].astype(np.float32, copy=False)
    else:
        shape = tuple(int(s) for s in arrays["x_shape"])
        x = sp.csr_matrix(
            (arrays["x_data"].astype(np.float32, copy=False), arrays["x_indices"], arrays["x_indptr"]), shape=shape
        )
    edge_index = arrays["edge_index"].astype(np.int64, copy=False)
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= n):
        raise ValueError("edge_index refers to nodes outside 0..N-1")
    splits = {k: arrays[k].astype(np.int64, copy=False).reshape(-1) for k in ("train_idx", "val_idx", "test_idx")}
    for k, idx in splits.items():
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"{k} refers to nodes outside 0..N-1")
    labelled = y[y >= 0]
    num_classes = int(meta.get("num_classes") or (int(labelled.max()) + 1 if labelled.size else 0))
    if meta.get("directed"):
        log.warning("%s: stored edges are not symmetric; kept as stored (see the datasets README)", path)
    meta = {**meta, "source": "npz", "path": str(path)}
    ds = GraphDataset(
        name=name,
        num_nodes=n,
        num_features=int(x.shape[1]),
        num_classes=num_classes,
        edge_index=edge_index,
        x=x,
        y=y,
        meta=meta,
        **splits,
    )
    log.info("loaded %s from %s", ds, path)
    return ds


# --------------------------------------------------------------------------------------------
# on-disk .npy caches (synthetic, converted OGB)
# --------------------------------------------------------------------------------------------
def _data_root(root: str | os.PathLike | None) -> Path:
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
        log.warning("cache %s is damaged (%s); rebuilding it", cache_dir, _one_line(exc))
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


def _build_cache(
    cache_dir: Path, expect: Mapping[str, Any], build: Callable[[Path], dict[str, Any]]
) -> GraphDataset:
    """Return the valid cache in ``cache_dir`` or (under a lock) rebuild it with ``build(dir) -> meta``."""
    ds = _read_cache(cache_dir, expect)
    if ds is not None:
        return ds
    with _locked(cache_dir.parent / f"{cache_dir.name}.lock"):
        ds = _read_cache(cache_dir, expect)  # another process may have built it meanwhile
        if ds is not None:
            return ds
        if cache_dir.exists():
            log.warning("%s is incomplete or outdated; rebuilding it", cache_dir)
            shutil.rmtree(cache_dir)
        cache_dir.mkdir(parents=True)
        meta = build(cache_dir)
        return _finish_cache(cache_dir, {**meta, "params": _jsonable(expect)})


# --------------------------------------------------------------------------------------------
# synthetic
# --------------------------------------------------------------------------------------------
def _fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def synthetic_params(**options: Any) -> dict[str, Any]:
    """Validated synthetic parameters (defaults filled in; ``None`` means default)."""
    unknown = set(options) - set(SYNTHETIC_DEFAULTS) - set(_SYNTHETIC_EXTRA_OPTIONS)
    if unknown:
        allowed = ", ".join([*SYNTHETIC_DEFAULTS, *_SYNTHETIC_EXTRA_OPTIONS])
        raise UsageError(f"unknown synthetic option(s) {', '.join(sorted(unknown))}; allowed: {allowed}")
    params = dict(SYNTHETIC_DEFAULTS)
    params.update({k: v for k, v in options.items() if k in SYNTHETIC_DEFAULTS and v is not None})
    for k in ("num_nodes", "num_features", "num_classes", "seed"):
        v = params[k]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise UsageError(f"synthetic option {k} must be an integer, got {v!r}")
        params[k] = int(v)
    d = params["avg_degree"]
    if isinstance(d, bool) or not isinstance(d, (int, float, np.integer, np.floating)) or not np.isfinite(d):
        raise UsageError(f"synthetic option avg_degree must be a number, got {d!r}")
    params["avg_degree"] = int(d) if float(d).is_integer() else float(d)
    n = params["num_nodes"]
    if n < 2:
        raise UsageError(f"synthetic num_nodes must be at least 2, got {n}")
    if not 0 < params["avg_degree"] <= n - 1:
        raise UsageError(f"synthetic avg_degree must be in (0, num_nodes-1], got {params['avg_degree']}")
    if params["num_features"] < 1:
        raise UsageError(f"synthetic num_features must be at least 1, got {params['num_features']}")
    if not 2 <= params["num_classes"] <= min(n, 2**31 - 1):
        raise UsageError(f"synthetic num_classes must be in [2, num_nodes], got {params['num_classes']}")
    if params["seed"] < 0:
        raise UsageError(f"synthetic seed must be non-negative, got {params['seed']}")
    return params


_SYNTHETIC_NAME = re.compile(r"synthetic_n(\d+)_d(\d+(?:\.\d+)?)_f(\d+)_c(\d+)_s(\d+)")


def synthetic_params_from_name(name: str) -> dict[str, Any] | None:
    """Parameters encoded in a generated graph's name ``synthetic_n{N}_d{D}_f{F}_c{C}_s{seed}``.

    None if ``name`` is not such a name.  Inverse of ``f"synthetic_{synthetic_dir_name(p)}"``.
    """
    m = _SYNTHETIC_NAME.fullmatch(name.strip())
    if m is None:
        return None
    n, d, f, c, s = m.groups()
    degree = float(d)
    return {"num_nodes": int(n), "avg_degree": int(degree) if degree.is_integer() else degree,
            "num_features": int(f), "num_classes": int(c), "seed": int(s)}


def synthetic_dir_name(params: Mapping[str, Any]) -> str:
    """``n{N}_d{D}_f{F}_c{C}_s{seed}``: the cache folder, also used in the dataset name."""
    return (
        f"n{params['num_nodes']}_d{_fmt_number(params['avg_degree'])}_f{params['num_features']}"
        f"_c{params['num_classes']}_s{params['seed']}"
    )


def _load_synthetic(root: str | os.PathLike | None, options: dict[str, Any]) -> GraphDataset:
    params = synthetic_params(**options)
    progress = options.get("progress")
    dir_name = synthetic_dir_name(params)
    cache_dir = _data_root(root) / SYNTHETIC / dir_name
    expect = {**params, "generator": synthetic.generator_constants()}

    def build(out: Path) -> dict[str, Any]:
        info = synthetic.generate(out, progress=progress, **params)
        return {
            "name": f"{SYNTHETIC}_{dir_name}",
            "source": SYNTHETIC,
            "num_classes": params["num_classes"],
            "split": "random 60/20/20 train/val/test (per-node uniform draw)",
            "directed": False,
            **info,
        }

    ds = _build_cache(cache_dir, expect, build)
    log.info("synthetic dataset %s (%s)", ds, cache_dir)
    return ds


# --------------------------------------------------------------------------------------------
# OGB
# --------------------------------------------------------------------------------------------
def from_ogb(
    name: str,
    graph: Mapping[str, Any],
    labels: Any,
    split_idx: Mapping[str, Any],
    *,
    undirected: bool | None = None,
) -> GraphDataset:
    """Convert what ``ogb.nodeproppred.NodePropPredDataset`` returns into a :class:`GraphDataset`.

    ``graph`` is OGB's dict (``edge_index`` [2, E], ``node_feat`` [N, F] or None, ``num_nodes``),
    ``labels`` [N, 1] (float with NaN for unlabelled nodes in papers100M), ``split_idx`` the
    ``get_idx_split()`` dict (``train``/``valid``/``test``; numpy or torch).  ``undirected``
    (default: True for the directed citation graphs arxiv and papers100M) adds reverse edges and
    drops self loops/duplicates, like PyG's ``ToUndirected``.
    """
    n = int(graph["num_nodes"])
    source_edges = np.asarray(graph["edge_index"], dtype=np.int64)
    if source_edges.ndim != 2 or source_edges.shape[0] != 2:
        raise ValueError(f"OGB edge_index must be [2, E], got {source_edges.shape}")
    if undirected is None:
        undirected = name in _OGB_DIRECTED
    edge_index = to_undirected(source_edges, n) if undirected else np.ascontiguousarray(source_edges)

    feat = graph.get("node_feat")
    x = np.zeros((n, 0), np.float32) if feat is None else np.ascontiguousarray(feat, dtype=np.float32)

    lab = np.asarray(labels)
    if lab.ndim == 2 and lab.shape[1] != 1:
        raise ValueError(f"multi-task OGB labels ({lab.shape[1]} tasks) are not supported")
    lab = lab.reshape(-1)
    if lab.shape[0] != n:
        raise ValueError(f"OGB labels have {lab.shape[0]} entries for {n} nodes")
    if lab.dtype.kind == "f":
        y = np.where(np.isnan(lab), -1, lab).astype(np.int64)
    else:
        y = lab.astype(np.int64)

    def idx(*keys: str) -> np.ndarray:
        for k in keys:
            if k in split_idx:
                return np.asarray(split_idx[k], dtype=np.int64).reshape(-1)
        raise KeyError(f"OGB split has none of {keys}")

    labelled = y[y >= 0]
    num_classes = _OGB_NUM_CLASSES.get(name, int(labelled.max()) + 1 if labelled.size else 0)
    train, val, test = idx("train"), idx("valid", "val"), idx("test")
    meta = {
        "name": name,
        "source": "ogb",
        "num_classes": num_classes,
        "source_num_edges": int(source_edges.shape[1]),
        "symmetrised": bool(undirected),
        "directed": False if undirected else None,
        "split": "official OGB split",
        "split_sizes": [int(train.size), int(val.size), int(test.size)],
    }
    return GraphDataset(
        name=name,
        num_nodes=n,
        num_features=int(x.shape[1]),
        num_classes=num_classes,
        edge_index=edge_index,
        x=x,
        y=y,
        train_idx=train,
        val_idx=val,
        test_idx=test,
        meta=meta,
    )


def _load_ogb(name: str, root: str | os.PathLike | None) -> GraphDataset:
    base = _data_root(root)
    dir_name = name.replace("-", "_")
    symmetrise = name in _OGB_DIRECTED
    expect = {"ogb_name": name, "symmetrised": symmetrise, "converter": _OGB_CONVERTER_VERSION}

    def build(out: Path) -> dict[str, Any]:
        graph, labels, split = _read_with_ogb(name, base)
        ds = from_ogb(name, graph, labels, split, undirected=symmetrise)
        del graph, labels
        for k in synthetic.ARRAY_NAMES:
            np.save(out / f"{k}.npy", getattr(ds, k))
        return {**ds.meta, "ogb_dir": str(base / dir_name)}

    ds = _build_cache(base / "ogb_converted" / dir_name, expect, build)
    log.info("OGB dataset %s", ds)
    return ds


def _read_with_ogb(name: str, base: Path) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Run ogb's own reader (downloading when online); ogb's failure modes become UserErrors."""
    try:
        import ogb.nodeproppred as ogb_np
        from ogb.nodeproppred import NodePropPredDataset
    except ImportError as exc:
        raise UserError(f"dataset {name} needs the 'ogb' package ({_one_line(exc)}); pip install ogb==1.3.6") from exc
    info = _ogb_master_info(ogb_np, name)
    folder = base / name.replace("-", "_")
    url = info.get("url", "the OGB site")
    where = f"download {url} and unzip it into {base} (giving {folder})"
    release = folder / f"RELEASE_v{info.get('version', 1)}.txt"
    if folder.is_dir() and not release.exists():
        # ogb would stop and ask on stdin whether to delete the folder
        raise UserError(f"{folder} lacks {release.name} (incomplete or outdated OGB download); delete it and retry")
    raw = folder / "raw"
    has_raw = (raw / "edge.csv.gz").exists() or (raw / "data.npz").exists()
    processed = folder / "processed" / "data_processed"
    if processed.exists():
        # a torch pickle that torch>=2.6 refuses to load with weights_only; re-reading the raw files is safe
        if not has_raw:
            raise UserError(f"{processed} cannot be loaded safely and {raw} is missing; delete {folder} and retry")
        log.warning("ignoring %s (unsafe pickle); ogb re-reads %s", processed, raw)
        processed.unlink()
    if has_raw:
        processed.parent.mkdir(exist_ok=True)
    base.mkdir(parents=True, exist_ok=True)
    log.info("reading %s with ogb under %s (downloads when missing)", name, base)
    try:
        dataset = NodePropPredDataset(name=name, root=str(base))
        split = dataset.get_idx_split()
    except EOFError as exc:
        raise UserError(f"ogb asks for confirmation before downloading {name} but stdin is closed; "
                        f"run once interactively, or {where}") from exc
    except SystemExit as exc:
        raise UserError(f"download of {name} was declined; {where}") from exc
    except (OSError, RuntimeError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        # BadZipFile: an interrupted download left a partial zip in base, which ogb reuses
        raise UserError(f"cannot load {name} with ogb ({_one_line(exc)}); {where}") from exc
    graph, labels = dataset[0]
    return graph, labels, split


def _ogb_master_info(ogb_np: Any, name: str) -> dict[str, Any]:
    """Row of ogb's master.csv (url, version) without importing pandas ourselves at module load."""
    try:
        import pandas as pd

        master = pd.read_csv(Path(ogb_np.__file__).parent / "master.csv", index_col=0, keep_default_na=False)
        return dict(master[name])
    except Exception:  # noqa: BLE001 - only used to improve messages
        return {}
