"""The writes of a registration: dense ids, packed rows + class + split, packed adjacency.

Why these three phases, each resumable: ids first (sequential batches in the nodes' internal
order, so a resumed run assigns exactly what an uninterrupted one would; nodes that have one
keep it), then rows and adjacency in fixed dense-id ranges, each range one transaction with
its ``(:GnnLoadBatch)`` marker (src/neo4jdb/load/unwind.py run_batches), so a killed run
continues where it stopped. Only the registration's namespaced properties are SET; the user's
properties are read, never written. Neighbour lists are read with the same pattern comprehension
the Cypher sampler walks (GraphSchema.neighbours_of), so the copy lists them in the same order.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from src.client import Neo4jClient
from src.core.codecs import DENSE, encode_rows, split_rows
from src.core.errors import UserError
from src.core.feature_stats import FeatureStats, FeatureSums
from src.core.schema import GraphSchema
from src.data.loading import LoadConfig
from src.neo4jdb.load.unwind import run_batches
from src.neo4jdb.register.hetero_spec import HeteroRegisterSpec
from src.neo4jdb.register.inspect import GraphFacts
from src.neo4jdb.register.spec import SPLIT_VALUES, RegisterSpec

log = logging.getLogger(__name__)

SPLIT_CODES = np.array([None, "train", "val", "test"], dtype=object)


def _internal_order(element_ids: list[str]) -> np.ndarray:
    """Order of ``element_ids`` by the store's node id (``4:<db>:<id>``), else by the string."""
    try:
        keys = np.array([int(e.rsplit(":", 1)[1]) for e in element_ids], dtype=np.int64)
        return np.argsort(keys, kind="stable")
    except (ValueError, IndexError):
        return np.argsort(np.array(element_ids, dtype=object), kind="stable")


def assign_ids(client: Neo4jClient, spec: RegisterSpec, config: LoadConfig) -> tuple[int, np.ndarray]:
    """Dense ids 0..N-1 on the nodes lacking one; returns (ids written, the target value of each id)."""
    s = spec.schema
    return assign_dense_ids(client, s.dataset, s.label, s.id_prop, spec.target, spec.batch_nodes, config)


def assign_dense_ids(client: Neo4jClient, dataset: str, label: str, id_prop: str, read_prop: str | None,
                     batch_nodes: int, config: LoadConfig) -> tuple[int, np.ndarray]:
    """Dense ids 0..N-1 (property ``id_prop``) on the ``label`` nodes lacking one, in the store's order;
    returns (ids written, the value of ``read_prop`` (None when not given) of each id)."""
    read = f"n.`{read_prop}`" if read_prop else "null"
    rows = client.read_tx(lambda tx: [tuple(r) for r in tx.run(
        f"MATCH (n:`{label}`) RETURN elementId(n) AS e, n.`{id_prop}` AS i, {read} AS t")])
    n = len(rows)
    targets = np.empty(n, dtype=object)
    have = [(i, t) for _, i, t in rows if i is not None]
    for i, t in have:
        targets[i] = t
    todo = [(e, t) for e, i, t in rows if i is None]
    first = len(have)
    if have and max(i for i, _ in have) != first - 1:
        raise UserError(f"dense ids {id_prop!r} on :{label} are not 0..{first - 1}; start the registration "
                        f"over with --reset")
    order = _internal_order([e for e, _ in todo])
    query = f"UNWIND $rows AS r MATCH (n) WHERE elementId(n) = r.e SET n.`{id_prop}` = r.i RETURN count(n) AS c"
    with tqdm(total=n, initial=first, unit="node", unit_scale=True, desc=f"{dataset} ids",
              disable=not config.progress) as bar:
        for lo in range(0, len(order), batch_nodes):
            chunk = order[lo:lo + batch_nodes]
            batch = [{"e": todo[k][0], "i": first + lo + j} for j, k in enumerate(chunk.tolist())]
            wrote = client.write_tx(lambda tx: tx.run(query, rows=batch).single()["c"])
            if wrote != len(batch):
                raise UserError(f"{len(batch) - wrote} :{label} nodes were deleted during the registration; "
                                "run it again")
            for j, k in enumerate(chunk.tolist()):
                targets[first + lo + j] = todo[k][1]
            bar.update(len(batch))
    return len(todo), targets


