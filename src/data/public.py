"""The shared graphs that a clone does not ship, fetched from their public sources when online.

Why: a fresh clone has only ``cora`` (``src/data/shipped``); ``citeseer``, ``amazon_cs``,
``coauthor_phy`` and ``tolokers`` live in ``../shared/datasets``.  Without that folder, the
files they were converted from are downloaded once into ``<root>/public/`` (numpy arrays only,
``allow_pickle=False``) and converted the way ``../shared/datasets/README.md`` describes, so
the result matches the shared file.  Offline (or when a download fails) it is one line naming
the source and the fix.  ``citeseer``'s source is Planetoid's pickles, which are not
unpickled here: for it the line names the source and the shared folder.
"""
from __future__ import annotations

import contextlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from src.core.errors import UserError, one_line
from src.data.cache import data_root
from src.data.graph import GraphDataset, to_undirected

log = logging.getLogger(__name__)

_DENSE_LIMIT = 60 * 2**20  # bytes: the shared layout keeps x dense up to here, CSR above
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PublicSource:
    url: str  # the upstream file (None: no converter here)
    licence: str
    kind: str  # "gnn-benchmark", "heterophilous" or "planetoid"


PUBLIC_SOURCES = {
    "citeseer": PublicSource("https://github.com/kimiyoung/planetoid/tree/af6abf468a772cc055bec88c52e4d6f51b7c37e3/data",
                             "MIT", "planetoid"),
    "amazon_cs": PublicSource("https://github.com/shchur/gnn-benchmark/raw/master/data/npz/amazon_electronics_computers.npz",
                              "MIT", "gnn-benchmark"),
    "coauthor_phy": PublicSource("https://github.com/shchur/gnn-benchmark/raw/master/data/npz/ms_academic_phy.npz",
                                 "MIT", "gnn-benchmark"),
    "tolokers": PublicSource("https://github.com/yandex-research/heterophilous-graphs/raw/"
                             "a431395582e929d88271309716bea4fe24ce6318/data/tolokers.npz", "MIT", "heterophilous"),
}


def load_public(name: str, root: str | os.PathLike | None, where: str) -> GraphDataset:
    """``name`` (a key of :data:`PUBLIC_SOURCES`) from its source; ``where`` = the folders searched."""
    source = PUBLIC_SOURCES[name]
    if source.kind == "planetoid":
        raise UserError(f"dataset {name!r} is not in {where}; its public source is {source.url} (Planetoid "
                        "pickles, not read here): put the converted citeseer.npz of ../shared/datasets there")
    path = _download(name, source, data_root(root) / "public")
    with np.load(path, allow_pickle=False) as z:
        arrays = _numeric(z)
    ds = _from_gnn_benchmark(name, arrays) if source.kind == "gnn-benchmark" else _from_heterophilous(name, arrays)
    ds.meta.update(source="public", url=source.url, licence=source.licence, path=str(path))
    return ds


def _numeric(z: Any) -> dict[str, np.ndarray]:
    """The arrays of an npz that need no pickle (gnn-benchmark files also hold object arrays of names)."""
    out = {}
    for key in z.files:
        try:
            out[key] = z[key]
        except ValueError:  # an object array: would need allow_pickle, not used
            continue
    return out


def _download(name: str, source: PublicSource, folder: Path) -> Path:
    """The upstream file in ``folder`` (downloaded once, atomically); one line when that fails."""
    path = folder / f"{name}.source.npz"
    if path.is_file():
        return path
    log.info("%s: downloading %s (once) ...", name, source.url)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    made = [f for f in (folder.parent, folder) if not f.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(source.url, timeout=_TIMEOUT_S) as resp, open(tmp, "wb") as out:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, path)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        for f in reversed(made):  # only the folders made here, and only when empty: nothing half-made stays
            with contextlib.suppress(OSError):
                f.rmdir()
        raise UserError(f"dataset {name!r} is not shipped with this checkout and could not be downloaded "
                        f"from its public source {source.url} ({one_line(exc)}): connect to the internet, or "
                        f"put {name}.npz from ../shared/datasets into --dataset_root_dir or $GNN_SHARED_DATASETS") from None
    return path


def _from_gnn_benchmark(name: str, a: dict[str, np.ndarray]) -> GraphDataset:
    """shchur/gnn-benchmark CSR arrays -> the shared layout: symmetric edges, Pitfalls split (seed 0)."""
    adj = sp.csr_matrix((a["adj_data"], a["adj_indices"], a["adj_indptr"]), shape=tuple(a["adj_shape"])).tocoo()
    n = int(a["adj_shape"][0])
    x = sp.csr_matrix((a["attr_data"], a["attr_indices"], a["attr_indptr"]),
                      shape=tuple(a["attr_shape"])).astype(np.float32)
    features: Any = x.toarray() if n * x.shape[1] * 4 <= _DENSE_LIMIT else x
    y = a["labels"].astype(np.int64)
    edge_index = to_undirected(np.stack([adj.row, adj.col]).astype(np.int64), n)
    train, val, test = _pitfalls_split(y)
    return GraphDataset(name=name, num_nodes=n, num_features=int(x.shape[1]), num_classes=int(y.max()) + 1,
                        edge_index=edge_index, x=features, y=y, train_idx=train, val_idx=val, test_idx=test,
                        meta={"split": "Pitfalls 20/30 per class, seed 0"})


def _pitfalls_split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shchur et al.'s protocol as in the shared README: RandomState(0), per class 20 train, 30 val, rest test."""
    rng = np.random.RandomState(0)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(y[y >= 0]):
        nodes = rng.permutation(np.flatnonzero(y == c))
        for part, chunk in zip(parts, (nodes[:20], nodes[20:50], nodes[50:])):
            part.append(chunk)
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return train, val, test


def _from_heterophilous(name: str, a: dict[str, np.ndarray]) -> GraphDataset:
    """yandex-research/heterophilous-graphs arrays -> the shared layout: both directions, official split 0."""
    y = a["node_labels"].astype(np.int64)
    n = int(y.shape[0])
    edge_index = to_undirected(a["edges"].T.astype(np.int64), n)
    train, val, test = (np.flatnonzero(a[f"{s}_masks"][0]).astype(np.int64) for s in ("train", "val", "test"))
    x = a["node_features"].astype(np.float32)
    return GraphDataset(name=name, num_nodes=n, num_features=int(x.shape[1]), num_classes=int(y.max()) + 1,
                        edge_index=edge_index, x=x, y=y, train_idx=train, val_idx=val, test_idx=test,
                        meta={"split": "official split 0 of 10"})
