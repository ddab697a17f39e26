"""Sparse feature rows in RAM (bag-of-words: cora, coauthor_phy): when, how, and in what form the model gets them.

One rule for every backend: a dataset's features are held sparse exactly when the loader would
store them sparse in the database (:func:`src.core.codecs.choose_feature_encoding` over
:func:`src.core.codecs.feature_density`), so the in-memory, partitioned and database backends hand
the first layer the same kind of ``x``: a torch sparse COO tensor (:func:`csr_to_torch`).
Why: densifying coauthor_phy's 8415 columns costs 33 KB per node (~0.7 GB per batch of 20k
nodes) only for the first layer to multiply mostly zeros; CSR holds ~0.4% of that.

Bit-exact: a dense row's zeros are found on the bit pattern, so ``-0.0`` and NaN survive and
densifying a held row gives back exactly ``dataset.features(...)``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from src.core.codecs import SPARSE, choose_feature_encoding, feature_density

if TYPE_CHECKING:
    import torch

    from src.data.graph import GraphDataset

CHUNK_BYTES = 64 << 20
"""Dense rows are converted in slabs of about this size, so a conversion never holds them all."""


def holds_sparse(x: Any, requested: str = "auto") -> bool:
    """Whether features ``x`` (ndarray, memmap or scipy) are held sparse: the loader's rule, or
    ``requested`` (dense / sparse) as for its ``--feature_format``."""
    density = feature_density(x) if requested == "auto" else 1.0
    return choose_feature_encoding(density, requested) == SPARSE


def csr_from_dense(dense: np.ndarray) -> sp.csr_matrix:
    """float32 rows as CSR of their non-zero bit patterns (+0.0 dropped, -0.0 and NaN kept)."""
    dense = np.ascontiguousarray(dense, dtype=np.float32)
    n, f = dense.shape
    bits = dense.view(np.uint32)
    flat = np.flatnonzero(bits)  # half the time of np.nonzero's two index arrays
    rows, cols = np.divmod(flat, f)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    values = bits.reshape(-1)[flat].view(np.float32)
    return sp.csr_matrix((values, cols.astype(np.int32), indptr), shape=(n, f))


def canonical_csr(x: Any) -> sp.csr_matrix:
    """A scipy matrix as float32 CSR with sorted, unique columns (duplicates summed, as ``toarray()``
    would): what :func:`csr_to_torch` passes on without a copy. Explicitly stored zeros stay (they
    densify to themselves and add nothing to a product)."""
    csr = sp.csr_matrix(x, dtype=np.float32, copy=True)
    csr.sum_duplicates()
    return csr


def dataset_rows_csr(ds: GraphDataset, ids: np.ndarray) -> sp.csr_matrix:
    """Rows ``ids`` of the dataset's features as canonical CSR; dense sources go in slabs."""
    ids = np.asarray(ids, dtype=np.int64)
    if sp.issparse(ds.x):
        return canonical_csr(ds.x[ids])
    step = max(1, CHUNK_BYTES // max(4 * ds.num_features, 1))
    parts = [csr_from_dense(ds.features(ids[begin:begin + step])) for begin in range(0, len(ids), step)]
    if not parts:
        return sp.csr_matrix((0, ds.num_features), dtype=np.float32)
    return sp.vstack(parts, format="csr") if len(parts) > 1 else parts[0]


def csr_nbytes(x: sp.csr_matrix) -> int:
    """Bytes a CSR matrix holds (values, column ids, row pointers)."""
    return x.data.nbytes + x.indices.nbytes + x.indptr.nbytes


def feature_nbytes(x: Any) -> int:
    """Bytes held by features ``x``, dense or CSR."""
    return csr_nbytes(x) if sp.issparse(x) else int(x.nbytes)


def csr_to_torch(x: sp.csr_matrix) -> torch.Tensor:
    """A scipy CSR matrix as a coalesced torch sparse COO tensor (what the first layer multiplies)."""
    import torch  # here, not at the top: partitioning uses this module and must not pay for torch

    if not x.has_canonical_format:
        x = x.copy()
        x.sum_duplicates()  # sorts columns within rows and merges repeats
    coo = x.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(indices, torch.from_numpy(coo.data.astype(np.float32, copy=False)),
                                   x.shape, is_coalesced=True, check_invariants=False)


def rows_to_torch(x: Any) -> torch.Tensor:
    """Gathered feature rows as the model's ``x``: sparse COO for CSR rows, else the dense array as is."""
    import torch

    return csr_to_torch(x) if sp.issparse(x) else torch.from_numpy(x)
