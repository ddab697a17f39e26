"""Sparse features stay sparse in the in-memory full-graph backend (coauthor_phy, cora; real data).

The full-graph backend holds bag-of-words features as CSR by the loader's density rule and hands
the model a sparse COO ``x``, as the database backends do with sparse-stored rows: the batch rows
must equal the dense gather bit for bit, the model's loss must be the one of the dense-held
backend (same sample, same input), training must learn, and the Neo4j backend must give the
same first-batch loss where the sample is forced. The partitioned backend's CSR partitions and
remote rows are checked in tests/test_partition.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from src.in_memory.full_graph import FullGraphBackend
from src.neo4jdb.backend import Neo4jBackend
from src.data.sources import load_dataset
from src.core.sparse_features import csr_from_dense, holds_sparse
from src.train.model import batch_logits, build_model
from tests import backend_checks as checks


@pytest.fixture(scope="module")
def phy():
    return load_dataset("coauthor_phy")


def first_batch(backend: FullGraphBackend | Neo4jBackend, split: str = "train"):
    return next(iter(backend.make_loader(backend.split_nodes(split), shuffle=False, seed=3)))


def first_loss(batch, num_features: int, num_classes: int) -> torch.Tensor:
    torch.manual_seed(0)
    model = build_model("sage", num_features, 32, num_classes, num_layers=2, dropout=0.0)
    return F.cross_entropy(batch_logits(model, batch), batch.y[:batch.batch_size])


def test_loader_rule_decides(phy) -> None:
    assert holds_sparse(phy.x) and holds_sparse(load_dataset("cora").x)  # 0.4%, 1.3% non-zero
    assert not holds_sparse(load_dataset("amazon_cs").x)  # 35%
    assert holds_sparse(load_dataset("amazon_cs").x, "sparse") and not holds_sparse(phy.x, "dense")


def test_csr_from_dense_keeps_every_bit() -> None:
    dense = np.array([[0.0, -0.0, 1.5], [np.nan, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    csr = csr_from_dense(dense)
    back = np.zeros_like(dense)
    back[np.repeat(np.arange(3), np.diff(csr.indptr)), csr.indices] = csr.data  # toarray() adds to +0.0
    assert np.array_equal(back.view(np.uint32), dense.view(np.uint32))  # -0.0 and NaN survive
    assert csr.nnz == 3


def test_coauthor_phy_batches_stay_sparse_and_equal_the_dense_gather(phy) -> None:
    backend = FullGraphBackend(phy, fanouts=[5, 5], batch_size=64, num_loader_threads=1)
    dense_mb = phy.num_nodes * phy.num_features * 4 / 2**20
    assert backend.stats()["feature_mb"] < 0.02 * dense_mb  # 9 MiB instead of 1.1 GiB
    a = first_batch(backend, "val")
    assert a.x.is_sparse and a.x.is_coalesced() and a.x.shape == (a.num_nodes, phy.num_features)
    b = a.clone()
    b.x = torch.from_numpy(phy.features(a.n_id.numpy()))  # what the dense-held backend gathered
    assert torch.equal(a.x.to_dense().view(torch.int32), b.x.view(torch.int32))  # bit for bit
    # the model's input is the same matrix: the same loss
    assert torch.equal(first_loss(a, phy.num_features, phy.num_classes),
                       first_loss(b, phy.num_features, phy.num_classes))
    dense = FullGraphBackend(load_dataset("cora"), fanouts=[5, 5], batch_size=64, num_loader_threads=1,
                             feature_format="dense")
    assert dense.x_csr is None and not first_batch(dense).x.is_sparse  # the override, as the loader's


def test_coauthor_phy_trains_in_memory_with_sparse_x(phy) -> None:
    torch.set_num_threads(1)
    backend = FullGraphBackend(phy, fanouts=[5, 5], batch_size=32, num_loader_threads=1)
    assert sp.issparse(backend.x_csr)
    assert checks.check_graphsage_trains(backend, phy, database=False) == 6 * 4  # 100 train seeds


def test_first_batch_loss_equals_the_neo4j_backend(client, loaded_dataset) -> None:
    """Fanout above cora's max degree (168): both samples are whole neighbourhoods, so the model
    sees the same graph (node order may differ: the loss only up to float rounding)."""
    ds, schema, rec = loaded_dataset("cora")
    kw = {"fanouts": [200], "batch_size": 64, "num_loader_threads": 0}
    a = first_batch(FullGraphBackend(ds, **kw))
    b = first_batch(Neo4jBackend(client, rec, **kw))  # not closed: closing would close the session's client
    assert a.x.is_sparse and b.x.is_sparse
    assert torch.equal(a.n_id[:64], b.n_id[:64]) and set(a.n_id.tolist()) == set(b.n_id.tolist())
    la, lb = (first_loss(x, ds.num_features, ds.num_classes) for x in (a, b))
    assert torch.allclose(la, lb, rtol=1e-5, atol=1e-6), (la.item(), lb.item())
