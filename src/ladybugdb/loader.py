"""Load a :class:`~src.data.graph.GraphDataset` into a Ladybug database file (embedded, no server).

Storage model (the same names as in Neo4j, see :class:`~src.core.schema.GraphSchema`):

* node table ``<label>(id INT64 PRIMARY KEY, x BLOB, y INT64, split STRING)``: ``id`` is the
  row in the source, ``x`` the little-endian float32 row as bytes (decoded with one
  ``np.frombuffer``, exactly as from Neo4j), ``y`` the label (-1 unlabelled), ``split`` one of
  ``train``/``val``/``test`` or NULL;
* rel table ``<rel_type>(FROM <label> TO <label>)``: edge ``u -> v``; neighbours of ``v`` are the
  sources of its incoming edges, as in Neo4j and PyG;
* node table ``GnnDataset`` with one record per dataset (name, counts, fingerprint, complete).

Ladybug's internal node offsets are never used as node ids (the pitfall of Kuzu's PyG
integration, kuzu issues #2291/#6020): every query returns the ``id`` property.

Resumable and idempotent: nodes are written in id order and relationships in source order, each
batch one atomic statement (``UNWIND ... CREATE`` for nodes, ``COPY ... FROM`` a DataFrame for
relationships), so the committed part is always a prefix whose length is the current count; a
re-run continues from there. A complete record with the same fingerprint makes a re-run a no-op,
a different graph under the same name is refused unless ``reset``.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from tqdm import tqdm

from src.data.graph import GraphDataset
from src.core.errors import UsageError, UserError
from src.ladybugdb.client import LOAD_HINT, LadybugClient
from src.data.loading import SPLIT_NAMES, EDGE_BATCH, LoadConfig, LoadReport, check_complete, check_counts, dataset_flags
from src.data.verification import verify_loaded
from src.core.feature_stats import FeatureStats
from src.core.record import DatasetRecord
from src.core.schema import DATASET_LABEL, GraphSchema
from src.core.codecs import encode_features

log = logging.getLogger(__name__)

RECORD_COLUMNS = ("name STRING PRIMARY KEY, label STRING, rel_type STRING, num_nodes INT64, num_edges INT64, "
                  "num_features INT64, num_classes INT64, fingerprint STRING, complete BOOLEAN, method STRING, "
                  "loaded_at DOUBLE, load_seconds DOUBLE, feature_stats BLOB")
NODE_BATCH_BYTES = 32 << 20  # feature bytes per node statement
NEIGHBOUR_CHECKS = 16  # nodes whose in-neighbour lists are compared with the source after a load


def dataset_record(client: LadybugClient, name: str) -> DatasetRecord | None:
    """The ``GnnDataset`` record of ``name``, or None (also when the table is missing)."""
    if DATASET_LABEL not in client.tables():
        return None
    rows = client.execute(f"MATCH (d:`{DATASET_LABEL}`) WHERE d.name = $name RETURN d", name=name)
    if not rows:
        return None
    return DatasetRecord.from_properties({k: v for k, v in rows[0][0].items() if not k.startswith("_")})


def require_loaded(client: LadybugClient, name: str) -> DatasetRecord:
    """The complete record of ``name``, or a :class:`UserError` that says how to load it."""
    return check_complete(dataset_record(client, name), name, f"the Ladybug database {client.path}",
                          f"{LOAD_HINT} {dataset_flags(name)} --ladybug_path {client.path}")


def check_feature_format(config: LoadConfig) -> None:
    """Ladybug stores dense float32 rows only: another ``--feature_format`` is one line."""
    if config.feature_format not in ("auto", "dense"):
        raise UsageError(f"--feature_format {config.feature_format} applies to Neo4j only; Ladybug stores dense "
                         "float32 rows")


def ensure_loaded(client: LadybugClient, dataset: GraphDataset, schema: GraphSchema | None = None,
                  config: LoadConfig | None = None) -> LoadReport:
    """Make ``dataset`` present and complete in the (read-write) Ladybug database of ``client``."""
    t0 = time.perf_counter()
    config = config or LoadConfig()
    check_feature_format(config)
    schema = schema or GraphSchema.for_dataset(dataset.name)
    fingerprint = dataset.fingerprint()
    client.execute(f"CREATE NODE TABLE IF NOT EXISTS `{DATASET_LABEL}`({RECORD_COLUMNS})")
    record = dataset_record(client, schema.dataset)
    if record is not None and config.reset:
        _drop(client, schema)
        record = None
    elif record is not None:
        _check_same_graph(record, dataset, schema, fingerprint)
        if record.complete:
            check_counts(client, dataset, schema, "Ladybug")
            status = "already loaded"
            if record.feature_stats is None:  # written before --normalize_features existed
                _write_feature_stats(client, schema, dataset)
                status = "feature statistics added"
            return LoadReport(schema.dataset, schema.label, schema.rel_type, status, "none",
                              dataset.num_nodes, dataset.num_edges, seconds=time.perf_counter() - t0)
    elif config.reset:
        _drop(client, schema)
    s = schema
    tables = client.tables()
    if record is None and (s.label in tables or s.rel_type in tables):
        raise UserError(f"{client.path} already has tables {s.label!r}/{s.rel_type!r} without a dataset record; "
                        "reload with --reset to replace them")
    if record is None:
        client.execute(f"CREATE (:`{DATASET_LABEL}` {{name: $name, label: $label, rel_type: $rel, num_nodes: $n, "
                       "num_edges: $e, num_features: $f, num_classes: $c, fingerprint: $fp, complete: false, "
                       "method: 'copy'})", name=s.dataset, label=s.label, rel=s.rel_type, n=dataset.num_nodes,
                       e=dataset.num_edges, f=dataset.num_features, c=dataset.num_classes, fp=fingerprint)
    create_tables(client, schema)
    nodes_done = _committed_prefix(client, dataset, schema)
    edges_done = client.count_relationships(s.rel_type)
    resumed = nodes_done > 0 or edges_done > 0
    if resumed:
        log.info("resuming %s: %d nodes and %d relationships already committed", s.dataset, nodes_done, edges_done)
    report = LoadReport(s.dataset, s.label, s.rel_type, "resumed" if resumed else "loaded", "copy",
                        dataset.num_nodes, dataset.num_edges)
    t = time.perf_counter()
    report.nodes_written = write_nodes(client, dataset, schema, nodes_done, dataset.num_nodes,
                                       config.node_batch(4 * dataset.num_features), progress=config.progress)
    report.phases["nodes"] = time.perf_counter() - t
    t = time.perf_counter()
    report.relationships_written = write_edges(client, dataset, schema, edges_done,
                                               config.batch_size or EDGE_BATCH * 20, progress=config.progress)
    report.phases["relationships"] = time.perf_counter() - t
    t = time.perf_counter()
    verify_loaded(client, dataset, schema, where="Ladybug")
    _check_neighbour_sample(client, dataset, schema)
    report.phases["verify"] = time.perf_counter() - t
    _write_feature_stats(client, schema, dataset)
    report.seconds = time.perf_counter() - t0
    client.execute(f"MATCH (d:`{DATASET_LABEL}`) WHERE d.name = $name SET d.complete = true, d.loaded_at = $now, "
                   "d.load_seconds = $seconds", name=s.dataset, now=time.time(), seconds=report.seconds)
    return report


def _write_feature_stats(client: LadybugClient, schema: GraphSchema, ds: GraphDataset) -> None:
    """Column statistics for ``--normalize_features``, with the record (a column added to files made before it)."""
    columns = [row[1] for row in client.execute(f"CALL table_info('{DATASET_LABEL}') RETURN *")]
    if "feature_stats" not in columns:
        client.execute(f"ALTER TABLE `{DATASET_LABEL}` ADD feature_stats BLOB")
    client.execute(f"MATCH (d:`{DATASET_LABEL}`) WHERE d.name = $name SET d.feature_stats = $stats",
                   name=schema.dataset, stats=FeatureStats.compute(ds.x).to_bytes())


def create_tables(client: LadybugClient, schema: GraphSchema) -> None:
    """The dataset's node and rel tables (no-op when they exist)."""
    s = schema
    client.execute(f"CREATE NODE TABLE IF NOT EXISTS `{s.label}`(`{s.id_prop}` INT64 PRIMARY KEY, "
                   f"`{s.x_prop}` BLOB, `{s.y_prop}` INT64, `{s.split_prop}` STRING)")
    client.execute(f"CREATE REL TABLE IF NOT EXISTS `{s.rel_type}`(FROM `{s.label}` TO `{s.label}`)")


