""":func:`load_dataset`: any graph by name, and the shipped ``.npz`` graphs.

Sources:

* shipped real graphs: ``<name>.npz`` in ``root`` (if given), then in the shared folder
  (``$GNN_SHARED_DATASETS``, else ``<repo>/../shared/datasets``; layout described in its
  README.md), then in the repository itself (``src/data/shipped``: cora, so a bare clone runs
  the quickstart and the small tests).  Edges are kept exactly as stored (the files are already
  symmetric); sparse features stay scipy CSR and only the requested rows are densified.  The
  other shared graphs missing from all of these come from their public sources
  (:mod:`src.data.public`; one line naming the source when offline).
* OGB node-property graphs (``ogbn-arxiv``, ``ogbn-products``, ``ogbn-papers100M``):
  :mod:`src.data.ogb`.
* ``synthetic``: power-law, homophilous graphs of any size generated out of core by
  :mod:`src.data.synthetic`, cached under ``<root>/synthetic/n{N}_d{D}_f{F}_c{C}_s{seed}/``.
  The generated graph's full name ``synthetic_n{N}_d{D}_f{F}_c{C}_s{seed}`` is accepted as a
  name too (that is how training scripts, which have no synthetic flags, pick a size).

``root`` defaults to ``<repo>/data/datasets`` for the OGB and synthetic caches
(:mod:`src.data.cache`).
"""
from __future__ import annotations

import json
import logging
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from src.core.errors import UsageError, UserError, one_line
from src.core.paths import REPO_DIR
from src.data import npz_checks, synthetic
from src.data.cache import build_cache, data_root
from src.data.graph import GraphDataset
from src.data.integrity import check_npz_arrays
from src.data.ogb import OGB_DATASETS, load_ogb
from src.data.public import PUBLIC_SOURCES, load_public
from src.data.synthetic import SYNTHETIC, synthetic_dir_name, synthetic_params, synthetic_params_from_name

log = logging.getLogger(__name__)

SHARED_ENV = "GNN_SHARED_DATASETS"


def shared_datasets_dir() -> Path:
    """The read-only folder of shipped graphs: ``$GNN_SHARED_DATASETS`` or ``<repo>/../shared/datasets``."""
    env = os.environ.get(SHARED_ENV, "").strip()
    return Path(env).expanduser() if env else REPO_DIR.parent / "shared" / "datasets"


def shipped_dir() -> Path:
    """The graphs kept inside the repository (cora), with their provenance in README.md there."""
    return Path(__file__).resolve().parent / "shipped"


def available_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """Shipped ``.npz`` names (root, shared folder, repository), the public ones, ``synthetic``, the OGB names."""
    names: set[str] = set(PUBLIC_SOURCES)
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
    if root is not None and not Path(root).expanduser().is_dir():
        raise UserError(f"--dataset_root_dir {root} is not an existing folder: create it, or leave the flag out "
                        f"to use the shipped graphs ({shipped_dir()}, {shared_datasets_dir()}) and data/datasets")
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
        return load_ogb(ogb_name, root)
    if low.endswith(".npz") and Path(key).expanduser().is_file():
        path = Path(key).expanduser()
        return _load_npz(path, path.stem)
    path = _find_npz(key, root)
    public = low.replace("-", "_")
    if path is None and public in PUBLIC_SOURCES:
        return load_public(public, root, " or ".join(str(f) for f in _npz_folders(root)))
    if path is None:
        shared = shared_datasets_dir()
        listing = ", ".join(available_datasets(root))
        missing = "" if shared.is_dir() else (f" (the shared dataset folder {shared} does not exist: set "
                                                f"{SHARED_ENV} or pass a root holding <name>.npz)")
        raise UsageError(f"unknown dataset {name!r}; available: {listing}{missing}")
    return _load_npz(path, path.stem)


# --------------------------------------------------------------------------------------------
# shipped .npz graphs
# --------------------------------------------------------------------------------------------
def _npz_folders(root: str | os.PathLike | None) -> list[Path]:
    folders = [Path(root).expanduser()] if root is not None else []
    return folders + [shared_datasets_dir(), shipped_dir()]


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

