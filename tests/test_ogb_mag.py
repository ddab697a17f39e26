"""ogbn-mag through ogb's own loader, on a tiny folder in OGB's on-disk layout (no download).

The folder has what ``NodePropPredDataset('ogbn-mag')`` reads (csv.gz relations, paper features,
years, labels, the time split, RELEASE_v2.txt); the converted dataset must keep every type, count,
edge and split, and add each relationship's reverse.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.data.ogb_mag import load_ogbn_mag

TRIPLETS = [("author", "affiliated_with", "institution"), ("author", "writes", "paper"),
            ("paper", "cites", "paper"), ("paper", "has_topic", "field_of_study")]
COUNTS = {"author": 6, "field_of_study": 3, "institution": 2, "paper": 8}


def _csv(path: Path, values, header: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = values if isinstance(values, pd.DataFrame) else pd.DataFrame(values)
    frame.to_csv(path, index=False, header=header, compression="gzip")


def write_tiny_mag(root: Path, rng: np.random.Generator) -> dict:
    folder = root / "ogbn_mag"
    raw = folder / "raw"
    (folder / "RELEASE_v2.txt").parent.mkdir(parents=True)
    (folder / "RELEASE_v2.txt").write_text("tiny test copy\n")
    _csv(raw / "num-node-dict.csv.gz", pd.DataFrame({t: [n] for t, n in COUNTS.items()}), header=True)
    _csv(raw / "triplet-type-list.csv.gz", [list(t) for t in TRIPLETS])
    edges = {}
    for h, r, t in TRIPLETS:
        ei = np.stack([rng.integers(0, COUNTS[h], 10), rng.integers(0, COUNTS[t], 10)]).T
        edges[(h, r, t)] = ei.T
        sub = raw / "relations" / f"{h}___{r}___{t}"
        _csv(sub / "edge.csv.gz", ei)
        _csv(sub / "num-edge-list.csv.gz", [[len(ei)]])
        _csv(sub / "edge_reltype.csv.gz", np.zeros((len(ei), 1), dtype=np.int64))
    x = rng.standard_normal((COUNTS["paper"], 4)).astype(np.float32)
    _csv(raw / "node-feat" / "paper" / "node-feat.csv.gz", x)
    _csv(raw / "node-feat" / "paper" / "node_year.csv.gz", np.full((COUNTS["paper"], 1), 2019))
    y = rng.integers(0, 3, (COUNTS["paper"], 1))
    _csv(raw / "nodetype-has-label.csv.gz", pd.DataFrame({t: [t == "paper"] for t in COUNTS}), header=True)
    _csv(raw / "node-label" / "paper" / "node-label.csv.gz", y)
    split = folder / "split" / "time"
    _csv(split / "nodetype-has-split.csv.gz", pd.DataFrame({t: [t == "paper"] for t in COUNTS}), header=True)
    for name, idx in (("train", [0, 1, 2, 3]), ("valid", [4, 5]), ("test", [6, 7])):
        _csv(split / "paper" / f"{name}.csv.gz", np.array(idx)[:, None])
    return {"edges": edges, "x": x, "y": y.reshape(-1)}


def test_ogbn_mag_from_a_tiny_ogb_folder(tmp_path: Path) -> None:
    pytest.importorskip("ogb")
    truth = write_tiny_mag(tmp_path, np.random.default_rng(0))
    ds = load_ogbn_mag(tmp_path)
    assert ds.name == "ogbn-mag" and ds.target_type == "paper"
    assert {t: d.num_nodes for t, d in ds.node_types.items()} == COUNTS
    assert [t for t, d in ds.node_types.items() if d.x is not None] == ["paper"]
    assert np.array_equal(ds.node_types["paper"].x, truth["x"])
    assert np.array_equal(ds.node_types["paper"].y, truth["y"])
    assert ds.node_types["paper"].train_idx.tolist() == [0, 1, 2, 3]
    assert ds.node_types["paper"].test_idx.tolist() == [6, 7]
    for (h, r, t), ei in truth["edges"].items():
        assert np.array_equal(ds.edges[(h, r, t)], ei)
        assert np.array_equal(ds.edges[(t, f"rev_{r}", h)], ei[::-1])
    assert len(ds.edges) == 2 * len(TRIPLETS)