def write_nodes(client: LadybugClient, ds: GraphDataset, schema: GraphSchema, lo: int, hi: int, batch: int,
                *, progress: bool = False) -> int:
    """Nodes ``lo..hi-1`` (id, packed features, label, split), ``batch`` rows per atomic statement."""
    s = schema
    query = (f"UNWIND $rows AS r CREATE (:`{s.label}` {{`{s.id_prop}`: r.id, `{s.x_prop}`: r.x, "
             f"`{s.y_prop}`: r.y, `{s.split_prop}`: r.split}})")
    codes = ds.split_codes()
    batch = max(1, min(batch, NODE_BATCH_BYTES // max(4 * ds.num_features, 1)))
    with tqdm(total=ds.num_nodes, initial=lo, unit="node", unit_scale=True, desc=f"{s.dataset} nodes",
              disable=not progress) as bar:
        for start in range(lo, hi, batch):
            end = min(start + batch, hi)
            xs = encode_features(ds.features(np.arange(start, end)))
            rows = [{"id": i, "x": x, "y": y, "split": sp} for i, x, y, sp in
                    zip(range(start, end), xs, np.asarray(ds.y[start:end]).tolist(),
                        SPLIT_NAMES[codes[start:end]].tolist())]
            client.execute(query, rows=rows)
            bar.update(end - start)
    return hi - lo


def write_edges(client: LadybugClient, ds: GraphDataset, schema: GraphSchema, done: int, batch: int,
                *, progress: bool = False) -> int:
    """Relationships ``done..E-1`` in source order, one ``COPY`` (atomic) per ``batch``."""
    query = f"COPY `{schema.rel_type}` FROM $edges"
    with tqdm(total=ds.num_edges, initial=done, unit="rel", unit_scale=True, desc=f"{schema.dataset} relationships",
              disable=not progress) as bar:
        for start in range(done, ds.num_edges, batch):
            end = min(start + batch, ds.num_edges)
            e = np.asarray(ds.edge_index[:, start:end], dtype=np.int64)
            client.execute(query, edges=pd.DataFrame({"from": e[0], "to": e[1]}))
            bar.update(end - start)
    return ds.num_edges - done


def _committed_prefix(client: LadybugClient, ds: GraphDataset, s: GraphSchema) -> int:
    """Nodes already written; they must be ids ``0..n-1`` (the loader writes in id order)."""
    n, top = client.execute(f"MATCH (n:`{s.label}`) RETURN count(n), max(n.`{s.id_prop}`)")[0]
    if n and top != n - 1:
        raise UserError(f"{s.label!r} holds {n} nodes that are not ids 0..{n - 1}; reload with --reset")
    if client.count_relationships(s.rel_type) and n < ds.num_nodes:
        raise UserError(f"{s.rel_type!r} has relationships before all nodes were written; reload with --reset")
    return int(n)


def _check_same_graph(record: DatasetRecord, ds: GraphDataset, s: GraphSchema, fingerprint: str) -> None:
    if (record.fingerprint, record.label, record.rel_type) != (fingerprint, s.label, s.rel_type):
        raise UserError(f"the Ladybug database already holds a different graph named {s.dataset!r} "
                        f"(label {record.label!r}); use --reset to replace it or --name for another name")


def _check_neighbour_sample(client: LadybugClient, ds: GraphDataset, s: GraphSchema) -> None:
    """In-neighbour multisets of a few random nodes equal the source's (catches id mix-ups)."""
    if ds.num_nodes == 0:
        return
    nodes = np.unique(np.random.default_rng().integers(0, ds.num_nodes, NEIGHBOUR_CHECKS))
    rows = client.execute(f"MATCH (u:`{s.label}`)-[:`{s.rel_type}`]->(v:`{s.label}`) WHERE v.`{s.id_prop}` IN $ids "
                          f"RETURN v.`{s.id_prop}`, u.`{s.id_prop}`", ids=nodes.tolist())
    got = sorted((int(v), int(u)) for v, u in rows)
    src, dst = (np.asarray(ds.edge_index[i]) for i in (0, 1))
    keep = np.isin(dst, nodes)
    want = sorted(zip(dst[keep].tolist(), src[keep].tolist()))
    if got != want:
        raise UserError(f"dataset {s.dataset!r} in Ladybug: the neighbours of sampled nodes differ from the "
                        "source; reload it with --reset")


def _drop(client: LadybugClient, s: GraphSchema) -> None:
    tables = client.tables()
    for table in (s.rel_type, s.label):
        if table in tables:
            client.execute(f"DROP TABLE `{table}`")
    client.execute(f"MATCH (d:`{DATASET_LABEL}`) WHERE d.name = $name DELETE d", name=s.dataset)
