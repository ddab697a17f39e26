"""How one dataset is laid out in Neo4j (see README "Storage model").

Shared by the loader and the Neo4j backend so both agree on every name. All names are
validated identifiers, so the Cypher built from them here is safe to format.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from src.client import validate_identifier
from src.errors import UsageError

DATASET_LABEL = "GnnDataset"  # one metadata node per loaded dataset
SPLITS = ("train", "val", "test")
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def validate_dataset_name(name: str, flag: str = "dataset name") -> str:
    """A dataset's name travels as a query value, but quotes, backticks and spaces in it are
    mistakes (or injection attempts) better refused up front with a clear line."""
    if not isinstance(name, str) or not _DATASET_NAME.match(name):
        raise UsageError(f"invalid {flag} {name!r}: use 1-128 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return name


def default_label(dataset: str) -> str:
    """``ogbn-arxiv`` -> ``ogbn_arxiv``: the dataset name as a Neo4j label."""
    label = re.sub(r"\W", "_", dataset)
    return label if re.match(r"[A-Za-z_]", label) else f"g_{label}"


@dataclass(frozen=True)
class GraphSchema:
    """Label, relationship type and property names of one dataset in Neo4j."""

    dataset: str
    label: str
    rel_type: str
    id_prop: str = "id"
    x_prop: str = "x"
    y_prop: str = "y"
    split_prop: str = "split"
    # In-neighbour ids of the node as one packed little-endian int64 ``bytes`` value, in source edge
    # order (as CSRGraph): gnn.sampleHop(s) read it instead of walking the relationship chain.
    adj_prop: str = "nbrs"

    def __post_init__(self) -> None:
        validate_dataset_name(self.dataset)
        validate_identifier(self.label, "label")
        validate_identifier(self.rel_type, "relationship type")
        for prop in (self.id_prop, self.x_prop, self.y_prop, self.split_prop, self.adj_prop):
            validate_identifier(prop, "property name")

    @classmethod
    def for_dataset(cls, dataset: str, label: str | None = None, rel_type: str | None = None) -> "GraphSchema":
        label = label or default_label(dataset)
        return cls(dataset=dataset, label=label, rel_type=rel_type or f"{label}_EDGE")

    @classmethod
    def from_record(cls, record: dict) -> "GraphSchema":
        """The schema a loader's dataset record describes (name, label, relationship type)."""
        return cls.for_dataset(record["name"], label=record["label"], rel_type=record["rel_type"])

    @property
    def constraint_name(self) -> str:
        return f"{self.label}_{self.id_prop}_unique"


def encode_features(x: np.ndarray) -> list[bytes]:
    """Rows of a float32 matrix as little-endian packed bytes (one ``bytes`` per node)."""
    x = np.ascontiguousarray(x, dtype="<f4")
    raw = x.tobytes()
    width = x.shape[1] * 4
    return [raw[i:i + width] for i in range(0, len(raw), width)]


def decode_features(rows: list[bytes], num_features: int) -> np.ndarray:
    """Packed little-endian float32 rows back to a ``[len(rows), F]`` array in one step."""
    if not rows:
        return np.empty((0, num_features), dtype=np.float32)
    flat = np.frombuffer(b"".join(rows), dtype="<f4")
    if flat.size != len(rows) * num_features:
        raise ValueError(f"feature bytes do not match dimension {num_features}")
    return flat.reshape(len(rows), num_features).astype(np.float32, copy=False)


def encode_adjacency(indptr: np.ndarray, indices: np.ndarray) -> list[bytes]:
    """Each node's neighbour ids ``indices[indptr[v]:indptr[v + 1]]`` as packed little-endian int64 bytes."""
    raw = np.ascontiguousarray(indices, dtype="<i8").tobytes()
    offsets = (np.asarray(indptr, dtype=np.int64) * 8).tolist()
    return [raw[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
