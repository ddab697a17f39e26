"""The ``products`` synthetic preset (src/data/shapes.py): exact edge count and split sizes, its
name, and a size that would not fit on the disk refused before anything is written."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from src.core.errors import UsageError, UserError
from src.data import shapes, synthetic
from src.data.sources import load_dataset

REPO = Path(__file__).resolve().parent.parent


def test_full_size_preset_is_ogbn_products() -> None:
    p = synthetic.synthetic_params(preset="products")
    assert (p["num_nodes"], p["num_pairs"], p["num_features"], p["num_classes"]) == (2_449_029, 61_859_140, 100, 47)
    assert p["split_sizes"] == [196_615, 39_323, 2_213_091]
    assert synthetic.synthetic_dir_name(p) == "products_n2449029_s0"


def test_scaled_preset_has_exact_edges_split_and_is_symmetric(tmp_path: Path) -> None:
    ds = load_dataset("synthetic", root=tmp_path, preset="products", num_nodes=5000, seed=1)
    pairs, split = shapes.PRESETS["products"].at(5000)
    assert ds.name == "synthetic_products_n5000_s1" and ds.num_edges == 2 * pairs
    assert [len(ds.train_idx), len(ds.val_idx), len(ds.test_idx)] == list(split) == [401, 80, 4519]
    assert len(np.unique(np.concatenate([ds.train_idx, ds.val_idx, ds.test_idx]))) == 5000
    ei = np.asarray(ds.edge_index)
    fwd = np.sort(ei[0] * 5000 + ei[1])
    assert np.array_equal(fwd, np.sort(ei[1] * 5000 + ei[0])) and not np.any(ei[0] == ei[1])
    assert (ds.num_features, ds.num_classes) == (100, 47)
    again = load_dataset("synthetic_products_n5000_s1", root=tmp_path)  # the name selects the same cache
    assert again.fingerprint() == ds.fingerprint()


def test_preset_refuses_shape_options() -> None:
    with pytest.raises(UsageError, match="fixes num_features"):
        synthetic.synthetic_params(preset="products", num_features=8)
    with pytest.raises(UsageError, match="unknown synthetic preset"):
        synthetic.synthetic_params(preset="papers")


def test_size_beyond_the_free_disk_is_refused_before_writing(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    n = int(free / 400) + 1  # 100 float32 features alone exceed the free space
    with pytest.raises(UserError, match=r"needs ~.* GiB .* only .* GiB are free"):
        load_dataset("synthetic", root=tmp_path, preset="products", num_nodes=n)
    assert not (tmp_path / "synthetic").exists() or not any((tmp_path / "synthetic").rglob("*.npy"))
    out = subprocess.run([sys.executable, "loaders/load_into_neo4j.py", "--dataset", "synthetic", "--preset",
                          "products", "--num_nodes", str(n), "--dataset_root_dir", str(tmp_path),
                          "--backend", "ladybug", "--ladybug_path", str(tmp_path / "x.lbdb")], cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert out.returncode == 1 and len(lines) == 1 and "GiB are free" in lines[0], out.stderr[-2000:]