def _load_npz(path: Path, name: str) -> GraphDataset:
    """Read a shipped-layout ``.npz`` (allow_pickle=False); damaged or crafted files raise :class:`UserError`.

    Sizes are checked from the headers before any array is read, values before scipy or the
    model see them (:mod:`src.data.npz_checks`); members the loader does not use are never read.
    """
    fix = f"replace it with an intact copy (the originals are in {shared_datasets_dir()}, see README.md there)"
    try:
        headers = npz_checks.member_headers(path)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise UserError(f"dataset file {path} is truncated or corrupt ({one_line(exc)}); {fix}") from exc
    try:
        npz_checks.check_headers(headers)
    except npz_checks.TooLarge as exc:
        raise UserError(f"dataset file {path} is too large for this machine ({exc}): free memory or use a "
                        "machine with more") from None
    except ValueError as exc:
        raise UserError(f"dataset file {path} is malformed ({exc}); {fix}") from None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in headers}
        meta = json.loads(str(arrays.pop("meta"))) if "meta" in arrays else {}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise UserError(f"dataset file {path} is truncated or corrupt ({one_line(exc)}); {fix}") from exc
    try:
        return _npz_to_dataset(arrays, meta if isinstance(meta, dict) else {}, name, path)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise UserError(f"dataset file {path} is malformed ({exc}); {fix}") from None


def _npz_to_dataset(arrays: dict[str, np.ndarray], meta: dict[str, Any], name: str, path: Path) -> GraphDataset:
    check_npz_arrays(arrays, path)  # float ids, overlapping splits, NaN/inf features
    y = arrays["y"].astype(np.int64, copy=False)
    n = int(y.shape[0])
    if "x" in arrays:
        x: Any = arrays["x"].astype(np.float32, copy=False)
    else:
        shape = tuple(int(s) for s in arrays["x_shape"].reshape(-1))
        if len(shape) != 2 or shape[0] != n:
            raise ValueError(f"x_shape is {shape}, expected ({n}, F): one row per label in y")
        npz_checks.check_feature_columns(shape[1], shape[0])
        indices, indptr = arrays["x_indices"], arrays["x_indptr"]
        npz_checks.check_csr(arrays["x_data"], indices, indptr, shape)
        x = sp.csr_matrix((arrays["x_data"].astype(np.float32, copy=False), indices, indptr), shape=shape)
    edge_index = arrays["edge_index"].astype(np.int64, copy=False)
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= n):
        bad = int(np.count_nonzero((edge_index < 0) | (edge_index >= n)))
        raise ValueError(f"edge_index has {bad} node id(s) outside 0..{n - 1}")
    splits = {k: arrays[k].astype(np.int64, copy=False).reshape(-1) for k in npz_checks.SPLITS}
    npz_checks.check_splits(splits, n)
    num_classes = npz_checks.check_labels(y, splits, meta)
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
# synthetic
# --------------------------------------------------------------------------------------------
def _load_synthetic(root: str | os.PathLike | None, options: dict[str, Any]) -> GraphDataset:
    params = synthetic_params(**options)
    progress = options.get("progress")
    dir_name = synthetic_dir_name(params)
    cache_dir = data_root(root) / SYNTHETIC / dir_name
    expect = {**params, "generator": synthetic.generator_constants()}

    def build(out: Path) -> dict[str, Any]:
        info = synthetic.generate(out, progress=progress, **params)
        return {
            "name": f"{SYNTHETIC}_{dir_name}",
            "source": SYNTHETIC,
            "num_classes": params["num_classes"],
            "split": ("random 60/20/20 train/val/test (per-node uniform draw)" if not params.get("split_sizes") else
                      "{} / {} / {} train/val/test (seeded permutation)".format(*params["split_sizes"])),
            "directed": False,
            **info,
        }

    ds = build_cache(cache_dir, expect, build)
    log.info("synthetic dataset %s (%s)", ds, cache_dir)
    return ds
