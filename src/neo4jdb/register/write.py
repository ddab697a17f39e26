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
    rows = client.read_tx(lambda tx: [tuple(r) for r in tx.run(
        f"MATCH (n:`{s.label}`) RETURN elementId(n) AS e, n.`{s.id_prop}` AS i, n.`{spec.target}` AS t")])
    n = len(rows)
    targets = np.empty(n, dtype=object)
    have = [(i, t) for _, i, t in rows if i is not None]
    for i, t in have:
        targets[i] = t
    todo = [(e, t) for e, i, t in rows if i is None]
    first = len(have)
    if have and max(i for i, _ in have) != first - 1:
        raise UserError(f"dense ids {s.id_prop!r} on :{s.label} are not 0..{first - 1}; start the registration "
                        f"over with --reset")
    order = _internal_order([e for e, _ in todo])
    query = f"UNWIND $rows AS r MATCH (n) WHERE elementId(n) = r.e SET n.`{s.id_prop}` = r.i RETURN count(n) AS c"
    with tqdm(total=n, initial=first, unit="node", unit_scale=True, desc=f"{s.dataset} ids",
              disable=not config.progress) as bar:
        for lo in range(0, len(order), spec.batch_nodes):
            chunk = order[lo:lo + spec.batch_nodes]
            batch = [{"e": todo[k][0], "i": first + lo + j} for j, k in enumerate(chunk.tolist())]
            wrote = client.write_tx(lambda tx: tx.run(query, rows=batch).single()["c"])
            if wrote != len(batch):
                raise UserError(f"{len(batch) - wrote} :{s.label} nodes were deleted during the registration; "
                                "run it again")
            for j, k in enumerate(chunk.tolist()):
                targets[first + lo + j] = todo[k][1]
            bar.update(len(batch))
    return len(todo), targets


def class_indices(targets: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Target values -> class index in the sorted vocabulary; -1 where missing."""
    index = {c: k for k, c in enumerate(classes)}
    return np.array([index.get(t, -1) if t is not None else -1 for t in targets], dtype=np.int64)


def random_split_codes(y: np.ndarray, spec: RegisterSpec) -> np.ndarray:
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


def write_rows(client: Neo4jClient, spec: RegisterSpec, facts: GraphFacts, y: np.ndarray,
               split_codes: np.ndarray | None, done: set[int], config: LoadConfig) -> tuple[int, FeatureStats | None]:
    """Packed float32 rows, class index and split of every node; returns (rows written, stats if all were)."""
    s, L = spec.schema, spec.label
    n, f = facts.num_nodes, facts.num_features
    if facts.feature_kind == "scalars":
        read_x = "[" + ", ".join(f"n.`{p}`" for p in spec.features) + "]"
    else:
        read_x = f"n.`{spec.features[0]}`"
    read_split = f", n.`{spec.split_prop}` AS s" if spec.split_prop else ""
    read = f"UNWIND range($lo, $hi - 1) AS i MATCH (n:`{L}` {{`{s.id_prop}`: i}}) RETURN i, {read_x} AS x{read_split}"
    sums, lock = FeatureSums(f), threading.Lock()

    def params(lo: int, hi: int) -> dict[str, Any]:
        recs = client.read(read, lo=lo, hi=hi)
        if len(recs) != hi - lo:
            raise UserError(f"nodes {lo}..{hi - 1} of {s.dataset!r} have no dense id {s.id_prop!r}; start over with --reset")
        recs.sort(key=lambda r: r["i"])
        x = np.zeros((hi - lo, f), dtype=np.float32)
        for k, r in enumerate(recs):
            v = r["x"]
            if v is None or (facts.feature_kind == "scalars" and None in v):
                continue  # --missing_features zero (the checks refused it otherwise)
            x[k] = np.frombuffer(bytes(v), dtype="<f4") if facts.feature_kind == "bytes" else v
        if not np.isfinite(x).all():
            raise UserError(f"features of :{L} nodes {lo}..{hi - 1} hold NaN or infinite values; replace them with "
                            "finite numbers, then run the registration again")
        with lock:
            sums.add(x)
        if split_codes is not None:
            splits = SPLIT_CODES[split_codes[lo:hi]].tolist()
        else:
            splits = [SPLIT_VALUES.get(r["s"].lower()) if isinstance(r["s"], str) else None for r in recs]
        ys = y[lo:hi].tolist()
        xs = split_rows(*encode_rows(x, DENSE))
        return {"rows": [{"id": lo + k, "x": xs[k], "y": ys[k], "split": splits[k] if ys[k] >= 0 else None}
                         for k in range(hi - lo)]}

    query = (f"UNWIND $rows AS r MATCH (n:`{L}` {{`{s.id_prop}`: r.id}}) "
             f"SET n.`{s.x_prop}` = r.x, n.`{s.y_prop}` = r.y, n.`{s.split_prop}` = r.split")
    batch = min(spec.batch_nodes, max(1, (8 << 20) // (4 * max(f, 1))))
    written = run_batches(client, s.dataset, "rows", n, batch, done, query, params, config)
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
