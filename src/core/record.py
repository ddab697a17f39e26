"""``DatasetRecord``: a loaded dataset's metadata node (``:GnnDataset``), typed, for every reader.

Why a dataclass: the record is written by two loaders (Neo4j, Ladybug) and read by the
backends, the feature stores and the benchmarks; as a raw dict each reader repeated its own
``int(record["num_nodes"])`` and ``record.get("feature_encoding", DENSE)`` defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from src.core.codecs import DENSE, FEATURE_ENCODINGS, UINT8_AFFINE, ColumnAffine
from src.core.errors import UserError
from src.core.schema import GraphSchema

METRICS = ("accuracy", "f1", "roc_auc")  # src/train/metrics.py computes them


def default_metric(num_classes: int, recorded: str | None = None) -> str:
    """The metric a dataset is usually reported with: its record's, else ROC-AUC for binary targets, else accuracy."""
    if recorded in METRICS:
        return str(recorded)
    return "roc_auc" if num_classes == 2 else "accuracy"

# record properties that override GraphSchema's defaults (written by a registration)
SCHEMA_KEYS = ("id_prop", "x_prop", "y_prop", "split_prop", "adj_prop", "direction")


@dataclass(frozen=True)
class DatasetRecord:
    """What a loader recorded about one dataset; ``properties`` keeps every stored property as is."""

    name: str
    label: str
    rel_type: str
    num_nodes: int
    num_edges: int
    num_features: int
    num_classes: int
    complete: bool = False
    feature_encoding: str = DENSE  # records written before sparse rows existed have none: dense
    feature_density: float | None = None
    adjacency: str | None = None  # the adjacency property's name once written and verified
    fingerprint: str | None = None
    load_seconds: float | None = None
    feature_stats: bytes | None = None  # FeatureStats.to_bytes(), for --normalize_features
    feature_quant: bytes | None = None  # ColumnAffine.to_bytes() of uint8-affine rows (src/core/lossy_codecs.py)
    properties: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_properties(cls, props: Mapping[str, Any]) -> DatasetRecord:
        """The record of a ``GnnDataset`` node's properties (missing counts read as 0: an unfinished load)."""
        def num(key: str) -> int:
            return int(props.get(key) or 0)

        density = props.get("feature_density")
        seconds = props.get("load_seconds")
        return cls(
            name=str(props["name"]), label=str(props["label"]), rel_type=str(props["rel_type"]),
            num_nodes=num("num_nodes"), num_edges=num("num_edges"), num_features=num("num_features"),
            num_classes=num("num_classes"), complete=bool(props.get("complete")),
            feature_encoding=props.get("feature_encoding") or DENSE,
            feature_density=None if density is None else float(density),
            adjacency=props.get("adjacency") or None, fingerprint=props.get("fingerprint"),
            load_seconds=None if seconds is None else float(seconds),
            feature_stats=bytes(props["feature_stats"]) if props.get("feature_stats") else None,
            feature_quant=bytes(props["feature_quant"]) if props.get("feature_quant") else None, properties=dict(props),
        )

    def quant(self) -> ColumnAffine | None:
        """The column scale and offset the rows were encoded with (``uint8-affine`` only); a record whose
        encoding this code does not know, or an 8-bit one without its scales, is a one-line UserError."""
        if self.feature_encoding not in FEATURE_ENCODINGS:
            raise UserError(f"dataset {self.name!r} stores features as {self.feature_encoding!r}, which this "
                            f"version cannot read (known: {', '.join(FEATURE_ENCODINGS)}); reload it")
        if self.feature_encoding != UINT8_AFFINE:
            return None
        try:
            if self.feature_quant is None:
                raise ValueError("it has none")
            return ColumnAffine.from_bytes(self.feature_quant, self.num_features)
        except ValueError as exc:
            raise UserError(f"dataset {self.name!r} stores 8-bit features but its record's column scale and "
                            f"offset (feature_quant) are unreadable ({exc}); reload it with --reset") from None

    @property
    def schema(self) -> GraphSchema:
        """The names this dataset is stored under (label, relationship type, properties, direction);
        a registered graph (loaders/register_graph.py) records its own namespaced property names."""
        names = {k: str(self.properties[k]) for k in SCHEMA_KEYS if self.properties.get(k)}
        return GraphSchema(dataset=self.name, label=self.label, rel_type=self.rel_type, **names)

    def has_adjacency(self, schema: GraphSchema) -> bool:
        """Whether the packed adjacency property ``schema.adj_prop`` was written and verified."""
        return self.adjacency == schema.adj_prop


def recorded_load_seconds(hetero: Mapping[str, Any] | None, record: Callable[[], DatasetRecord | None]) -> float | None:
    """The loader's seconds for a dataset by its heterogeneous record (``hetero``, when it is one) or else its
    homogeneous ``record()`` (asked only then: a heterogeneous dataset has no label of its own); None if unknown."""
    if hetero is not None:
        return None if hetero.get("load_seconds") is None else float(hetero["load_seconds"])
    found = record()
    return None if found is None else found.load_seconds
