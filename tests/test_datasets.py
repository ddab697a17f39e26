"""Tests of src/data/ (graph, sources, ogb, cache, synthetic) on the shipped real graphs (no Neo4j needed)."""
from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from src.data import ogb as ogb_graphs
from src.data import public, sources, synthetic
from src.data.graph import GraphDataset, to_undirected
from src.data.ogb import from_ogb
from src.data.sources import available_datasets, load_dataset
from src.core.errors import UsageError, UserError

SHARED = sources.shared_datasets_dir()
needs_shared = pytest.mark.skipif(not (SHARED / "cora.npz").is_file(), reason=f"no shipped datasets in {SHARED}")

# README table: nodes, stored edges, features, classes, split sizes
README_SIZES = {
    "cora": (2708, 10556, 1433, 7, (140, 500, 1000)),
    "citeseer": (3327, 9104, 3703, 6, (120, 500, 1000)),
    "amazon_cs": (13752, 491722, 767, 10, (200, 300, 13252)),
    "coauthor_phy": (34493, 495924, 8415, 5, (100, 150, 34243)),
    "tolokers": (11758, 1038000, 10, 2, (5879, 2939, 2940)),
}


def _reference_loader():
    """The README's own loader, used as ground truth."""
    spec = importlib.util.spec_from_file_location("load_npz_ref", SHARED / "load_npz.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg.strip() == msg
    return msg


# --------------------------------------------------------------------------------------------
# shipped graphs
# --------------------------------------------------------------------------------------------
@needs_shared
@pytest.mark.parametrize("name", sorted(README_SIZES))
def test_shipped_sizes_match_readme(name):
    n, e, f, c, split = README_SIZES[name]
    ds = load_dataset(name)
    assert (ds.name, ds.num_nodes, ds.num_edges, ds.num_features, ds.num_classes) == (name, n, e, f, c)
    assert (len(ds.train_idx), len(ds.val_idx), len(ds.test_idx)) == split
    assert ds.edge_index.dtype == np.int64 and ds.edge_index.shape == (2, e)
    assert ds.y.dtype == np.int64 and ds.train_idx.dtype == np.int64
    assert ds.x.dtype == np.float32
    assert sp.isspmatrix_csr(ds.x) == (name == "coauthor_phy")  # sparse stays sparse
    # edges kept as stored: symmetric, no self loops
    src, dst = ds.edge_index
    assert not np.any(src == dst)
    assert np.array_equal(np.sort(src * n + dst), np.sort(dst * n + src))
    codes = ds.split_codes()
    assert codes.dtype == np.int8 and codes.shape == (n,)
    assert [int(np.sum(codes == k)) for k in (0, 1, 2)] == list(split)
    assert np.all(ds.y[codes >= 0] >= 0)  # split nodes are labelled


@needs_shared
@pytest.mark.parametrize("name", ["cora", "tolokers", "coauthor_phy"])
def test_features_bit_exact(name):
    ref = _reference_loader().load(SHARED / f"{name}.npz")
    ds = load_dataset(name)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, ds.num_nodes, 500)
    ids[:3] = [ds.num_nodes - 1, 0, ids[5]]  # borders and a duplicate, unsorted
    if "x_data" in ref:  # expected rows straight from the stored CSR arrays (no scipy involved)
        want = np.zeros((len(ids), ds.num_features), np.float32)
        for row, i in enumerate(ids):
            lo, hi = ref["x_indptr"][i], ref["x_indptr"][i + 1]
            want[row, ref["x_indices"][lo:hi]] = ref["x_data"][lo:hi]
        assert want.any()
    else:
        want = ref["x"][ids]
    got = ds.features(ids)
    assert got.dtype == np.float32 and got.shape == (len(ids), ds.num_features)
    assert got.tobytes() == np.ascontiguousarray(want).tobytes()
    assert np.array_equal(ds.edge_index, ref["edge_index"]) and np.array_equal(ds.y, ref["y"])
    assert ds.features(np.array([], dtype=np.int64)).shape == (0, ds.num_features)
    with pytest.raises(IndexError):
        ds.features([ds.num_nodes])


