"""A dataset's edge split stored in Neo4j, and read back by the link-prediction trainer.

What is stored (``python loaders/edge_split.py``):
- on each relationship of a validation or test pair (both directions, parallel copies too), the
  property ``split_prop`` (``split``, or a registered graph's ``gnn_<name>_split``) = ``"val"`` /
  ``"test"``; pairs beyond the fractions' sum get ``"unused"``; training relationships have none.
  So Cypher sees the split: ``MATCH ()-[r:T]->() WHERE r.split = 'test'``.
- on every node, ``<adj_prop>_train``: its neighbour ids without held-out pairs, packed as the
  adjacency copy ``adj_prop`` is and in its order, which ``gnn.sampleHop(s)`` (and their
  projection, keyed by the property) read in link training instead of ``adj_prop``.
- one ``(:GnnEdgeSplit {dataset, fractions, seed, counts, rel_count, fingerprint, complete})``.

The split is computed from the stored adjacency copy with :func:`src.core.edge_split.split_graph`,
the function the in-memory backend applies to the source file, so both train on the same split.
The plugin keeps the split current under edits (``LiveSplit.java``, in the editing transaction): a
relationship created later is a training edge (appended to ``nbrs_train`` as to ``nbrs``) unless its
pair is held out, when it gets the pair's mark; a deleted one leaves ``nbrs_train``; the record's pair
counts and ``rel_count`` follow, so a deleted held-out pair leaves the split (the next run reads it one
lower) and the split never reads as stale. Without the plugin (or after a reload) a relationship count
or dataset fingerprint different from the recorded one stops training with one line (re-split with
``--reset``). Marks edited by hand are not maintained.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from src.client import Neo4jClient
from src.core.codecs import encode_adjacency
from src.core.csr import CSRGraph
from src.core.edge_split import (HELD_OUT, PARTS, EdgeSplit, EdgeSplitSpec, csr_edge_index, pair_keys, split_graph,
                                 training_graph, unique_pairs)
from src.core.errors import UserError
from src.core.record import DatasetRecord
from src.core.schema import GraphSchema, validate_identifier

log = logging.getLogger(__name__)

SPLIT_LABEL = "GnnEdgeSplit"
UNUSED = "unused"
BATCH_ROWS = 5000
PAGE_NODES = 100_000  # nodes per read of adjacency copies and marks


@dataclass(frozen=True)
class SplitNames:
    """Where one dataset's edge split lives: the relationship property and the training adjacency copy."""

    rel_prop: str
    train_adj_prop: str

    @classmethod
    def of(cls, schema: GraphSchema) -> SplitNames:
        return cls(rel_prop=schema.split_prop,
                   train_adj_prop=validate_identifier(f"{schema.adj_prop}_train", "training adjacency property"))


def make_hint(dataset: str, spec: EdgeSplitSpec) -> str:
    return f"`python loaders/edge_split.py --dataset {dataset} --split {spec.text} --seed {spec.seed}`"


def stored_split(client: Neo4jClient, dataset: str) -> dict | None:
    rows = client.read(f"MATCH (s:`{SPLIT_LABEL}` {{dataset: $name}}) RETURN properties(s) AS p", name=dataset)
    return dict(rows[0]["p"]) if rows else None


def read_csr(client: Neo4jClient, record: DatasetRecord, *, progress: bool = False) -> CSRGraph:
    """The dataset's neighbour lists from its adjacency copy (the plugin keeps it equal to the relationships)."""
    s = record.schema
    if not record.has_adjacency(s):
        raise UserError(f"dataset {s.dataset!r} has no adjacency property {s.adj_prop!r} to split; reload it with "
                        f"`python loaders/load_into_neo4j.py --dataset {s.dataset}`")
    return read_adjacency(client, record, s.adj_prop, progress=progress)


