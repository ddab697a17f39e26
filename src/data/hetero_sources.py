"""Heterogeneous datasets by name: ``ogbn-mag`` (read by ogb) or a generated ``synthetic_hetero_n..`` graph.

Why a module: the in-memory backends, the partitioner and the loaders must recognise the same names.
"""
from __future__ import annotations

from src.core.errors import UsageError
from src.data.hetero import HeteroGraphDataset
from src.data.ogb_mag import OGBN_MAG, load_ogbn_mag
from src.data.synthetic_hetero import SYNTHETIC_HETERO, generate_hetero, params_from_name


def is_hetero_name(name: str) -> bool:
    """Whether ``name`` names a heterogeneous dataset (no data read; bare ``synthetic_hetero`` too, which
    :func:`load_hetero_dataset` then asks to name by its sizes)."""
    key = name.strip().lower()
    return key.replace("_", "-") == OGBN_MAG or key == SYNTHETIC_HETERO or params_from_name(name) is not None


def load_hetero_dataset(name: str, root: str | None = None) -> HeteroGraphDataset:
    """The dataset ``name`` (ogbn-mag under ``root``)."""
    if name.strip().lower().replace("_", "-") == OGBN_MAG:
        return load_ogbn_mag(root)
    params = params_from_name(name)
    if params is None:
        raise UsageError(f"unknown heterogeneous dataset {name!r}; name a generated graph by its sizes, like "
                         "synthetic_hetero_n10000_d10_f32_c4_s0 (as loaders/load_into_neo4j.py --dataset synthetic_hetero "
                         "--num_nodes .. names it)")
    return generate_hetero(**params)