@needs_shared
def test_fingerprint_stable_and_distinct():
    a, b = load_dataset("cora"), load_dataset("cora")
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 16 and int(a.fingerprint(), 16) >= 0
    assert a.fingerprint() != load_dataset("citeseer").fingerprint()
    b.y = b.y.copy()
    b.y[0] = (b.y[0] + 1) % b.num_classes
    b._fingerprint = None
    assert b.fingerprint() != a.fingerprint()


@needs_shared
def test_chunk_iterators_cover_everything():
    ds = load_dataset("cora")
    node_chunks = list(ds.iter_node_chunks(1000))
    assert node_chunks == [(0, 1000), (1000, 2000), (2000, 2708)]
    edges = np.concatenate([ds.edge_index[:, a:b] for a, b in ds.iter_edge_chunks(4000)], axis=1)
    assert np.array_equal(edges, ds.edge_index)
    with pytest.raises(ValueError):
        list(ds.iter_edge_chunks(0))


def test_unknown_name_lists_available():
    with pytest.raises(UsageError) as exc:
        load_dataset("corra")
    msg = _one_line(exc)
    assert msg.startswith("unknown dataset 'corra'; available: ")
    for name in ["synthetic", "ogbn-arxiv", "ogbn-products", "ogbn-papers100M"]:
        assert name in msg
    if (SHARED / "cora.npz").is_file():
        assert "cora" in msg and "coauthor_phy" in msg
    assert available_datasets()[-4:] == ["synthetic", *ogb_graphs.OGB_DATASETS]


def test_missing_shared_folder(tmp_path, monkeypatch):
    """A bare clone: cora comes from the repository itself; the other graphs name their public source."""
    missing = tmp_path / "nowhere"
    monkeypatch.setenv(sources.SHARED_ENV, str(missing))
    cora = load_dataset("cora")
    assert Path(cora.meta["path"]) == sources.shipped_dir() / "cora.npz"
    assert (cora.num_nodes, cora.num_edges, cora.num_features, cora.num_classes) == README_SIZES["cora"][:4]
    if (SHARED / "cora.npz").is_file():  # byte for byte the shared file
        assert (sources.shipped_dir() / "cora.npz").read_bytes() == (SHARED / "cora.npz").read_bytes()
    with pytest.raises(UserError) as exc:
        load_dataset("citeseer", root=tmp_path)
    assert "kimiyoung/planetoid" in _one_line(exc) and "citeseer.npz" in _one_line(exc)
    with pytest.raises(UserError) as exc:
        load_dataset("nosuchgraph")
    assert str(missing) in _one_line(exc) and "cora" in _one_line(exc) and "amazon_cs" in _one_line(exc)
    assert available_datasets()[:1] == ["amazon_cs"] and "cora" in available_datasets()


def test_public_source_offline_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """No route to the source (a closed local port): one line naming the URL, no folder left."""
    monkeypatch.setenv(sources.SHARED_ENV, str(tmp_path / "nowhere"))
    monkeypatch.setitem(public.PUBLIC_SOURCES, "tolokers",
                        public.PublicSource("http://127.0.0.1:9/tolokers.npz", "MIT", "heterophilous"))
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UserError) as exc:
        load_dataset("tolokers", root=root)
    msg = _one_line(exc)
    assert "http://127.0.0.1:9/tolokers.npz" in msg and "connect to the internet" in msg
    assert list(root.iterdir()) == []


def _serve(monkeypatch, name: str, kind: str, path: Path) -> None:
    monkeypatch.setitem(public.PUBLIC_SOURCES, name, public.PublicSource(path.as_uri(), "MIT", kind))