def class_indices(targets: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Target values -> class index in the sorted vocabulary; -1 where missing."""
    index = {c: k for k, c in enumerate(classes)}
    return np.array([index.get(t, -1) if t is not None else -1 for t in targets], dtype=np.int64)


def random_split_codes(y: np.ndarray, spec: RegisterSpec | HeteroRegisterSpec) -> np.ndarray:
    """Split code per dense id (0 none, 1 train, 2 val, 3 test): a seeded permutation of the labelled
    nodes cut by the fractions, per class when ``--stratify``."""
    frac = spec.random_split
    codes = np.zeros(len(y), dtype=np.int8)
    rng = np.random.default_rng(spec.seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y[y >= 0])] if spec.stratify else [np.flatnonzero(y >= 0)]
    for members in groups:
        members = members[rng.permutation(len(members))]
        a = int(round(frac.train * len(members)))
        b = a + int(round(frac.val * len(members)))
        c = min(len(members), b + int(round(frac.test * len(members))))
        codes[members[:a]], codes[members[a:b]], codes[members[b:c]] = 1, 2, 3
    return codes


@dataclass(frozen=True)
class RowJob:
    """The packed rows of one label: where to read (the user's properties) and write (the namespaced ones)."""

    dataset: str
    label: str
    id_prop: str
    x_prop: str
    y_prop: str
    split_prop: str
    features: tuple[str, ...]  # empty: no x written (a featureless heterogeneous type)
    feature_kind: str
    num_features: int
    num_nodes: int
    user_split: str | None  # the user's split property, when the split is not random
    batch_nodes: int
    labelled: bool = True  # y and split written
    kind: str = "rows"  # the batch markers' kind

    @classmethod
    def of(cls, spec: RegisterSpec, facts: GraphFacts) -> RowJob:
        s = spec.schema
        return cls(s.dataset, s.label, s.id_prop, s.x_prop, s.y_prop, s.split_prop, spec.features, facts.feature_kind,
                   facts.num_features, facts.num_nodes, spec.split_prop, spec.batch_nodes)


def write_rows(client: Neo4jClient, job: RowJob, y: np.ndarray | None, split_codes: np.ndarray | None,
               done: set[int], config: LoadConfig) -> tuple[int, FeatureStats | None]:
    """Packed float32 rows, class index and split of every node; returns (rows written, stats if all were)."""
    L, n, f = job.label, job.num_nodes, job.num_features
    if not job.features:
        read_x = "null"
    elif job.feature_kind == "scalars":
        read_x = "[" + ", ".join(f"n.`{p}`" for p in job.features) + "]"
    else:
        read_x = f"n.`{job.features[0]}`"
    read_split = f", n.`{job.user_split}` AS s" if job.user_split and job.labelled else ""
    read = f"UNWIND range($lo, $hi - 1) AS i MATCH (n:`{L}` {{`{job.id_prop}`: i}}) RETURN i, {read_x} AS x{read_split}"
    sums, lock = FeatureSums(f), threading.Lock()

    def params(lo: int, hi: int) -> dict[str, Any]:
        recs = client.read(read, lo=lo, hi=hi)
        if len(recs) != hi - lo:
            raise UserError(f"nodes {lo}..{hi - 1} of {job.dataset!r} have no dense id {job.id_prop!r}; start over "
                            "with --reset")
        recs.sort(key=lambda r: r["i"])
        rows: list[dict[str, Any]] = [{"id": lo + k} for k in range(hi - lo)]
        if job.features:
            x = np.zeros((hi - lo, f), dtype=np.float32)
            for k, r in enumerate(recs):
                v = r["x"]
                if v is None or (job.feature_kind == "scalars" and None in v):
                    continue  # --missing_features zero (the checks refused it otherwise)
                x[k] = np.frombuffer(bytes(v), dtype="<f4") if job.feature_kind == "bytes" else v
            if not np.isfinite(x).all():
                raise UserError(f"features of :{L} nodes {lo}..{hi - 1} hold NaN or infinite values; replace them "
                                "with finite numbers, then run the registration again")
            with lock:
                sums.add(x)
            for row, xs in zip(rows, split_rows(*encode_rows(x, DENSE))):
                row["x"] = xs
        if job.labelled:
            if split_codes is not None:
                splits = SPLIT_CODES[split_codes[lo:hi]].tolist()
            else:
                splits = [SPLIT_VALUES.get(r["s"].lower()) if isinstance(r["s"], str) else None for r in recs]
            for row, yk, sk in zip(rows, y[lo:hi].tolist(), splits):
                row["y"], row["split"] = yk, sk if yk >= 0 else None
        return {"rows": rows}

    sets = ([f"n.`{job.x_prop}` = r.x"] if job.features else []) + (
        [f"n.`{job.y_prop}` = r.y", f"n.`{job.split_prop}` = r.split"] if job.labelled else [])
    query = f"UNWIND $rows AS r MATCH (n:`{L}` {{`{job.id_prop}`: r.id}}) SET {', '.join(sets)}"
    batch = min(job.batch_nodes, max(1, (8 << 20) // (4 * max(f, 1))))
    written = run_batches(client, job.dataset, job.kind, n, batch, done, query, params, config)
    return written, (sums.result() if not done else None)


def read_stats(client: Neo4jClient, schema: GraphSchema, num_nodes: int, num_features: int,
               batch: int = 20_000) -> FeatureStats:
    """Column statistics from the stored rows (after a resumed registration, whose first run's sums are lost)."""
    s, sums = schema, FeatureSums(num_features)
    for lo in range(0, num_nodes, batch):
        recs = client.read(f"UNWIND range($lo, $hi - 1) AS i MATCH (n:`{s.label}` {{`{s.id_prop}`: i}}) "
                           f"RETURN n.`{s.x_prop}` AS x", lo=lo, hi=min(num_nodes, lo + batch))
        sums.add(np.frombuffer(b"".join(bytes(r["x"]) for r in recs), dtype="<f4").reshape(-1, num_features))
    return sums.result()


def write_adjacency(client: Neo4jClient, spec: RegisterSpec, num_nodes: int, done: set[int],
                    config: LoadConfig) -> int:
    """Every node's neighbour ids (per --direction) as packed int64 bytes; returns rows written."""
    s = spec.schema
    read = (f"UNWIND range($lo, $hi - 1) AS i MATCH (n:`{s.label}` {{`{s.id_prop}`: i}}) "
            f"RETURN i, [{s.neighbours_of('n', f'm:`{s.label}`')} | m.`{s.id_prop}`] AS nb")

    def params(lo: int, hi: int) -> dict[str, Any]:
        recs = client.read(read, lo=lo, hi=hi)
        if len(recs) != hi - lo or any(None in r["nb"] for r in recs):
            raise UserError(f":{s.label} nodes were added during the registration of {s.dataset!r}; run it again")
        return {"rows": [{"id": r["i"], "nbrs": np.asarray(r["nb"], dtype="<i8").tobytes()} for r in recs]}

    query = f"UNWIND $rows AS r MATCH (n:`{s.label}` {{`{s.id_prop}`: r.id}}) SET n.`{s.adj_prop}` = r.nbrs"
    return run_batches(client, s.dataset, "adjacency", num_nodes, spec.batch_nodes, done, query, params, config)
