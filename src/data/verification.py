"""The check that ends every load: the database against its source, before ``complete = true``.

Why it exists apart from the loaders: it uses only ``read``/``count_nodes``/``count_relationships``
and Cypher that Neo4j and Ladybug both speak, so both loaders run the same scan (counts, label
and split histograms, sampled feature rows bit for bit, optionally the packed adjacency).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from src.core.codecs import DENSE, LOSSY_ENCODINGS, decode_features, encode_rows, split_rows
from src.core.errors import UserError
from src.core.record import DatasetRecord
from src.core.schema import DATASET_LABEL, GraphSchema
from src.data.graph import GraphDataset
from src.data.loading import SPLIT_NAMES, GraphClient, feature_rows

VERIFY_SAMPLE = 16  # feature rows compared bit for bit after a load


def verify_loaded(client: GraphClient, ds: GraphDataset, schema: GraphSchema, *, where: str = "Neo4j",
                  adjacency: bool = False, alongside: Callable[[], None] | None = None) -> None:
    """Compare the database with the source: counts, label and split histograms, sampled feature rows.

    Only ``read``/``count_nodes``/``count_relationships`` and Cypher both databases speak are used,
    so ``client`` may also be a :class:`~src.ladybugdb.client.LadybugClient` (``where="Ladybug"``).
    ``adjacency``: also check the ``nbrs`` property (:func:`check_adjacency`); the nodes without
    it are counted by the same scan as the histograms (one pass over the nodes, not two).
    ``alongside``: work run in another thread during that scan (after an import: the id
    constraint's index build, which the sampled rows are then read through).
    """
    s = schema
    problems = []
    nodes, rels = client.count_nodes(s.label), client.count_relationships(s.rel_type)
    if nodes != ds.num_nodes:
        problems.append(f"{nodes} nodes instead of {ds.num_nodes}")
    if rels != ds.num_edges:
        problems.append(f"{rels} relationships instead of {ds.num_edges}")
    no_adj = f"n.`{s.adj_prop}` IS NULL AS no_adj, " if adjacency else ""
    with ThreadPoolExecutor(1) as pool:
        side = pool.submit(alongside or (lambda: None))
        hist = client.read(f"MATCH (n:`{s.label}`) RETURN n.`{s.y_prop}` AS y, n.`{s.split_prop}` AS split, "
                           f"{no_adj}count(*) AS c")
        side.result()
    got_y: dict[int, int] = {}
    got_split: dict[str | None, int] = {}
    for r in hist:
        got_y[r["y"]] = got_y.get(r["y"], 0) + r["c"]
        got_split[r["split"]] = got_split.get(r["split"], 0) + r["c"]
    y = np.asarray(ds.y)
    values, counts = np.unique(y, return_counts=True)
    if got_y != dict(zip(values.tolist(), counts.tolist())):
        problems.append("label histogram differs from the source")
    codes = ds.split_codes()
    want_split = {SPLIT_NAMES[c]: int(n) for c, n in zip(*np.unique(codes, return_counts=True))}
    if got_split != want_split:
        problems.append(f"split counts {got_split} instead of {want_split}")
    problems += _check_feature_sample(client, ds, s, _stored_record(client, s.dataset))
    if adjacency:
        missing = sum(r["c"] for r in hist if r["no_adj"])
        problems += [f"{missing} nodes have no {s.adj_prop!r}"] if missing else check_adjacency(client, ds, s)
    if problems:
        raise UserError(f"dataset {s.dataset!r} in {where} does not match {ds.name}: {'; '.join(problems)}; "
                        "reload it with --reset")


def _stored_record(client: GraphClient, name: str) -> DatasetRecord | None:
    """The dataset's record (its feature encoding; None: dense, as for Ladybug's records)."""
    recs = client.read(f"MATCH (d:`{DATASET_LABEL}`) WHERE d.name = $name RETURN properties(d) AS p", name=name)
    return DatasetRecord.from_properties(recs[0]["p"]) if recs else None


def _check_feature_sample(client: GraphClient, ds: GraphDataset, s: GraphSchema, record: DatasetRecord | None
                          ) -> list[str]:
    """A few rows, stored bytes and decoded values, bit for bit (catches encoding bugs); compressed rows
    decode within their encoding's rounding of the source."""
    encoding = record.feature_encoding if record is not None else DENSE
    quant = record.quant() if record is not None else None
    if ds.num_nodes == 0:
        return []
    ids = np.unique(np.random.default_rng().integers(0, ds.num_nodes, VERIFY_SAMPLE))
    recs = client.read(f"UNWIND $ids AS i MATCH (n:`{s.label}` {{`{s.id_prop}`: i}}) "
                       f"RETURN n.`{s.id_prop}` AS id, n.`{s.x_prop}` AS x ORDER BY id", ids=ids.tolist())
    if [r["id"] for r in recs] != ids.tolist():
        return ["sampled node ids are missing"]
    stored = [bytes(r["x"] or b"") for r in recs]
    if stored != split_rows(*encode_rows(feature_rows(ds, ids), encoding, quant)):
        return [f"sampled feature rows differ from the source (encoding {encoding})"]
    try:
        got = decode_features(stored, ds.num_features, encoding, quant)
    except ValueError as exc:
        return [f"sampled feature rows do not decode: {exc}"]
    source = np.ascontiguousarray(ds.features(ids), dtype="<f4")
    if encoding in LOSSY_ENCODINGS:
        # half a step of the encoding: 2^-9 relative (bfloat16; float16: 2^-12), half an 8-bit step
        tol = np.abs(source) * 2.0 ** -8 + (0.51 * quant.scale + 1e-6 * np.abs(quant.offset) if quant else 2.0 ** -24)
        with np.errstate(invalid="ignore"):
            close = (np.abs(got - source) <= tol) | (got == source) | (np.isnan(got) & np.isnan(source))
        if not close.all():
            return [f"sampled feature rows decode beyond {encoding}'s rounding of the source"]
    elif got.tobytes() != source.tobytes():
        return ["sampled feature rows decode to other values than the source"]
    return []


def check_adjacency(client: GraphClient, ds: GraphDataset, s: GraphSchema) -> list[str]:
    """Random nodes and the biggest hub match the source bit for bit (the caller counts missing rows).

    The expected rows come from linear passes over the edge list, not the O(E log E) sort that
    builds the whole adjacency.
    """
    if ds.num_nodes == 0:
        return []
    src, dst = np.asarray(ds.edge_index[0]), np.asarray(ds.edge_index[1])
    hub = int(np.argmax(np.bincount(dst, minlength=ds.num_nodes)))
    ids = np.unique(np.r_[np.random.default_rng().integers(0, ds.num_nodes, VERIFY_SAMPLE), hub])
    recs = client.read(f"UNWIND $ids AS i MATCH (n:`{s.label}` {{`{s.id_prop}`: i}}) "
                       f"RETURN n.`{s.id_prop}` AS id, n.`{s.adj_prop}` AS nbrs ORDER BY id", ids=ids.tolist())
    near = np.flatnonzero(np.isin(dst, ids))  # edges into a sampled node, in edge order
    want = [src[near[dst[near] == i]].astype("<i8").tobytes() for i in ids]
    if [r["id"] for r in recs] != ids.tolist() or [bytes(r["nbrs"]) for r in recs] != want:
        return [f"{s.adj_prop!r} of sampled nodes {ids[:5].tolist()}... differs from the source"]
    return []