@needs_shared
def test_public_sources_convert_like_the_shared_files(tmp_path, monkeypatch):
    """Upstream-format files made from the shared ones (gnn-benchmark CSR arrays plus an object
    array of names; heterophilous-graphs' once-per-pair edges and masks) convert back to them:
    the symmetrised edges, the Pitfalls split (seed 0) and split 0 all match the shared files."""
    monkeypatch.setenv(sources.SHARED_ENV, str(tmp_path / "nowhere"))
    with np.load(SHARED / "amazon_cs.npz") as z:
        ref = {k: z[k] for k in z.files}
    adj = sp.csr_matrix((np.ones(ref["edge_index"].shape[1], np.float32), tuple(ref["edge_index"])),
                        shape=(len(ref["y"]),) * 2)
    attr = sp.csr_matrix(ref["x"])
    np.savez(tmp_path / "amazon.npz", adj_data=adj.data, adj_indices=adj.indices, adj_indptr=adj.indptr,
             adj_shape=adj.shape, attr_data=attr.data, attr_indices=attr.indices, attr_indptr=attr.indptr,
             attr_shape=attr.shape, labels=ref["y"], class_names=np.array(["a", None], dtype=object))
    _serve(monkeypatch, "amazon_cs", "gnn-benchmark", tmp_path / "amazon.npz")
    (tmp_path / "r").mkdir()
    ds = load_dataset("amazon_cs", root=tmp_path / "r")
    assert ds.meta["source"] == "public" and (tmp_path / "r" / "public" / "amazon_cs.source.npz").is_file()
    np.testing.assert_array_equal(ds.edge_index, ref["edge_index"])
    np.testing.assert_array_equal(ds.x, ref["x"])
    for split in ("train_idx", "val_idx", "test_idx"):
        np.testing.assert_array_equal(getattr(ds, split), ref[split])

    with np.load(SHARED / "tolokers.npz") as z:
        ref = {k: z[k] for k in z.files}
    once = ref["edge_index"][:, ref["edge_index"][0] < ref["edge_index"][1]]
    np.savez(tmp_path / "tolokers.npz", node_features=ref["x"], node_labels=ref["y"], edges=once.T,
             train_masks=ref["train_masks"], val_masks=ref["val_masks"], test_masks=ref["test_masks"])
    _serve(monkeypatch, "tolokers", "heterophilous", tmp_path / "tolokers.npz")
    ds = load_dataset("tolokers", root=tmp_path / "r")
    np.testing.assert_array_equal(ds.edge_index, ref["edge_index"])
    for split in ("train_idx", "val_idx", "test_idx"):
        np.testing.assert_array_equal(getattr(ds, split), ref[split])


def test_missing_root_dir_is_an_error(tmp_path):
    with pytest.raises(UserError) as exc:
        load_dataset("cora", root=tmp_path / "absent")
    assert "--dataset_root_dir" in _one_line(exc) and "absent" in _one_line(exc)


@needs_shared
def test_root_and_env_lookup(tmp_path, monkeypatch):
    shutil.copy(SHARED / "cora.npz", tmp_path / "mini.npz")
    shutil.copy(SHARED / "citeseer.npz", tmp_path / "cora.npz")  # root wins over the shared folder
    assert load_dataset("mini", root=tmp_path).num_nodes == 2708
    assert load_dataset("cora", root=tmp_path).num_nodes == 3327
    assert load_dataset(str(tmp_path / "mini.npz")).name == "mini"
    assert "mini" in available_datasets(tmp_path)
    monkeypatch.setenv(sources.SHARED_ENV, str(tmp_path))
    assert load_dataset("mini").num_nodes == 2708