def read_adjacency(client: Neo4jClient, record: DatasetRecord, prop: str, *, progress: bool = False) -> CSRGraph:
    """The packed neighbour lists in node property ``prop``, read in pages of ids so memory stays bounded
    (a page's records, then numpy) on graphs of millions of nodes; every id 0..N-1 must be there once."""
    s, n = record.schema, record.num_nodes
    prop = validate_identifier(prop, "adjacency property")
    found = int(client.read(f"MATCH (n:`{s.label}`) WHERE n.`{s.id_prop}` IS NOT NULL RETURN count(n) AS c")[0]["c"])
    if found != n:
        raise UserError(f"dataset {s.dataset!r}: {found} nodes with ids found, the record says {n}; reload it")
    query = (f"MATCH (n:`{s.label}`) WHERE n.`{s.id_prop}` >= $lo AND n.`{s.id_prop}` < $hi "
             f"RETURN n.`{s.id_prop}` AS id, n.`{prop}` AS a ORDER BY id")
    degrees, pages = np.zeros(n, dtype=np.int64), []
    with tqdm(total=n, unit="node", desc=f"{s.dataset} {prop}", disable=not progress) as bar:
        for lo in range(0, n, PAGE_NODES):
            hi = min(lo + PAGE_NODES, n)
            rows = client.read(query, lo=lo, hi=hi)
            if len(rows) != hi - lo or (rows and (rows[0]["id"] != lo or rows[-1]["id"] != hi - 1)):
                raise UserError(f"dataset {s.dataset!r}: ids {lo}..{hi - 1} are not all present once; reload it")
            lists = [np.frombuffer(r["a"] or b"", dtype="<i8") for r in rows]
            degrees[lo:hi] = [len(a) for a in lists]
            pages.append(np.concatenate(lists).astype(np.int64) if lists else np.zeros(0, np.int64))
            bar.update(hi - lo)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(degrees, out=indptr[1:])
    return CSRGraph(indptr=indptr, indices=np.concatenate(pages) if pages else np.zeros(0, np.int64))


def read_marked_pairs(client: Neo4jClient, record: DatasetRecord, names: SplitNames, *,
                      progress: bool = False) -> dict[str, np.ndarray]:
    """The pairs whose relationships carry each split mark (``val``, ``test``, ``unused``), from pages of
    source ids: one scan of the relationships, a few id lists per page (not one record per relationship)."""
    s, n = record.schema, record.num_nodes
    query = (f"MATCH (a:`{s.label}`) WHERE a.`{s.id_prop}` >= $lo AND a.`{s.id_prop}` < $hi "
             f"MATCH (a)-[r:`{s.rel_type}`]->(b:`{s.label}`) WHERE r.`{names.rel_prop}` IN $parts "
             f"AND b.`{s.id_prop}` IS NOT NULL "
             f"RETURN r.`{names.rel_prop}` AS part, collect(a.`{s.id_prop}`) AS u, collect(b.`{s.id_prop}`) AS v")
    marked: dict[str, list[np.ndarray]] = {p: [] for p in (*HELD_OUT, UNUSED)}
    with tqdm(total=n, unit="node", desc=f"{s.dataset} held-out marks", disable=not progress) as bar:
        for lo in range(0, n, PAGE_NODES):
            for row in client.read(query, lo=lo, hi=min(lo + PAGE_NODES, n), parts=list(marked)):
                marked[row["part"]].append(np.array([row["u"], row["v"]], dtype=np.int64))
            bar.update(min(PAGE_NODES, n - lo))
    return {p: unique_pairs(np.concatenate(e, axis=1) if e else np.zeros((2, 0), np.int64), n)
            for p, e in marked.items()}


