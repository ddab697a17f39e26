"""What the Neo4j and the Ladybug loader share: settings, result, batch sizes and record checks.

Why it exists: both loaders (src/neo4jdb/load/, src/ladybugdb/loader.py) take the same
:class:`LoadConfig`, return the same :class:`LoadReport`, store splits under the same names and
tell users the same way how to (finish a) load; none of it needs a database driver.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from src.core.codecs import (DENSE, DENSITY_SAMPLE, FLOAT16, FORMAT_ENCODINGS, LOSSY_ENCODINGS, UINT8_AFFINE, ColumnAffine,
                             choose_feature_encoding, feature_density, row_bytes)
from src.core.lossy_codecs import FLOAT16_MAX, column_range, relative_error
from src.core.errors import UsageError, UserError
from src.core.record import DatasetRecord
from src.core.schema import SPLITS, GraphSchema
from src.data.graph import GraphDataset
from src.data.synthetic import synthetic_params_from_name

log = logging.getLogger(__name__)

METHODS = ("auto", "unwind", "import")
FEATURE_FORMATS = ("auto", *FORMAT_ENCODINGS)  # auto, dense, sparse, float16, bfloat16, int8
# int8 (uint8-affine) codes whose RMS error on a sample of rows exceeds this fraction of a typical
# column's spread are refused unless forced: one outlier stretches its column's 255 steps (Gaussian
# columns measure ~0.5%; with one 100-sigma outlier per column ~15%)
INT8_MAX_ERROR = 0.05
NODE_BATCH = 10_000  # nodes per transaction
EDGE_BATCH = 50_000  # relationships per transaction
NODE_BATCH_BYTES = 16 << 20  # cap on feature bytes per node transaction (wide features, small heap)
# auto picks the offline import from this many relationships on. Measured here (bench/loader.py,
# 1M nodes / 25M relationships, 2 cores at load average ~20): import ~100 s fixed (server restart,
# importer start, index) + ~12 us per relationship, unwind ~110 us per relationship: break-even near 1M.
IMPORT_MIN_EDGES = 1_000_000
# Relationship count from which the bulk importer stores a node "dense" (its relationships grouped
# by type and direction). Neo4j's default, kept: storing none dense (1000000) cut the importer's
# CPU time by ~10% on the 1M-node / 25M-relationship graph (22% of its nodes are dense at 50), but
# a hub's incoming relationships would then be read through its whole chain. Only the layout: the
# server still groups a node once a transaction grows it past the server's own threshold.
DENSE_NODE_THRESHOLD = 50
SPLIT_NAMES = np.array([*SPLITS, None], dtype=object)  # split code -1 indexes the None


class GraphClient(Protocol):
    """What the shared checks need of a client: Cypher reads and the two counts (Neo4j and Ladybug)."""

    def read(self, query: str, **params: Any) -> list[Any]: ...

    def count_nodes(self, label: str) -> int: ...

    def count_relationships(self, rel_type: str) -> int: ...


# --------------------------------------------------------------------------------------------
# configuration and result
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadConfig:
    """How to load. ``batch_size`` None means NODE_BATCH nodes / EDGE_BATCH relationships."""

    method: str = "auto"
    batch_size: int | None = None
    workers: int = 2
    reset: bool = False
    progress: bool = True
    import_min_edges: int = IMPORT_MIN_EDGES
    import_memory: str = "2g"  # off-heap memory of the bulk importer
    dense_node_threshold: int = DENSE_NODE_THRESHOLD  # bulk importer: relationships from which a node is dense
    feature_format: str = "auto"  # auto: sparse rows below SPARSE_MAX_DENSITY non-zeros (src/core/codecs.py)
    force_encoding: bool = False  # int8 codes beyond INT8_MAX_ERROR loaded anyway (with a warning)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"invalid --method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"invalid --batch_size {self.batch_size}: use a positive number of rows")
        if self.workers < 1:
            raise UsageError(f"invalid --workers {self.workers}: use at least 1")
        if self.feature_format not in FEATURE_FORMATS:
            raise UsageError(f"invalid --feature_format {self.feature_format!r}: use one of {', '.join(FEATURE_FORMATS)}")

    def node_batch(self, bytes_per_node: int) -> int:
        """Nodes per transaction, capped so wide feature rows do not exhaust the server's heap."""
        cap = max(1, NODE_BATCH_BYTES // max(bytes_per_node, 1))
        return min(self.batch_size or NODE_BATCH, cap)

    def edge_batch(self) -> int:
        return self.batch_size or EDGE_BATCH


@dataclass(frozen=True)
class FeatureLayout:
    """How a load stores ``x``: the encoding (src/core/codecs.py), the density that chose it and, for
    compressed rows, the column scale and offset (8-bit) and the relative error measured on a sample."""

    encoding: str
    density: float
    quant: ColumnAffine | None = None
    error: float | None = None

    @classmethod
    def choose(cls, ds: GraphDataset, requested: str, force: bool = False) -> "FeatureLayout":
        """The layout of ``requested`` (a --feature_format); compressed encodings that do not fit the
        features are a one-line UserError (float16 beyond 65504; int8 error above INT8_MAX_ERROR unless ``force``)."""
        density = feature_density(ds.x)
        try:
            encoding = choose_feature_encoding(density, requested)
        except ValueError as exc:
            raise UsageError(f"invalid --feature_format: {exc}") from None
        if encoding not in LOSSY_ENCODINGS:
            return cls(encoding, density)
        lo, hi, finite = column_range(ds.x)
        if encoding == FLOAT16 and ds.num_nodes and max(-float(lo.min()), float(hi.max())) > FLOAT16_MAX:
            raise UserError(f"--feature_format float16: features of {ds.name} reach "
                            f"{max(-float(lo.min()), float(hi.max())):.6g}, beyond float16's {FLOAT16_MAX:g}; "
                            "use --feature_format bfloat16 (float32's range) or int8, or scale the features")
        quant = None
        if encoding == UINT8_AFFINE:
            if not finite:
                raise UserError(f"--feature_format int8: features of {ds.name} hold NaN or infinite values, "
                                "which 8-bit codes cannot store; use float16, bfloat16 or dense")
            quant = ColumnAffine.from_range(lo, hi)
        rows = np.unique(np.linspace(0, max(ds.num_nodes - 1, 0), min(ds.num_nodes, DENSITY_SAMPLE)).astype(np.int64))
        error = relative_error(ds.features(rows), encoding, quant)
        what = (f"--feature_format {requested}: RMS error {100 * error:.3g}% of a typical column's spread, "
                f"measured on {len(rows)} rows of {ds.name}")
        if encoding == UINT8_AFFINE and error > INT8_MAX_ERROR:
            if not force:
                raise UserError(f"{what}, above the {100 * INT8_MAX_ERROR:g}% bound (outliers stretch their columns' "
                                "255 steps); use --feature_format float16 or bfloat16, or pass --force_encoding "
                                "to load it anyway")
            log.warning("%s, above the %g%% bound; loading it anyway (--force_encoding)", what, 100 * INT8_MAX_ERROR)
        else:
            log.info("%s", what)
        return cls(encoding, density, quant, error)

    def row_bytes(self, num_features: int) -> int:
        return row_bytes(self.encoding, num_features, self.density)


@dataclass
class LoadReport:
    """What a loader's ``ensure_loaded`` did; rates count rows written by this run only."""

    dataset: str
    label: str
    rel_type: str
    status: str  # "loaded", "resumed" or "already loaded"
    method: str  # "unwind", "import" or "none"
    nodes: int
    relationships: int
    nodes_written: int = 0
    relationships_written: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds per step
    tool_stages: dict[str, float] = field(default_factory=dict)  # the bulk importer's own stage report (s)

    @property
    def nodes_per_s(self) -> float:
        return _rate(self.nodes_written, self.phases.get("nodes", self.seconds))

    @property
    def rels_per_s(self) -> float:
        return _rate(self.relationships_written, self.phases.get("relationships", self.seconds))

    def summary(self) -> str:
        if self.status == "adjacency added":
            return (f"{self.dataset}: already loaded; added the adjacency property to its {self.nodes} nodes "
                    f"in {self.seconds:.1f} s")
        if self.status == "already loaded":
            return (f"{self.dataset}: already loaded ({self.nodes} nodes, {self.relationships} relationships, "
                    f"label {self.label}, type {self.rel_type}); nothing to do ({self.seconds:.1f} s)")
        return (f"{self.dataset}: {self.status} {self.nodes} nodes, {self.relationships} relationships "
                f"(label {self.label}, type {self.rel_type}) in {self.seconds:.1f} s, "
                f"{_rate(self.relationships_written, self.seconds):,.0f} rels/s end to end (writing: "
                f"{self.nodes_per_s:,.0f} nodes/s, {self.rels_per_s:,.0f} rels/s), method {self.method}")


def _rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else 0.0


# --------------------------------------------------------------------------------------------
# records: is it loaded, how to load it
# --------------------------------------------------------------------------------------------
def check_complete(record: DatasetRecord | None, name: str, where: str, command: str) -> DatasetRecord:
    """``record`` if it is a complete load, else a :class:`UserError` saying how to (finish the) load."""
    if record is None:
        raise UserError(f"dataset {name!r} is not loaded in {where}; load it with `{command}`")
    if not record.complete:
        raise UserError(f"dataset {name!r} is only partly loaded in {where} (an interrupted load); "
                        f"finish it with `{command}`")
    return record


def check_stored_format(record: Any, requested: str, name: str) -> None:
    """A load keeps the feature encoding it started with: an explicit ``--feature_format`` naming another
    is a one-line UserError (so rows are never written or read in two encodings)."""
    if requested == "auto":
        return
    want, have = FORMAT_ENCODINGS[requested], record.get("feature_encoding") or DENSE
    if want != have:
        raise UserError(f"dataset {name!r} is stored with feature encoding {have}, not {want} (--feature_format "
                        f"{requested}); pass --reset to reload it as {want}, or drop --feature_format")


def dataset_flags(name: str) -> str:
    """Loader flags that recreate ``name`` (synthetic names encode their parameters)."""
    params = synthetic_params_from_name(name)
    if params is None:
        return f"--dataset {name}"
    return ("--dataset synthetic " + " ".join(f"--{k} {v}" for k, v in params.items()))


def check_counts(client: GraphClient, ds: GraphDataset, schema: GraphSchema, where: str) -> None:
    """Sanity check of a complete load by its node and relationship counts, so a damaged one is not
    silently used (O(1) in Neo4j: the count store)."""
    nodes, rels = client.count_nodes(schema.label), client.count_relationships(schema.rel_type)
    if (nodes, rels) != (ds.num_nodes, ds.num_edges):
        raise UserError(f"dataset {schema.dataset!r} is marked complete but {where} has {nodes} nodes / {rels} "
                        f"relationships instead of {ds.num_nodes} / {ds.num_edges}; reload it with --reset")


def feature_rows(ds: GraphDataset, ids: np.ndarray) -> Any:
    """Rows ``ids`` of ``x`` to encode: a CSR slice for sparse sources (never densified), else dense."""
    return ds.x[ids] if sp.issparse(ds.x) else ds.features(ids)
