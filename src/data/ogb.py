"""OGB node-property graphs (``ogbn-arxiv``, ``ogbn-products``, ``ogbn-papers100M``) as
:class:`~src.data.graph.GraphDataset`.

Why a module of its own: the graphs are read by the ``ogb`` package (which downloads into
``<root>/ogbn_*`` when online) and its failure modes (prompts on stdin, unsafe pickles, partial
downloads) need care; :func:`from_ogb` converts what it returns, and the result is cached as
``.npy`` files under ``<root>/ogb_converted/<ogbn_name>/`` (:mod:`src.data.cache`) so later runs
memory-map them instead of holding the graph in RAM.
"""
from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from src.core.errors import UserError, one_line
from src.data import synthetic
from src.data.cache import build_cache, data_root
from src.data.graph import GraphDataset, to_undirected

log = logging.getLogger(__name__)

OGB_DATASETS = ("ogbn-arxiv", "ogbn-products", "ogbn-papers100M")
_OGB_NUM_CLASSES = {"ogbn-arxiv": 40, "ogbn-products": 47, "ogbn-papers100M": 172}
# directed citation graphs: symmetrised like PyG's ToUndirected (products is already symmetric)
_OGB_DIRECTED = frozenset({"ogbn-arxiv", "ogbn-papers100M"})
_OGB_CONVERTER_VERSION = 1


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


def load_ogb(name: str, root: str | os.PathLike | None) -> GraphDataset:
    """``name`` (one of :data:`OGB_DATASETS`) from its converted cache, converting it first if needed."""
    base = data_root(root)
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

    ds = build_cache(base / "ogb_converted" / dir_name, expect, build)
    log.info("OGB dataset %s", ds)
    return ds


def _read_with_ogb(name: str, base: Path) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Run ogb's own reader (downloading when online); ogb's failure modes become UserErrors."""
    try:
        import ogb.nodeproppred as ogb_np
        from ogb.nodeproppred import NodePropPredDataset
    except ImportError as exc:
        raise UserError(f"dataset {name} needs the 'ogb' package ({one_line(exc)}); pip install ogb==1.3.6") from exc
    info = _ogb_master_info(ogb_np, name)
    folder = base / name.replace("-", "_")
    url = info.get("url", "the OGB site")
    where = f"download {url} and unzip it into {base} (giving {folder})"
    release = folder / f"RELEASE_v{info.get('version', 1)}.txt"
    if folder.is_dir() and not release.exists():
        # ogb would stop and ask on stdin whether to delete the folder
        raise UserError(f"{folder} lacks {release.name} (incomplete or outdated OGB download); delete it and retry")
    raw = folder / "raw"
    has_raw = any((raw / f).exists() for f in ("edge.csv.gz", "data.npz", "triplet-type-list.csv.gz"))  # last: hetero
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
        raise UserError(f"cannot load {name} with ogb ({one_line(exc)}); {where}") from exc
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