def write_edge_split(client: Neo4jClient, record: DatasetRecord, spec: EdgeSplitSpec, *, reset: bool = False,
                     progress: bool = True) -> dict[str, int]:
    """Compute and store ``spec``'s split of ``record``'s graph; idempotent, resumable (a re-run redoes it).

    Returns the pair counts per part. A different split already stored is refused unless ``reset``.
    """
    s, names = record.schema, SplitNames.of(record.schema)
    old = stored_split(client, s.dataset)
    if old is not None and old.get("complete") and not reset:
        if old.get("fractions") == spec.text and old.get("seed") == spec.seed and _fresh(client, record, old) is None:
            log.info("dataset %s already has edge split %s (seed %d): nothing to do", s.dataset, spec.text, spec.seed)
            return {p: int(old[f"num_{p}"]) for p in ("train", "val", "test")}
        raise UserError(f"dataset {s.dataset!r} already has edge split {old.get('fractions')} (seed {old.get('seed')}); "
                        "pass --reset to replace it")
    csr = read_csr(client, record, progress=progress)
    split = split_graph(csr, spec)
    client.write(f"MERGE (s:`{SPLIT_LABEL}` {{dataset: $name}}) SET s.complete = false", name=s.dataset)
    clear_marks(client, s, names)
    marks = [(part, split.part(part)) for part in HELD_OUT]
    unused = _unused_pairs(csr, split)
    if len(unused):
        marks.append((UNUSED, unused))
    query = (f"UNWIND $rows AS row MATCH (a:`{s.label}` {{`{s.id_prop}`: row[0]}})-[r:`{s.rel_type}`]-"
             f"(b:`{s.label}` {{`{s.id_prop}`: row[1]}}) SET r.`{names.rel_prop}` = $part")
    total = sum(len(p) for _, p in marks)
    with tqdm(total=total, unit="pair", desc=f"{s.dataset} held-out edges", disable=not progress) as bar:
        for part, pairs in marks:
            for lo in range(0, len(pairs), BATCH_ROWS):
                client.write(query, rows=pairs[lo:lo + BATCH_ROWS].tolist(), part=part)
                bar.update(min(BATCH_ROWS, len(pairs) - lo))
    _write_train_adjacency(client, s, names, training_graph(csr, split), progress)
    counts = split.counts()
    client.write(f"MATCH (s:`{SPLIT_LABEL}` {{dataset: $name}}) SET s.fractions = $fractions, s.seed = $seed, "
                 "s.num_train = $train, s.num_val = $val, s.num_test = $test, s.rel_prop = $rel_prop, "
                 "s.train_adj_prop = $adj, s.rel_count = $rels, s.fingerprint = $fp, s.complete = true",
                 name=s.dataset, fractions=spec.text, seed=spec.seed, **counts, rel_prop=names.rel_prop,
                 adj=names.train_adj_prop, rels=client.count_relationships(s.rel_type), fp=record.fingerprint)
    return counts


def clear_marks(client: Neo4jClient, s: GraphSchema, names: SplitNames) -> None:
    """Remove a previous split's relationship marks and training copy (nothing else is touched)."""
    client.run_autocommit(f"MATCH ()-[r:`{s.rel_type}`]->() WHERE r.`{names.rel_prop}` IS NOT NULL "
                          f"CALL (r) {{ REMOVE r.`{names.rel_prop}` }} IN TRANSACTIONS OF 10000 ROWS")
    client.run_autocommit(f"MATCH (n:`{s.label}`) WHERE n.`{names.train_adj_prop}` IS NOT NULL "
                          f"CALL (n) {{ REMOVE n.`{names.train_adj_prop}` }} IN TRANSACTIONS OF 10000 ROWS")


def delete_edge_split(client: Neo4jClient, record: DatasetRecord) -> None:
    """Drop the dataset's stored edge split (marks, training copy, record)."""
    clear_marks(client, record.schema, SplitNames.of(record.schema))
    client.write(f"MATCH (s:`{SPLIT_LABEL}` {{dataset: $name}}) DELETE s", name=record.name)


def _unused_pairs(csr: CSRGraph, split: EdgeSplit) -> np.ndarray:
    """Pairs in no part (fractions summing below 1): message-passing edges, never supervision targets."""
    n = csr.num_nodes
    every = unique_pairs(csr_edge_index(csr), n)
    used = np.concatenate([pair_keys(p[:, 0], p[:, 1], n) for p in (split.train, split.val, split.test)])
    return every[~np.isin(pair_keys(every[:, 0], every[:, 1], n), used)]