@needs_shared
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_npz_gives_user_error(tmp_path, damage):
    data = bytearray((SHARED / "cora.npz").read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:  # same size, garbage inside the compressed members
        data[1000:60000] = bytes(59000)
    bad = tmp_path / "cora.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(UserError) as exc:
        load_dataset("cora", root=tmp_path)
    msg = _one_line(exc)
    assert str(bad) in msg and "corrupt" in msg


def test_options_only_for_synthetic():
    with pytest.raises(UsageError):
        load_dataset("cora", num_nodes=10)
    with pytest.raises(UsageError):
        load_dataset("synthetic", num_nodez=10)
    with pytest.raises(UsageError):
        load_dataset("synthetic", num_nodes=100, avg_degree=0)
    with pytest.raises(UsageError):
        load_dataset("synthetic", num_nodes=1.5)


# --------------------------------------------------------------------------------------------
# OGB
# --------------------------------------------------------------------------------------------
def _ogb_like(num_nodes=60, num_edges=200, num_features=5, seed=0):
    """Graph dict / labels / split exactly as ogb's NodePropPredDataset returns them."""
    rng = np.random.default_rng(seed)
    edges = rng.integers(0, num_nodes, (2, num_edges))
    edges[:, :3] = [[1, 2, 2], [1, 3, 3]]  # a self loop and a duplicate
    edges[:, 3] = [3, 2]  # a reverse edge
    graph = {
        "edge_index": edges,
        "edge_feat": None,
        "node_feat": rng.standard_normal((num_nodes, num_features)).astype(np.float32),
        "node_year": rng.integers(1990, 2020, (num_nodes, 1)),
        "num_nodes": num_nodes,
    }
    labels = rng.integers(0, 40, (num_nodes, 1))
    perm = rng.permutation(num_nodes)
    split = {"train": perm[:30], "valid": perm[30:45], "test": perm[45:]}
    return graph, labels, split


def test_from_ogb_arxiv_symmetrised():
    graph, labels, split = _ogb_like()
    labels = labels.astype(np.float64)
    labels[[4, 7]] = np.nan  # papers100M style unlabelled nodes
    ds = from_ogb("ogbn-arxiv", graph, labels, split)
    n = 60
    src, dst = graph["edge_index"]
    keep = src != dst
    want = sorted(set(zip(src[keep], dst[keep])) | set(zip(dst[keep], src[keep])))
    assert [tuple(e) for e in ds.edge_index.T.tolist()] == want  # sorted, unique, both directions
    assert ds.edge_index.dtype == np.int64
    assert np.array_equal(ds.edge_index, to_undirected(graph["edge_index"], n))
    if (SHARED / "load_npz.py").is_file():  # same result as the README's helper
        assert np.array_equal(ds.edge_index, _reference_loader().to_undirected(graph["edge_index"], n))
    assert ds.y.dtype == np.int64 and ds.y.shape == (n,)
    assert ds.y[4] == -1 and ds.y[7] == -1 and ds.y[0] == int(labels[0, 0])
    assert ds.num_classes == 40 and ds.num_features == 5 and ds.x.dtype == np.float32
    assert np.array_equal(ds.val_idx, split["valid"]) and ds.test_idx.dtype == np.int64
    assert ds.meta["symmetrised"] and ds.meta["source_num_edges"] == 200


def test_from_ogb_products_kept_and_torch_split():
    torch = pytest.importorskip("torch")
    graph, labels, split = _ogb_like(seed=1)
    split = {k: torch.as_tensor(v) for k, v in split.items()}  # PyG-style tensors
    ds = from_ogb("ogbn-products", graph, labels, split)
    assert np.array_equal(ds.edge_index, graph["edge_index"])  # already symmetric in OGB: kept
    assert ds.num_classes == 47 and np.array_equal(ds.train_idx, split["train"].numpy())
    assert np.array_equal(ds.y, labels[:, 0])


def _write_csv_gz(path: Path, rows) -> None:
    rows = np.asarray(rows)
    rows = rows.reshape(len(rows), -1)
    with gzip.open(path, "wt") as fh:
        for row in rows:
            fh.write(",".join(repr(v.item()) if rows.dtype.kind == "f" else str(v) for v in row) + "\n")


def _write_ogb_arxiv_raw(root: Path, graph, labels, split) -> None:
    """OGB's on-disk layout of ogbn-arxiv (what its zip holds), so ogb reads it without network."""
    folder = root / "ogbn_arxiv"
    (folder / "raw").mkdir(parents=True)
    (folder / "split" / "time").mkdir(parents=True)
    (folder / "RELEASE_v1.txt").write_text("ogbn-arxiv v1 (test data)\n")
    raw = folder / "raw"
    _write_csv_gz(raw / "edge.csv.gz", graph["edge_index"].T)
    _write_csv_gz(raw / "num-node-list.csv.gz", [graph["num_nodes"]])
    _write_csv_gz(raw / "num-edge-list.csv.gz", [graph["edge_index"].shape[1]])
    _write_csv_gz(raw / "node-feat.csv.gz", graph["node_feat"])
    _write_csv_gz(raw / "node_year.csv.gz", graph["node_year"])
    _write_csv_gz(raw / "node-label.csv.gz", labels)
    for part in ("train", "valid", "test"):
        _write_csv_gz(folder / "split" / "time" / f"{part}.csv.gz", split[part])


def test_ogb_arxiv_through_ogb_reader(tmp_path, monkeypatch):
    pytest.importorskip("ogb")
    graph, labels, split = _ogb_like()
    _write_ogb_arxiv_raw(tmp_path, graph, labels, split)
    expected = from_ogb("ogbn-arxiv", graph, labels, split)

    ds = load_dataset("ogbn-arxiv", root=tmp_path)
    assert ds.name == "ogbn-arxiv" and ds.num_classes == 40
    for key in ("edge_index", "y", "train_idx", "val_idx", "test_idx"):
        assert np.array_equal(getattr(ds, key), getattr(expected, key)), key
    assert ds.features(np.arange(60)).tobytes() == graph["node_feat"].tobytes()  # csv float32 round trip
    assert isinstance(ds.edge_index, np.memmap) and isinstance(ds.x, np.memmap)
    assert ds.fingerprint() == expected.fingerprint()
    assert (tmp_path / "ogbn_arxiv" / "processed" / "data_processed").exists()

    # second call: served from the converted cache, ogb not involved
    monkeypatch.setattr(ogb_graphs, "_read_with_ogb", lambda *a: pytest.fail("ogb read again"))
    again = load_dataset("ogbn_arxiv", root=tmp_path)
    assert again.fingerprint() == ds.fingerprint()
    monkeypatch.undo()

    # without our cache ogb finds its own processed pickle, which torch>=2.6 refuses to load
    # safely: the loader must fall back to ogb's raw files instead of failing
    shutil.rmtree(tmp_path / "ogb_converted")
    assert load_dataset("ogbn-arxiv", root=tmp_path).fingerprint() == ds.fingerprint()


def test_ogb_offline_download_gives_user_error(tmp_path, monkeypatch):
    pytest.importorskip("ogb")

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(UserError) as exc:
        load_dataset("ogbn-products", root=tmp_path)
    msg = _one_line(exc)
    assert "products.zip" in msg and str(tmp_path) in msg


# --------------------------------------------------------------------------------------------
# synthetic
# --------------------------------------------------------------------------------------------
SYN = dict(num_nodes=20_000, avg_degree=10, num_features=16, num_classes=5)


@pytest.fixture(scope="module")
def syn_root(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic_root")


@pytest.fixture(scope="module")
def syn(syn_root):
    return load_dataset("synthetic", root=syn_root, seed=0, **SYN)


def test_synthetic_layout_and_split(syn, syn_root):
    n = SYN["num_nodes"]
    assert syn.name == "synthetic_n20000_d10_f16_c5_s0"
    cache = syn_root / "synthetic" / "n20000_d10_f16_c5_s0"
    assert (cache / "meta.json").is_file()
    assert all(isinstance(getattr(syn, k), np.memmap) for k in ("edge_index", "x", "y"))
    assert syn.edge_index.dtype == np.int64 and syn.x.dtype == np.float32 and syn.y.dtype == np.int64
    assert (syn.num_nodes, syn.num_features, syn.num_classes) == (n, 16, 5)
    assert 0.95 * n * 10 <= syn.num_edges <= n * 10
    codes = syn.split_codes()
    assert np.all(codes >= 0)  # every node in exactly one split (disjoint since sizes add up)
    assert len(syn.train_idx) + len(syn.val_idx) + len(syn.test_idx) == n
    assert abs(len(syn.train_idx) / n - 0.6) < 0.02 and abs(len(syn.val_idx) / n - 0.2) < 0.02
    assert syn.y.min() == 0 and syn.y.max() == 4
    ids = np.random.default_rng(1).integers(0, n, 300)
    assert np.array_equal(syn.features(ids), np.asarray(syn.x)[ids])
    stored = syn.fingerprint()
    syn._fingerprint = None
    assert syn.fingerprint() == stored == json.loads((cache / "meta.json").read_text())["fingerprint"]


def test_synthetic_full_name_loads_the_same_cache(syn, syn_root):
    """Training scripts have no synthetic flags: the generated graph's name selects it."""
    again = load_dataset(syn.name, root=syn_root)
    assert again.name == syn.name and again.fingerprint() == syn.fingerprint()
    assert synthetic.synthetic_params_from_name(syn.name) == {**SYN, "seed": 0}
    assert synthetic.synthetic_params_from_name("synthetic_n20000_d10") is None


def _check_structure(ds: GraphDataset, max_duplicates: float) -> None:
    n, c = ds.num_nodes, ds.num_classes
    src, dst = np.asarray(ds.edge_index)
    y = np.asarray(ds.y)
    assert src.min() >= 0 and max(src.max(), dst.max()) < n
    assert not np.any(src == dst), "self loops"
    assert np.array_equal(np.sort(src * n + dst), np.sort(dst * n + src)), "not symmetric"
    keys = src * n + dst
    assert np.unique(keys).size >= (1 - max_duplicates) * keys.size, "too many duplicates"
    homophily = np.mean(y[src] == y[dst])
    assert homophily > 0.7 > 2 / c, homophily
    deg = np.bincount(dst, minlength=n)
    assert deg.max() > 15 * deg.mean(), (deg.max(), deg.mean())  # heavy tail
    top = np.sort(deg)[::-1]
    assert top[: n // 100].sum() > 0.08 * deg.sum()  # top 1 % of nodes hold >8 % of the edges


def test_synthetic_structure(syn):
    _check_structure(syn, max_duplicates=0.0)  # one block of pairs: no duplicates at all


def test_synthetic_structure_with_many_blocks(tmp_path, monkeypatch):
    """Small blocks exercise the block boundaries (cross-block duplicates, class clipping)."""
    monkeypatch.setattr(synthetic, "NODE_BLOCK", 3000)
    monkeypatch.setattr(synthetic, "PAIR_BLOCK", 7000)
    ds = load_dataset("synthetic", root=tmp_path, seed=3, **SYN)
    assert ds.meta["params"]["generator"]["pair_block"] == 7000
    _check_structure(ds, max_duplicates=0.03)  # duplicates across blocks are kept (documented)


def test_synthetic_learnable_from_features_and_structure(syn):
    """Nearest class mean: features alone beat chance, neighbour-averaged features do much better."""
    x, y = np.asarray(syn.x), np.asarray(syn.y)
    src, dst = np.asarray(syn.edge_index)
    adj = sp.csr_matrix((np.ones(src.size, np.float32), (dst, src)), shape=(syn.num_nodes,) * 2)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    agg = (adj @ x + x) / (deg + 1)[:, None]

    def accuracy(feat):
        train, test = np.asarray(syn.train_idx), np.asarray(syn.test_idx)
        means = np.stack([feat[train][y[train] == k].mean(0) for k in range(syn.num_classes)])
        pred = np.argmin(((feat[test][:, None, :] - means[None]) ** 2).sum(-1), axis=1)
        return np.mean(pred == y[test])

    acc_x, acc_agg = accuracy(x), accuracy(agg)
    assert 1 / syn.num_classes + 0.1 < acc_x < 0.9, acc_x
    assert acc_agg > acc_x + 0.15, (acc_x, acc_agg)


def test_synthetic_deterministic(syn, tmp_path):
    same = load_dataset("synthetic", root=tmp_path, seed=0, **SYN)  # fresh generation elsewhere
    assert same.fingerprint() == syn.fingerprint()
    assert np.array_equal(same.edge_index, syn.edge_index) and np.array_equal(same.x, syn.x)
    other = load_dataset("synthetic", root=tmp_path, seed=1, **SYN)
    assert other.fingerprint() != syn.fingerprint()


def test_synthetic_cache_reused_and_half_written_cache_rebuilt(syn, syn_root, monkeypatch):
    def no_generate(*args, **kwargs):
        raise AssertionError("cache was not reused")

    with monkeypatch.context() as m:
        m.setattr(synthetic, "generate", no_generate)
        again = load_dataset("synthetic", root=syn_root, seed=0, progress=False, **SYN)
    assert again.fingerprint() == syn.fingerprint()

    cache = syn_root / "synthetic" / "n20000_d10_f16_c5_s0"
    (cache / "meta.json").unlink()  # as if interrupted before the last step
    (cache / "x.npy").unlink()  # new inode: `syn` still maps the old file
    (cache / "x.npy").write_bytes(b"partial")
    calls = []
    real = synthetic.generate
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    rebuilt = load_dataset("synthetic", root=syn_root, seed=0, **SYN)
    assert calls == [1]
    assert rebuilt.fingerprint() == syn.fingerprint()
