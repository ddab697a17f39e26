"""``ogbn-mag`` (papers, authors, institutions, fields of study) as a :class:`HeteroGraphDataset`.

Read by ``ogb``'s own loader (``NodePropPredDataset``: downloads into ``<root>/ogbn_mag`` when online;
offline it reads a folder in OGB's on-disk layout), through :func:`src.data.ogb._read_with_ogb`, which
turns ogb's prompts and partial downloads into one-line errors. Each relationship type gets its reverse
(``rev_<rel>``, as PyG's ``ToUndirected`` adds them) so that every type's messages can reach the papers;
papers keep their 128 features, year-split train/valid/test and 349 venue classes; the other types are
featureless (PyG's ``OGB_MAG`` without ``preprocess``).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from src.data.cache import data_root
from src.data.hetero import HeteroGraphDataset, NodeTypeData

OGBN_MAG = "ogbn-mag"
TARGET = "paper"


def from_ogb_mag(graph: dict[str, Any], labels: dict[str, Any], split: dict[str, Any]) -> HeteroGraphDataset:
    """The dataset of what ``NodePropPredDataset('ogbn-mag')`` returns."""
    num_nodes = {t: int(np.asarray(n).reshape(-1)[0]) for t, n in graph["num_nodes_dict"].items()}
    feats = graph.get("node_feat_dict") or {}
    y = np.asarray(labels[TARGET], dtype=np.int64).reshape(-1)
    nodes = {}
    for t in sorted(num_nodes, key=lambda t: (t != TARGET, t)):
        x = feats.get(t)
        nodes[t] = NodeTypeData(num_nodes[t], x=None if x is None else np.ascontiguousarray(x, dtype=np.float32))
    target = nodes[TARGET]
    target.y = y
    target.train_idx = np.asarray(split["train"][TARGET], dtype=np.int64)
    target.val_idx = np.asarray(split["valid"][TARGET], dtype=np.int64)
    target.test_idx = np.asarray(split["test"][TARGET], dtype=np.int64)
    edges: dict[tuple[str, str, str], np.ndarray] = {}
    for (src, rel, dst), ei in sorted(graph["edge_index_dict"].items()):
        ei = np.ascontiguousarray(ei, dtype=np.int64)
        edges[(src, rel, dst)] = ei
        edges[(dst, f"rev_{rel}", src)] = np.ascontiguousarray(ei[::-1])
    return HeteroGraphDataset(OGBN_MAG, nodes, edges, TARGET, int(y.max()) + 1 if len(y) else 0,
                              meta={"source": "ogb", "ogb_name": OGBN_MAG})


def load_ogbn_mag(root: str | os.PathLike | None = None) -> HeteroGraphDataset:
    """``ogbn-mag`` under ``root`` (default data/datasets), read with ogb."""
    from src.data.ogb import _read_with_ogb

    graph, labels, split = _read_with_ogb(OGBN_MAG, data_root(root))
    return from_ogb_mag(graph, labels, split)