def _write_train_adjacency(client: Neo4jClient, s: GraphSchema, names: SplitNames, train: CSRGraph,
                           progress: bool) -> None:
    query = (f"UNWIND $rows AS r MATCH (n:`{s.label}` {{`{s.id_prop}`: r.id}}) SET n.`{names.train_adj_prop}` = r.a")
    indptr, indices = train.indptr, train.indices
    with tqdm(total=train.num_nodes, unit="node", desc=f"{s.dataset} training adjacency", disable=not progress) as bar:
        for lo in range(0, train.num_nodes, BATCH_ROWS):  # encoded per batch: bounded memory on large graphs
            hi = min(lo + BATCH_ROWS, train.num_nodes)
            blobs = encode_adjacency(indptr[lo:hi + 1] - indptr[lo], indices[indptr[lo]:indptr[hi]])
            client.write(query, rows=[{"id": lo + i, "a": b} for i, b in enumerate(blobs)])
            bar.update(hi - lo)


def _fresh(client: Neo4jClient, record: DatasetRecord, stored: dict) -> str | None:
    """Why the stored split no longer describes the graph, or None."""
    if stored.get("fingerprint") != record.fingerprint:
        return "the dataset was reloaded since"
    rels = client.count_relationships(record.rel_type)
    if rels != stored.get("rel_count"):
        return f"the graph has {rels:,} relationships, {stored.get('rel_count'):,} when it was split"
    return None


def read_edge_split(client: Neo4jClient, record: DatasetRecord, spec: EdgeSplitSpec, *,
                    progress: bool = False) -> tuple[EdgeSplit, SplitNames]:
    """The stored split of ``record``'s dataset, which must be ``spec``'s and current (else one line).

    Held-out pairs from the relationship marks; training pairs from the training adjacency copy (what
    link training samples, kept current by the plugin) less the ``unused`` pairs; counts checked.
    """
    s, names = record.schema, SplitNames.of(record.schema)
    stored = stored_split(client, s.dataset)
    if stored is None or not stored.get("complete"):
        state = "no stored edge split" if stored is None else "an unfinished edge split"
        raise UserError(f"--task link: dataset {s.dataset!r} has {state}; make one with {make_hint(s.dataset, spec)}")
    if stored.get("fractions") != spec.text or stored.get("seed") != spec.seed:
        raise UserError(f"dataset {s.dataset!r} has edge split {stored.get('fractions')} (seed {stored.get('seed')}), not "
                        f"--edge_split {spec.text} --edge_split_seed {spec.seed}: pass those, or re-split with "
                        f"{make_hint(s.dataset, spec)[:-1]} --reset`")
    why = _fresh(client, record, stored)
    if why is not None:
        raise UserError(f"the edge split of dataset {s.dataset!r} is stale ({why}); re-split with "
                        f"{make_hint(s.dataset, spec)[:-1]} --reset`")
    n = record.num_nodes
    parts = read_marked_pairs(client, record, names, progress=progress)
    train_edges = csr_edge_index(read_adjacency(client, record, names.train_adj_prop, progress=progress))
    held = EdgeSplit(spec, n, np.zeros((0, 2), np.int64), parts["val"], parts["test"])
    if held.is_held_out(*train_edges).any():
        raise UserError(f"dataset {s.dataset!r}: its training adjacency {names.train_adj_prop!r} holds held-out pairs; "
                        f"re-split with {make_hint(s.dataset, spec)[:-1]} --reset`")
    train = unique_pairs(train_edges, n)  # the training graph's pairs, less those beyond the fractions
    unused = pair_keys(parts[UNUSED][:, 0], parts[UNUSED][:, 1], n)
    parts["train"] = train[~np.isin(pair_keys(train[:, 0], train[:, 1], n), unused)] if len(unused) else train
    for part in PARTS:
        if len(parts[part]) != stored.get(f"num_{part}"):
            raise UserError(f"dataset {s.dataset!r}: {len(parts[part])} {part} pairs marked, the edge split recorded "
                            f"{stored.get(f'num_{part}')}; re-split with {make_hint(s.dataset, spec)[:-1]} --reset`")
    return EdgeSplit(spec, n, parts["train"], parts["val"], parts["test"]), names
